/* `tubeloopd serve` (serve.h). Shutdown order: stop accepting and let in-flight requests
 * finish (bounded), then close the database pool, then the signal handles; uv_run returns
 * when nothing is left and uv_loop_close must then succeed. */
#include "serve.h"

#include "routes.h"

#include "api/api.h"
#include "api/authcache.h"
#include "api/fold.h"
#include "api/live.h"
#include "api/limit.h"
#include "api/overdue.h"
#include "api/sealer.h"
#include "api/web.h"
#include "base/log.h"
#include "crypto/keys.h"
#include "db/pool.h"
#include "http/router.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "net/tls.h"

#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  const tl_config_t *cfg;
  tl_tls_ctx_t *tls;
  tl_db_pool_t *db;
  tl_http_server_t *server;
  tl_router_t router;
  tl_metrics_t metrics;
  tl_api_t api;
  tl_keys_t keys;
  tl_overdue_t overdue;
  tl_sealer_t sealer;
  tl_fold_t fold;
  tl_live_t *live;
  tl_web_t *web;
  int stopping;
} daemon_t;

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_pool_closed(void *arg) {
  daemon_t *d = arg;
  uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
  uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
}

static void on_server_drained(void *arg) {
  daemon_t *d = arg;
  tl_log(TL_LOG_INFO, "drained", "");
  tl_overdue_stop(&d->overdue);
  tl_sealer_stop(&d->sealer);
  tl_fold_stop(&d->fold);
  tl_db_pool_close(d->db, on_pool_closed, d);
}

static void on_live_stopped(void *arg) { (void)arg; }

static void on_signal(uv_signal_t *h, int signum) {
  daemon_t *d = h->data;
  if (d->stopping) return;
  d->stopping = 1;
  size_t open = tl_http_server_connections(d->server);
  /* Stop accepting first (the listener closes now), then end the live streams, which never
   * finish by themselves, and let the rest drain. The log line comes last: once it is
   * written, no new connection gets in. */
  tl_http_server_shutdown(d->server, d->cfg->shutdown_timeout_ms, on_server_drained, d);
  if (d->live) tl_live_stop(d->live, on_live_stopped, d);
  d->live = NULL;
  tl_log(TL_LOG_INFO, "stopping", "signal=%d connections=%zu", signum, open);
}

