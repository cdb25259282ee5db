/* `tubeloop lab upload FILE.csv`: results exported from a lab's information system (LIS),
 * sent as tube.result events (DESIGN §4). The format is docs/CSV.md's.
 *
 * The whole file is checked first and every bad line is reported with its number; if any line
 * is bad, nothing is sent (a half-uploaded file is harder to fix than a refused one). Then the
 * results go up in batches of at most 500 events per POST /v1/events, with a progress bar on a
 * terminal. Re-running the command is safe: each event's id is derived from its content
 * (SHA-256 over the lab, the tube, the result, Ct values, amend and time, as an RFC 9562
 * UUIDv8), and its time is the line's `at` or one time for the whole file (--at, else the
 * file's modification time), so the same file sends the same events and the server answers
 * `duplicate` for those it already has. The summary counts accepted, duplicate and rejected
 * events, the rejections by code with their lines, and the anomalies the results opened. */
#include "cli.h"
#include "input.h"

#include "crypto/token.h"
#include "domain/validate.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int tl_cmd_lab_upload(tl_cli_t *c, int argc, char **argv);

#define MAX_BATCH 500  /* events per POST (the server takes 1000; half keeps bodies small) */
#define MAX_GENES 16   /* the server's limit on ct entries */
#define RETRIES 5

enum { COL_NONE = -1 };

typedef struct {
  int tube, result, amend, at;   /* column index or COL_NONE */
  int ngenes;
  int gene_col[MAX_GENES];
  char gene[MAX_GENES][33];
  int gene_order[MAX_GENES];     /* genes sorted by name: the ct object's key order */
  int ncols;
} header_t;

typedef struct {
  int line;
  char tube[33];
  int result;                    /* index into result_words */
  int amend;
  char at[TL_TIME_TEXT_MAX];     /* "" = the file's time */
  double ct[MAX_GENES];
  unsigned char has_ct[MAX_GENES];
} row_t;

typedef struct {
  int line;
  char *msg;
} problem_t;

typedef struct {
  problem_t *v;
  int n, cap;
} problems_t;

static const char *const result_names[] = {"negative", "positive", "invalid"};

static void usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop lab upload 文件.csv [--lab 实验室代码] [--at 时间] [--batch N] [--dry-run]\n"
               "  上传实验室 LIS 导出的检测结果（格式见 docs/CSV.md）：\n"
               "  表头 tube,result[,ct_<基因>...][,amend][,at]；结果 negative/positive/invalid 或 阴性/阳性/无效；\n"
               "  Ct 值 0–100；amend 为 true/false/1/0/是/否。先检查整个文件，有任何错误行则一条也不上传。\n"
               "  --lab 本实验室代码（或 TUBELOOP_LAB）：事件编号由它和每行内容推导，重复上传只会得到 duplicate；\n"
               "        不给时用令牌的摘要代替（换令牌后再上传会成为新事件，但结果相同，不改变任何数据）。\n"
               "  --at  没有 at 列（或该格为空）的行使用的时间（RFC 3339），默认为文件的修改时间。\n"
               "  --batch 每次提交的事件数（1–500，默认 500）；--dry-run 只检查不上传。\n",
               "usage: tubeloop lab upload FILE.csv [--lab CODE] [--at TIME] [--batch N] [--dry-run]\n"
               "  Upload results exported from the lab's LIS (format: docs/CSV.md):\n"
               "  header tube,result[,ct_<gene>...][,amend][,at]; results negative/positive/invalid or\n"
               "  阴性/阳性/无效; Ct values 0-100; amend true/false/1/0/是/否. The whole file is checked\n"
               "  first; if any line is bad, nothing is uploaded.\n"
               "  --lab   this lab's code (or TUBELOOP_LAB): event ids derive from it and each line, so an\n"
               "          upload repeated is all duplicate; without it the token's digest stands in (a new\n"
               "          token makes new events, with the same results, which change nothing).\n"
               "  --at    the time of lines without an at column or value (RFC 3339); default: the\n"
               "          file's modification time.\n"
               "  --batch events per request (1-500, default 500); --dry-run: check only.\n"),
        to);
}

