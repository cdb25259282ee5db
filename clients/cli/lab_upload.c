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
#include "lab_upload.h"

#include "crypto/token.h"
#include "domain/validate.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int tl_cmd_lab_upload(tl_cli_t *c, int argc, char **argv);

#define MAX_BATCH 500  /* events per POST (the server takes 1000; half keeps bodies small) */
#define RETRIES 5


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
  tl_lab_file_t lf;
  int rc = 1;
  cJSON *out = NULL;
  if (tl_lab_file_check(&lf, data.data, data.len, c->en) != 0) {
    tl_buf_dispose(&data);
    return tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
  }
  const tl_lab_problems_t ps = lf.problems;
  const tl_lab_row_t *rows = lf.rows;
  const int nrows = lf.nrows;
  if (ps.n > 0) {
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
      cJSON *e = tl_lab_event(&lf.header, &rows[sent + i], file_at, ns);
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
      const tl_lab_row_t *row = &rows[sent + i];
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
  tl_lab_file_dispose(&lf);
  tl_buf_dispose(&data);
  return rc;
}
