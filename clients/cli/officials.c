/* The officials' subcommands (DESIGN §5): trace (a tube's or box's chain of custody), person
 * (a person's rounds; the ID number is read from the terminal without echo, or from a pipe,
 * never from the command line, where it would show in the process list and shell history),
 * stats (a region and its children), anomalies (the list), ack and resolve (the anomaly loop).
 *
 * Each prints readable tables, or the server's JSON with --json, and returns 0 on success or
 * 1 with a one-line reason (2 for a usage mistake). Times are shown in the deployment's zone
 * as the server writes them, without fractions and offset. */
#include "cli.h"
#include "input.h"

#include "domain/validate.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* ---------- shared helpers ---------- */

typedef struct {
  const char *key, *zh;
} label_t;

static const label_t event_labels[] = {
    {"tube.open", "开管"},     {"sample.add", "采样"},   {"tube.seal", "封管"},
    {"box.pack", "装箱"},      {"box.seal", "封箱"},     {"box.pickup", "取箱"},
    {"box.deliver", "送达"},   {"box.receive", "签收"},  {"tube.reject", "拒收"},
    {"tube.result", "出结果"}, {NULL, NULL}};

static const label_t tube_states[] = {
    {"opened", "已开管"},     {"sampling", "采样中"},   {"sealed", "已封管"},
    {"packed", "已装箱"},     {"in_transit", "转运中"}, {"delivered", "已送达"},
    {"received", "已签收"},   {"resulted", "已出结果"}, {"rejected", "已拒收"},
    {"unknown", "未知"},      {NULL, NULL}};

static const label_t box_states[] = {
    {"open", "未封箱"},     {"sealed", "已封箱"},  {"in_transit", "转运中"},
    {"delivered", "已送达"}, {"received", "已签收"}, {"unknown", "未知"},
    {NULL, NULL}};

/* person statuses, results and follow-up kinds (DESIGN §3) */
static const label_t statuses[] = {
    {"pending", "待出结果"},        {"negative", "阴性"},    {"positive", "阳性"},
    {"invalid", "无效"},            {"rejected", "拒收"},    {"awaiting_recheck", "待复核"},
    {"resample", "需重采"},         {NULL, NULL}};

static const label_t followup_states[] = {
    {"open", "进行中"}, {"closed", "已关闭"}, {"cancelled", "已取消"}, {NULL, NULL}};

static const label_t anomaly_states[] = {
    {"open", "待处理"}, {"acknowledged", "已认领"}, {"resolved", "已闭环"},
    {"auto_resolved", "自动解除"}, {NULL, NULL}};

static const label_t roles[] = {
    {"collector", "采样点"}, {"courier", "转运员"}, {"lab", "实验室"}, {NULL, NULL}};

static const label_t id_types[] = {
    {"resident_id", "居民身份证"}, {"passport", "护照"}, {"other", "其他证件"}, {NULL, NULL}};

static const label_t levels[] = {
    {"province", "省"}, {"city", "市"}, {"county", "县区"}, {"township", "乡镇"},
    {"site", "采样点"}, {NULL, NULL}};

static const label_t anomaly_labels[] = {
    {"person_repeat", "重复采样"},        {"seal_count_mismatch", "封存数量不符"},
    {"custody_gap", "交接断链"},          {"wrong_lab", "送错实验室"},
    {"tube_missing", "缺管"},             {"tube_unexpected", "多出的管"},
    {"orphan_result", "无主样本"},        {"overdue_transport", "转运超时"},
    {"overdue_test", "检测超时"},         {"overdue_followup", "复核超时"},
    {NULL, NULL}};

/* The Chinese label of a code (the code itself in English or when unknown). */
static const char *lbl(const tl_cli_t *c, const label_t *t, const char *key) {
  if (c->en || key == NULL) return key;
  for (; t->key; t++)
    if (strcmp(t->key, key) == 0) return t->zh;
  return key;
}

/* "2021-10-08T09:12:03.123+08:00" → "2021-10-08 09:12:03". */
static const char *fmt_time(const char *iso, char out[32]) {
  if (iso == NULL || iso[0] == '\0') return "";
  snprintf(out, 32, "%.19s", iso);
  if (strlen(out) > 10 && out[10] == 'T') out[10] = ' ';
  return out;
}

static const char *jtime(const cJSON *o, const char *key, char out[32]) {
  return fmt_time(tl_js(o, key), out);
}

/* Joins the strings of a JSON array with sep into b ("" for none); labels with t if given. */
static const char *join(const tl_cli_t *c, tl_buf_t *b, const cJSON *arr, const char *sep,
                        const label_t *t) {
  tl_buf_reset(b);
  int n = 0;
  for (const cJSON *x = cJSON_IsArray(arr) ? arr->child : NULL; x; x = x->next)
    if (cJSON_IsString(x))
      tl_bputf(b, "%s%s", n++ ? sep : "", t ? lbl(c, t, x->valuestring) : x->valuestring);
  return tl_buf_cstr(b);
}

