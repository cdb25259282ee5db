/* `tubeloop simulate`: plays a whole screening round against the real API, as every device of
 * a county would (issue 5 item 6).
 *
 * With an admin token it reads the county's townships from GET /v1/stats (the children of the
 * county are every registered township), registers sites spread over them, labs and couriers
 * (upserts, so a second run reuses them), creates the round and one token per device. The
 * round itself comes from simulate_model.c, computed to the end before anything is sent; this
 * file maps its simulated clock onto the present and sends each device's events over the
 * device's own keep-alive connection, in batches of at most 100, tick by tick (one simulated
 * minute; ten when running as fast as possible). Within a tick sampling points send before
 * couriers and couriers before labs, so custody order is kept except where the model takes a
 * phone offline and its events arrive late in a burst. Every answer is compared with what the
 * model expects (accepted, or refused with a given code; the anomaly it provokes); at the end
 * the device tokens are revoked and the counts printed (a table, or JSON with --json), so a
 * test can compare them with the server's figures. Exit status 0 only when every answer was
 * the expected one.
 *
 * Time: event times must never be more than 10 minutes ahead of the server's clock, and at
 * --speed X the simulated clock runs X times faster than the real one, so the simulated start
 * lies in the past by (duration × (1 - 1/X)) + 2 minutes and the last events are sent about
 * two minutes after their time. At --speed 0 everything lies in the past and is sent at once. */
#include "cli.h"
#include "simulate_model.h"

#include "crypto/token.h"
#include "domain/validate.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC 1000LL
#define MIN (60 * SEC)
#define BATCH_MAX 100 /* events per request of one device */
#define CST_OFFSET 480 /* event times are written at +08:00 (China Standard Time) */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int64_t real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps until the monotonic clock reads `until` (ms), waking for signals. */
static void sleep_until(int64_t until) {
  for (;;) {
    int64_t left = until - mono_ms();
    if (left <= 0 || g_stop) return;
    if (left > 200) left = 200;
    struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* ---------- options ---------- */

typedef struct {
  const char *county, *round, *prefix;
  int pool, sites, labs, couriers, persons;
  double rate, positive_rate, invalid_rate, reject_rate, mistakes, speed;
  unsigned long long seed;
  int setup_only, quiet;
} opts_t;

static void usage(const tl_cli_t *c, FILE *to) {
  fputs(TL_MSG(c,
               "用法: tubeloop simulate --county 县代码 [选项]\n"
               "用管理员令牌（TUBELOOP_TOKEN）在已登记的县下建立采样点、实验室、转运员、轮次和各设备令牌，\n"
               "再以这些设备的身份通过真实接口完整模拟一轮筛查，最后打印各项计数（--json 输出 JSON）。\n"
               "  --county CODE        县（6 位，须已登记乡镇）\n"
               "  --round CODE         轮次代码（默认 SIM+当前时间）；条码由它派生\n"
               "  --pool N             混采比例 1/5/8/10/20（默认 10）\n"
               "  --sites N            采样点数，轮流分布到各乡镇（默认 10）\n"
               "  --labs N             实验室数（默认 2）\n"
               "  --couriers N         转运员数（默认 3）\n"
               "  --persons N          受检人数（默认 1000）\n"
               "  --rate R             全县每分钟到达人数（默认 20）\n"
               "  --positive-rate P    混管阳性比例（默认 0.01）\n"
               "  --invalid-rate P     无效结果比例（默认 0.005）\n"
               "  --reject-rate P      实验室拒收比例（默认 0.003）\n"
               "  --mistakes M         人为差错的规模（默认 0.01；0 表示没有差错、没有离线设备）\n"
               "  --seed N             随机种子（默认 1）：同一种子得到同一轮次\n"
               "  --speed X            时钟加速：0 尽快（默认），60 表示每秒模拟一分钟\n"
               "  --prefix P           采样点/实验室/转运员代码前缀（默认 SIM-县代码）\n"
               "  --setup-only         只登记采样点、实验室、转运员和轮次，不模拟\n"
               "  --quiet              不打印进度\n",
               "usage: tubeloop simulate --county CODE [options]\n"
               "With an admin token (TUBELOOP_TOKEN) registers sites, labs, couriers, a round and a token\n"
               "per device under a county already in the registry, then plays a whole screening round\n"
               "through the real API as those devices and prints the counts (--json: as JSON).\n"
               "  --county CODE        the county (6 digits, with its townships registered)\n"
               "  --round CODE         round code (default SIM + the current time); barcodes derive from it\n"
               "  --pool N             pooling ratio 1/5/8/10/20 (default 10)\n"
               "  --sites N            sampling points, spread over the townships in turn (default 10)\n"
               "  --labs N             labs (default 2)\n"
               "  --couriers N         couriers (default 3)\n"
               "  --persons N          persons to sample (default 1000)\n"
               "  --rate R             arrivals per minute, county-wide (default 20)\n"
               "  --positive-rate P    share of pooled tubes positive (default 0.01)\n"
               "  --invalid-rate P     share of tubes resulted invalid (default 0.005)\n"
               "  --reject-rate P      share of tubes rejected at the lab (default 0.003)\n"
               "  --mistakes M         scale of human mistakes (default 0.01; 0: none, no device offline)\n"
               "  --seed N             random seed (default 1): the same seed plays the same round\n"
               "  --speed X            clock speed-up: 0 as fast as possible (default), 60 = a simulated\n"
               "                       minute per real second\n"
               "  --prefix P           code prefix of sites, labs and couriers (default SIM-COUNTY)\n"
               "  --setup-only         register sites, labs, couriers and the round; do not play\n"
               "  --quiet              no progress lines\n"),
        to);
}

static const char *opt_value(int *i, int argc, char **argv, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
  if (strcmp(argv[*i], name) == 0 && *i + 1 < argc) return argv[++*i];
  return NULL;
}

static int parse_int(const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) return -1;
  *out = (int)x;
  return 0;
}

static int parse_real(const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) return -1;
  *out = x;
  return 0;
}

