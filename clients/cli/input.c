/* Files, CSV records and flags for the CLI (input.h). */
#include "input.h"

#include "cli.h"
#include "domain/validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MSG(en, zh, en_) ((en) ? (en_) : (zh))

void tl_csv_init(tl_csv_t *p, const char *data, size_t len) {
  memset(p, 0, sizeof *p);
  tl_buf_init(&p->fields);
  p->data = data;
  p->len = len;
  p->line = 1;
  if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) p->pos = 3;
}

void tl_csv_dispose(tl_csv_t *p) {
  tl_buf_dispose(&p->fields);
  free(p->offs);
  memset(p, 0, sizeof *p);
}

const char *tl_csv_field(const tl_csv_t *p, int i) {
  return i >= 0 && i < p->nf ? p->fields.data + p->offs[i] : "";
}

static int field_start(tl_csv_t *p) {
  if (p->nf == p->cap) {
    int cap = p->cap ? p->cap * 2 : 16;
    size_t *o = realloc(p->offs, (size_t)cap * sizeof *o);
    if (o == NULL) return -1;
    p->offs = o;
    p->cap = cap;
  }
  p->offs[p->nf++] = p->fields.len;
  return 0;
}

static int field_end(tl_csv_t *p) { return tl_buf_append(&p->fields, "", 1); }

/* Moves past the rest of the physical line (after an error). */
static void skip_line(tl_csv_t *p) {
  while (p->pos < p->len && p->data[p->pos] != '\n' && p->data[p->pos] != '\r') p->pos++;
  if (p->pos < p->len && p->data[p->pos] == '\r') p->pos++;
  if (p->pos < p->len && p->data[p->pos] == '\n') p->pos++;
  p->line++;
}

/* Consumes a line end at pos (LF, CRLF or CR); returns 1 if there was one. */
static int eat_eol(tl_csv_t *p) {
  if (p->pos >= p->len) return 0;
  if (p->data[p->pos] == '\r') {
    p->pos++;
    if (p->pos < p->len && p->data[p->pos] == '\n') p->pos++;
  } else if (p->data[p->pos] == '\n') {
    p->pos++;
  } else {
    return 0;
  }
  p->line++;
  return 1;
}

static int check_text(const char *s, int en, char *err, size_t errlen, int col) {
  size_t n = strlen(s);
  if (!tl_utf8_valid(s, n)) {
    snprintf(err, errlen, "%s %d %s", MSG(en, "第", "field"), col + 1,
             MSG(en, "列不是 UTF-8 文本（请把文件另存为 UTF-8；不读 GBK）",
                 "is not UTF-8 text (save the file as UTF-8; GBK is not read)"));
    return -1;
  }
  for (const unsigned char *c = (const unsigned char *)s; *c; c++)
    if ((*c < 0x20 && *c != '\t') || *c == 0x7F) {
      snprintf(err, errlen, "%s %d %s", MSG(en, "第", "field"), col + 1,
               MSG(en, "列含控制字符或换行", "holds a control character or a line break"));
      return -1;
    }
  return 0;
}