static void print_json(const cJSON *j) {
  char *s = cJSON_Print(j);
  if (s) puts(s);
  free(s);
}

static int usage_error(const tl_cli_t *c, void (*usage)(const tl_cli_t *, FILE *), const char *why,
                       const char *arg) {
  usage(c, stderr);
  tl_cli_fail("%s%s%s", why, arg ? " " : "", arg ? arg : "");
  return 2;
}

/* ---------- trace ---------- */

static void trace_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c, "用法: tubeloop trace tube|box 条码\n"
                  "  采样管或转运箱的全程追溯：时间线（时间、事件、发送方、异常），当前状态，\n"
                  "  转运箱的装箱清单、缺少和多出的管，以及相关异常。\n",
               "usage: tubeloop trace tube|box CODE\n"
               "  The custody timeline of a tube or box (time, event, sender, anomalies), its state,\n"
               "  for a box the manifest with missing and unexpected tubes, and its anomalies.\n"),
        to);
}

static void print_timeline(const tl_cli_t *c, const cJSON *timeline) {
  tl_table_t t;
  tl_table_init(&t, 4);
  tl_table_row(&t, TL_MSG(c, "时间", "time"), TL_MSG(c, "事件", "event"), TL_MSG(c, "发送方", "sender"),
               TL_MSG(c, "异常", "anomalies"));
  tl_buf_t b;
  tl_buf_init(&b);
  for (const cJSON *e = cJSON_IsArray(timeline) ? timeline->child : NULL; e; e = e->next) {
    char at[32], ev[64], sender[80];
    const char *type = tl_js(e, "type");
    if (c->en)
      snprintf(ev, sizeof ev, "%s", type);
    else
      snprintf(ev, sizeof ev, "%s %s", lbl(c, event_labels, type), type);
    snprintf(sender, sizeof sender, "%s %s", lbl(c, roles, tl_js(e, "sender_role")), tl_js(e, "sender"));
    tl_table_row(&t, jtime(e, "at", at), ev, sender,
                 join(c, &b, cJSON_GetObjectItemCaseSensitive(e, "anomalies"), ", ", anomaly_labels));
  }
  tl_buf_dispose(&b);
  tl_table_print(&t);
  tl_table_dispose(&t);
}

static void print_anomaly_table(const tl_cli_t *c, const cJSON *list, int with_region);

static void kv(tl_table_t *t, const char *k, const char *v) { tl_table_row(t, k, v); }

static void trace_tube(const tl_cli_t *c, const cJSON *j) {
  char num[32], at[32];
  tl_table_t t;
  tl_table_init(&t, 2);
  kv(&t, TL_MSG(c, "采样管", "tube"), tl_js(j, "code"));
  kv(&t, TL_MSG(c, "状态", "state"), lbl(c, tube_states, tl_js(j, "state")));
  kv(&t, TL_MSG(c, "轮次", "round"), tl_js(j, "round"));
  kv(&t, TL_MSG(c, "采样点", "site"), tl_js(j, "site"));
  kv(&t, TL_MSG(c, "区划", "region"), tl_js(j, "region"));
  char cap[64], n1[16], n2[16];
  snprintf(cap, sizeof cap, "%s / %s %s", tl_jn(j, "sampled", n1, sizeof n1), tl_jn(j, "capacity", n2, sizeof n2),
           TL_MSG(c, "人", "persons"));
  kv(&t, TL_MSG(c, "人数/容量", "persons/capacity"), cap);
  kv(&t, TL_MSG(c, "转运箱", "box"), tl_js(j, "box"));
  kv(&t, TL_MSG(c, "目的实验室", "destination lab"), tl_js(j, "destination_lab"));
  kv(&t, TL_MSG(c, "实验室", "lab"), tl_js(j, "lab"));
  const char *result = tl_js(j, "result");
  char res[200];
  snprintf(res, sizeof res, "%s", result[0] ? lbl(c, statuses, result) : "");
  const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "ct");
  for (const cJSON *g = cJSON_IsObject(ct) ? ct->child : NULL; g; g = g->next) {
    size_t l = strlen(res);
    snprintf(res + l, sizeof res - l, "%s%s=%s", g == ct->child ? "  Ct " : " ", g->string,
             tl_jn(ct, g->string, num, sizeof num));
  }
  kv(&t, TL_MSG(c, "结果", "result"), res);
  const cJSON *times = cJSON_GetObjectItemCaseSensitive(j, "times");
  kv(&t, TL_MSG(c, "出结果时间", "result at"), jtime(times, "result_at", at));
  if (tl_js(j, "reject_reason")[0]) kv(&t, TL_MSG(c, "拒收原因", "rejected for"), tl_js(j, "reject_reason"));
  tl_table_print(&t);
  tl_table_dispose(&t);
  putchar('\n');
  print_timeline(c, cJSON_GetObjectItemCaseSensitive(j, "timeline"));
}