static int parse_opts(tl_cli_t *c, int argc, char **argv, opts_t *o) {
  memset(o, 0, sizeof *o);
  o->pool = 10;
  o->sites = 10;
  o->labs = 2;
  o->couriers = 3;
  o->persons = 1000;
  o->rate = 20;
  o->positive_rate = 0.01;
  o->invalid_rate = 0.005;
  o->reject_rate = 0.003;
  o->mistakes = 0.01;
  o->seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *v;
    const char *bad = NULL;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(c, stdout);
      return 1;
    } else if (strcmp(argv[i], "--setup-only") == 0) {
      o->setup_only = 1;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      o->quiet = 1;
    } else if ((v = opt_value(&i, argc, argv, "--county")) != NULL) {
      o->county = v;
      if (tl_region_level(v, strlen(v)) != TL_REGION_COUNTY) bad = "--county";
    } else if ((v = opt_value(&i, argc, argv, "--round")) != NULL) {
      o->round = v;
      if (!tl_valid_code(v, strlen(v))) bad = "--round";
    } else if ((v = opt_value(&i, argc, argv, "--prefix")) != NULL) {
      o->prefix = v;
      if (!tl_valid_code(v, strlen(v)) || strlen(v) > 26) bad = "--prefix";
    } else if ((v = opt_value(&i, argc, argv, "--pool")) != NULL) {
      if (parse_int(v, 1, 20, &o->pool) || (o->pool != 1 && o->pool != 5 && o->pool != 8 && o->pool != 10 && o->pool != 20))
        bad = "--pool";
    } else if ((v = opt_value(&i, argc, argv, "--sites")) != NULL) {
      if (parse_int(v, 1, 999, &o->sites)) bad = "--sites";
    } else if ((v = opt_value(&i, argc, argv, "--labs")) != NULL) {
      if (parse_int(v, 1, 99, &o->labs)) bad = "--labs";
    } else if ((v = opt_value(&i, argc, argv, "--couriers")) != NULL) {
      if (parse_int(v, 1, 99, &o->couriers)) bad = "--couriers";
    } else if ((v = opt_value(&i, argc, argv, "--persons")) != NULL) {
      if (parse_int(v, 1, 2000000, &o->persons)) bad = "--persons";
    } else if ((v = opt_value(&i, argc, argv, "--rate")) != NULL) {
      if (parse_real(v, 0.001, 1e6, &o->rate)) bad = "--rate";
    } else if ((v = opt_value(&i, argc, argv, "--positive-rate")) != NULL) {
      if (parse_real(v, 0, 1, &o->positive_rate)) bad = "--positive-rate";
    } else if ((v = opt_value(&i, argc, argv, "--invalid-rate")) != NULL) {
      if (parse_real(v, 0, 1, &o->invalid_rate)) bad = "--invalid-rate";
    } else if ((v = opt_value(&i, argc, argv, "--reject-rate")) != NULL) {
      if (parse_real(v, 0, 1, &o->reject_rate)) bad = "--reject-rate";
    } else if ((v = opt_value(&i, argc, argv, "--mistakes")) != NULL) {
      if (parse_real(v, 0, 1, &o->mistakes)) bad = "--mistakes";
    } else if ((v = opt_value(&i, argc, argv, "--speed")) != NULL) {
      if (parse_real(v, 0, 1e6, &o->speed)) bad = "--speed";
    } else if ((v = opt_value(&i, argc, argv, "--seed")) != NULL) {
      char *end;
      errno = 0;
      o->seed = strtoull(v, &end, 10);
      if (errno || end == v || *end || v[0] == '-') bad = "--seed";
    } else {
      tl_cli_fail("simulate: %s '%.60s'", TL_MSG(c, "未知参数", "unknown argument"), argv[i]);
      usage(c, stderr);
      return 2;
    }
    if (bad) {
      tl_cli_fail("simulate: %s %s", TL_MSG(c, "参数值无效：", "invalid value of"), bad);
      return 2;
    }
  }
  if (o->county == NULL) {
    tl_cli_fail("simulate: %s", TL_MSG(c, "需要 --county（县代码，6 位）", "--county (a 6-digit county code) is required"));
    usage(c, stderr);
    return 2;
  }
  if (o->positive_rate + o->invalid_rate + o->reject_rate > 1) {
    tl_cli_fail("simulate: %s", TL_MSG(c, "阳性、无效与拒收比例之和不能超过 1",
                                       "positive, invalid and reject rates must add up to at most 1"));
    return 2;
  }
  return 0;
}

/* ---------- the run ---------- */

typedef struct {
  char name[40];
  int n;
} tally_t;

typedef struct {
  tl_cli_t *c;                 /* the admin's client (borrowed) */
  const opts_t *o;
  char round[40], prefix[40], day[16], county_name[128];
  char **towns, **town_names;  /* registered townships of the county */
  int ntowns;
  tl_sim_plan_t plan;
  tl_cli_t *dev;               /* one client (own CURL handle: keep-alive) per device */
  char (*token)[TL_TOKEN_LEN + 8];
  char (*token_id)[40];
  int ntokens;
  int64_t t0;                  /* Unix ms of simulated offset 0 */
  int round_created;
  /* from the answers */
  long sent, accepted, duplicate, rejected, requests, retries, unexpected;
  long by_type[TL_SIM_NTYPES];
  long results[3];
  long refusals_other;
  long refusals[TL_SIM_NEXPECT];
  long provoked_seen[TL_SIM_NPROVOKE];
  unsigned char *person_seen;
  long persons;
  tally_t anomalies[16];
  int nanomalies;
  tally_t other_refusals[16];
  int nother;
  int failed;                  /* a request failed for good: the run stopped */
  int complete;                /* every planned event was sent */
  long next_event;             /* index of the next event to send */
} sim_t;

static void tally(tally_t *t, int *n, int cap, const char *name) {
  for (int i = 0; i < *n; i++)
    if (strcmp(t[i].name, name) == 0) {
      t[i].n++;
      return;
    }
  if (*n < cap) {
    snprintf(t[*n].name, sizeof t[*n].name, "%s", name);
    t[(*n)++].n = 1;
  }
}

static const char *dev_code(const sim_t *s, int d) { return s->plan.devices[d].code; }

/* ---------- setup through the admin API ---------- */

static cJSON *admin_post(sim_t *s, const char *path, cJSON *body) {
  char *text = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);
  if (text == NULL) {
    tl_cli_fail("out of memory");
    return NULL;
  }
  cJSON *j = tl_cli_call_json(s->c, "POST", path, text);
  free(text);
  return j;
}