static void problem_add(problems_t *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem_add(problems_t *ps, int line, const char *fmt, ...) {
  if (ps->n == ps->cap) {
    int cap = ps->cap ? ps->cap * 2 : 64;
    problem_t *v = realloc(ps->v, (size_t)cap * sizeof *v);
    if (v == NULL) return;
    ps->v = v;
    ps->cap = cap;
  }
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ps->v[ps->n].line = line;
  ps->v[ps->n].msg = strdup(msg);
  ps->n++;
}

static void problems_free(problems_t *ps) {
  for (int i = 0; i < ps->n; i++) free(ps->v[i].msg);
  free(ps->v);
}

/* ---------- the header ---------- */

static int parse_header(const tl_cli_t *c, tl_csv_t *p, header_t *h, problems_t *ps) {
  memset(h, 0, sizeof *h);
  h->tube = h->result = h->amend = h->at = COL_NONE;
  char err[256];
  int line = 1;
  int rc = tl_csv_next(p, c->en, &line, err, sizeof err);
  if (rc == 0) {
    problem_add(ps, 1, "%s", TL_MSG(c, "文件是空的：需要表头 tube,result", "the file is empty: a header tube,result is needed"));
    return -1;
  }
  if (rc < 0) {
    problem_add(ps, line, "%s: %s", TL_MSG(c, "表头", "header"), err);
    return -1;
  }
  h->ncols = p->nf;
  int bad = 0;
  for (int i = 0; i < p->nf; i++) {
    const char *f = tl_csv_field(p, i);
    int *slot = NULL;
    if (tl_word_eq(f, "tube")) slot = &h->tube;
    else if (tl_word_eq(f, "result")) slot = &h->result;
    else if (tl_word_eq(f, "amend")) slot = &h->amend;
    else if (tl_word_eq(f, "at")) slot = &h->at;
    if (slot) {
      if (*slot != COL_NONE) {
        problem_add(ps, line, "%s \"%s\"", TL_MSG(c, "表头重复的列", "header: a repeated column"), f);
        bad = 1;
      }
      *slot = i;
      continue;
    }
    if ((f[0] == 'c' || f[0] == 'C') && (f[1] == 't' || f[1] == 'T') && f[2] == '_') {
      const char *gene = f + 3;
      if (!tl_valid_code(gene, strlen(gene))) {
        problem_add(ps, line, "%s \"%.60s\": %s", TL_MSG(c, "表头", "header"), f,
                    TL_MSG(c, "基因名须为 1–32 位字母、数字或 -", "a gene name must be 1-32 of A-Z a-z 0-9 -"));
        bad = 1;
        continue;
      }
      int dup = 0;
      for (int g = 0; g < h->ngenes; g++) dup |= strcmp(h->gene[g], gene) == 0;
      if (dup) {
        problem_add(ps, line, "%s \"%s\"", TL_MSG(c, "表头重复的列", "header: a repeated column"), f);
        bad = 1;
        continue;
      }
      if (h->ngenes == MAX_GENES) {
        problem_add(ps, line, "%s", TL_MSG(c, "表头：Ct 列最多 16 个", "header: at most 16 Ct columns"));
        bad = 1;
        continue;
      }
      h->gene_col[h->ngenes] = i;
      snprintf(h->gene[h->ngenes], sizeof h->gene[0], "%s", gene);
      h->ngenes++;
      continue;
    }
    problem_add(ps, line, "%s \"%.60s\" (%s)", TL_MSG(c, "表头：未知的列", "header: unknown column"), f,
                TL_MSG(c, "可用的列：tube, result, ct_<基因>, amend, at", "known: tube, result, ct_<gene>, amend, at"));
    bad = 1;
  }
  if (h->tube == COL_NONE || h->result == COL_NONE) {
    problem_add(ps, line, "%s", TL_MSG(c, "表头缺少 tube 或 result 列（第一行须是表头）",
                                       "header: the columns tube and result are required (the first line is the header)"));
    bad = 1;
  }
  /* genes by name, so the ct object (and so the event id) does not depend on column order */
  for (int g = 0; g < h->ngenes; g++) h->gene_order[g] = g;
  for (int a = 1; a < h->ngenes; a++)
    for (int b = a; b > 0 && strcmp(h->gene[h->gene_order[b - 1]], h->gene[h->gene_order[b]]) > 0; b--) {
      int t = h->gene_order[b];
      h->gene_order[b] = h->gene_order[b - 1];
      h->gene_order[b - 1] = t;
    }
  return bad ? -1 : 0;
}

/* ---------- the values ---------- */

static int parse_result(const char *s) {
  static const char *const zh[] = {"阴性", "阳性", "无效"};
  for (int i = 0; i < 3; i++)
    if (tl_word_eq(s, result_names[i]) || strcmp(s, zh[i]) == 0) return i;
  return -1;
}

static int parse_amend(const char *s) {
  if (s[0] == '\0' || tl_word_eq(s, "false") || strcmp(s, "0") == 0 || strcmp(s, "否") == 0) return 0;
  if (tl_word_eq(s, "true") || strcmp(s, "1") == 0 || strcmp(s, "是") == 0) return 1;
  return -1;
}

/* A Ct value: digits with an optional decimal fraction, 0 to 100. */
static int parse_ct(const char *s, double *out) {
  const char *p = s;
  int digits = 0, frac = 0;
  while (*p >= '0' && *p <= '9') p++, digits++;
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') p++, frac++;
    if (frac == 0) return -1;
  }
  if (*p != '\0' || digits == 0 || digits > 3 || frac > 6) return -1;
  errno = 0;
  double v = strtod(s, NULL);
  if (errno != 0 || !isfinite(v) || v < 0 || v > 100) return -1;
  *out = v;
  return 0;
}