static void trace_box(const tl_cli_t *c, const cJSON *j) {
  tl_table_t t;
  tl_table_init(&t, 2);
  tl_buf_t b;
  tl_buf_init(&b);
  kv(&t, TL_MSG(c, "转运箱", "box"), tl_js(j, "code"));
  kv(&t, TL_MSG(c, "状态", "state"), lbl(c, box_states, tl_js(j, "state")));
  kv(&t, TL_MSG(c, "采样点", "site"), tl_js(j, "site"));
  kv(&t, TL_MSG(c, "区划", "region"), tl_js(j, "region"));
  kv(&t, TL_MSG(c, "目的实验室", "destination lab"), tl_js(j, "destination_lab"));
  kv(&t, TL_MSG(c, "送达实验室", "delivered to"), tl_js(j, "delivered_lab"));
  kv(&t, TL_MSG(c, "签收实验室", "received by"), tl_js(j, "receiving_lab"));
  kv(&t, TL_MSG(c, "转运员", "courier"), tl_js(j, "courier"));
  static const char *const lists[][3] = {{"manifest", "装箱清单", "manifest"},
                                         {"received", "已签收", "received"},
                                         {"missing", "缺少", "missing"},
                                         {"unexpected", "多出", "unexpected"}};
  for (int i = 0; i < 4; i++) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, lists[i][0]);
    char k[64];
    snprintf(k, sizeof k, "%s (%d)", TL_MSG(c, lists[i][1], lists[i][2]), cJSON_GetArraySize(a));
    kv(&t, k, join(c, &b, a, " ", NULL));
  }
  tl_table_print(&t);
  tl_table_dispose(&t);
  tl_buf_dispose(&b);
  putchar('\n');
  print_timeline(c, cJSON_GetObjectItemCaseSensitive(j, "timeline"));
}

int tl_cmd_trace(tl_cli_t *c, int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (tl_arg_help(argv[i])) {
      trace_usage(c, stdout);
      return 0;
    }
  if (argc != 3 || (strcmp(argv[1], "tube") != 0 && strcmp(argv[1], "box") != 0))
    return usage_error(c, trace_usage, TL_MSG(c, "需要 tube 或 box 以及条码", "give tube or box and a code"), NULL);
  const char *code = argv[2];
  int tube = strcmp(argv[1], "tube") == 0;
  if (!tl_valid_barcode(code, strlen(code)))
    return tl_cli_fail("%s", TL_MSG(c, "条码无效（6–32 位字母、数字或 -）", "not a barcode (6-32 of A-Z a-z 0-9 -)"));
  if (tl_cli_need_server(c) != 0) return 1;
  char path[96];
  snprintf(path, sizeof path, "/v1/%s/%s", tube ? "tubes" : "boxes", code);
  cJSON *j = tl_cli_call_json(c, "GET", path, NULL);
  if (j == NULL) return 1;
  if (c->json) {
    print_json(j);
  } else {
    if (tube)
      trace_tube(c, j);
    else
      trace_box(c, j);
    const cJSON *an = cJSON_GetObjectItemCaseSensitive(j, "anomalies");
    if (cJSON_GetArraySize(an) > 0) {
      printf("\n%s\n", TL_MSG(c, "异常：", "anomalies:"));
      print_anomaly_table(c, an, 0);
    }
  }
  cJSON_Delete(j);
  return 0;
}

/* ---------- person ---------- */

static void person_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c, "用法: tubeloop person [--type resident_id|passport|other]\n"
                  "  查询受检者各轮次的状态、结果、采样管、采样点、时间和复核。\n"
                  "  证件号码从终端读入（不回显），或在管道中从标准输入读一行；\n"
                  "  从不接受命令行参数中的证件号（会出现在进程列表和 shell 历史中）。\n",
               "usage: tubeloop person [--type resident_id|passport|other]\n"
               "  A person's rounds: status, result, tube, site, times and follow-ups.\n"
               "  The ID number is read from the terminal without echo, or as one line from stdin\n"
               "  when piped; never from the command line (it would show in the process list and\n"
               "  the shell history).\n"),
        to);
}

