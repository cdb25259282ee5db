/* tl_loadgen — the benchmark's HTTPS load generator for tubeloopd (issue 6).
 *
 *   tl_loadgen setup   create the registry (county, townships, sites, labs, couriers, a round)
 *                      and one token per sender through the admin API; write the registry file
 *   tl_loadgen ingest  replay the city model (model.h) in batches of --batch events per request
 *                      over --conns keep-alive connections, each sender's events in its order;
 *                      a batch refused with 503/429 is sent again after 100 ms, or with
 *                      --retry-wait told after its Retry-After (times 0.5-1.5, at random)
 *   tl_loadgen single  one event per request: open loop at --rate requests/s (latency counted
 *                      from the scheduled time, so a stall is not hidden) or closed loop (--rate 0);
 *                      the open loop also reports each second's slow requests beside the share
 *                      of the machine the hypervisor took in it (/proc/stat)
 *   tl_loadgen idle    hold --conns idle TLS keep-alive connections; report the daemon's VmRSS
 *   tl_loadgen stats   GET /v1/stats latency for a region
 *
 * Common options: --url https://127.0.0.1:PORT --cacert FILE --registry FILE. The workload
 * options (--seed --tag --block --person-offset --base-ms --boxes --sites --site-offset
 * --positive-rate --site-only) are those of tl_pgload, which copies exactly the same event JSON
 * for the storage ceiling. --person-offset starts the block's persons further on, so that hand
 * runs on a kept cluster each get persons never sampled before: ingest and single print the
 * range they use (all of every site's persons, however few events the run sends), and a run
 * whose range overlaps an earlier one samples persons again, which tl_write_plain hands to the
 * dearer tl_write.
 *
 * Every command ends with one machine-readable line "result KIND key=value ..." (scripts/bench.sh
 * reads them) after a human summary.
 *
 * HTTP: threads, each with its own libcurl easy handle (its own keep-alive connection, HTTP/1.1,
 * no Expect: 100-continue). The daemon runs one event loop; a few dozen blocking threads reach
 * its limit while using a small share of the CPU (printed as cpu_s). */
#include "bench.h"
#include "model.h"

#include "base/buf.h"
#include "domain/validate.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *g_url = "https://127.0.0.1:8443";
static const char *g_cacert = NULL;

/* ---------- HTTP over libcurl ---------- */

typedef struct {
  CURL *h;
  tl_buf_t resp;
  long status;
  int retry_after;   /* the answer carried Retry-After */
  double retry_after_s; /* its value in seconds (0 when absent) */
  char err[CURL_ERROR_SIZE];
} conn_t;

static size_t on_header(char *p, size_t size, size_t n, void *arg) {
  conn_t *c = arg;
  if (size * n > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
    c->retry_after = 1;
    c->retry_after_s = strtod(p + 12, NULL); /* (delta-seconds; the daemon sends no dates) */
  }
  return size * n;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  conn_t *c = arg;
  return tl_buf_append(&c->resp, p, size * n) == 0 ? size * n : 0;
}

static int conn_init(conn_t *c) {
  memset(c, 0, sizeof *c);
  tl_buf_init(&c->resp);
  if ((c->h = curl_easy_init()) == NULL) return -1;
  curl_easy_setopt(c->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->err);
  curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
  if (g_cacert) curl_easy_setopt(c->h, CURLOPT_CAINFO, g_cacert);
  return 0;
}

static void conn_dispose(conn_t *c) {
  if (c->h) curl_easy_cleanup(c->h);
  tl_buf_dispose(&c->resp);
}