/* A tube code → row index map (open addressing), to refuse a tube named twice in one file. */
typedef struct {
  int *slot;   /* row index + 1, 0 = empty */
  size_t mask;
} tube_set_t;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Returns the earlier row with this tube, or -1 after adding index. */
static int tube_set_add(tube_set_t *t, const row_t *rows, int index) {
  size_t i = hash_str(rows[index].tube) & t->mask;
  while (t->slot[i]) {
    int r = t->slot[i] - 1;
    if (strcmp(rows[r].tube, rows[index].tube) == 0) return r;
    i = (i + 1) & t->mask;
  }
  t->slot[i] = index + 1;
  return -1;
}

/* Checks every line. Rows go to *rows; problems to ps. */
static int parse_rows(const tl_cli_t *c, tl_csv_t *p, const header_t *h, row_t **rows_out,
                      int *nrows_out, problems_t *ps) {
  row_t *rows = NULL;
  int n = 0, cap = 0;
  char err[256];
  int line;
  int rc;
  while ((rc = tl_csv_next(p, c->en, &line, err, sizeof err)) != 0) {
    if (rc < 0) {
      problem_add(ps, line, "%s", err);
      continue;
    }
    if (p->nf != h->ncols) {
      problem_add(ps, line, TL_MSG(c, "有 %d 个字段，表头有 %d 个", "has %d fields, the header has %d"), p->nf,
                  h->ncols);
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 1024;
      row_t *r = realloc(rows, (size_t)cap * sizeof *r);
      if (r == NULL) {
        free(rows);
        return tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
      }
      rows = r;
    }
    row_t *r = &rows[n];
    memset(r, 0, sizeof *r);
    r->line = line;
    int bad = 0;
    const char *tube = tl_csv_field(p, h->tube);
    if (!tl_valid_barcode(tube, strlen(tube))) {
      problem_add(ps, line, "%s \"%.40s\" %s", TL_MSG(c, "采样管条码", "tube barcode"), tube,
                  TL_MSG(c, "无效（须为 6–32 位字母、数字或 -）", "is not valid (6-32 of A-Z a-z 0-9 -)"));
      bad = 1;
    } else {
      snprintf(r->tube, sizeof r->tube, "%s", tube);
    }
    const char *res = tl_csv_field(p, h->result);
    if ((r->result = parse_result(res)) < 0) {
      problem_add(ps, line, "%s \"%.40s\" %s", TL_MSG(c, "结果", "result"), res,
                  TL_MSG(c, "无效（negative/positive/invalid 或 阴性/阳性/无效）",
                         "is not one of negative/positive/invalid or 阴性/阳性/无效"));
      bad = 1;
    }
    if (h->amend != COL_NONE) {
      const char *a = tl_csv_field(p, h->amend);
      if ((r->amend = parse_amend(a)) < 0) {
        problem_add(ps, line, "amend \"%.40s\" %s", a,
                    TL_MSG(c, "无效（true/false/1/0/是/否，或留空）", "is not true/false/1/0/是/否 or empty"));
        bad = 1;
      }
    }
    if (h->at != COL_NONE) {
      const char *at = tl_csv_field(p, h->at);
      int64_t ms;
      if (at[0] && (strlen(at) >= sizeof r->at || tl_time_parse(at, strlen(at), &ms) != 0)) {
        problem_add(ps, line, "at \"%.40s\" %s", at,
                    TL_MSG(c, "不是带时区的 RFC 3339 时间（如 2021-10-08T09:12:03+08:00）",
                           "is not an RFC 3339 time with an offset (like 2021-10-08T09:12:03+08:00)"));
        bad = 1;
      } else {
        snprintf(r->at, sizeof r->at, "%s", at);
      }
    }
    for (int g = 0; g < h->ngenes; g++) {
      const char *v = tl_csv_field(p, h->gene_col[g]);
      if (v[0] == '\0') continue;
      if (parse_ct(v, &r->ct[g]) != 0) {
        problem_add(ps, line, "ct_%s \"%.40s\" %s", h->gene[g], v,
                    TL_MSG(c, "不是 0–100 的数（或留空）", "is not a number from 0 to 100 (or empty)"));
        bad = 1;
      } else {
        r->has_ct[g] = 1;
      }
    }
    if (!bad) n++;
  }
  *rows_out = rows;
  *nrows_out = n;
  return 0;
}