int tl_csv_next(tl_csv_t *p, int en, int *line, char *err, size_t errlen) {
  for (;;) {
    tl_buf_reset(&p->fields);
    p->nf = 0;
    if (p->pos >= p->len) return 0;
    *line = p->line;
    /* a blank line (nothing but spaces and tabs) is no record */
    size_t q = p->pos;
    while (q < p->len && (p->data[q] == ' ' || p->data[q] == '\t')) q++;
    if (q >= p->len) {
      p->pos = q;
      return 0;
    }
    if (p->data[q] == '\n' || p->data[q] == '\r') {
      p->pos = q;
      eat_eol(p);
      continue;
    }
    break;
  }
  for (;;) {
    if (field_start(p) != 0) goto oom;
    while (p->pos < p->len && (p->data[p->pos] == ' ' || p->data[p->pos] == '\t')) p->pos++;
    if (p->pos < p->len && p->data[p->pos] == '"') {
      p->pos++;
      for (;;) {
        if (p->pos >= p->len) {
          snprintf(err, errlen, "%s", MSG(en, "引号没有闭合", "a quote is not closed"));
          return -1;
        }
        char ch = p->data[p->pos++];
        if (ch == '"') {
          if (p->pos < p->len && p->data[p->pos] == '"') {
            p->pos++;
          } else {
            break;
          }
        } else if (ch == '\n' || (ch == '\r' && !(p->pos < p->len && p->data[p->pos] == '\n'))) {
          p->line++;
        }
        if (tl_buf_append(&p->fields, &ch, 1) != 0) goto oom;
      }
      while (p->pos < p->len && (p->data[p->pos] == ' ' || p->data[p->pos] == '\t')) p->pos++;
      if (p->pos < p->len && p->data[p->pos] != ',' && p->data[p->pos] != '\n' &&
          p->data[p->pos] != '\r') {
        snprintf(err, errlen, "%s", MSG(en, "右引号之后还有文字", "text after a closing quote"));
        skip_line(p);
        return -1;
      }
    } else {
      size_t start = p->pos;
      while (p->pos < p->len && p->data[p->pos] != ',' && p->data[p->pos] != '\n' &&
             p->data[p->pos] != '\r') {
        if (p->data[p->pos] == '"') {
          snprintf(err, errlen, "%s",
                   MSG(en, "不在引号内的字段含有引号", "a quote inside an unquoted field"));
          skip_line(p);
          return -1;
        }
        p->pos++;
      }
      size_t end = p->pos;
      while (end > start && (p->data[end - 1] == ' ' || p->data[end - 1] == '\t')) end--;
      if (tl_buf_append(&p->fields, p->data + start, end - start) != 0) goto oom;
    }
    if (field_end(p) != 0) goto oom;
    if (p->pos < p->len && p->data[p->pos] == ',') {
      p->pos++;
      continue;
    }
    eat_eol(p);
    break;
  }
  for (int i = 0; i < p->nf; i++) {
    const char *f = p->fields.data + p->offs[i];
    if (strlen(f) != (i + 1 < p->nf ? p->offs[i + 1] - p->offs[i] - 1 : p->fields.len - p->offs[i] - 1)) {
      snprintf(err, errlen, "%s %d %s", MSG(en, "第", "field"), i + 1,
               MSG(en, "列含 NUL 字节", "holds a NUL byte"));
      return -1;
    }
    if (check_text(f, en, err, errlen, i) != 0) return -1;
  }
  return 1;
oom:
  snprintf(err, errlen, "%s", MSG(en, "内存不足", "out of memory"));
  p->pos = p->len;
  return -1;
}

int tl_file_read(const char *path, int en, tl_buf_t *b, time_t *mtime) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    tl_cli_fail("%s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    tl_cli_fail("%s: %s", path, MSG(en, "不是普通文件", "not a regular file"));
    return -1;
  }
  if (mtime) *mtime = st.st_mtime;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (tl_buf_append(b, chunk, n) != 0) {
      fclose(f);
      tl_cli_fail("%s: %s", path, MSG(en, "内存不足", "out of memory"));
      return -1;
    }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    tl_cli_fail("%s: %s", path, MSG(en, "读取失败", "read error"));
    return -1;
  }
  tl_buf_cstr(b);
  return 0;
}

int tl_arg_value(int *i, int argc, char **argv, const char *name, const char **out) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') {
    *out = argv[*i] + n + 1;
    return 1;
  }
  if (strcmp(argv[*i], name) != 0) return 0;
  if (*i + 1 >= argc) {
    tl_cli_fail("%s needs a value", name);
    return -1;
  }
  *out = argv[++*i];
  return 1;
}

int tl_arg_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

int tl_word_eq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
    char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
    if (x != y) return 0;
  }
  return *a == *b;
}

void tl_bputf(tl_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = tl_buf_vappendf(b, fmt, ap);
  va_end(ap);
  if (rc != 0) {
    fputs("tubeloop: out of memory\n", stderr);
    exit(1);
  }
}

int tl_lines_compact(tl_buf_t *b, const int *lines, int n) {
  int rc = 0;
  for (int i = 0; i < n && rc == 0;) {
    int j = i;
    while (j + 1 < n && lines[j + 1] == lines[j] + 1) j++;
    if (j > i)
      rc = tl_buf_appendf(b, "%s%d-%d", i ? ", " : "", lines[i], lines[j]);
    else
      rc = tl_buf_appendf(b, "%s%d", i ? ", " : "", lines[i]);
    i = j + 1;
  }
  return rc;
}