int tl_serve(const tl_config_t *cfg) {
  daemon_t d;
  memset(&d, 0, sizeof d);
  d.cfg = cfg;
  char err[512];
  int status = 1;
  signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error code, not a signal */
  srand((unsigned)time(NULL) ^ (unsigned)getpid());

  if (cfg->keys && tl_keys_load(&d.keys, cfg->keys, err, sizeof err) != 0) {
    tl_log(TL_LOG_ERROR, "bad_keys", "reason=\"%s\"", err);
    return 1;
  }
  if (!cfg->no_tls && tl_tls_ctx_new(&d.tls, cfg->tls_cert, cfg->tls_key, err, sizeof err) != 0) {
    tl_log(TL_LOG_ERROR, "bad_tls", "reason=\"%s\"", err);
    tl_keys_dispose(&d.keys);
    return 1;
  }
  if (d.tls && cfg->tls_client_ca &&
      tl_tls_ctx_client_ca(d.tls, cfg->tls_client_ca, err, sizeof err) != 0) {
    tl_log(TL_LOG_ERROR, "bad_tls", "reason=\"%s\"", err);
    tl_tls_ctx_free(d.tls);
    tl_keys_dispose(&d.keys);
    return 1;
  }
  if (uv_loop_init(&d.loop) != 0) return 1;

  tl_db_pool_opts_t po;
  tl_db_pool_opts_defaults(&po);
  po.conninfo = cfg->db;
  po.size = cfg->pool_size;
  po.queue_max = cfg->pool_queue;
  po.time_zone = cfg->tz;
  if (tl_db_pool_new(&d.db, &d.loop, &po) != 0 || tl_api_prepare(d.db) != 0) goto done;

  tl_router_init(&d.router);
  d.api.db = d.db;
  d.api.metrics = &d.metrics;
  d.api.keys = &d.keys;
  d.api.tz = cfg->tz;
  d.api.transit_default_min = cfg->transit_default_min;
  d.api.ingest_queue_max = cfg->ingest_queue;
  d.api.ingest_max_wait_ms = cfg->ingest_max_wait_ms;
  d.api.ingest_second_group = cfg->ingest_second_group;
  static tl_limit_t per_token, per_address; /* big tables: not on the stack */
  tl_limit_init(&per_token, cfg->rate_token, 2.0 * cfg->rate_token);
  tl_limit_init(&per_address, cfg->rate_address, 2.0 * cfg->rate_address);
  d.api.per_token = cfg->rate_token > 0 ? &per_token : NULL;
  d.api.per_address = cfg->rate_address > 0 ? &per_address : NULL;
  d.api.device_certs = cfg->device_certs;
  d.overdue.transport_min = cfg->overdue_transport_min;
  d.overdue.test_min = cfg->overdue_test_min;
  d.overdue.followup_min = cfg->overdue_followup_min;
  if (tl_authcache_new(&d.api.auth_cache) != 0 ||
      tl_live_start(&d.live, &d.loop, &d.api, cfg->db, cfg->tz) != 0 ||
      tl_web_load(&d.web, cfg->web_dir) != 0 ||
      tl_daemon_routes(&d.router, &d.api, d.live, d.web) != 0)
    goto done;
  const char *names[TL_ROUTER_MAX_ROUTES];
  for (int i = 0; i < d.router.nroutes; i++) names[i] = d.router.routes[i].pattern;
  tl_metrics_init(&d.metrics, d.router.nroutes, names);

  tl_http_server_opts_t so = {
      .router = &d.router,
      .metrics = &d.metrics,
      .tls = d.tls,
      .header_timeout_ms = cfg->header_timeout_ms,
      .body_timeout_ms = cfg->body_timeout_ms,
      .idle_timeout_ms = cfg->idle_timeout_ms,
      .max_connections = cfg->max_connections,
      .reuseport = cfg->reuseport,
  };
  if (tl_http_server_new(&d.server, &d.loop, &so) != 0) goto done;
  d.api.server = d.server;

  uv_signal_init(&d.loop, &d.sigterm);
  uv_signal_init(&d.loop, &d.sigint);
  d.sigterm.data = d.sigint.data = &d;
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  uv_signal_start(&d.sigint, on_signal, SIGINT);

  tl_db_pool_start(d.db);
  if (tl_overdue_start(&d.overdue, &d.loop, d.db, cfg->sweep_interval_ms) != 0 ||
      tl_fold_start(&d.fold, &d.loop, d.db, 1000) != 0)
    goto done;
  tl_sealer_defaults(&d.sealer);
  d.sealer.keys = &d.keys;
  d.sealer.tz = cfg->tz;
  d.sealer.checkpoint_interval_s = cfg->checkpoint_interval_ms / 1000;
  if (tl_sealer_start(&d.sealer, &d.loop, d.db, cfg->seal_interval_ms) != 0) goto done;
  int rc = tl_http_server_listen(d.server, cfg->listen_host, cfg->listen_port);
  if (rc != 0) {
    tl_log(TL_LOG_ERROR, "listen_failed", "listen=%s error=%s", cfg->listen, tl_strerror(rc));
    d.stopping = 1;
    tl_live_stop(d.live, on_live_stopped, &d);
    d.live = NULL;
    tl_http_server_shutdown(d.server, 0, on_server_drained, &d);
  } else {
    status = 0;
    tl_log(TL_LOG_INFO, "listening", "url=%s://%s:%d/ pool=%d device_certs=%s pid=%d",
           d.tls ? "https" : "http", cfg->listen_host, tl_http_server_port(d.server),
           cfg->pool_size, cfg->device_certs_text, (int)getpid());
  }
  uv_run(&d.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&d.loop);
  if (rc != 0) {
    tl_log(TL_LOG_ERROR, "loop_not_empty", "error=%s", uv_strerror(rc));
    status = 1;
  } else if (status == 0) {
    tl_log(TL_LOG_INFO, "stopped", "");
  }
done:
  tl_http_server_free(d.server);
  tl_db_pool_free(d.db);
  tl_tls_ctx_free(d.tls);
  tl_web_free(d.web);
  free(d.api.ingest); /* empty by now: every queued batch was answered before the drain ended */
  tl_authcache_free(d.api.auth_cache);
  tl_keys_dispose(&d.keys);
  return status;
}
