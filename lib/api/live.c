/* The live stats hub of live.h. */
#include "api/live.h"

#include "api/auth.h"
#include "api/authcache.h"
#include "base/log.h"
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_MS 300
#define HEARTBEAT_MS 15000

typedef struct client_s {
  struct client_s *next;
  tl_http_exchange_t *x;   /* held */
  char region[40];
  char day[16];            /* "" = today */
  char round[40];          /* "" = the day's rounds */
  int digits;              /* region is a region code (else a site) */
  int dirty;               /* figures may have changed since the last snapshot */
  int querying;            /* a snapshot query for it is in the database */
  int stale;               /* dirtied again while querying: that answer may predate it */
  long long version;       /* of the last snapshot sent (or Last-Event-ID); -1: none yet */
} client_t;

/* One snapshot query for every dirty client of the same (region, day, round). */
typedef struct {
  tl_live_t *hub;
  char region[40], day[16], round[40];
} query_t;

struct tl_live_s {
  uv_loop_t *loop;
  tl_api_t *api;
  tl_db_pool_t *listen;    /* one connection: LISTEN tl_stats, tl_principals (authcache.h) */
  uv_timer_t flush, heartbeat;
  client_t *clients;
  size_t nclients;
  int inflight;            /* snapshot queries in the database */
  int stopping;
  int handles_open;
  void (*done)(void *);
  void *done_arg;
};

static void hub_maybe_free(tl_live_t *l);

static int same_key(const client_t *c, const char *region, const char *day, const char *round) {
  return strcmp(c->region, region) == 0 && strcmp(c->day, day) == 0 && strcmp(c->round, round) == 0;
}

static void client_drop(tl_live_t *l, client_t *c) {
  client_t **pp = &l->clients;
  while (*pp && *pp != c) pp = &(*pp)->next;
  if (*pp) *pp = c->next;
  l->nclients--;
  tl_http_stream_end(c->x);
  tl_http_exchange_release(c->x);
  free(c);
}

/* Writes to one client; drops it when it is gone or not reading. */
static int client_send(tl_live_t *l, client_t *c, const char *text, size_t len) {
  if (!tl_http_exchange_alive(c->x) || tl_http_stream_write(c->x, text, len) != 0) {
    client_drop(l, c);
    return -1;
  }
  return 0;
}

static void snapshot_done(void *arg, int status, const tl_db_result_t *res) {
  query_t *q = arg;
  tl_live_t *l = q->hub;
  l->inflight--;
  if (l->stopping) {
    free(q);
    hub_maybe_free(l);
    return;
  }
  if (status != 0)
    tl_log(TL_LOG_WARN, "live_snapshot_failed", "status=\"%s\" sqlstate=%s", tl_strerror(status),
           tl_db_result_sqlstate(res));
  const char *json = status == 0 ? tl_db_result_value(res, 0, 0) : NULL;
  const char *ver = status == 0 ? tl_db_result_value(res, 0, 1) : NULL;
  long long version = ver ? strtoll(ver, NULL, 10) : 0;
  tl_buf_t msg;
  tl_buf_init(&msg);
  if (json && tl_buf_appendf(&msg, "id: %lld\nevent: stats\ndata: %s\n\n", version, json) != 0)
    json = NULL;
  for (client_t *c = l->clients, *next; c; c = next) {
    next = c->next;
    if (!c->dirty || !same_key(c, q->region, q->day, q->round)) continue;
    c->querying = 0;
    if (json == NULL) continue; /* database trouble: stay dirty, retry on the next flush */
    /* A notification that came while the query ran may be of a write its snapshot did not
     * see: such a client stays dirty and gets the next flush's snapshot. */
    c->dirty = c->stale;
    c->stale = 0;
    if (version == c->version) continue; /* the client has these figures */
    if (client_send(l, c, msg.data, msg.len) == 0) c->version = version;
  }
  tl_buf_dispose(&msg);
  free(q);
}

static const char snapshot_sql[] =
    "WITH rs AS (SELECT CASE WHEN $3::text IS NOT NULL THEN ARRAY[$3::text] ELSE"
    "  ARRAY(SELECT code FROM rounds WHERE day = coalesce($2::date, current_date)) END AS rounds)"
    " SELECT (l.answer || jsonb_build_object('day', CASE WHEN $3::text IS NULL"
    "  THEN coalesce($2::date, current_date) END, 'round', $3::text))::text, l.version"
    " FROM rs CROSS JOIN LATERAL tl_stats_live($1, rs.rounds) l";