static int read_townships(sim_t *s) {
  tl_buf_t path;
  tl_buf_init(&path);
  if (tl_buf_appendf(&path, "/v1/stats?region=") != 0 || tl_cli_urlenc(&path, s->o->county) != 0) {
    tl_buf_dispose(&path);
    return tl_cli_fail("out of memory");
  }
  cJSON *j = tl_cli_call_json(s->c, "GET", tl_buf_cstr(&path), NULL);
  tl_buf_dispose(&path);
  if (j == NULL) return 1;
  const cJSON *region = cJSON_GetObjectItemCaseSensitive(j, "region");
  if (strcmp(tl_js(region, "level"), "county") != 0) {
    cJSON_Delete(j);
    return tl_cli_fail("simulate: %s %s", s->o->county, TL_MSG(s->c, "不是已登记的县", "is not a registered county"));
  }
  snprintf(s->county_name, sizeof s->county_name, "%s", tl_js(region, "name"));
  const cJSON *kids = cJSON_GetObjectItemCaseSensitive(j, "children"), *k;
  int n = cJSON_GetArraySize(kids);
  s->towns = calloc((size_t)(n ? n : 1), sizeof *s->towns);
  s->town_names = calloc((size_t)(n ? n : 1), sizeof *s->town_names);
  if (s->towns == NULL || s->town_names == NULL) {
    cJSON_Delete(j);
    return tl_cli_fail("out of memory");
  }
  cJSON_ArrayForEach(k, kids) {
    if (strcmp(tl_js(k, "level"), "township") != 0) continue;
    s->towns[s->ntowns] = strdup(tl_js(k, "code"));
    s->town_names[s->ntowns] = strdup(tl_js(k, "name"));
    if (s->towns[s->ntowns] == NULL || s->town_names[s->ntowns] == NULL) {
      cJSON_Delete(j);
      return tl_cli_fail("out of memory");
    }
    s->ntowns++;
  }
  cJSON_Delete(j);
  if (s->ntowns == 0)
    return tl_cli_fail("simulate: %s %s %s", s->o->county, s->county_name,
                       TL_MSG(s->c, "下没有登记乡镇：请先导入区划（tubeloop admin import-regions）",
                              "has no registered townships: import the regions first (tubeloop admin import-regions)"));
  return 0;
}

static int register_devices(sim_t *s) {
  static const char *const paths[] = {"/v1/admin/sites", "/v1/admin/couriers", "/v1/admin/labs"};
  static const char *const keys[] = {"sites", "couriers", "labs"};
  for (int role = TL_SIM_COLLECTOR; role <= TL_SIM_LAB; role++) {
    cJSON *body = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(body, keys[role]);
    for (int d = 0; d < s->plan.ndevices; d++) {
      const tl_sim_device_t *dv = &s->plan.devices[d];
      if (dv->role != role) continue;
      cJSON *it = cJSON_CreateObject();
      cJSON_AddStringToObject(it, "code", dv->code);
      cJSON_AddStringToObject(it, "name", dv->name);
      if (role == TL_SIM_COLLECTOR) cJSON_AddStringToObject(it, "township", s->towns[dv->township]);
      else cJSON_AddStringToObject(it, "county", s->o->county);
      cJSON_AddItemToArray(arr, it);
    }
    cJSON *j = admin_post(s, paths[role], body);
    if (j == NULL) return 1;
    cJSON_Delete(j);
  }
  return 0;
}

/* Creates the round; an existing one is reused only while nothing was sampled in it (so that
 * `--setup-only` followed by a run works, and a replay into a played round does not). */
static int create_round(sim_t *s) {
  cJSON *body = cJSON_CreateObject();
  char name[256];
  snprintf(name, sizeof name, "%s全员核酸筛查（模拟 %s）", s->county_name, s->round);
  cJSON_AddStringToObject(body, "code", s->round);
  cJSON_AddStringToObject(body, "name", name);
  cJSON_AddStringToObject(body, "region", s->o->county);
  cJSON_AddStringToObject(body, "day", s->day);
  cJSON_AddNumberToObject(body, "pool_size", s->o->pool);
  char *text = cJSON_PrintUnformatted(body);
  cJSON_Delete(body);
  if (text == NULL) return tl_cli_fail("out of memory");
  tl_cli_resp_t r;
  char err[512];
  int rc = tl_cli_call(s->c, "POST", "/v1/admin/rounds", text, &r, err, sizeof err);
  free(text);
  if (rc != 0) return tl_cli_fail("%s", err);
  if (r.status == 201) {
    s->round_created = 1;
    tl_cli_resp_dispose(&r);
    return 0;
  }
  cJSON *j = tl_cli_resp_json(&r);
  int exists = r.status == 409 && strcmp(tl_js(cJSON_GetObjectItemCaseSensitive(j, "error"), "code"), "round_exists") == 0;
  cJSON_Delete(j);
  if (!exists) {
    tl_cli_resp_error(&r, err, sizeof err);
    tl_cli_resp_dispose(&r);
    return tl_cli_fail("POST /v1/admin/rounds: %s", err);
  }
  tl_cli_resp_dispose(&r);
  if (s->o->setup_only) return 0;
  tl_buf_t path;
  tl_buf_init(&path);
  if (tl_buf_appendf(&path, "/v1/stats?region=%s&round=", s->o->county) != 0 || tl_cli_urlenc(&path, s->round) != 0) {
    tl_buf_dispose(&path);
    return tl_cli_fail("out of memory");
  }
  j = tl_cli_call_json(s->c, "GET", tl_buf_cstr(&path), NULL);
  tl_buf_dispose(&path);
  if (j == NULL) return 1;
  const cJSON *sampled = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "totals"), "persons_sampled");
  int used = cJSON_IsNumber(sampled) && sampled->valuedouble > 0;
  cJSON_Delete(j);
  if (used)
    return tl_cli_fail("simulate: %s %s %s", TL_MSG(s->c, "轮次", "round"), s->round,
                       TL_MSG(s->c, "已有采样记录：请用新的 --round", "already has samples: choose a new --round"));
  return 0;
}