static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void restore_tty(int sig) {
  if (tty_changed) tcsetattr(0, TCSANOW, &saved_tty);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Reads the ID number into b: without echo from a terminal, else a line from stdin. */
static int read_secret(const tl_cli_t *c, tl_buf_t *b) {
  int tty = isatty(0);
  if (tty) {
    /* echo goes off before the prompt shows, so nothing typed after the prompt is echoed */
    if (tcgetattr(0, &saved_tty) == 0) {
      struct termios quiet = saved_tty;
      quiet.c_lflag &= ~(tcflag_t)ECHO;
      quiet.c_lflag |= ECHONL;
      signal(SIGINT, restore_tty);
      signal(SIGTERM, restore_tty);
      signal(SIGHUP, restore_tty);
      tty_changed = tcsetattr(0, TCSANOW, &quiet) == 0;
    }
    fputs(TL_MSG(c, "证件号码（不回显）: ", "ID number (not echoed): "), stderr);
    fflush(stderr);
  }
  int rc = tl_cli_read_line(b);
  if (tty && tty_changed) {
    tcsetattr(0, TCSANOW, &saved_tty);
    tty_changed = 0;
  }
  return rc;
}

static void print_person(const tl_cli_t *c, const cJSON *j) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "person");
  char at[32], at2[32], cap[16];
  tl_table_t t;
  tl_table_init(&t, 2);
  kv(&t, TL_MSG(c, "证件", "ID"), tl_js(p, "id_number"));
  kv(&t, TL_MSG(c, "证件类型", "ID type"), lbl(c, id_types, tl_js(p, "id_type")));
  kv(&t, TL_MSG(c, "姓名", "name"), tl_js(p, "name"));
  kv(&t, TL_MSG(c, "电话", "phone"), tl_js(p, "phone"));
  tl_table_print(&t);
  tl_table_dispose(&t);
  const cJSON *rounds = cJSON_GetObjectItemCaseSensitive(j, "rounds");
  putchar('\n');
  tl_table_init(&t, 9);
  tl_table_row(&t, TL_MSG(c, "轮次", "round"), TL_MSG(c, "日期", "day"), TL_MSG(c, "状态", "status"),
               TL_MSG(c, "结果", "result"), TL_MSG(c, "结果时间", "result at"), TL_MSG(c, "采样管", "tube"),
               TL_MSG(c, "容量", "pool"), TL_MSG(c, "采样点", "site"), TL_MSG(c, "采样时间", "sampled at"));
  int nfu = 0;
  for (const cJSON *r = cJSON_IsArray(rounds) ? rounds->child : NULL; r; r = r->next) {
    const cJSON *samples = cJSON_GetObjectItemCaseSensitive(r, "samples");
    nfu += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "followups"));
    int first = 1;
    for (const cJSON *s = cJSON_IsArray(samples) ? samples->child : NULL; s; s = s->next) {
      const char *res = tl_js(r, "result");
      tl_table_row(&t, first ? tl_js(r, "round") : "", first ? tl_js(r, "day") : "",
                   first ? lbl(c, statuses, tl_js(r, "status")) : "",
                   first && res[0] ? lbl(c, statuses, res) : "", first ? jtime(r, "result_at", at) : "",
                   tl_js(s, "tube"), tl_jn(s, "capacity", cap, sizeof cap), tl_js(s, "site"),
                   jtime(s, "sampled_at", at2));
      first = 0;
    }
    if (first)
      tl_table_row(&t, tl_js(r, "round"), tl_js(r, "day"), lbl(c, statuses, tl_js(r, "status")), "", "",
                   "", "", "", "");
  }
  tl_table_print(&t);
  tl_table_dispose(&t);
  if (nfu == 0) return;
  printf("\n%s\n", TL_MSG(c, "复核（单采单检）：", "follow-ups (single-tube tests):"));
  tl_table_init(&t, 8);
  tl_table_row(&t, TL_MSG(c, "轮次", "round"), TL_MSG(c, "原管", "tube"), TL_MSG(c, "类型", "kind"),
               TL_MSG(c, "状态", "state"), TL_MSG(c, "开始", "opened"), TL_MSG(c, "单采管", "single tube"),
               TL_MSG(c, "结果", "result"), TL_MSG(c, "关闭", "closed"));
  for (const cJSON *r = cJSON_IsArray(rounds) ? rounds->child : NULL; r; r = r->next) {
    const cJSON *fus = cJSON_GetObjectItemCaseSensitive(r, "followups");
    for (const cJSON *f = cJSON_IsArray(fus) ? fus->child : NULL; f; f = f->next) {
      const char *res = tl_js(f, "result");
      tl_table_row(&t, tl_js(r, "round"), tl_js(f, "tube"), lbl(c, statuses, tl_js(f, "kind")),
                   lbl(c, followup_states, tl_js(f, "state")), jtime(f, "opened_at", at), tl_js(f, "linked_tube"),
                   res[0] ? lbl(c, statuses, res) : "", jtime(f, "closed_at", at2));
    }
  }
  tl_table_print(&t);
  tl_table_dispose(&t);
}