static void on_flush(uv_timer_t *t) {
  tl_live_t *l = t->data;
  if (l->inflight > 0 || l->stopping) return; /* the previous round is still out */
  for (client_t *c = l->clients; c; c = c->next) {
    if (!c->dirty) continue;
    int seen = 0; /* one query per key */
    for (client_t *d = l->clients; d != c && !seen; d = d->next)
      seen = d->dirty && same_key(d, c->region, c->day, c->round);
    if (seen) continue;
    query_t *q = calloc(1, sizeof *q);
    if (q == NULL) return;
    q->hub = l;
    memcpy(q->region, c->region, sizeof q->region);
    memcpy(q->day, c->day, sizeof q->day);
    memcpy(q->round, c->round, sizeof q->round);
    const char *params[] = {q->region, q->day[0] ? q->day : NULL, q->round[0] ? q->round : NULL};
    if (tl_db_exec(l->api->db, snapshot_sql, 3, params, snapshot_done, q) != 0) {
      free(q);
      return; /* the database is away: stay dirty */
    }
    l->inflight++;
    for (client_t *d = c; d; d = d->next)
      if (d->dirty && same_key(d, c->region, c->day, c->round)) d->querying = 1;
  }
}

static void on_heartbeat(uv_timer_t *t) {
  tl_live_t *l = t->data;
  for (client_t *c = l->clients, *next; c; c = next) {
    next = c->next;
    client_send(l, c, ": ping\n\n", 8);
  }
}

/* Whether a NOTIFY payload (the counties whose figures changed) concerns c. */
static int notified(const client_t *c, const char *payload) {
  if (!c->digits) return 1; /* a site: its county is not in the client */
  size_t rl = strlen(c->region);
  for (const char *p = payload; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] ? 1 : 0)) {
    size_t n = strcspn(p, ",");
    size_t k = n < rl ? n : rl; /* a county in the region, or the region in a county */
    if (k > 0 && strncmp(p, c->region, k) == 0) return 1;
  }
  return 0;
}

/* A NOTIFY from a write: the counties whose figures changed. NULL: (re)connected, so some
 * notifications may have been missed: everything is dirty. */
static void on_notify(void *arg, const char *channel, const char *payload) {
  tl_live_t *l = arg;
  if (channel == NULL) {
    /* (re)connected and listening: what was cached before may have changed meanwhile */
    tl_authcache_set_on(l->api->auth_cache, 1);
  } else if (strcmp(channel, "tl_principals") == 0) {
    tl_authcache_flush(l->api->auth_cache);
    return;
  }
  for (client_t *c = l->clients; c; c = c->next) {
    if (channel != NULL && payload != NULL && !notified(c, payload)) continue;
    c->dirty = 1;
    if (c->querying) c->stale = 1;
  }
}

static void subscribe(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p,
                      tl_live_t *l, int visible) {
  (void)api;
  (void)p;
  if (!visible) {
    tl_http_reply_error(x, 404, "not_found", "There is no such site in your scope.");
    return;
  }
  client_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tl_http_reply_error(x, 500, "internal", "Out of memory.");
    return;
  }
  tl_http_exchange_query(x, "region", c->region, sizeof c->region);
  if (tl_http_exchange_query(x, "day", c->day, sizeof c->day) < 0) c->day[0] = '\0';
  if (tl_http_exchange_query(x, "round", c->round, sizeof c->round) < 0) c->round[0] = '\0';
  c->digits = tl_valid_region(c->region, strlen(c->region));
  c->version = -1;
  size_t len = 0;
  const char *last = tl_http_request_header(tl_http_exchange_request(x), "last-event-id", &len);
  if (last && len > 0 && len < 20) {
    char v[24];
    memcpy(v, last, len);
    v[len] = '\0';
    c->version = strtoll(v, NULL, 10);
  }
  c->x = x;
  tl_http_exchange_hold(x);
  if (tl_http_stream_start(x, "text/event-stream; charset=utf-8", "X-Accel-Buffering: no\r\n") != 0 ||
      tl_http_stream_write(x, "retry: 3000\n\n", 13) != 0) {
    tl_http_stream_end(x);
    tl_http_exchange_release(x);
    free(c);
    return;
  }
  c->dirty = 1; /* the first snapshot goes out with the next flush */
  c->next = l->clients;
  l->clients = c;
  l->nclients++;
}

typedef struct {
  tl_live_t *hub;
  tl_principal_t who;
} check_t;

static void site_checked(tl_http_exchange_t *x, tl_api_t *api, int status, const tl_db_result_t *res,
                         void *ctx) {
  check_t *k = ctx;
  if (status != 0) {
    tl_api_reply_db_error(x, status);
    return;
  }
  subscribe(x, api, &k->who, k->hub, tl_db_result_rows(res) == 1);
}