static int make_tokens(sim_t *s) {
  static const char *const roles[] = {"collector", "courier", "lab"};
  int n = s->plan.ndevices;
  s->token = calloc((size_t)n, sizeof *s->token);
  s->token_id = calloc((size_t)n, sizeof *s->token_id);
  s->dev = calloc((size_t)n, sizeof *s->dev);
  if (s->token == NULL || s->token_id == NULL || s->dev == NULL) return tl_cli_fail("out of memory");
  for (int d = 0; d < n; d++) {
    const tl_sim_device_t *dv = &s->plan.devices[d];
    char label[200];
    snprintf(label, sizeof label, "simulate %s %s", s->round, dv->code);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "role", roles[dv->role]);
    cJSON_AddStringToObject(body, "scope", dv->code);
    cJSON_AddStringToObject(body, "label", label);
    cJSON *j = admin_post(s, "/v1/admin/tokens", body);
    if (j == NULL) return 1;
    snprintf(s->token[d], sizeof s->token[d], "%s", tl_js(j, "token"));
    snprintf(s->token_id[d], sizeof s->token_id[d], "%s", tl_js(j, "id"));
    cJSON_Delete(j);
    s->ntokens = d + 1;
    s->dev[d] = *s->c;
    s->dev[d].curl = NULL;
    s->dev[d].token = s->token[d];
  }
  return 0;
}

static void revoke_tokens(sim_t *s) {
  int failed = 0;
  for (int d = 0; d < s->ntokens; d++) {
    if (s->token_id[d][0] == '\0') continue;
    char path[96];
    snprintf(path, sizeof path, "/v1/admin/tokens/%s", s->token_id[d]);
    tl_cli_resp_t r;
    char err[512];
    if (tl_cli_call(s->c, "DELETE", path, NULL, &r, err, sizeof err) != 0 || r.status != 200) failed++;
    else tl_cli_resp_dispose(&r);
  }
  if (failed)
    fprintf(stderr, "tubeloop: simulate: %s %d\n",
            TL_MSG(s->c, "未能吊销的设备令牌数：", "device tokens not revoked:"), failed);
}

/* ---------- sending ---------- */

static void fmt_time(const sim_t *s, int64_t off, char out[TL_TIME_TEXT_MAX]) {
  if (tl_time_format(s->t0 + off, CST_OFFSET, out) != 0) snprintf(out, TL_TIME_TEXT_MAX, "invalid");
}

static int append_codes(tl_buf_t *b, const sim_t *s, const tl_sim_event_t *e) {
  int rc = tl_buf_appendf(b, ",\"tubes\":[");
  for (int k = 0; k < e->ntubes && rc == 0; k++)
    rc = tl_buf_appendf(b, "%s\"%s\"", k ? "," : "", s->plan.tubes[s->plan.refs[e->tubes_at + k]].code);
  return rc ? rc : tl_buf_appendf(b, "]");
}

/* The event as JSON. Every value is a code, a number or one of the model's names, none of
 * which needs escaping. */
static int append_event(tl_buf_t *b, const sim_t *s, const tl_sim_event_t *e) {
  const tl_sim_plan_t *p = &s->plan;
  char at[TL_TIME_TEXT_MAX];
  fmt_time(s, e->at, at);
  int rc = tl_buf_appendf(b, "{\"id\":\"%s\",\"type\":\"%s\",\"at\":\"%s\"", e->id, tl_sim_type_names[e->type], at);
  if (rc == 0 && e->tube >= 0) rc = tl_buf_appendf(b, ",\"tube\":\"%s\"", p->tubes[e->tube].code);
  if (rc == 0 && e->box >= 0) rc = tl_buf_appendf(b, ",\"box\":\"%s\"", p->boxes[e->box].code);
  if (rc != 0) return rc;
  switch (e->type) {
  case TL_SIM_TUBE_OPEN:
    rc = tl_buf_appendf(b, ",\"round\":\"%s\",\"capacity\":%d", s->round, e->capacity);
    break;
  case TL_SIM_SAMPLE_ADD: {
    const tl_sim_person_t *x = &p->persons[e->person];
    rc = tl_buf_appendf(b, ",\"person\":{\"id_type\":\"resident_id\",\"id_number\":\"%s\",\"name\":\"%s\",\"phone\":\"%s\"}",
                        e->bad_id ? x->bad_id : x->id_number, x->name, x->phone);
    break;
  }
  case TL_SIM_TUBE_SEAL:
  case TL_SIM_BOX_SEAL:
    if (e->lab >= 0) rc = tl_buf_appendf(b, ",\"lab\":\"%s\"", dev_code(s, e->lab));
    if (rc == 0 && e->count >= 0) rc = tl_buf_appendf(b, ",\"count\":%d", e->count);
    break;
  case TL_SIM_BOX_PACK:
  case TL_SIM_BOX_RECEIVE:
    rc = append_codes(b, s, e);
    break;
  case TL_SIM_BOX_DELIVER:
    rc = tl_buf_appendf(b, ",\"lab\":\"%s\"", dev_code(s, e->lab));
    break;
  case TL_SIM_TUBE_REJECT:
    rc = tl_buf_appendf(b, ",\"reason\":\"%s\"", tl_sim_reject_reasons[e->reason]);
    break;
  case TL_SIM_TUBE_RESULT:
    rc = tl_buf_appendf(b, ",\"result\":\"%s\"", tl_sim_result_names[e->result]);
    if (rc == 0 && e->result == TL_SIM_POSITIVE)
      rc = tl_buf_appendf(b, ",\"ct\":{\"ORF1ab\":%.1f,\"N\":%.1f}", e->ct + 0.8, e->ct);
    break;
  default:
    break;
  }
  return rc ? rc : tl_buf_appendf(b, "}");
}

static void report_unexpected(sim_t *s, const tl_sim_event_t *e, const char *status, const char *code,
                              const char *message) {
  s->unexpected++;
  if (s->unexpected <= 10)
    fprintf(stderr, "tubeloop: simulate: %s %s %s (%s): %s %s %s\n",
            TL_MSG(s->c, "意外的回答：", "unexpected answer:"), dev_code(s, e->device),
            tl_sim_type_names[e->type], tl_sim_expect_codes[e->expect], status, code, message);
}