/* ---------- events ---------- */

/* An RFC 9562 version 8 UUID from SHA-256 of ns and the event text. */
static void derive_id(const char *ns, const char *text, char out[37]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  static const char tag[] = "tubeloop lab upload v1";
  if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
      EVP_DigestUpdate(ctx, tag, sizeof tag) != 1 ||
      EVP_DigestUpdate(ctx, ns, strlen(ns) + 1) != 1 ||
      EVP_DigestUpdate(ctx, text, strlen(text)) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
    /* cannot happen with the default provider; a random-looking but fixed id would be wrong,
     * so stop rather than send events that a retry could not match */
    fprintf(stderr, "tubeloop: SHA-256 is not available\n");
    exit(1);
  }
  EVP_MD_CTX_free(ctx);
  md[6] = (unsigned char)((md[6] & 0x0F) | 0x80); /* version 8 */
  md[8] = (unsigned char)((md[8] & 0x3F) | 0x80); /* variant 10 */
  static const char hex[] = "0123456789abcdef";
  char *o = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
    *o++ = hex[md[i] >> 4];
    *o++ = hex[md[i] & 15];
  }
  *o = '\0';
}

static cJSON *make_event(const header_t *h, const row_t *r, const char *file_at, const char *ns) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "type", "tube.result");
  cJSON_AddStringToObject(e, "at", r->at[0] ? r->at : file_at);
  cJSON_AddStringToObject(e, "tube", r->tube);
  cJSON_AddStringToObject(e, "result", result_names[r->result]);
  int any = 0;
  for (int g = 0; g < h->ngenes; g++) any |= r->has_ct[g];
  if (any) {
    cJSON *ct = cJSON_AddObjectToObject(e, "ct");
    for (int k = 0; k < h->ngenes; k++) {
      int g = h->gene_order[k];
      if (r->has_ct[g]) cJSON_AddNumberToObject(ct, h->gene[g], r->ct[g]);
    }
  }
  if (r->amend) cJSON_AddBoolToObject(e, "amend", 1);
  char *text = cJSON_PrintUnformatted(e);
  if (text == NULL) {
    cJSON_Delete(e);
    return NULL;
  }
  char id[37];
  derive_id(ns, text, id);
  free(text);
  cJSON_AddStringToObject(e, "id", id);
  return e;
}

/* ---------- progress and summary ---------- */