int tl_cmd_person(tl_cli_t *c, int argc, char **argv) {
  const char *type = "resident_id";
  for (int i = 1; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      person_usage(c, stdout);
      return 0;
    }
    if ((r = tl_arg_value(&i, argc, argv, "--type", &type)) != 0) {
      if (r < 0) return 2;
      continue;
    }
    /* Whatever it is, it is not echoed back: it may be the ID number itself. */
    person_usage(c, stderr);
    tl_cli_fail("%s", TL_MSG(c, "不接受命令行参数：证件号码只从终端或标准输入读取（命令行会出现在进程列表和历史记录中）",
                             "no arguments: the ID number is read from the terminal or stdin only (a command line "
                             "shows in the process list and the shell history)"));
    return 2;
  }
  int id_type = tl_id_type_parse(type, strlen(type));
  if (id_type < 0)
    return usage_error(c, person_usage, TL_MSG(c, "--type 须为 resident_id、passport 或 other",
                                               "--type must be resident_id, passport or other"), NULL);
  if (tl_cli_need_server(c) != 0) return 1;
  tl_buf_t line;
  tl_buf_init(&line);
  if (read_secret(c, &line) != 0 || line.len == 0) {
    tl_buf_dispose(&line);
    return tl_cli_fail("%s", TL_MSG(c, "没有读到证件号码", "no ID number was read"));
  }
  /* Checked here first, so a typo is reported without a request; the number is never shown. */
  char norm[64];
  int rc = tl_id_normalize(id_type, line.data, line.len, norm, sizeof norm);
  memset(line.data, 0, line.len);
  tl_buf_dispose(&line);
  if (rc != 0) {
    memset(norm, 0, sizeof norm);
    const char *why = id_type != TL_ID_RESIDENT
                          ? TL_MSG(c, "证件号码无效（4–32 位字母、数字或 -）", "not a valid ID number (4-32 of A-Z 0-9 -)")
                          : c->en ? tl_resident_id_error(rc)
                                  : "身份证号码无效（18 位，出生日期和校验码须正确）";
    return tl_cli_fail("%s", why);
  }
  cJSON *body = cJSON_CreateObject();
  cJSON_AddStringToObject(body, "id_type", type);
  cJSON_AddStringToObject(body, "id_number", norm);
  memset(norm, 0, sizeof norm);
  char *text = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);
  if (text == NULL) return tl_cli_fail("%s", TL_MSG(c, "内存不足", "out of memory"));
  tl_cli_resp_t r;
  char err[512];
  rc = tl_cli_call(c, "POST", "/v1/persons/lookup", text, &r, err, sizeof err);
  memset(text, 0, strlen(text));
  free(text);
  if (rc != 0) return tl_cli_fail("%s", err);
  if (r.status == 404) {
    tl_cli_resp_dispose(&r);
    return tl_cli_fail("%s", TL_MSG(c, "在你的辖区内没有此人的采样记录", "no samples of this person in your region"));
  }
  if (r.status != 200) {
    tl_cli_resp_error(&r, err, sizeof err);
    tl_cli_resp_dispose(&r);
    return tl_cli_fail("%s", err);
  }
  cJSON *j = tl_cli_resp_json(&r);
  tl_cli_resp_dispose(&r);
  if (j == NULL) return tl_cli_fail("%s", TL_MSG(c, "服务器的回答不是 JSON", "the server's answer is not JSON"));
  if (c->json)
    print_json(j);
  else
    print_person(c, j);
  cJSON_Delete(j);
  return 0;
}

/* ---------- stats ---------- */

static void stats_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c, "用法: tubeloop stats 区划代码|采样点代码 [--day 日期 | --round 轮次]\n"
                  "  区域及其下级（县→乡镇，乡镇→采样点）的统计：采样人数、已返回、清零率、\n"
                  "  各状态的管数、结果、超时、异常、复核、周转时间 p50/p90（分钟）。默认当天。\n",
               "usage: tubeloop stats REGION|SITE [--day YYYY-MM-DD | --round CODE]\n"
               "  A region and its children (county: townships, township: sites): persons sampled and\n"
               "  returned, clearance, tubes by state, results, overdue, open anomalies, open\n"
               "  follow-ups, turnaround p50/p90 in minutes. Default: today.\n"),
        to);
}

static void pct(const cJSON *o, char out[16]) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "clearance");
  if (cJSON_IsNumber(v))
    snprintf(out, 16, "%.1f%%", v->valuedouble * 100.0);
  else
    snprintf(out, 16, "-");
}

typedef struct {
  char v[20][16];
} stat_cells_t;

static void stat_cells(const cJSON *s, stat_cells_t *o) {
  static const char *const top[] = {"persons_sampled", "persons_returned"};
  static const char *const tubes[] = {"open", "sealed", "in_transit", "received", "resulted", "rejected"};
  static const char *const res[] = {"negative", "positive", "invalid"};
  static const char *const tail[] = {"overdue", "anomalies_open", "followups_open"};
  int k = 0;
  for (int i = 0; i < 2; i++) tl_jn(s, top[i], o->v[k++], 16);
  pct(s, o->v[k++]);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "tubes");
  for (int i = 0; i < 6; i++) tl_jn(t, tubes[i], o->v[k++], 16);
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(s, "results");
  for (int i = 0; i < 3; i++) tl_jn(r, res[i], o->v[k++], 16);
  for (int i = 0; i < 3; i++) tl_jn(s, tail[i], o->v[k++], 16);
  const cJSON *tat = cJSON_GetObjectItemCaseSensitive(s, "tat_minutes");
  tl_jn(tat, "p50", o->v[k++], 16);
  tl_jn(tat, "p90", o->v[k++], 16);
}