/* One request; 0 with c->status and c->resp, or -1 on a transport error (message in c->err). */
static int http_do(conn_t *c, const char *method, const char *path, const char *token, const char *body,
                   size_t len) {
  char url[512], auth[160];
  snprintf(url, sizeof url, "%s%s", g_url, path);
  struct curl_slist *h = NULL;
  if (token && token[0]) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
  }
  h = curl_slist_append(h, "Expect:");
  tl_buf_reset(&c->resp);
  c->status = 0;
  c->retry_after = 0;
  c->retry_after_s = 0;
  c->err[0] = '\0';
  curl_easy_setopt(c->h, CURLOPT_URL, url);
  if (strcmp(method, "POST") == 0) {
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c->h, CURLOPT_POST, 1L);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  } else {
    curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
  CURLcode rc = curl_easy_perform(c->h);
  curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
  curl_slist_free_all(h);
  if (rc != CURLE_OK) {
    if (!c->err[0]) snprintf(c->err, sizeof c->err, "%s", curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
  return 0;
}

static void sleep_ms(double ms) {
  if (ms <= 0) return;
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

static void sleep_until(double t) {
  double now = bm_now_s();
  if (t > now) sleep_ms((t - now) * 1000);
}

/* ---------- setup ---------- */

static int admin_post(conn_t *c, const char *token, const char *path, const char *body, int ok2) {
  if (http_do(c, "POST", path, token, body, strlen(body)) != 0) {
    fprintf(stderr, "setup: POST %s: %s\n", path, c->err);
    return -1;
  }
  if (c->status != 200 && c->status != 201 && c->status != ok2) {
    fprintf(stderr, "setup: POST %s: HTTP %ld %.500s\n", path, c->status, tl_buf_cstr(&c->resp));
    return -1;
  }
  return 0;
}

static int make_token(conn_t *c, const char *admin, const char *role, const char *scope, char out[80]) {
  char body[256];
  snprintf(body, sizeof body, "{\"role\":\"%s\",\"scope\":\"%s\",\"label\":\"bench\"}", role, scope);
  if (admin_post(c, admin, "/v1/admin/tokens", body, 0) != 0) return -1;
  cJSON *o = cJSON_Parse(tl_buf_cstr(&c->resp));
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "token");
  int rc = cJSON_IsString(t) && strlen(t->valuestring) < 80 ? 0 : -1;
  if (rc == 0) snprintf(out, 80, "%s", t->valuestring);
  cJSON_Delete(o);
  return rc;
}

static int cmd_setup(int argc, char **argv) {
  const char *admin = bb_opt(argc, argv, "--admin-token", getenv("TUBELOOP_BENCH_ADMIN_TOKEN"));
  const char *path = bb_opt(argc, argv, "--registry", NULL);
  if (admin == NULL || path == NULL) {
    fprintf(stderr, "setup: --admin-token (or TUBELOOP_BENCH_ADMIN_TOKEN) and --registry are required\n");
    return 2;
  }
  bm_registry_t r;
  if (bm_registry_shape(&r, (int)bb_opt_long(argc, argv, "--townships", 20),
                        (int)bb_opt_long(argc, argv, "--sites", 200), (int)bb_opt_long(argc, argv, "--couriers", 20),
                        (int)bb_opt_long(argc, argv, "--labs", 7)) != 0)
    return 1;
  snprintf(r.admin_token, sizeof r.admin_token, "%s", admin);
  conn_t c;
  if (conn_init(&c) != 0) return 1;
  double t0 = bm_now_s();
  tl_buf_t b;
  tl_buf_init(&b);
  int rc = 0;
  /* regions: province, city, county, townships */
  rc |= tl_buf_appendf(&b, "{\"regions\":[{\"code\":\"23\",\"name\":\"黑龙江省\"},"
                           "{\"code\":\"2301\",\"name\":\"哈尔滨市\",\"parent\":\"23\"},"
                           "{\"code\":\"%s\",\"name\":\"巴彦县\",\"parent\":\"2301\"}", r.county);
  for (int k = 0; k < r.ntownships; k++) {
    char code[10], name[64];
    bm_township_code(&r, k, code);
    rc |= tl_buf_appendf(&b, ",{\"code\":\"%s\",\"name\":\"%s\",\"parent\":\"%s\"}", code,
                         bm_township_name(k, name, sizeof name), r.county);
  }
  rc |= tl_buf_appendf(&b, "]}");
  if (rc || admin_post(&c, admin, "/v1/admin/regions", tl_buf_cstr(&b), 0) != 0) goto fail;
  static const char *const lists[] = {"sites", "couriers", "labs"};
  static const char *const names[] = {"采样点", "转运员", "检测实验室"};
  for (int role = 0; role < 3; role++) {
    tl_buf_reset(&b);
    rc |= tl_buf_appendf(&b, "{\"%s\":[", lists[role]);
    int first = 1;
    for (int i = 0; i < r.nsites + r.ncouriers + r.nlabs; i++) {
      const bm_sender_t *s = &r.senders[i];
      if ((int)s->role != role) continue;
      rc |= tl_buf_appendf(&b, "%s{\"code\":\"%s\",\"name\":\"%s%s\",\"%s\":\"%s\"}", first ? "" : ",", s->code,
                           names[role], s->code + 2, role == 0 ? "township" : "county", s->region);
      first = 0;
    }
    rc |= tl_buf_appendf(&b, "]}");
    char p[64];
    snprintf(p, sizeof p, "/v1/admin/%s", lists[role]);
    if (rc || admin_post(&c, admin, p, tl_buf_cstr(&b), 0) != 0) goto fail;
  }
  /* the round: today in Asia/Shanghai (409 when a previous run made it) */
  int64_t local = bm_wall_ms() + 8LL * 3600000;
  time_t secs = (time_t)(local / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  tl_buf_reset(&b);
  rc |= tl_buf_appendf(&b, "{\"code\":\"%s\",\"name\":\"全员核酸筛查 第1轮\",\"region\":\"%s\",\"day\":\"%04d-%02d-%02d\",\"pool_size\":10}",
                       r.round, r.county, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  if (rc || admin_post(&c, admin, "/v1/admin/rounds", tl_buf_cstr(&b), 409) != 0) goto fail;
  static const char *const roles[] = {"collector", "courier", "lab"};
  for (int i = 0; i < r.nsites + r.ncouriers + r.nlabs; i++) {
    bm_sender_t *s = &r.senders[i];
    if (make_token(&c, admin, roles[s->role], s->code, s->token) != 0) goto fail;
  }
  if (make_token(&c, admin, "viewer", r.county, r.viewer_token) != 0) goto fail;
  if (bm_registry_save(&r, path) != 0) goto fail;
  printf("setup: county %s, %d townships, %d sites, %d couriers, %d labs, round %s, %d tokens in %.1f s\n",
         r.county, r.ntownships, r.nsites, r.ncouriers, r.nlabs, r.round, r.nsites + r.ncouriers + r.nlabs + 1,
         bm_now_s() - t0);
  tl_buf_dispose(&b);
  conn_dispose(&c);
  bm_registry_dispose(&r);
  return 0;
fail:
  tl_buf_dispose(&b);
  conn_dispose(&c);
  bm_registry_dispose(&r);
  return 1;
}

/* ---------- ingest: the city model in batches ---------- */

typedef struct {
  int32_t *chains;  /* chains queued for this sender, in release order */
  int n, cap, head;
  int pos;          /* events of chains[head] already taken */
  int busy;         /* a request of this sender is in flight */
  int queued;       /* in the ready list */
} squeue_t;

typedef struct {
  const char *code;
  long n;
} code_count_t;

typedef struct {
  bm_workload_t *w;
  bm_registry_t *r;
  int batch;
  int told;          /* --retry-wait told: wait what Retry-After says (x 0.5-1.5), not 100 ms */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  squeue_t *q;
  int *ready;        /* ring of ready senders */
  int rhead, rcount, nsenders;
  long done, total;
  long accepted, duplicate, rejected, requests, retries, errors503, retry_after;
  code_count_t codes[32];
  int ncodes;
  int failed;
  int inflight;      /* requests being sent */
  double t0, t10, t90, last_t;
  long mark10, mark90, last_mark;
  bb_lat_t lat;
} ingest_t;

static void ready_push(ingest_t *g, int s) {
  squeue_t *q = &g->q[s];
  if (q->busy || q->queued || q->head == q->n) return;
  q->queued = 1;
  g->ready[(g->rhead + g->rcount++) % g->nsenders] = s;
  /* one waiting worker per ready sender: a broadcast would wake all of them (256 in the
   * burst) for each answer, and that herd's CPU would count against the server's goodput */
  pthread_cond_signal(&g->cv);
}

static void chain_release(ingest_t *g, int chain) {
  int s = g->w->chains[chain].sender;
  squeue_t *q = &g->q[s];
  if (q->n == q->cap) {
    q->cap = q->cap ? q->cap * 2 : 16;
    q->chains = realloc(q->chains, (size_t)q->cap * sizeof *q->chains);
    if (q->chains == NULL) abort();
  }
  q->chains[q->n++] = chain;
  ready_push(g, s);
}

/* Takes up to g->batch events of sender s (under the lock). */
static int take_batch(ingest_t *g, int s, int *out) {
  squeue_t *q = &g->q[s];
  int n = 0;
  while (n < g->batch && q->head < q->n) {
    const bm_chain_t *c = &g->w->chains[q->chains[q->head]];
    while (n < g->batch && q->pos < c->n) out[n++] = c->first + q->pos++;
    if (q->pos == c->n) {
      q->head++;
      q->pos = 0;
    }
  }
  return n;
}

static void count_code(ingest_t *g, const char *code) {
  for (int i = 0; i < g->ncodes; i++)
    if (strcmp(g->codes[i].code, code) == 0) {
      g->codes[i].n++;
      return;
    }
  if (g->ncodes < 32) {
    g->codes[g->ncodes].code = strdup(code);
    g->codes[g->ncodes++].n = 1;
  }
}

static void *ingest_worker(void *arg) {
  ingest_t *g = arg;
  conn_t c;
  if (conn_init(&c) != 0) return NULL;
  int *idx = calloc((size_t)g->batch, sizeof *idx);
  char *status = calloc((size_t)g->batch, 1);
  bb_lat_t lat = {0};
  unsigned seed = (unsigned)((uintptr_t)&c >> 4) ^ (unsigned)time(NULL); /* this thread's jitter */
  tl_buf_t body;
  tl_buf_init(&body);
  pthread_mutex_lock(&g->mu);
  for (;;) {
    while (g->rcount == 0 && g->done < g->total && !g->failed && g->inflight > 0)
      pthread_cond_wait(&g->cv, &g->mu);
    if (g->done >= g->total || g->failed) break;
    if (g->rcount == 0) { /* nothing in flight, nothing ready: chains wait for each other */
      fprintf(stderr, "ingest: stuck with %ld of %ld events sent (a bug in the model)\n", g->done, g->total);
      g->failed = 1;
      break;
    }
    g->inflight++;
    int s = g->ready[g->rhead];
    g->rhead = (g->rhead + 1) % g->nsenders;
    g->rcount--;
    g->q[s].queued = 0;
    g->q[s].busy = 1;
    int n = take_batch(g, s, idx);
    pthread_mutex_unlock(&g->mu);

    tl_buf_reset(&body);
    int rc = tl_buf_append(&body, "{\"events\":[", 11);
    for (int i = 0; i < n; i++) {
      if (i) rc |= tl_buf_append(&body, ",", 1);
      rc |= tl_buf_append(&body, g->w->events[idx[i]].json, g->w->events[idx[i]].len);
    }
    rc |= tl_buf_append(&body, "]}", 2);
    if (rc) abort();
    const char *token = g->r->senders[s].token;
    int tries = 0, ok = 0;
    long retries = 0, e503 = 0, ra = 0;
    for (;;) {
      double t = bm_now_s();
      int hrc = http_do(&c, "POST", "/v1/events", token, body.data, body.len);
      double ms = (bm_now_s() - t) * 1000;
      if (hrc == 0 && c.status == 200) {
        bb_lat_add(&lat, ms);
        if (ms > 10000) /* worth a look: which sender waited, when */
          fprintf(stderr, "ingest: slow request: %.1f s, %s %s, %d events, %.1f s after the start\n", ms / 1000,
                  g->r->senders[s].role == BM_COLLECTOR ? "site" : g->r->senders[s].role == BM_COURIER ? "courier" : "lab",
                  g->r->senders[s].code, n, bm_now_s() - g->t0);
        ok = 1;
        break;
      }
      if (hrc == 0 && c.status != 503 && c.status != 429) {
        fprintf(stderr, "ingest: HTTP %ld: %.300s\n", c.status, tl_buf_cstr(&c.resp));
        break;
      }
      if (hrc == 0) {
        e503++;
        ra += c.retry_after;
      } else fprintf(stderr, "ingest: %s (retrying)\n", c.err);
      if (++tries > 200) break;
      retries++;
      /* the same events again (ids make it idempotent): after 100 ms, the worst case for the
       * server, or as told, spread so that the refused do not come back together */
      double wait_ms = hrc == 0 ? 100 : 200;
      if (hrc == 0 && g->told && c.retry_after_s > 0)
        wait_ms = c.retry_after_s * 1000 * (0.5 + (double)rand_r(&seed) / RAND_MAX);
      sleep_ms(wait_ms);
    }
    /* statuses, in order */
    memset(status, 'x', (size_t)n);
    cJSON *root = ok ? cJSON_ParseWithLength(c.resp.data, c.resp.len) : NULL;
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(root, "results");
    if (ok && cJSON_GetArraySize(results) != n) ok = 0;
    int k = 0;
    const char *codes[1000];
    for (const cJSON *it = results ? results->child : NULL; it && k < n; it = it->next, k++) {
      const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "status");
      const char *v = cJSON_IsString(st) ? st->valuestring : "";
      status[k] = v[0] == 'a' ? 'a' : v[0] == 'd' ? 'd' : 'r';
      const cJSON *code = cJSON_GetObjectItemCaseSensitive(it, "code");
      codes[k] = cJSON_IsString(code) ? code->valuestring : "?";
    }

    pthread_mutex_lock(&g->mu);
    g->inflight--;
    g->requests++;
    g->retries += retries;
    g->errors503 += e503;
    g->retry_after += ra;
    if (!ok) {
      g->failed = 1;
      cJSON_Delete(root);
      pthread_cond_broadcast(&g->cv);
      break;
    }
    for (int i = 0; i < n; i++) {
      bm_event_t *e = &g->w->events[idx[i]];
      if (status[i] == 'a') g->accepted++;
      else if (status[i] == 'd') g->duplicate++;
      else {
        g->rejected++;
        count_code(g, codes[i]);
        if (g->rejected <= 5)
          fprintf(stderr, "ingest: rejected %s (%s): %.200s\n", bm_type_names[e->type], codes[i], e->json);
      }
      if (e->then >= 0 && --g->w->chains[e->then].waits == 0) chain_release(g, e->then);
    }
    cJSON_Delete(root);
    long before = g->done;
    g->done += n;
    double now = bm_now_s();
    if (before < g->mark10 && g->done >= g->mark10) g->t10 = now;
    if (before < g->mark90 && g->done >= g->mark90) g->t90 = now;
    /* a line per tenth of the workload: the rate as the database grows */
    long tenth = g->total / 10 > 0 ? g->total / 10 : 1;
    if (g->done / tenth != before / tenth && g->done < g->total) {
      printf("ingest: %3ld%% after %6.1f s: %6.0f events/s in the last tenth\n", g->done * 100 / g->total,
             now - g->t0, (double)(g->done - g->last_mark) / (now - (g->last_t > 0 ? g->last_t : g->t0)));
      g->last_mark = g->done;
      g->last_t = now;
    }
    g->q[s].busy = 0;
    ready_push(g, s);
    /* the end, or nothing in flight: every waiting worker must look (done, or stuck) */
    if (g->done >= g->total || g->inflight == 0) pthread_cond_broadcast(&g->cv);
  }
  bb_lat_merge(&g->lat, &lat);
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  bb_lat_free(&lat);
  tl_buf_dispose(&body);
  free(idx);
  free(status);
  conn_dispose(&c);
  return NULL;
}

static int load_registry(int argc, char **argv, bm_registry_t *r) {
  const char *path = bb_opt(argc, argv, "--registry", NULL);
  if (path == NULL) {
    fprintf(stderr, "--registry is required\n");
    return -1;
  }
  return bm_registry_load(r, path);
}

static int cmd_ingest(int argc, char **argv) {
  bm_registry_t r;
  if (load_registry(argc, argv, &r) != 0) return 1;
  bm_params_t p;
  bb_workload_params(argc, argv, &p);
  bm_workload_t w;
  double tg = bm_now_s();
  if (bm_workload_build(&w, &r, &p) != 0) return 1;
  if (w.max_at > bm_wall_ms() + 5 * 60000) {
    fprintf(stderr, "ingest: events would lie in the future: pass an earlier --base-ms\n");
    return 1;
  }
  int conns = (int)bb_opt_long(argc, argv, "--conns", 32);
  ingest_t g;
  memset(&g, 0, sizeof g);
  g.w = &w;
  g.r = &r;
  g.batch = (int)bb_opt_long(argc, argv, "--batch", 100);
  g.told = strcmp(bb_opt(argc, argv, "--retry-wait", "100ms"), "told") == 0;
  if (g.batch < 1 || g.batch > 1000) g.batch = 100;
  g.nsenders = r.nsites + r.ncouriers + r.nlabs;
  g.q = calloc((size_t)g.nsenders, sizeof *g.q);
  g.ready = calloc((size_t)g.nsenders, sizeof *g.ready);
  g.total = w.nevents;
  g.mark10 = w.nevents / 10;
  g.mark90 = w.nevents - w.nevents / 10;
  pthread_mutex_init(&g.mu, NULL);
  pthread_cond_init(&g.cv, NULL);
  printf("ingest: workload tag %s: %d events (%ld samples of %ld persons, %ld tubes, %ld boxes, %ld pooled positives),"
         " %.1f MB of JSON, built in %.1f s\n",
         p.tag, w.nevents, w.samples, w.persons, w.tubes, w.boxes, w.positives, (double)w.bytes / 1e6, bm_now_s() - tg);
  printf("ingest: persons %ld to %ld of person block %d (a later run on this cluster: --person-offset %ld or more)\n",
         p.person_offset, p.person_offset + w.persons - 1, p.person_block, p.person_offset + w.persons);
  for (int i = 0; i < w.nchains; i++)
    if (w.chains[i].waits == 0) chain_release(&g, i);
  double cpu0 = bb_cpu_self();
  g.t0 = bm_now_s();
  pthread_t *th = calloc((size_t)conns, sizeof *th);
  for (int i = 0; i < conns; i++) pthread_create(&th[i], NULL, ingest_worker, &g);
  for (int i = 0; i < conns; i++) pthread_join(th[i], NULL);
  double secs = bm_now_s() - g.t0, cpu = bb_cpu_self() - cpu0;
  double eps = (double)g.accepted / secs;
  double sustained = g.t90 > g.t10 ? (double)(g.mark90 - g.mark10) / (g.t90 - g.t10) : eps;
  double p50 = bb_lat_pct(&g.lat, 0.5), p99 = bb_lat_pct(&g.lat, 0.99), mx = bb_lat_pct(&g.lat, 1.0);
  printf("ingest: %ld accepted, %ld duplicate, %ld rejected of %ld events; %ld requests (%ld retried, %ld answered"
         " 503/429, %ld of them with Retry-After) over %d connections in %.2f s\n",
         g.accepted, g.duplicate, g.rejected, g.total, g.requests, g.retries, g.errors503, g.retry_after, conns, secs);
  printf("ingest: %.0f accepted events/s (%.0f/s between 10%% and 90%% of the events);"
         " request latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; load generator CPU %.1f s\n",
         eps, sustained, p50, p99, mx, cpu);
  for (int i = 0; i < g.ncodes; i++) printf("ingest: rejected %s: %ld\n", g.codes[i].code, g.codes[i].n);
  printf("result ingest tag=%s events=%ld accepted=%ld duplicate=%ld rejected=%ld samples=%ld requests=%ld"
         " retries=%ld busy=%ld busy_retry_after=%ld conns=%d batch=%d seconds=%.3f eps=%.0f eps_sustained=%.0f"
         " p50_ms=%.2f p99_ms=%.2f max_ms=%.2f cpu_s=%.2f ok=%d\n",
         p.tag, g.total, g.accepted, g.duplicate, g.rejected, w.samples, g.requests, g.retries, g.errors503,
         g.retry_after, conns, g.batch,
         secs, eps, sustained, p50, p99, mx, cpu, !g.failed && g.done == g.total);
  int status = g.failed || g.done != g.total ? 1 : 0;
  bb_lat_free(&g.lat);
  for (int i = 0; i < g.nsenders; i++) free(g.q[i].chains);
  free(g.q);
  free(g.ready);
  free(th);
  bm_workload_dispose(&w);
  bm_registry_dispose(&r);
  return status;
}

/* ---------- single: one event per request ---------- */

typedef struct {
  bm_workload_t *w;
  bm_registry_t *r;
  int k, conns;
  double rate, t0, seconds;
  int *pos;          /* next event of each site's chain (shared array, each site owned by one thread) */
  long sent, accepted, rejected, errors, late, busy, busy_retry_after, unsent;
  bb_lat_t lat, service;
  int nsec;          /* seconds of the run, each with its requests and those over SLOW_MS */
  atomic_long *per_sec, *slow_sec; /* shared by every thread */
} single_t;

/* A request slower than this (from its scheduled time) makes its second a slow one. */
#define SLOW_MS 10.0

/* The machine's CPU time stolen by the hypervisor, second by second from t0 (/proc/stat), so
 * that a slow second can be told apart from a second in which the virtual cores did not run.
 * steal[k] and total[k] are jiffies of second k, all cores; zeros where /proc/stat is absent. */
typedef struct {
  double t0;
  int nsec;
  long long *steal, *total;
} steal_watch_t;

static int cpu_jiffies(long long *steal, long long *total) {
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return -1;
  long long v[8] = {0};
  int n = fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4],
                 &v[5], &v[6], &v[7]);
  fclose(f);
  if (n != 8) return -1;
  *total = 0;
  for (int i = 0; i < 8; i++) *total += v[i];
  *steal = v[7];
  return 0;
}

static void *steal_watch(void *arg) {
  steal_watch_t *sw = arg;
  long long s0, t0;
  sleep_until(sw->t0);
  if (cpu_jiffies(&s0, &t0) != 0) return NULL;
  for (int k = 0; k < sw->nsec; k++) {
    long long s1, t1;
    sleep_until(sw->t0 + k + 1);
    if (cpu_jiffies(&s1, &t1) != 0) return NULL;
    sw->steal[k] = s1 - s0;
    sw->total[k] = t1 - t0;
    s0 = s1;
    t0 = t1;
  }
  return NULL;
}

static void *single_worker(void *arg) {
  single_t *s = arg;
  conn_t c;
  if (conn_init(&c) != 0) return NULL;
  int nsites = s->w->nchains; /* site-only workload: chain i is site i */
  int own[10000], nown = 0;
  for (int i = s->k; i < nsites && nown < 10000; i += s->conns) own[nown++] = i;
  char body[4096];
  /* The connection is made before the clock starts: handshakes are not part of the figures. */
  if (http_do(&c, "GET", "/healthz", NULL, NULL, 0) != 0 || c.status != 200)
    fprintf(stderr, "single: warm-up: %s %ld\n", c.err, c.status);
  sleep_until(s->t0);
  for (long j = 0; nown > 0; j++) {
    double sched = s->rate > 0 ? s->t0 + (double)(s->k + j * s->conns) / s->rate : bm_now_s();
    if (sched - s->t0 >= s->seconds) break;
    if (s->rate > 0 && bm_now_s() > s->t0 + s->seconds + 5) {
      /* Far behind the schedule: what is left counts as not sent (the run must end). */
      for (long k = j; s->t0 + (double)(s->k + k * s->conns) / s->rate - s->t0 < s->seconds; k++) s->unsent++;
      break;
    }
    if (s->rate > 0) sleep_until(sched);
    int site = own[j % nown];
    const bm_chain_t *ch = &s->w->chains[site];
    if (s->pos[site] >= ch->n) break; /* the workload is used up */
    const bm_event_t *e = &s->w->events[ch->first + s->pos[site]++];
    int n = snprintf(body, sizeof body, "{\"events\":[%s]}", e->json);
    double t = bm_now_s();
    if (s->rate > 0 && t - sched > 0.001) s->late++;
    int hrc = http_do(&c, "POST", "/v1/events", s->r->senders[ch->sender].token, body, (size_t)n);
    double done = bm_now_s();
    s->sent++;
    if (hrc == 0 && (c.status == 503 || c.status == 429)) {
      s->busy++;
      s->busy_retry_after += c.retry_after;
      s->pos[site]--; /* refused whole: the site sends the same event again, as a phone would */
    }
    if (hrc != 0 || c.status != 200) {
      s->errors++;
      if (hrc != 0 && s->errors < 5) fprintf(stderr, "single: %s\n", c.err);
      if (hrc == 0 && c.status != 503 && c.status != 429 && s->errors < 5)
        fprintf(stderr, "single: HTTP %ld %.200s\n", c.status, tl_buf_cstr(&c.resp));
      continue;
    }
    if (strstr(tl_buf_cstr(&c.resp), "\"status\":\"accepted\"")) s->accepted++;
    else {
      s->rejected++;
      if (s->rejected < 5) fprintf(stderr, "single: not accepted: %.300s\n", tl_buf_cstr(&c.resp));
    }
    bb_lat_add(&s->lat, (done - sched) * 1000);
    bb_lat_add(&s->service, (done - t) * 1000);
    int sec = (int)(sched - s->t0);
    if (sec >= 0 && sec < s->nsec) {
      atomic_fetch_add(&s->per_sec[sec], 1);
      if ((done - sched) * 1000 > SLOW_MS) atomic_fetch_add(&s->slow_sec[sec], 1);
    }
  }
  conn_dispose(&c);
  return NULL;
}

/* The run second by second: the requests over SLOW_MS and the share of the machine the
 * hypervisor took, each second; a second with more than 1 % of its requests over SLOW_MS
 * misses the p99 target on its own ("slow"). A slow tail that comes with stolen time is the
 * virtual machine's neighbours, not the daemon (docs/PERFORMANCE.md, thirteenth update). */
static void seconds_report(const char *label, int nsec, const atomic_long *per_sec,
                           const atomic_long *slow_sec, const steal_watch_t *sw) {
  long long steal[2] = {0, 0}, total[2] = {0, 0};
  int nslow = 0, nfull = 0;
  char list[2048] = "";
  size_t used = 0;
  for (int k = 0; k < nsec; k++) {
    long n = atomic_load(&per_sec[k]), over = atomic_load(&slow_sec[k]);
    if (n == 0) continue; /* the last, partial second of a run that ended on time */
    int slow = over * 100 > n;
    double pct = sw->total[k] > 0 ? 100.0 * (double)sw->steal[k] / (double)sw->total[k] : 0.0;
    nfull++;
    nslow += slow;
    steal[slow] += sw->steal[k];
    total[slow] += sw->total[k];
    if (used + 24 < sizeof list)
      used += (size_t)snprintf(list + used, sizeof list - used, " %d:%ld/%.0f%%", k, over, pct);
  }
  double pct[2];
  for (int i = 0; i < 2; i++) pct[i] = total[i] > 0 ? 100.0 * (double)steal[i] / (double)total[i] : 0.0;
  printf("%s: second:requests over %.0f ms/share of the cores the hypervisor took:%s\n", label, SLOW_MS, list);
  char others[64] = "";
  if (nslow < nfull) snprintf(others, sizeof others, ", %.1f %% in the others", pct[0]);
  printf("%s: %d of %d seconds had over 1 %% of their requests over %.0f ms; the hypervisor took %.1f %% of the"
         " cores in those seconds%s\n",
         label, nslow, nfull, SLOW_MS, pct[1], others);
  printf("result %s_seconds slow=%d of=%d steal_slow_pct=%.2f steal_other_pct=%.2f\n", label, nslow, nfull, pct[1],
         pct[0]);
}

static int cmd_single(int argc, char **argv) {
  bm_registry_t r;
  if (load_registry(argc, argv, &r) != 0) return 1;
  bm_params_t p;
  bb_workload_params(argc, argv, &p);
  p.site_only = 1;
  bm_workload_t w;
  if (bm_workload_build(&w, &r, &p) != 0) return 1;
  int conns = (int)bb_opt_long(argc, argv, "--conns", 50);
  double rate = bb_opt_double(argc, argv, "--rate", 1000);
  double seconds = bb_opt_double(argc, argv, "--seconds", 10);
  const char *label = bb_opt(argc, argv, "--label", rate > 0 ? "single" : "single_closed");
  /* Persons are numbered per site, each site's block of them one after the other, so a run
   * that sends only the first events of each site still spans the whole range: the next run
   * on the same cluster and person block needs --person-offset at least its end. */
  printf("%s: persons %ld to %ld of person block %d (a later run on this cluster: --person-offset %ld or more)\n",
         label, p.person_offset, p.person_offset + w.persons - 1, p.person_block, p.person_offset + w.persons);
  int *pos = calloc((size_t)w.nchains, sizeof *pos);
  single_t *ts = calloc((size_t)conns, sizeof *ts);
  pthread_t *th = calloc((size_t)conns, sizeof *th);
  double cpu0 = bb_cpu_self();
  double t0 = bm_now_s() + 1.0 + (double)conns / 200.0; /* after every thread's warm-up request */
  int nsec = (int)seconds + 1;
  atomic_long *per_sec = calloc((size_t)nsec, sizeof *per_sec);
  atomic_long *slow_sec = calloc((size_t)nsec, sizeof *slow_sec);
  steal_watch_t sw = {.t0 = t0, .nsec = nsec, .steal = calloc((size_t)nsec, sizeof(long long)),
                      .total = calloc((size_t)nsec, sizeof(long long))};
  if (per_sec == NULL || slow_sec == NULL || sw.steal == NULL || sw.total == NULL) {
    fprintf(stderr, "single: out of memory\n");
    return 1;
  }
  pthread_t watcher;
  int watching = pthread_create(&watcher, NULL, steal_watch, &sw) == 0;
  for (int i = 0; i < conns; i++) {
    ts[i] = (single_t){.w = &w, .r = &r, .k = i, .conns = conns, .rate = rate, .t0 = t0, .seconds = seconds,
                       .pos = pos, .nsec = nsec, .per_sec = per_sec, .slow_sec = slow_sec};
    pthread_create(&th[i], NULL, single_worker, &ts[i]);
  }
  single_t sum = {0};
  for (int i = 0; i < conns; i++) {
    pthread_join(th[i], NULL);
    sum.sent += ts[i].sent;
    sum.accepted += ts[i].accepted;
    sum.rejected += ts[i].rejected;
    sum.errors += ts[i].errors;
    sum.late += ts[i].late;
    sum.busy += ts[i].busy;
    sum.unsent += ts[i].unsent;
    sum.busy_retry_after += ts[i].busy_retry_after;
    bb_lat_merge(&sum.lat, &ts[i].lat);
    bb_lat_merge(&sum.service, &ts[i].service);
    bb_lat_free(&ts[i].lat);
    bb_lat_free(&ts[i].service);
  }
  double secs = bm_now_s() - t0, cpu = bb_cpu_self() - cpu0;
  double p50 = bb_lat_pct(&sum.lat, 0.5), p99 = bb_lat_pct(&sum.lat, 0.99), mx = bb_lat_pct(&sum.lat, 1.0);
  double s50 = bb_lat_pct(&sum.service, 0.5), s99 = bb_lat_pct(&sum.service, 0.99);
  char how[64];
  if (rate > 0) snprintf(how, sizeof how, "open loop, %.0f/s offered", rate);
  else snprintf(how, sizeof how, "closed loop");
  printf("%s: %ld requests of 1 event (%s) over %d connections in %.1f s: %ld accepted (%.0f/s),"
         " %ld rejected, %ld failed (%ld answered 503/429, %ld of them with Retry-After)%s\n",
         label, sum.sent, how, conns, secs, sum.accepted,
         (double)sum.accepted / secs, sum.rejected, sum.errors, sum.busy, sum.busy_retry_after,
         sum.unsent ? "; the schedule fell more than 5 s behind" : "");
  if (sum.unsent)
    printf("%s: %ld scheduled requests were never sent (the percentiles below cover the sent ones only:"
           " the real ones are worse)\n", label, sum.unsent);
  printf("%s: latency%s p50 %.2f ms, p99 %.2f ms, max %.2f ms (service time p50 %.2f, p99 %.2f); load generator CPU %.1f s\n",
         label, rate > 0 ? " from the scheduled time" : "", p50, p99, mx, s50, s99, cpu);
  printf("result %s requests=%ld accepted=%ld rejected=%ld errors=%ld conns=%d rate=%.0f seconds=%.3f eps=%.0f"
         " p50_ms=%.2f p99_ms=%.2f max_ms=%.2f svc_p50_ms=%.2f svc_p99_ms=%.2f late=%ld busy=%ld busy_retry_after=%ld"
         " unsent=%ld cpu_s=%.2f\n",
         label, sum.sent, sum.accepted, sum.rejected, sum.errors, conns, rate, secs, (double)sum.accepted / secs, p50,
         p99, mx, s50, s99, sum.late, sum.busy, sum.busy_retry_after, sum.unsent, cpu);
  if (watching) pthread_join(watcher, NULL);
  if (rate > 0) seconds_report(label, nsec, per_sec, slow_sec, &sw); /* (a closed loop's latency is its queue) */
  bb_lat_free(&sum.lat);
  bb_lat_free(&sum.service);
  free(per_sec);
  free(slow_sec);
  free(sw.steal);
  free(sw.total);
  free(pos);
  free(ts);
  free(th);
  bm_workload_dispose(&w);
  bm_registry_dispose(&r);
  return 0;
}

/* ---------- idle: many TLS keep-alive connections ---------- */

static long rss_kb(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  long kb = -1;
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

typedef struct {
  int fd;
  SSL *ssl;
} tconn_t;

/* Sends GET /healthz and reads the whole answer. 0 when it was a 200. */
static int tconn_ping(tconn_t *t) {
  static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
  if (SSL_write(t->ssl, req, (int)sizeof req - 1) <= 0) return -1;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    int n = SSL_read(t->ssl, buf + have, (int)(sizeof buf - 1 - have));
    if (n <= 0) return -1;
    have += (size_t)n;
    buf[have] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL) continue;
    const char *cl = strcasestr(buf, "content-length:");
    long len = cl ? strtol(cl + 15, NULL, 10) : 0;
    if ((size_t)(end + 4 - buf) + (size_t)len <= have) return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
    if (have >= sizeof buf - 1) return -1;
  }
}

