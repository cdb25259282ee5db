/* Liveness, readiness and metrics: /healthz answers while the loop runs, /readyz only when a
 * database round trip succeeds, /metrics in the Prometheus text format. */
#include "api/authcache.h"
#include "api/ingest.h"
#include "api/internal.h"

#include "base/buf.h"

#include <unistd.h>

void tl__api_healthz(tl_http_exchange_t *x, void *ctx) {
  (void)ctx;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "status", "ok");
  tl_api_reply_json(x, 200, o);
}

static void readyz_done(void *arg, int status, const tl_db_result_t *res) {
  tl_http_exchange_t *x = arg;
  if (!tl_http_exchange_alive(x)) {
    /* The client hung up: nothing to answer. */
  } else if (status == 0 && tl_db_result_rows(res) == 1) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ready");
    tl_api_reply_json(x, 200, o);
  } else {
    tl_api_reply_db_error(x, status == 0 ? TL_EDB_DOWN : status);
  }
  tl_http_exchange_release(x);
}

void tl__api_readyz(tl_http_exchange_t *x, void *ctx) {
  tl_api_t *api = ctx;
  tl_http_exchange_hold(x);
  int rc = tl_db_query(api->db, "readyz", 0, NULL, readyz_done, x);
  if (rc != 0) {
    tl_http_exchange_release(x);
    tl_api_reply_db_error(x, rc);
  }
}

void tl__api_metrics(tl_http_exchange_t *x, void *ctx) {
  tl_api_t *api = ctx;
  tl_buf_t b;
  tl_buf_init(&b);
  tl_db_pool_stats_t st;
  tl_db_pool_stats(api->db, &st);
  int rc = tl_metrics_render(api->metrics, &b);
  if (rc == 0)
    rc = tl_buf_appendf(
        &b,
        "# HELP tubeloop_db_pool_size Database connections configured.\n"
        "# TYPE tubeloop_db_pool_size gauge\ntubeloop_db_pool_size %d\n"
        "# HELP tubeloop_db_pool_connected Database connections up.\n"
        "# TYPE tubeloop_db_pool_connected gauge\ntubeloop_db_pool_connected %d\n"
        "# HELP tubeloop_db_pool_busy Database connections running a statement.\n"
        "# TYPE tubeloop_db_pool_busy gauge\ntubeloop_db_pool_busy %d\n"
        "# HELP tubeloop_db_pool_waiting Requests waiting for a database connection.\n"
        "# TYPE tubeloop_db_pool_waiting gauge\ntubeloop_db_pool_waiting %d\n"
        "# HELP tubeloop_db_reconnects_total Database reconnections after the first connect.\n"
        "# TYPE tubeloop_db_reconnects_total counter\ntubeloop_db_reconnects_total %llu\n"
        "# HELP tubeloop_http_connections_open Client connections open.\n"
        "# TYPE tubeloop_http_connections_open gauge\ntubeloop_http_connections_open %zu\n"
        "# HELP tubeloop_ingest_queued_events Events waiting for group commit.\n"
        "# TYPE tubeloop_ingest_queued_events gauge\ntubeloop_ingest_queued_events %ld\n"
        "# HELP tubeloop_ingest_oldest_wait_seconds How long the oldest waiting batch has waited.\n"
        "# TYPE tubeloop_ingest_oldest_wait_seconds gauge\ntubeloop_ingest_oldest_wait_seconds %.3f\n"
        "# HELP tubeloop_ingest_groups_total Groups of batches written, by the write they went "
        "to: full, or plain (tubes opened and sampled only).\n"
        "# TYPE tubeloop_ingest_groups_total counter\ntubeloop_ingest_groups_total{write=\"full\"} %llu\n"
        "tubeloop_ingest_groups_total{write=\"plain\"} %llu\n"
        "# HELP tubeloop_auth_cache_hits_total Requests whose token was known without a query "
        "(the token cache).\n"
        "# TYPE tubeloop_auth_cache_hits_total counter\ntubeloop_auth_cache_hits_total %llu\n"
        "# HELP tubeloop_process_info The process that answered: every figure above is its own "
        "(with --workers, one of several).\n"
        "# TYPE tubeloop_process_info gauge\ntubeloop_process_info{pid=\"%d\"} 1\n",
        st.size, st.connected, st.busy, st.waiting, st.reconnects,
        api->server ? tl_http_server_connections(api->server) : (size_t)0, tl__ingest_queued(api),
        tl__ingest_oldest_wait(api), tl__ingest_written(api, 0), tl__ingest_written(api, 1),
        tl_authcache_hits(api->auth_cache), (int)getpid());
  if (rc == 0) rc = tl__ingest_render_metrics(api, &b);
  if (rc == 0)
    tl_http_reply(x, 200, "text/plain; version=0.0.4; charset=utf-8", "", b.data, b.len);
  else
    tl_http_reply_error(x, 500, "internal", "The metrics could not be rendered.");
  tl_buf_dispose(&b);
}