static void progress(const tl_cli_t *c, int tty, int done, int total) {
  if (tty) {
    int width = 30, fill = total ? (int)((long)done * width / total) : width;
    fprintf(stderr, "\r%s [", TL_MSG(c, "上传", "upload"));
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '-', stderr);
    fprintf(stderr, "] %d/%d %3d%%", done, total, total ? (int)((long)done * 100 / total) : 100);
    if (done == total) fputc('\n', stderr);
  } else {
    fprintf(stderr, "%s %d/%d\n", TL_MSG(c, "已上传", "uploaded"), done, total);
  }
  fflush(stderr);
}

typedef struct {
  char code[40];
  char msg[200];
  int *lines;
  int n, cap;
} tally_t;

typedef struct {
  tally_t *v;
  int n, cap;
} tallies_t;

static void tally_add(tallies_t *ts, const char *code, const char *msg, int line) {
  tally_t *t = NULL;
  for (int i = 0; i < ts->n && t == NULL; i++)
    if (strcmp(ts->v[i].code, code) == 0) t = &ts->v[i];
  if (t == NULL) {
    if (ts->n == ts->cap) {
      int cap = ts->cap ? ts->cap * 2 : 8;
      tally_t *v = realloc(ts->v, (size_t)cap * sizeof *v);
      if (v == NULL) return;
      ts->v = v;
      ts->cap = cap;
    }
    t = &ts->v[ts->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->code, sizeof t->code, "%s", code);
    snprintf(t->msg, sizeof t->msg, "%s", msg);
  }
  if (t->n == t->cap) {
    int cap = t->cap ? t->cap * 2 : 16;
    int *l = realloc(t->lines, (size_t)cap * sizeof *l);
    if (l == NULL) return;
    t->lines = l;
    t->cap = cap;
  }
  t->lines[t->n++] = line;
}

static void tallies_free(tallies_t *ts) {
  for (int i = 0; i < ts->n; i++) free(ts->v[i].lines);
  free(ts->v);
}

static void print_tallies(const tl_cli_t *c, const tallies_t *ts, int with_msg) {
  tl_table_t t;
  tl_table_init(&t, with_msg ? 4 : 3);
  if (with_msg)
    tl_table_row(&t, TL_MSG(c, "  代码", "  code"), TL_MSG(c, "数量", "count"), TL_MSG(c, "行号", "lines"),
                 TL_MSG(c, "说明", "reason"));
  else
    tl_table_row(&t, TL_MSG(c, "  类型", "  type"), TL_MSG(c, "数量", "count"), TL_MSG(c, "行号", "lines"));
  for (int i = 0; i < ts->n; i++) {
    char code[48], count[16];
    snprintf(code, sizeof code, "  %s", ts->v[i].code);
    snprintf(count, sizeof count, "%d", ts->v[i].n);
    tl_buf_t lines;
    tl_buf_init(&lines);
    (void)tl_lines_compact(&lines, ts->v[i].lines, ts->v[i].n);
    if (with_msg)
      tl_table_row(&t, code, count, tl_buf_cstr(&lines), ts->v[i].msg);
    else
      tl_table_row(&t, code, count, tl_buf_cstr(&lines));
    tl_buf_dispose(&lines);
  }
  tl_table_print(&t);
  tl_table_dispose(&t);
}

static cJSON *tallies_json(const tallies_t *ts, int with_msg) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < ts->n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, with_msg ? "code" : "type", ts->v[i].code);
    cJSON_AddNumberToObject(o, "count", ts->v[i].n);
    if (with_msg) cJSON_AddStringToObject(o, "message", ts->v[i].msg);
    cJSON *l = cJSON_AddArrayToObject(o, "lines");
    for (int k = 0; k < ts->v[i].n; k++) cJSON_AddItemToArray(l, cJSON_CreateNumber(ts->v[i].lines[k]));
    cJSON_AddItemToArray(a, o);
  }
  return a;
}

/* ---------- sending ---------- */

/* Posts one batch, retrying transport failures and 429/502/503/504 with backoff (safe: the
 * ids make a retry a duplicate). Returns the parsed answer or NULL after printing why. */