int tl_cmd_stats(tl_cli_t *c, int argc, char **argv) {
  const char *region = NULL, *day = NULL, *round = NULL;
  for (int i = 1; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      stats_usage(c, stdout);
      return 0;
    }
    if ((r = tl_arg_value(&i, argc, argv, "--day", &day)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--round", &round)) != 0) {
      if (r < 0) return 2;
    } else if (argv[i][0] == '-') {
      return usage_error(c, stats_usage, TL_MSG(c, "未知选项", "unknown option"), argv[i]);
    } else if (region == NULL) {
      region = argv[i];
    } else {
      return usage_error(c, stats_usage, TL_MSG(c, "多余的参数", "unexpected argument"), argv[i]);
    }
  }
  if (region == NULL) return usage_error(c, stats_usage, TL_MSG(c, "缺少区划代码", "the region is missing"), NULL);
  if (day && round)
    return usage_error(c, stats_usage, TL_MSG(c, "--day 和 --round 只能给一个", "give --day or --round, not both"), NULL);
  int64_t days;
  if (day && tl_date_parse(day, strlen(day), &days) != 0)
    return usage_error(c, stats_usage, TL_MSG(c, "--day 须为日期，如 2021-10-08", "--day must be a date like 2021-10-08"), NULL);
  if (!tl_valid_code(region, strlen(region)) || (round && !tl_valid_code(round, strlen(round))))
    return usage_error(c, stats_usage, TL_MSG(c, "代码无效", "not a valid code"), NULL);
  if (tl_cli_need_server(c) != 0) return 1;
  tl_buf_t path;
  tl_buf_init(&path);
  tl_bputf(&path, "/v1/stats?region=%s", region);
  if (day) tl_bputf(&path, "&day=%s", day);
  if (round) tl_bputf(&path, "&round=%s", round);
  cJSON *j = tl_cli_call_json(c, "GET", tl_buf_cstr(&path), NULL);
  tl_buf_dispose(&path);
  if (j == NULL) return 1;
  if (c->json) {
    print_json(j);
    cJSON_Delete(j);
    return 0;
  }
  const cJSON *me = cJSON_GetObjectItemCaseSensitive(j, "region");
  printf("%s %s (%s)  ", tl_js(me, "code"), tl_js(me, "name"), lbl(c, levels, tl_js(me, "level")));
  if (tl_js(j, "round")[0])
    printf("%s %s\n", TL_MSG(c, "轮次", "round"), tl_js(j, "round"));
  else
    printf("%s %s\n", TL_MSG(c, "日期", "day"), tl_js(j, "day"));
  const cJSON *kids = cJSON_GetObjectItemCaseSensitive(j, "children");
  const cJSON *totals = cJSON_GetObjectItemCaseSensitive(j, "totals");
  /* two tables of moderate width rather than one of 19 columns */
  tl_table_t a, b;
  tl_table_init(&a, 10);
  tl_table_init(&b, 11);
  tl_table_row(&a, TL_MSG(c, "代码", "code"), TL_MSG(c, "名称", "name"), TL_MSG(c, "采样人数", "sampled"),
               TL_MSG(c, "已返回", "returned"), TL_MSG(c, "清零率", "clearance"), TL_MSG(c, "超时", "overdue"),
               TL_MSG(c, "未闭环异常", "anomalies"), TL_MSG(c, "待复核", "follow-ups"), "TAT p50", "TAT p90");
  tl_table_row(&b, TL_MSG(c, "代码", "code"), TL_MSG(c, "名称", "name"), TL_MSG(c, "未封", "open"),
               TL_MSG(c, "已封", "sealed"), TL_MSG(c, "在途", "in transit"), TL_MSG(c, "已签收", "received"),
               TL_MSG(c, "已出结果", "resulted"), TL_MSG(c, "拒收", "rejected"), TL_MSG(c, "阴性", "negative"),
               TL_MSG(c, "阳性", "positive"), TL_MSG(c, "无效", "invalid"));
  stat_cells_t s;
  const cJSON *row = cJSON_IsArray(kids) ? kids->child : NULL;
  for (int last = 0; !last; row = row ? row->next : NULL) {
    const cJSON *o = row ? row : totals;
    const char *code = row ? tl_js(o, "code") : TL_MSG(c, "合计", "total");
    const char *name = row ? tl_js(o, "name") : tl_js(me, "name");
    last = row == NULL;
    stat_cells(o, &s);
    tl_table_row(&a, code, name, s.v[0], s.v[1], s.v[2], s.v[12], s.v[13], s.v[14], s.v[15], s.v[16]);
    tl_table_row(&b, code, name, s.v[3], s.v[4], s.v[5], s.v[6], s.v[7], s.v[8], s.v[9], s.v[10], s.v[11]);
  }
  tl_table_print(&a);
  printf("\n%s\n", TL_MSG(c, "采样管（按当前状态）与结果：", "tubes (by where they are now) and results:"));
  tl_table_print(&b);
  tl_table_dispose(&a);
  tl_table_dispose(&b);
  cJSON_Delete(j);
  return 0;
}

/* ---------- anomalies ---------- */