/* Compares one answer with the model's expectation and counts it. */
static void judge(sim_t *s, const tl_sim_event_t *e, const cJSON *res) {
  const char *status = tl_js(res, "status"), *code = tl_js(res, "code");
  int ok_status = strcmp(status, "accepted") == 0 || strcmp(status, "duplicate") == 0;
  if (strcmp(status, "duplicate") == 0) s->duplicate++;
  if (ok_status) {
    s->accepted++;
    s->by_type[e->type]++;
    if (e->type == TL_SIM_TUBE_RESULT) s->results[e->result]++;
    if (e->type == TL_SIM_SAMPLE_ADD && !s->person_seen[e->person]) {
      s->person_seen[e->person] = 1;
      s->persons++;
    }
  } else {
    s->rejected++;
    int known = 0;
    for (int k = 1; k < TL_SIM_NEXPECT; k++)
      if (strcmp(code, tl_sim_expect_codes[k]) == 0) s->refusals[k]++, known = 1;
    if (!known) tally(s->other_refusals, &s->nother, 16, code[0] ? code : status);
  }
  if (e->expect == TL_SIM_EXPECT_ACCEPTED ? !ok_status
                                          : (ok_status || strcmp(code, tl_sim_expect_codes[e->expect]) != 0))
    report_unexpected(s, e, status, code, tl_js(res, "message"));
  const cJSON *an = cJSON_GetObjectItemCaseSensitive(res, "anomalies"), *a;
  int provoked = 0;
  cJSON_ArrayForEach(a, an) {
    if (!cJSON_IsString(a)) continue;
    tally(s->anomalies, &s->nanomalies, 16, a->valuestring);
    if (e->provokes && strcmp(a->valuestring, tl_sim_provoke_names[e->provokes]) == 0) provoked = 1;
  }
  if (e->provokes) {
    if (provoked) s->provoked_seen[e->provokes]++;
    else report_unexpected(s, e, status, tl_sim_provoke_names[e->provokes], "(anomaly not reported)");
  }
}

/* POSTs one device's batch; retries what may be retried (transport failures, 502-504, 429)
 * with the same event ids, which makes the retry safe. Returns 0, or -1 when the run must stop. */
static int send_batch(sim_t *s, int d, const int *idx, int n) {
  tl_buf_t body;
  tl_buf_init(&body);
  int rc = tl_buf_appendf(&body, "{\"events\":[");
  for (int k = 0; k < n && rc == 0; k++) {
    if (k) rc = tl_buf_appendf(&body, ",");
    if (rc == 0) rc = append_event(&body, s, &s->plan.events[idx[k]]);
  }
  if (rc == 0) rc = tl_buf_appendf(&body, "]}");
  if (rc != 0) {
    tl_buf_dispose(&body);
    tl_cli_fail("out of memory");
    return -1;
  }
  tl_cli_resp_t r;
  char err[512];
  int64_t backoff = 250;
  for (int attempt = 0;; attempt++) {
    s->requests++;
    int trc = tl_cli_call(&s->dev[d], "POST", "/v1/events", tl_buf_cstr(&body), &r, err, sizeof err);
    int retry = trc != 0 || r.status == 429 || r.status == 502 || r.status == 503 || r.status == 504;
    if (!retry) break;
    if (trc == 0) {
      tl_cli_resp_error(&r, err, sizeof err);
      tl_cli_resp_dispose(&r);
    }
    if (attempt >= 8 || g_stop) {
      tl_buf_dispose(&body);
      tl_cli_fail("simulate: %s: %s", dev_code(s, d), err);
      return -1;
    }
    s->retries++;
    sleep_until(mono_ms() + backoff);
    if (backoff < 8000) backoff *= 2;
  }
  tl_buf_dispose(&body);
  cJSON *j = r.status == 200 ? tl_cli_resp_json(&r) : NULL;
  const cJSON *results = j ? cJSON_GetObjectItemCaseSensitive(j, "results") : NULL;
  if (!cJSON_IsArray(results) || cJSON_GetArraySize(results) != n) {
    tl_cli_resp_error(&r, err, sizeof err);
    tl_cli_fail("simulate: %s POST /v1/events: %s", dev_code(s, d), err);
    cJSON_Delete(j);
    tl_cli_resp_dispose(&r);
    return -1;
  }
  int k = 0;
  const cJSON *res;
  cJSON_ArrayForEach(res, results) judge(s, &s->plan.events[idx[k++]], res);
  s->sent += n;
  cJSON_Delete(j);
  tl_cli_resp_dispose(&r);
  return 0;
}

static void progress(sim_t *s, int64_t sim_off) {
  char at[TL_TIME_TEXT_MAX];
  fmt_time(s, sim_off, at);
  fprintf(stderr, "tubeloop: simulate: %.16s  %s %ld/%d  %s %ld  %s %ld  %s %ld\n", at,
          TL_MSG(s->c, "事件", "events"), s->sent, s->plan.nevents, TL_MSG(s->c, "受检", "persons"), s->persons,
          TL_MSG(s->c, "结果", "results"), s->results[0] + s->results[1] + s->results[2],
          TL_MSG(s->c, "意外", "unexpected"), s->unexpected);
}

/* Sends the plan tick by tick. */
static int play(sim_t *s) {
  const tl_sim_plan_t *p = &s->plan;
  double speed = s->o->speed;
  int64_t tick = speed > 0 ? MIN : 10 * MIN;
  int *order = malloc((size_t)(p->nevents ? p->nevents : 1) * sizeof *order);
  int *start = calloc((size_t)p->ndevices + 1, sizeof *start);
  int *fill = calloc((size_t)p->ndevices + 1, sizeof *fill);
  if (order == NULL || start == NULL || fill == NULL) {
    free(order);
    free(start);
    free(fill);
    return tl_cli_fail("out of memory");
  }
  int64_t m0 = mono_ms(), last_progress = m0;
  int i = 0, rc = 0;
  while (i < p->nevents && rc == 0 && !g_stop) {
    int64_t tick_end = (p->events[i].send / tick + 1) * tick;
    if (speed > 0) sleep_until(m0 + (int64_t)((double)tick_end / speed));
    if (g_stop) break;
    int j = i;
    while (j < p->nevents && p->events[j].send < tick_end) j++;
    /* the tick's events grouped by device (devices are sites, couriers, labs in that order),
     * each device's in plan order */
    memset(start, 0, ((size_t)p->ndevices + 1) * sizeof *start);
    for (int k = i; k < j; k++) start[p->events[k].device + 1]++;
    for (int d = 0; d < p->ndevices; d++) start[d + 1] += start[d];
    memcpy(fill, start, ((size_t)p->ndevices + 1) * sizeof *fill);
    for (int k = i; k < j; k++) order[fill[p->events[k].device]++] = k;
    for (int d = 0; d < p->ndevices && rc == 0; d++)
      for (int k = start[d]; k < start[d + 1] && rc == 0; k += BATCH_MAX) {
        int n = start[d + 1] - k < BATCH_MAX ? start[d + 1] - k : BATCH_MAX;
        rc = send_batch(s, d, order + k, n);
      }
    i = j;
    s->next_event = i;
    if (!s->o->quiet && (mono_ms() - last_progress >= 15000 || i == p->nevents)) {
      progress(s, tick_end);
      last_progress = mono_ms();
    }
  }
  free(order);
  free(start);
  free(fill);
  s->complete = rc == 0 && i == p->nevents;
  if (rc != 0) s->failed = 1;
  return rc;
}