static cJSON *post_batch(tl_cli_t *c, const char *body, int tty) {
  char err[512];
  for (int attempt = 0;; attempt++) {
    tl_cli_resp_t r;
    int rc = tl_cli_call(c, "POST", "/v1/events", body, &r, err, sizeof err);
    int retry = rc != 0 || r.status == 429 || r.status == 502 || r.status == 503 || r.status == 504;
    if (rc == 0 && !retry) {
      if (r.status != 200) {
        tl_cli_resp_error(&r, err, sizeof err);
        tl_cli_resp_dispose(&r);
        if (tty) fputc('\n', stderr);
        tl_cli_fail("%s", err);
        return NULL;
      }
      cJSON *j = tl_cli_resp_json(&r);
      tl_cli_resp_dispose(&r);
      if (j == NULL) tl_cli_fail("%s", TL_MSG(c, "服务器的回答不是 JSON", "the server's answer is not JSON"));
      return j;
    }
    if (rc == 0) {
      tl_cli_resp_error(&r, err, sizeof err);
      tl_cli_resp_dispose(&r);
    }
    if (attempt + 1 >= RETRIES) {
      if (tty) fputc('\n', stderr);
      tl_cli_fail("%s", err);
      return NULL;
    }
    unsigned int wait = 1u << attempt;
    fprintf(stderr, "%s%s; %s %u s\n", tty ? "\n" : "", err, TL_MSG(c, "稍后重试", "retrying in"), wait);
    sleep(wait);
  }
}