static int cmd_idle(int argc, char **argv) {
  long n = bb_opt_long(argc, argv, "--conns", 1000);
  long pid = bb_opt_long(argc, argv, "--pid", 0);
  double hold = bb_opt_double(argc, argv, "--hold", 3);
  const char *hp = strstr(g_url, "://");
  hp = hp ? hp + 3 : g_url;
  char host[64] = "127.0.0.1";
  int port = 0;
  if (sscanf(hp, "%63[^:]:%d", host, &port) != 2 || pid <= 0) {
    fprintf(stderr, "idle: --url https://IP:PORT and --pid are required\n");
    return 2;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (g_cacert == NULL || SSL_CTX_load_verify_locations(ctx, g_cacert, NULL) != 1) {
    fprintf(stderr, "idle: --cacert is required\n");
    return 2;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &sa.sin_addr);
  tconn_t *t = calloc((size_t)n, sizeof *t);
  long rss0 = rss_kb(pid), opened = 0, resumed = 0, failed = 0;
  SSL_SESSION *sess = NULL;
  double t0 = bm_now_s();
  for (long i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      fprintf(stderr, "idle: connection %ld: %s\n", i, strerror(errno));
      if (fd >= 0) close(fd);
      failed++;
      break;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    if (sess) SSL_set_session(ssl, sess);
    tconn_t tc = {fd, ssl};
    if (SSL_connect(ssl) != 1 || tconn_ping(&tc) != 0) {
      unsigned long e = ERR_get_error();
      fprintf(stderr, "idle: connection %ld: TLS or HTTP failed: %s\n", i, e ? ERR_error_string(e, NULL) : "no answer");
      SSL_free(ssl);
      close(fd);
      failed++;
      break;
    }
    if (SSL_session_reused(ssl)) resumed++;
    /* Resume the next handshake with this connection's ticket (read with the answer), as a
     * client that reconnects would: a TLS 1.3 ticket is good for one resumption. */
    if (sess) SSL_SESSION_free(sess);
    sess = SSL_get1_session(ssl);
    t[opened++] = tc;
  }
  double topen = bm_now_s() - t0;
  sleep_ms(hold * 1000);
  long rss1 = rss_kb(pid);
  /* still there? one in a hundred answers again */
  long alive = 0, probed = 0;
  for (long i = 0; i < opened; i += 100, probed++) alive += tconn_ping(&t[i]) == 0;
  long rss2 = rss_kb(pid);
  printf("idle: %ld TLS keep-alive connections opened in %.1f s (%ld resumed sessions, %ld failed); "
         "daemon VmRSS %.1f MB before, %.1f MB holding them (%.1f KB per connection); %ld/%ld probed still answer\n",
         opened, topen, resumed, failed, (double)rss0 / 1024, (double)rss1 / 1024,
         opened ? (double)(rss1 - rss0) / (double)opened : 0, alive, probed);
  printf("result idle conns=%ld failed=%ld resumed=%ld rss0_kb=%ld rss_kb=%ld rss_after_probe_kb=%ld per_conn_kb=%.2f"
         " alive=%ld probed=%ld open_s=%.2f\n",
         opened, failed, resumed, rss0, rss1, rss2, opened ? (double)(rss1 - rss0) / (double)opened : 0, alive, probed,
         topen);
  for (long i = 0; i < opened; i++) {
    SSL_free(t[i].ssl);
    close(t[i].fd);
  }
  if (sess) SSL_SESSION_free(sess);
  free(t);
  SSL_CTX_free(ctx);
  return failed || alive != probed ? 1 : 0;
}

/* ---------- stats latency ---------- */

static int cmd_stats(int argc, char **argv) {
  bm_registry_t r;
  if (load_registry(argc, argv, &r) != 0) return 1;
  const char *region = bb_opt(argc, argv, "--region", r.county);
  long n = bb_opt_long(argc, argv, "--n", 100);
  const char *label = bb_opt(argc, argv, "--label", "stats");
  char path[256];
  snprintf(path, sizeof path, "/v1/stats?region=%s&round=%s", region, r.round);
  conn_t c;
  if (conn_init(&c) != 0) return 1;
  bb_lat_t lat = {0};
  long sampled = -1, children = -1, errors = 0;
  size_t bytes = 0;
  for (long i = 0; i <= n; i++) {
    double t = bm_now_s();
    int rc = http_do(&c, "GET", path, r.viewer_token, NULL, 0);
    double ms = (bm_now_s() - t) * 1000;
    if (rc != 0 || c.status != 200) {
      if (errors++ < 3) fprintf(stderr, "stats: %s %ld %.200s\n", c.err, c.status, tl_buf_cstr(&c.resp));
      continue;
    }
    if (i == 0) { /* the first one warms the connection up */
      cJSON *o = cJSON_ParseWithLength(c.resp.data, c.resp.len);
      const cJSON *tot = cJSON_GetObjectItemCaseSensitive(o, "totals");
      const cJSON *ps = cJSON_GetObjectItemCaseSensitive(tot, "persons_sampled");
      if (cJSON_IsNumber(ps)) sampled = (long)ps->valuedouble;
      children = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "children"));
      bytes = c.resp.len;
      cJSON_Delete(o);
      continue;
    }
    bb_lat_add(&lat, ms);
  }
  double p50 = bb_lat_pct(&lat, 0.5), p99 = bb_lat_pct(&lat, 0.99), mx = bb_lat_pct(&lat, 1.0);
  printf("%s: GET /v1/stats?region=%s&round=%s (%ld children, %zu bytes, persons_sampled %ld): "
         "p50 %.2f ms, p99 %.2f ms, max %.2f ms over %zu requests\n",
         label, region, r.round, children, bytes, sampled, p50, p99, mx, lat.n);
  printf("result %s region=%s persons_sampled=%ld children=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f n=%zu errors=%ld\n",
         label, region, sampled, children, p50, p99, mx, lat.n, errors);
  bb_lat_free(&lat);
  conn_dispose(&c);
  bm_registry_dispose(&r);
  return errors ? 1 : 0;
}