/* ---------- the summary ---------- */

static cJSON *tally_json(const tally_t *t, int n) {
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < n; i++) cJSON_AddNumberToObject(o, t[i].name, t[i].n);
  return o;
}

static cJSON *summary_json(const sim_t *s) {
  const tl_sim_counts_t *m = &s->plan.counts;
  cJSON *o = cJSON_CreateObject(), *x;
  cJSON_AddStringToObject(o, "county", s->o->county);
  cJSON_AddStringToObject(o, "county_name", s->county_name);
  cJSON_AddStringToObject(o, "round", s->round);
  cJSON_AddNumberToObject(o, "seed", (double)s->o->seed);
  cJSON_AddNumberToObject(o, "pool", s->o->pool);
  cJSON_AddNumberToObject(o, "townships", s->ntowns);
  cJSON_AddNumberToObject(o, "sites", s->plan.nsites);
  cJSON_AddNumberToObject(o, "labs", s->plan.nlabs);
  cJSON_AddNumberToObject(o, "couriers", s->plan.ncouriers);
  cJSON_AddBoolToObject(o, "complete", s->complete);
  /* from the server's answers */
  cJSON_AddNumberToObject(o, "persons", (double)s->persons);
  cJSON_AddNumberToObject(o, "samples", (double)s->by_type[TL_SIM_SAMPLE_ADD]);
  x = cJSON_AddObjectToObject(o, "tubes");
  cJSON_AddNumberToObject(x, "opened", (double)s->by_type[TL_SIM_TUBE_OPEN]);
  cJSON_AddNumberToObject(x, "sealed", (double)s->by_type[TL_SIM_TUBE_SEAL]);
  cJSON_AddNumberToObject(x, "resulted", (double)s->by_type[TL_SIM_TUBE_RESULT]);
  cJSON_AddNumberToObject(x, "rejected", (double)s->by_type[TL_SIM_TUBE_REJECT]);
  x = cJSON_AddObjectToObject(o, "boxes");
  cJSON_AddNumberToObject(x, "sealed", (double)s->by_type[TL_SIM_BOX_SEAL]);
  cJSON_AddNumberToObject(x, "picked_up", (double)s->by_type[TL_SIM_BOX_PICKUP]);
  cJSON_AddNumberToObject(x, "delivered", (double)s->by_type[TL_SIM_BOX_DELIVER]);
  cJSON_AddNumberToObject(x, "received", (double)s->by_type[TL_SIM_BOX_RECEIVE]);
  x = cJSON_AddObjectToObject(o, "results");
  for (int r = 0; r < 3; r++) cJSON_AddNumberToObject(x, tl_sim_result_names[r], (double)s->results[r]);
  x = cJSON_AddObjectToObject(o, "refusals");
  for (int k = 1; k < TL_SIM_NEXPECT; k++)
    if (s->refusals[k]) cJSON_AddNumberToObject(x, tl_sim_expect_codes[k], (double)s->refusals[k]);
  for (int k = 0; k < s->nother; k++) cJSON_AddNumberToObject(x, s->other_refusals[k].name, s->other_refusals[k].n);
  x = cJSON_AddObjectToObject(o, "anomalies_provoked");
  for (int k = 1; k < TL_SIM_NPROVOKE; k++) cJSON_AddNumberToObject(x, tl_sim_provoke_names[k], (double)s->provoked_seen[k]);
  cJSON_AddItemToObject(o, "anomalies_reported", tally_json(s->anomalies, s->nanomalies));
  x = cJSON_AddObjectToObject(o, "events");
  cJSON_AddNumberToObject(x, "planned", s->plan.nevents);
  cJSON_AddNumberToObject(x, "sent", (double)s->sent);
  cJSON_AddNumberToObject(x, "accepted", (double)s->accepted);
  cJSON_AddNumberToObject(x, "duplicate", (double)s->duplicate);
  cJSON_AddNumberToObject(x, "rejected", (double)s->rejected);
  cJSON_AddNumberToObject(x, "late", m->late_events);
  cJSON *bt = cJSON_AddObjectToObject(x, "by_type");
  for (int k = 0; k < TL_SIM_NTYPES; k++) cJSON_AddNumberToObject(bt, tl_sim_type_names[k], (double)s->by_type[k]);
  cJSON_AddNumberToObject(o, "offline_devices", m->offline_devices);
  cJSON_AddNumberToObject(o, "unexpected", (double)s->unexpected);
  /* what the model says the round ends with once everything is sent (figures the answers do
   * not show: statuses, follow-ups, tubes left behind) */
  x = cJSON_AddObjectToObject(o, "expected");
  cJSON_AddNumberToObject(x, "persons", m->persons);
  cJSON_AddNumberToObject(x, "persons_returned", m->persons_returned);
  cJSON_AddNumberToObject(x, "persons_positive", m->persons_positive);
  cJSON_AddNumberToObject(x, "samples", m->samples);
  cJSON_AddNumberToObject(x, "tubes", m->tubes);
  cJSON_AddNumberToObject(x, "tubes_pooled", m->tubes_pooled);
  cJSON_AddNumberToObject(x, "tubes_single", m->tubes_single);
  cJSON_AddNumberToObject(x, "tubes_resulted", m->tubes_resulted);
  cJSON_AddNumberToObject(x, "tubes_rejected", m->tubes_rejected);
  cJSON_AddNumberToObject(x, "tubes_lost", m->tubes_lost);
  cJSON_AddNumberToObject(x, "boxes", m->boxes);
  cJSON_AddNumberToObject(x, "followups", m->followups);
  /* the clock: differs from run to run */
  x = cJSON_AddObjectToObject(o, "clock");
  char at[TL_TIME_TEXT_MAX];
  fmt_time(s, 0, at);
  cJSON_AddStringToObject(x, "start", at);
  fmt_time(s, m->duration_ms, at);
  cJSON_AddStringToObject(x, "end", at);
  cJSON_AddNumberToObject(x, "speed", s->o->speed);
  cJSON_AddNumberToObject(x, "requests", (double)s->requests);
  cJSON_AddNumberToObject(x, "retries", (double)s->retries);
  return o;
}