int tl_cmd_lab_upload(tl_cli_t *c, int argc, char **argv) {
  const char *file = NULL, *lab = getenv("TUBELOOP_LAB"), *at_flag = NULL, *batch_s = NULL;
  int dry = 0;
  for (int i = 1; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      usage(c, stdout);
      return 0;
    }
    if ((r = tl_arg_value(&i, argc, argv, "--lab", &lab)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--at", &at_flag)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--batch", &batch_s)) != 0) {
      if (r < 0) return 2;
    } else if (strcmp(argv[i], "--dry-run") == 0) {
      dry = 1;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      usage(c, stderr);
      return tl_cli_fail("%s %s", TL_MSG(c, "未知选项", "unknown option"), argv[i]) + 1;
    } else if (file == NULL) {
      file = argv[i];
    } else {
      usage(c, stderr);
      return tl_cli_fail("%s", TL_MSG(c, "只能给一个文件", "give one file")) + 1;
    }
  }
  if (file == NULL) {
    usage(c, stderr);
    return tl_cli_fail("%s", TL_MSG(c, "缺少 CSV 文件", "the CSV file is missing")) + 1;
  }
  long batch = MAX_BATCH;
  if (batch_s) {
    char *end;
    batch = strtol(batch_s, &end, 10);
    if (*end || batch < 1 || batch > MAX_BATCH)
      return tl_cli_fail("%s", TL_MSG(c, "--batch 须为 1–500", "--batch must be 1-500")) + 1;
  }
  if (lab && lab[0] && !tl_valid_code(lab, strlen(lab)))
    return tl_cli_fail("%s", TL_MSG(c, "--lab 不是有效的实验室代码", "--lab is not a lab code")) + 1;
  if (at_flag) {
    int64_t ms;
    if (strlen(at_flag) >= TL_TIME_TEXT_MAX || tl_time_parse(at_flag, strlen(at_flag), &ms) != 0)
      return tl_cli_fail("%s", TL_MSG(c, "--at 须为带时区的 RFC 3339 时间", "--at must be an RFC 3339 time with an offset")) + 1;
  }
  if (!dry && tl_cli_need_server(c) != 0) return 1;

  tl_buf_t data;
  tl_buf_init(&data);
  time_t mtime = 0;
  if (tl_file_read(file, c->en, &data, &mtime) != 0) {
    tl_buf_dispose(&data);
    return 1;
  }
  char file_at[TL_TIME_TEXT_MAX];
  if (at_flag) {
    snprintf(file_at, sizeof file_at, "%s", at_flag);
  } else if (tl_time_format((int64_t)mtime * 1000, 0, file_at) != 0) {
    tl_buf_dispose(&data);
    return tl_cli_fail("%s", TL_MSG(c, "文件的修改时间无效，请用 --at", "the file's modification time is unusable: pass --at"));
  }

  /* 1. check everything */
  tl_csv_t p;
  tl_csv_init(&p, data.data ? data.data : "", data.len);
  header_t h;
  problems_t ps = {0};
  row_t *rows = NULL;
  int nrows = 0, rc = 1;
  cJSON *out = NULL;
  if (parse_header(c, &p, &h, &ps) == 0 && parse_rows(c, &p, &h, &rows, &nrows, &ps) != 0) goto done;
  if (nrows > 0) {
    tube_set_t set;
    size_t size = 16;
    while (size < (size_t)nrows * 2) size <<= 1;
    set.mask = size - 1;
    set.slot = calloc(size, sizeof *set.slot);
    if (set.slot == NULL) {
      tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
      goto done;
    }
    for (int i = 0; i < nrows; i++) {
      int prev = tube_set_add(&set, rows, i);
      if (prev >= 0)
        problem_add(&ps, rows[i].line, "%s %s %s %d %s", TL_MSG(c, "采样管", "tube"), rows[i].tube,
                    TL_MSG(c, "已在第", "is already on line"), rows[prev].line,
                    TL_MSG(c, "行（每个文件每管一个结果；更正请另用 amend 上传）",
                           "(one result per tube per file; send a correction with amend in another file)"));
    }
    free(set.slot);
  }
  if (ps.n > 0) {
    /* problems come in line order except the header's and the repeated tubes' (found last) */
    for (int a = 1; a < ps.n; a++)
      for (int b = a; b > 0 && ps.v[b - 1].line > ps.v[b].line; b--) {
        problem_t t = ps.v[b];
        ps.v[b] = ps.v[b - 1];
        ps.v[b - 1] = t;
      }
    if (c->json) {
      out = cJSON_CreateObject();
      cJSON_AddStringToObject(out, "file", file);
      cJSON_AddBoolToObject(out, "uploaded", 0);
      cJSON *errs = cJSON_AddArrayToObject(out, "errors");
      for (int i = 0; i < ps.n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "line", ps.v[i].line);
        cJSON_AddStringToObject(e, "message", ps.v[i].msg);
        cJSON_AddItemToArray(errs, e);
      }
    }
    for (int i = 0; i < ps.n; i++)
      fprintf(stderr, "%s:%d: %s\n", file, ps.v[i].line, ps.v[i].msg);
    int lines = 0;
    for (int i = 0; i < ps.n; i++) lines += i == 0 || ps.v[i].line != ps.v[i - 1].line;
    tl_cli_fail("%s: %d %s", file, lines,
                TL_MSG(c, "行有错误，没有上传任何结果；改正后再运行", "bad lines; nothing was uploaded; fix them and run again"));
    goto done;
  }
  if (nrows == 0) {
    tl_cli_fail("%s: %s", file, TL_MSG(c, "没有结果行", "no result lines"));
    goto done;
  }
  if (dry) {
    if (c->json) {
      out = cJSON_CreateObject();
      cJSON_AddStringToObject(out, "file", file);
      cJSON_AddNumberToObject(out, "results", nrows);
      cJSON_AddBoolToObject(out, "uploaded", 0);
    } else {
      printf("%s: %d %s\n", file, nrows, TL_MSG(c, "条结果，检查通过（未上传）", "results, all lines valid (not uploaded)"));
    }
    rc = 0;
    goto done;
  }

  /* 2. send */
  char ns[TL_TOKEN_HASH_LEN + 40];
  if (lab && lab[0]) {
    snprintf(ns, sizeof ns, "lab:%s", lab);
  } else {
    char hash[TL_TOKEN_HASH_LEN + 1];
    tl_token_hash(c->token, strlen(c->token), hash);
    snprintf(ns, sizeof ns, "token:%s", hash);
  }
  int tty = isatty(2) && !c->json;
  int accepted = 0, duplicate = 0, rejected = 0, sent = 0;
  tallies_t rejections = {0}, anomalies = {0};
  progress(c, tty, 0, nrows);
  while (sent < nrows) {
    int n = nrows - sent < batch ? nrows - sent : (int)batch;
    cJSON *body = cJSON_CreateObject();
    cJSON *evs = cJSON_AddArrayToObject(body, "events");
    for (int i = 0; i < n; i++) {
      cJSON *e = make_event(&h, &rows[sent + i], file_at, ns);
      if (e == NULL || evs == NULL) {
        cJSON_Delete(body);
        tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
        goto summary;
      }
      cJSON_AddItemToArray(evs, e);
    }
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    cJSON *ans = text ? post_batch(c, text, tty) : NULL;
    free(text);
    const cJSON *results = ans ? cJSON_GetObjectItemCaseSensitive(ans, "results") : NULL;
    if (ans && (!cJSON_IsArray(results) || cJSON_GetArraySize(results) != n)) {
      tl_cli_fail("%s", TL_MSG(c, "服务器的回答与提交的事件数不符", "the server answered for another number of events"));
      cJSON_Delete(ans);
      ans = NULL;
    }
    if (ans == NULL) {
      tl_cli_fail("%s %d/%d %s", TL_MSG(c, "已提交", "sent"), sent, nrows,
                  TL_MSG(c, "条；再次运行同一命令即可继续（已上传的会是 duplicate）",
                         "so far; run the same command again to finish (what arrived comes back duplicate)"));
      goto summary;
    }
    int i = 0;
    for (const cJSON *res = results->child; res; res = res->next, i++) {
      const row_t *row = &rows[sent + i];
      const char *st = tl_js(res, "status");
      if (strcmp(st, "accepted") == 0) accepted++;
      else if (strcmp(st, "duplicate") == 0) duplicate++;
      else {
        rejected++;
        tally_add(&rejections, tl_js(res, "code")[0] ? tl_js(res, "code") : "rejected",
                  tl_js(res, "message"), row->line);
      }
      const cJSON *an = cJSON_GetObjectItemCaseSensitive(res, "anomalies");
      for (const cJSON *a = cJSON_IsArray(an) ? an->child : NULL; a; a = a->next)
        if (cJSON_IsString(a)) tally_add(&anomalies, a->valuestring, "", row->line);
    }
    cJSON_Delete(ans);
    sent += n;
    progress(c, tty, sent, nrows);
  }
  rc = rejected ? 1 : 0;