/* ---------- model check (no network) ---------- */

static int cmd_model(int argc, char **argv) {
  bm_registry_t r;
  if (bm_registry_shape(&r, (int)bb_opt_long(argc, argv, "--townships", 20), (int)bb_opt_long(argc, argv, "--sites", 200),
                        (int)bb_opt_long(argc, argv, "--couriers", 20), (int)bb_opt_long(argc, argv, "--labs", 7)) != 0)
    return 1;
  bm_params_t p;
  bb_workload_params(argc, argv, &p);
  p.sites = 0;
  bm_workload_t w;
  double t = bm_now_s();
  if (bm_workload_build(&w, &r, &p) != 0) return 1;
  long per[BM_NTYPES] = {0};
  for (int i = 0; i < w.nevents; i++) per[w.events[i].type]++;
  printf("model: %d events in %d chains (%ld samples, %ld persons, %ld tubes, %ld boxes, %ld positives), %.1f MB, %.2f s\n",
         w.nevents, w.nchains, w.samples, w.persons, w.tubes, w.boxes, w.positives, (double)w.bytes / 1e6,
         bm_now_s() - t);
  for (int k = 0; k < BM_NTYPES; k++) printf("model:   %-12s %ld\n", bm_type_names[k], per[k]);
  /* every synthetic ID number passes the daemon's own check */
  long bad = 0;
  for (long i = 0; i < 200000; i++) {
    char id[19], norm[19];
    bm_resident_id(p.person_block, i, id);
    bad += tl_resident_id_normalize(id, 18, norm) != 0;
  }
  long show = bb_opt_long(argc, argv, "--show", 0);
  for (long i = 0; i < show && i < w.nevents; i++) printf("%s\n", w.events[i].json);
  printf("model: %ld of 200000 synthetic resident IDs fail tl_resident_id_normalize\n", bad);
  bm_workload_dispose(&w);
  bm_registry_dispose(&r);
  return bad ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tl_loadgen setup|ingest|single|idle|stats|model [--url U --cacert F --registry F ...]\n");
    return 2;
  }
  g_url = bb_opt(argc, argv, "--url", g_url);
  g_cacert = bb_opt(argc, argv, "--cacert", NULL);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int rc;
  const char *cmd = argv[1];
  if (strcmp(cmd, "setup") == 0) rc = cmd_setup(argc, argv);
  else if (strcmp(cmd, "ingest") == 0) rc = cmd_ingest(argc, argv);
  else if (strcmp(cmd, "single") == 0) rc = cmd_single(argc, argv);
  else if (strcmp(cmd, "idle") == 0) rc = cmd_idle(argc, argv);
  else if (strcmp(cmd, "stats") == 0) rc = cmd_stats(argc, argv);
  else if (strcmp(cmd, "model") == 0) rc = cmd_model(argc, argv);
  else {
    fprintf(stderr, "tl_loadgen: unknown command %s\n", cmd);
    rc = 2;
  }
  curl_global_cleanup();
  return rc;
}