static void row_n(tl_table_t *t, const char *label, long n) {
  char v[32];
  snprintf(v, sizeof v, "%ld", n);
  tl_table_row(t, label, v);
}

static void tally_text(char *out, size_t len, const tally_t *t, int n) {
  out[0] = '\0';
  size_t used = 0;
  for (int i = 0; i < n && used < len; i++) {
    int w = snprintf(out + used, len - used, "%s%s %d", i ? ", " : "", t[i].name, t[i].n);
    if (w < 0) break;
    used += (size_t)w;
  }
}

static void summary_table(const sim_t *s) {
  const tl_cli_t *c = s->c;
  const tl_sim_counts_t *m = &s->plan.counts;
  tl_table_t t;
  tl_table_init(&t, 2);
  char v[512];
  snprintf(v, sizeof v, "%s%s (%s %s), seed %llu", s->round, s->complete ? "" : TL_MSG(c, " （未完成）", " (incomplete)"),
           s->county_name, s->o->county, s->o->seed);
  tl_table_row(&t, TL_MSG(c, "轮次", "round"), v);
  snprintf(v, sizeof v, "%d / %d / %d / %d", s->ntowns, s->plan.nsites, s->plan.ncouriers, s->plan.nlabs);
  tl_table_row(&t, TL_MSG(c, "乡镇 / 采样点 / 转运员 / 实验室", "townships / sites / couriers / labs"), v);
  /* the figures in parentheses come from the model: they hold for the whole round only */
  if (s->complete)
    snprintf(v, sizeof v, "%ld (%s %d, %s %d)", s->persons, TL_MSG(c, "返回结果", "returned"), m->persons_returned,
             TL_MSG(c, "阳性", "positive"), m->persons_positive);
  else
    snprintf(v, sizeof v, "%ld", s->persons);
  tl_table_row(&t, TL_MSG(c, "受检人数", "persons"), v);
  row_n(&t, TL_MSG(c, "采样（已接受）", "samples accepted"), s->by_type[TL_SIM_SAMPLE_ADD]);
  if (s->complete)
    snprintf(v, sizeof v, "%ld (%s %d, %s %d; %s %ld, %s %ld, %s %d)", s->by_type[TL_SIM_TUBE_OPEN],
             TL_MSG(c, "混采", "pooled"), m->tubes_pooled, TL_MSG(c, "单采", "single"), m->tubes_single,
             TL_MSG(c, "出结果", "resulted"), s->by_type[TL_SIM_TUBE_RESULT], TL_MSG(c, "拒收", "rejected"),
             s->by_type[TL_SIM_TUBE_REJECT], TL_MSG(c, "遗漏", "left behind"), m->tubes_lost);
  else
    snprintf(v, sizeof v, "%ld (%s %ld, %s %ld)", s->by_type[TL_SIM_TUBE_OPEN], TL_MSG(c, "出结果", "resulted"),
             s->by_type[TL_SIM_TUBE_RESULT], TL_MSG(c, "拒收", "rejected"), s->by_type[TL_SIM_TUBE_REJECT]);
  tl_table_row(&t, TL_MSG(c, "采样管", "tubes"), v);
  row_n(&t, TL_MSG(c, "转运箱", "boxes"), s->by_type[TL_SIM_BOX_SEAL]);
  snprintf(v, sizeof v, "%s %ld, %s %ld, %s %ld", TL_MSG(c, "阴性", "negative"), s->results[0],
           TL_MSG(c, "阳性", "positive"), s->results[1], TL_MSG(c, "无效", "invalid"), s->results[2]);
  tl_table_row(&t, TL_MSG(c, "检测结果", "results"), v);
  if (s->complete) row_n(&t, TL_MSG(c, "复核/复采", "follow-ups"), m->followups);
  tally_t ref[TL_SIM_NEXPECT + 16];
  int nref = 0;
  for (int k = 1; k < TL_SIM_NEXPECT; k++)
    if (s->refusals[k]) {
      snprintf(ref[nref].name, sizeof ref[nref].name, "%s", tl_sim_expect_codes[k]);
      ref[nref++].n = (int)s->refusals[k];
    }
  for (int k = 0; k < s->nother; k++) ref[nref++] = s->other_refusals[k];
  tally_text(v, sizeof v, ref, nref);
  tl_table_row(&t, TL_MSG(c, "被拒绝的扫码", "refusals"), v);
  tally_t pv[TL_SIM_NPROVOKE];
  for (int k = 1; k < TL_SIM_NPROVOKE; k++) {
    snprintf(pv[k - 1].name, sizeof pv[k - 1].name, "%s", tl_sim_provoke_names[k]);
    pv[k - 1].n = (int)s->provoked_seen[k];
  }
  tally_text(v, sizeof v, pv, TL_SIM_NPROVOKE - 1);
  tl_table_row(&t, TL_MSG(c, "制造的异常", "anomalies provoked"), v);
  tally_text(v, sizeof v, s->anomalies, s->nanomalies);
  tl_table_row(&t, TL_MSG(c, "回答中的异常", "anomalies reported"), v);
  snprintf(v, sizeof v, "%d (%s %d)", m->offline_devices, TL_MSG(c, "迟传事件", "late events"), m->late_events);
  tl_table_row(&t, TL_MSG(c, "离线设备", "offline devices"), v);
  snprintf(v, sizeof v, "%ld/%d (%s %ld, %s %ld, %s %ld; %s %ld)", s->sent, s->plan.nevents,
           TL_MSG(c, "接受", "accepted"), s->accepted, TL_MSG(c, "拒绝", "rejected"), s->rejected,
           TL_MSG(c, "重复", "duplicate"), s->duplicate, TL_MSG(c, "请求", "requests"), s->requests);
  tl_table_row(&t, TL_MSG(c, "事件", "events"), v);
  row_n(&t, TL_MSG(c, "不符合预期的回答", "unexpected answers"), s->unexpected);
  tl_table_print(&t);
  tl_table_dispose(&t);
}