static void anomalies_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c, "用法: tubeloop anomalies [--open] [--state S] [--region R] [--type T] [--all] [--limit N] [--cursor C]\n"
                  "  异常列表，最新的在前。--open 只列待处理的（state=open）；--state open|acknowledged|\n"
                  "  resolved|auto_resolved；--all 取所有页（否则一页，默认 50 条，末尾给出下一页的 --cursor）。\n",
               "usage: tubeloop anomalies [--open] [--state S] [--region R] [--type T] [--all] [--limit N] [--cursor C]\n"
               "  Anomalies, newest first. --open: only open ones (state=open); --state open|acknowledged|\n"
               "  resolved|auto_resolved; --all: every page (else one page, 50 by default, ending with the\n"
               "  --cursor of the next).\n"),
        to);
}

static void detail_text(const cJSON *d, tl_buf_t *b) {
  tl_buf_reset(b);
  char num[32];
  int n = 0;
  for (const cJSON *x = cJSON_IsObject(d) ? d->child : NULL; x; x = x->next) {
    const char *v;
    char *owned = NULL;
    if (cJSON_IsString(x)) {
      v = x->valuestring;
    } else if (cJSON_IsNumber(x)) {
      v = tl_jn(d, x->string, num, sizeof num);
    } else {
      owned = cJSON_PrintUnformatted(x);
      v = owned ? owned : "";
    }
    tl_bputf(b, "%s%s=%s", n++ ? " " : "", x->string, v);
    free(owned);
  }
  tl_buf_cstr(b);
}

static void print_anomaly_table(const tl_cli_t *c, const cJSON *list, int with_region) {
  tl_table_t t;
  tl_table_init(&t, with_region ? 8 : 7);
  if (with_region)
    tl_table_row(&t, TL_MSG(c, "编号", "id"), TL_MSG(c, "类型", "type"), TL_MSG(c, "状态", "state"),
                 TL_MSG(c, "对象", "subject"), TL_MSG(c, "区划", "region"), TL_MSG(c, "发现时间", "opened"),
                 TL_MSG(c, "负责人", "owner"), TL_MSG(c, "详情/说明", "detail / note"));
  else
    tl_table_row(&t, TL_MSG(c, "编号", "id"), TL_MSG(c, "类型", "type"), TL_MSG(c, "状态", "state"),
                 TL_MSG(c, "对象", "subject"), TL_MSG(c, "发现时间", "opened"), TL_MSG(c, "负责人", "owner"),
                 TL_MSG(c, "详情/说明", "detail / note"));
  tl_buf_t b;
  tl_buf_init(&b);
  for (const cJSON *a = cJSON_IsArray(list) ? list->child : NULL; a; a = a->next) {
    char at[32];
    detail_text(cJSON_GetObjectItemCaseSensitive(a, "detail"), &b);
    if (tl_js(a, "note")[0]) tl_bputf(&b, "%s%s", b.len ? " | " : "", tl_js(a, "note"));
    if (with_region)
      tl_table_row(&t, tl_js(a, "id"), lbl(c, anomaly_labels, tl_js(a, "type")), lbl(c, anomaly_states, tl_js(a, "state")),
                   tl_js(a, "subject"), tl_js(a, "region"), jtime(a, "opened_at", at), tl_js(a, "owner"),
                   tl_buf_cstr(&b));
    else
      tl_table_row(&t, tl_js(a, "id"), lbl(c, anomaly_labels, tl_js(a, "type")), lbl(c, anomaly_states, tl_js(a, "state")),
                   tl_js(a, "subject"), jtime(a, "opened_at", at), tl_js(a, "owner"), tl_buf_cstr(&b));
  }
  tl_buf_dispose(&b);
  tl_table_print(&t);
  tl_table_dispose(&t);
}