static void stream_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  tl_live_t *l = api->live;
  char region[40], day[16], round[40];
  int nr = tl_http_exchange_query(x, "region", region, sizeof region);
  int nd = tl_http_exchange_query(x, "day", day, sizeof day);
  int no = tl_http_exchange_query(x, "round", round, sizeof round);
  int64_t days;
  if (l == NULL || l->stopping) {
    tl_http_reply_error(x, 503, "shutting_down", "The server is restarting; reconnect shortly.");
    return;
  }
  if (nr < 0 || !(tl_valid_region(region, (size_t)nr) || tl_valid_code(region, (size_t)nr))) {
    tl_http_reply_error(x, 400, "invalid_region", "\"region\" must name a region (GB/T 2260) or a site.");
    return;
  }
  if (nd == -2 || (nd >= 0 && tl_date_parse(day, (size_t)nd, &days) != 0) || no == -2 ||
      (no >= 0 && !tl_valid_code(round, (size_t)no))) {
    tl_http_reply_error(x, 400, "invalid_field", "\"day\" must be a date and \"round\" a round code.");
    return;
  }
  if (tl_valid_region(region, (size_t)nr)) {
    if (!tl_principal_sees(p, region)) {
      tl_http_reply_error(x, 403, "out_of_scope", "The region is outside this token's scope.");
      return;
    }
    subscribe(x, api, p, l, 1);
    return;
  }
  if (p->site[0] && strcmp(region, p->site) != 0) {
    tl_http_reply_error(x, 404, "not_found", "There is no such site in your scope.");
    return;
  }
  check_t *k = calloc(1, sizeof *k);
  if (k == NULL) {
    tl_http_reply_error(x, 500, "internal", "Out of memory.");
    return;
  }
  k->hub = l;
  k->who = *p;
  const char *params[] = {region, p->role == TL_ROLE_ADMIN ? "" : p->region};
  tl_api_db(api, x, "SELECT 1 FROM sites WHERE code = $1 AND left(township, length($2)) = $2", 2,
            params, site_checked, k);
}

void tl_live_handler(tl_http_exchange_t *x, void *ctx) {
  tl_live_t *l = ctx;
  tl_api_auth(l->api, x, TL_ROLES_READERS, stream_authed);
}

size_t tl_live_clients(const tl_live_t *l) { return l ? l->nclients : 0; }

int tl_live_start(tl_live_t **out, uv_loop_t *loop, tl_api_t *api, const char *conninfo,
                  const char *tz) {
  tl_live_t *l = calloc(1, sizeof *l);
  if (l == NULL) return TL_ENOMEM;
  l->loop = loop;
  l->api = api;
  tl_db_pool_opts_t po;
  tl_db_pool_opts_defaults(&po);
  po.conninfo = conninfo;
  po.size = 1;
  po.queue_max = 0;
  po.time_zone = tz;
  po.app_name = "tubeloopd-listen";
  int rc = tl_db_pool_new(&l->listen, loop, &po);
  if (rc == 0) rc = tl_db_pool_on_connect(l->listen, "LISTEN tl_stats; LISTEN tl_principals");
  if (rc != 0) {
    tl_db_pool_free(l->listen);
    free(l);
    return rc;
  }
  tl_db_pool_on_notify(l->listen, on_notify, l);
  tl_db_pool_start(l->listen);
  uv_timer_init(loop, &l->flush);
  uv_timer_init(loop, &l->heartbeat);
  l->flush.data = l->heartbeat.data = l;
  uv_timer_start(&l->flush, on_flush, FLUSH_MS, FLUSH_MS);
  uv_timer_start(&l->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
  l->handles_open = 3; /* flush, heartbeat, the listen pool */
  api->live = l;
  *out = l;
  return 0;
}

/* Frees the hub once its handles are closed and no snapshot query can call back. */
static void hub_maybe_free(tl_live_t *l) {
  if (!l->stopping || l->handles_open > 0 || l->inflight > 0) return;
  void (*done)(void *) = l->done;
  void *arg = l->done_arg;
  tl_db_pool_free(l->listen);
  if (l->api->live == l) l->api->live = NULL;
  free(l);
  if (done) done(arg);
}

static void hub_part_closed(tl_live_t *l) {
  l->handles_open--;
  hub_maybe_free(l);
}

static void on_timer_closed(uv_handle_t *h) { hub_part_closed(h->data); }
static void on_pool_closed(void *arg) { hub_part_closed(arg); }

void tl_live_stop(tl_live_t *l, void (*done)(void *), void *arg) {
  if (l->stopping) return;
  l->stopping = 1;
  l->done = done;
  l->done_arg = arg;
  while (l->clients) client_drop(l, l->clients);
  uv_close((uv_handle_t *)&l->flush, on_timer_closed);
  uv_close((uv_handle_t *)&l->heartbeat, on_timer_closed);
  tl_db_pool_close(l->listen, on_pool_closed, l);
}

int tl_live_listening(tl_live_t *l) {
  if (l == NULL || l->stopping) return 0;
  tl_db_pool_poll_notifies(l->listen);
  tl_db_pool_stats_t st;
  tl_db_pool_stats(l->listen, &st);
  return st.connected > 0;
}
