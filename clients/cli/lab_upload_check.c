/* The check half of `tubeloop lab upload` (lab_upload.h): a lab's results file held in memory,
 * read by the CSV reader of input.c and checked line by line as docs/CSV.md says, and each good
 * line turned into its tube.result event with the id derived from its content. No I/O, no
 * network: the command (lab_upload.c) and the fuzz target (tests/fuzz/fuzz_csv.c) share it. */
#include "lab_upload.h"

#include "base/strmap.h"
#include "domain/validate.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COL_NONE = -1 };

static const char *const result_names[] = {"negative", "positive", "invalid"};

const char *tl_lab_result_name(int result) {
  return result >= 0 && result < 3 ? result_names[result] : NULL;
}

static void problem_add(tl_lab_problems_t *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem_add(tl_lab_problems_t *ps, int line, const char *fmt, ...) {
  if (ps->n == ps->cap) {
    int cap = ps->cap ? ps->cap * 2 : 64;
    tl_lab_problem_t *v = realloc(ps->v, (size_t)cap * sizeof *v);
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
  if (ps->v[ps->n].msg != NULL) ps->n++;
}

static void problems_free(tl_lab_problems_t *ps) {
  for (int i = 0; i < ps->n; i++) free(ps->v[i].msg);
  free(ps->v);
}

/* ---------- the header ---------- */

static int parse_header(const tl_cli_t *c, tl_csv_t *p, tl_lab_header_t *h, tl_lab_problems_t *ps) {
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
      if (h->ngenes == TL_LAB_MAX_GENES) {
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

/* Checks every line. Rows go to *rows; problems to ps. Returns 0, or -1 out of memory. */
static int parse_rows(const tl_cli_t *c, tl_csv_t *p, const tl_lab_header_t *h, tl_lab_row_t **rows_out,
                      int *nrows_out, tl_lab_problems_t *ps) {
  tl_lab_row_t *rows = NULL;
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
      tl_lab_row_t *r = realloc(rows, (size_t)cap * sizeof *r);
      if (r == NULL) {
        free(rows);
        return -1;
      }
      rows = r;
    }
    tl_lab_row_t *r = &rows[n];
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
  tl_uuid_format(md, 8, out);
}

cJSON *tl_lab_event(const tl_lab_header_t *h, const tl_lab_row_t *r, const char *file_at, const char *ns) {
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

int tl_lab_file_check(tl_lab_file_t *f, const char *data, size_t len, int en) {
  const tl_cli_t lang = {.en = en};
  const tl_cli_t *c = &lang;
  memset(f, 0, sizeof *f);
  tl_csv_t p;
  tl_csv_init(&p, data ? data : "", data ? len : 0);
  int rc = 0;
  if (parse_header(c, &p, &f->header, &f->problems) == 0 &&
      parse_rows(c, &p, &f->header, &f->rows, &f->nrows, &f->problems) != 0) {
    rc = -1;
    goto done;
  }
  if (f->nrows > 0) { /* a tube named twice in one file: the rows' codes indexed (base/strmap.h) */
    tl_strmap_t seen;
    tl_strmap_init(&seen);
    const tl_lab_row_t *rows = f->rows;
    for (int i = 0; i < f->nrows; i++) {
      int prev = tl_strmap_get(&seen, rows[i].tube);
      if (prev >= 0)
        problem_add(&f->problems, rows[i].line, "%s %s %s %d %s", TL_MSG(c, "采样管", "tube"), rows[i].tube,
                    TL_MSG(c, "已在第", "is already on line"), rows[prev].line,
                    TL_MSG(c, "行（每个文件每管一个结果；更正请另用 amend 上传）",
                           "(one result per tube per file; send a correction with amend in another file)"));
      else if (tl_strmap_put(&seen, rows[i].tube, i) != 0) {
        tl_strmap_dispose(&seen);
        rc = -1;
        goto done;
      }
    }
    tl_strmap_dispose(&seen);
  }
  /* problems come in line order except the header's and the repeated tubes' (found last) */
  tl_lab_problems_t *ps = &f->problems;
  for (int a = 1; a < ps->n; a++)
    for (int b = a; b > 0 && ps->v[b - 1].line > ps->v[b].line; b--) {
      tl_lab_problem_t t = ps->v[b];
      ps->v[b] = ps->v[b - 1];
      ps->v[b - 1] = t;
    }
done:
  tl_csv_dispose(&p);
  if (rc != 0) tl_lab_file_dispose(f);
  return rc;
}

void tl_lab_file_dispose(tl_lab_file_t *f) {
  free(f->rows);
  problems_free(&f->problems);
  memset(f, 0, sizeof *f);
}