int tl_cmd_anomalies(tl_cli_t *c, int argc, char **argv) {
  const char *state = NULL, *region = NULL, *type = NULL, *limit = NULL, *cursor = NULL;
  int all = 0;
  for (int i = 1; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      anomalies_usage(c, stdout);
      return 0;
    }
    if ((r = tl_arg_value(&i, argc, argv, "--state", &state)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--region", &region)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--type", &type)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--limit", &limit)) != 0 ||
        (r = tl_arg_value(&i, argc, argv, "--cursor", &cursor)) != 0) {
      if (r < 0) return 2;
    } else if (strcmp(argv[i], "--open") == 0) {
      state = "open";
    } else if (strcmp(argv[i], "--all") == 0) {
      all = 1;
    } else {
      return usage_error(c, anomalies_usage, TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
    }
  }
  if (tl_cli_need_server(c) != 0) return 1;
  cJSON *collected = cJSON_CreateArray();
  char next[128] = "";
  if (cursor) snprintf(next, sizeof next, "%s", cursor);
  int rc = 0;
  for (;;) {
    tl_buf_t path;
    tl_buf_init(&path);
    tl_bputf(&path, "/v1/anomalies?limit=%s", limit ? "" : (all ? "500" : "50"));
    if (limit) (void)tl_cli_urlenc(&path, limit);
    static const char *const keys[] = {"state", "region", "type", "cursor"};
    const char *vals[] = {state, region, type, next[0] ? next : NULL};
    for (int k = 0; k < 4; k++)
      if (vals[k]) {
        tl_bputf(&path, "&%s=", keys[k]);
        (void)tl_cli_urlenc(&path, vals[k]);
      }
    cJSON *j = tl_cli_call_json(c, "GET", tl_buf_cstr(&path), NULL);
    tl_buf_dispose(&path);
    if (j == NULL) {
      rc = 1;
      break;
    }
    cJSON *list = cJSON_DetachItemFromObjectCaseSensitive(j, "anomalies");
    if (cJSON_IsArray(list))
      while (list->child) cJSON_AddItemToArray(collected, cJSON_DetachItemViaPointer(list, list->child));
    cJSON_Delete(list);
    snprintf(next, sizeof next, "%s", tl_js(j, "next_cursor"));
    cJSON_Delete(j);
    if (!all || next[0] == '\0') break;
  }
  if (rc == 0) {
    if (c->json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToObject(o, "anomalies", collected);
      if (next[0])
        cJSON_AddStringToObject(o, "next_cursor", next);
      else
        cJSON_AddNullToObject(o, "next_cursor");
      collected = NULL;
      print_json(o);
      cJSON_Delete(o);
    } else {
      print_anomaly_table(c, collected, 1);
      printf("%d %s\n", cJSON_GetArraySize(collected), TL_MSG(c, "条", "anomalies"));
      if (next[0]) printf("%s --cursor %s %s\n", TL_MSG(c, "还有更多：", "more:"), next, TL_MSG(c, "（或 --all）", "(or --all)"));
    }
  }
  cJSON_Delete(collected);
  return rc;
}

/* ---------- ack / resolve ---------- */

static void ack_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c, "用法: tubeloop ack 异常编号 --owner 负责人\n  认领异常（首问负责）。需要 supervisor 令牌。\n",
               "usage: tubeloop ack ID --owner NAME\n  Acknowledge an anomaly (its owner). Needs a supervisor token.\n"),
        to);
}

static void resolve_usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c, "用法: tubeloop resolve 异常编号 --note 说明\n  关闭异常（闭环），写明处理情况。需要 supervisor 令牌。\n",
               "usage: tubeloop resolve ID --note TEXT\n  Resolve an anomaly with a note on what was done. Needs a supervisor token.\n"),
        to);
}

static int anomaly_step(tl_cli_t *c, int argc, char **argv, int resolve) {
  void (*usage)(const tl_cli_t *, FILE *) = resolve ? resolve_usage : ack_usage;
  const char *flag = resolve ? "--note" : "--owner";
  const char *id = NULL, *text = NULL;
  for (int i = 1; i < argc; i++) {
    int r;
    if (tl_arg_help(argv[i])) {
      usage(c, stdout);
      return 0;
    }
    if ((r = tl_arg_value(&i, argc, argv, flag, &text)) != 0) {
      if (r < 0) return 2;
    } else if (argv[i][0] == '-' || id) {
      return usage_error(c, usage, TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
    } else {
      id = argv[i];
    }
  }
  if (id == NULL || text == NULL || text[0] == '\0')
    return usage_error(c, usage, TL_MSG(c, "需要异常编号和", "give the anomaly id and"), flag);
  if (!tl_valid_uuid(id, strlen(id)))
    return tl_cli_fail("%s", TL_MSG(c, "异常编号须为 UUID（见 tubeloop anomalies）", "the id must be a UUID (see tubeloop anomalies)"));
  if (tl_cli_need_server(c) != 0) return 1;
  cJSON *body = cJSON_CreateObject();
  cJSON_AddStringToObject(body, resolve ? "note" : "owner", text);
  char *s = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);
  char path[96];
  snprintf(path, sizeof path, "/v1/anomalies/%s/%s", id, resolve ? "resolve" : "ack");
  cJSON *j = s ? tl_cli_call_json(c, "POST", path, s) : NULL;
  free(s);
  if (j == NULL) return 1;
  if (c->json) {
    print_json(j);
  } else {
    printf("%s %s  %s  %s", resolve ? TL_MSG(c, "已闭环", "resolved") : TL_MSG(c, "已认领", "acknowledged"),
           tl_js(j, "id"), lbl(c, anomaly_labels, tl_js(j, "type")), tl_js(j, "subject"));
    if (tl_js(j, "owner")[0]) printf("  %s %s", TL_MSG(c, "负责人", "owner"), tl_js(j, "owner"));
    putchar('\n');
  }
  cJSON_Delete(j);
  return 0;
}

int tl_cmd_ack(tl_cli_t *c, int argc, char **argv) { return anomaly_step(c, argc, argv, 0); }
int tl_cmd_resolve(tl_cli_t *c, int argc, char **argv) { return anomaly_step(c, argc, argv, 1); }