static void setup_table(const sim_t *s) {
  tl_table_t t;
  tl_table_init(&t, 3);
  tl_table_row(&t, TL_MSG(s->c, "代码", "code"), TL_MSG(s->c, "名称", "name"), TL_MSG(s->c, "所属", "in"));
  for (int d = 0; d < s->plan.ndevices; d++) {
    const tl_sim_device_t *dv = &s->plan.devices[d];
    tl_table_row(&t, dv->code, dv->name, dv->role == TL_SIM_COLLECTOR ? s->towns[dv->township] : s->o->county);
  }
  tl_table_print(&t);
  tl_table_dispose(&t);
  printf("%s %s (%s %s, %s %s, %s %d)\n", TL_MSG(s->c, "轮次", "round"), s->round, s->county_name, s->o->county,
         TL_MSG(s->c, "日期", "day"), s->day, TL_MSG(s->c, "混采", "pool"), s->o->pool);
}

static void sim_dispose(sim_t *s) {
  for (int d = 0; s->dev && d < s->plan.ndevices; d++)
    if (s->dev[d].curl) curl_easy_cleanup(s->dev[d].curl);
  free(s->dev);
  if (s->token) memset(s->token, 0, (size_t)s->plan.ndevices * sizeof *s->token);
  free(s->token);
  free(s->token_id);
  for (int i = 0; i < s->ntowns; i++) {
    free(s->towns[i]);
    free(s->town_names[i]);
  }
  free(s->towns);
  free(s->town_names);
  free(s->person_seen);
  tl_sim_plan_free(&s->plan);
}

int tl_cmd_simulate(tl_cli_t *c, int argc, char **argv) {
  opts_t o;
  int rc = parse_opts(c, argc, argv, &o);
  if (rc == 1) return 0; /* --help */
  if (rc != 0) return rc;
  if (tl_cli_need_server(c) != 0) return 1;

  sim_t s;
  memset(&s, 0, sizeof s);
  s.c = c;
  s.o = &o;
  int64_t r0 = real_ms();
  char now[TL_TIME_TEXT_MAX];
  if (tl_time_format(r0, CST_OFFSET, now) != 0) return tl_cli_fail("the clock is out of range");
  snprintf(s.day, sizeof s.day, "%.10s", now);
  if (o.round) snprintf(s.round, sizeof s.round, "%s", o.round);
  else snprintf(s.round, sizeof s.round, "SIM%.4s%.2s%.2s%.2s%.2s", now, now + 5, now + 8, now + 11, now + 14);
  if (o.prefix) snprintf(s.prefix, sizeof s.prefix, "%s", o.prefix);
  else snprintf(s.prefix, sizeof s.prefix, "SIM-%s", o.county);

  rc = 1;
  if (read_townships(&s) != 0) goto out;
  tl_sim_params_t p = {
      .seed = o.seed, .county = o.county, .round = s.round, .prefix = s.prefix, .county_name = s.county_name,
      .ntownships = s.ntowns, .township_names = (const char *const *)s.town_names, .pool = o.pool,
      .nsites = o.sites, .nlabs = o.labs, .ncouriers = o.couriers, .npersons = o.persons, .rate = o.rate,
      .positive_rate = o.positive_rate, .invalid_rate = o.invalid_rate, .reject_rate = o.reject_rate,
      .mistakes = o.mistakes};
  if (tl_sim_plan_make(&p, &s.plan) != 0) {
    tl_cli_fail("simulate: %s", TL_MSG(c, "无法生成模拟计划（内存不足）", "the plan could not be made (out of memory)"));
    goto out;
  }
  if (register_devices(&s) != 0 || create_round(&s) != 0) goto out;
  if (o.setup_only) {
    if (c->json) {
      cJSON *j = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(j, "devices");
      cJSON_AddStringToObject(j, "county", o.county);
      cJSON_AddStringToObject(j, "round", s.round);
      cJSON_AddStringToObject(j, "day", s.day);
      cJSON_AddBoolToObject(j, "round_created", s.round_created);
      static const char *const roles[] = {"collector", "courier", "lab"};
      for (int d = 0; d < s.plan.ndevices; d++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "role", roles[s.plan.devices[d].role]);
        cJSON_AddStringToObject(it, "code", s.plan.devices[d].code);
        cJSON_AddStringToObject(it, "name", s.plan.devices[d].name);
        cJSON_AddItemToArray(arr, it);
      }
      char *text = cJSON_Print(j);
      if (text) puts(text);
      free(text);
      cJSON_Delete(j);
    } else {
      setup_table(&s);
    }
    rc = 0;
    goto out;
  }
  if ((s.person_seen = calloc((size_t)s.plan.npersons, 1)) == NULL) {
    tl_cli_fail("out of memory");
    goto out;
  }
  if (make_tokens(&s) != 0) goto revoke;

  /* Map the simulated clock onto the present (see the head of this file). */
  int64_t tick = o.speed > 0 ? MIN : 10 * MIN;
  int64_t span = (s.plan.counts.duration_ms / tick + 1) * tick;
  int64_t lag = o.speed == 0 ? span : o.speed > 1 ? (int64_t)((double)span * (1.0 - 1.0 / o.speed)) : 0;
  s.t0 = (r0 - lag - 2 * MIN) / MIN * MIN;
  if (!o.quiet) {
    char a[TL_TIME_TEXT_MAX], b[TL_TIME_TEXT_MAX];
    fmt_time(&s, 0, a);
    fmt_time(&s, s.plan.counts.duration_ms, b);
    fprintf(stderr, "tubeloop: simulate: %s %s, %d %s, %d %s, %.16s .. %.16s, %s %.0f %s\n", TL_MSG(c, "轮次", "round"),
            s.round, s.plan.ndevices, TL_MSG(c, "台设备", "devices"), s.plan.nevents, TL_MSG(c, "个事件", "events"), a,
            b, TL_MSG(c, "预计用时", "about"),
            o.speed > 0 ? ceil((double)span / o.speed / 60000.0) : 0.0, TL_MSG(c, "分钟", "min"));
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  signal(SIGPIPE, SIG_IGN);
  play(&s);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (g_stop)
    fprintf(stderr, "tubeloop: simulate: %s\n", TL_MSG(c, "已中断", "interrupted"));

  if (c->json) {
    cJSON *j = summary_json(&s);
    char *text = cJSON_Print(j);
    if (text) puts(text);
    free(text);
    cJSON_Delete(j);
  } else {
    summary_table(&s);
  }
  rc = s.complete && s.unexpected == 0 ? 0 : 1;
revoke:
  revoke_tokens(&s);
out:
  sim_dispose(&s);
  return rc;
}