summary:
  if (sent < nrows) rc = 1;
  if (c->json) {
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "file", file);
    cJSON_AddNumberToObject(out, "results", nrows);
    cJSON_AddNumberToObject(out, "sent", sent);
    cJSON_AddNumberToObject(out, "accepted", accepted);
    cJSON_AddNumberToObject(out, "duplicate", duplicate);
    cJSON_AddNumberToObject(out, "rejected", rejected);
    cJSON_AddItemToObject(out, "rejections", tallies_json(&rejections, 1));
    cJSON_AddItemToObject(out, "anomalies", tallies_json(&anomalies, 0));
  } else {
    printf("%s %d, %s %d, %s %d", TL_MSG(c, "接受", "accepted"), accepted, TL_MSG(c, "重复", "duplicate"),
           duplicate, TL_MSG(c, "拒绝", "rejected"), rejected);
    if (sent < nrows) printf(" (%s %d)", TL_MSG(c, "未发送", "not sent"), nrows - sent);
    putchar('\n');
    if (rejections.n) {
      printf("%s\n", TL_MSG(c, "被拒绝的结果：", "rejected results:"));
      print_tallies(c, &rejections, 1);
    }
    if (anomalies.n) {
      printf("%s\n", TL_MSG(c, "记录的异常：", "anomalies recorded:"));
      print_tallies(c, &anomalies, 0);
    }
  }
  if (rejected && sent == nrows)
    tl_cli_fail("%d %s", rejected, TL_MSG(c, "条结果被拒绝（见上）", "results were rejected (see above)"));
  tallies_free(&rejections);
  tallies_free(&anomalies);
done:
  if (out) {
    char *s = cJSON_Print(out);
    if (s) puts(s);
    free(s);
    cJSON_Delete(out);
  }
  free(rows);
  problems_free(&ps);
  tl_csv_dispose(&p);
  tl_buf_dispose(&data);
  return rc;
}
