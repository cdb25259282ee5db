/* Route table and shared answer helpers of the API layer. */
#include "api/api.h"

#include "api/ingest.h"
#include "api/internal.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>

void tl_api_reply_json(tl_http_exchange_t *x, int status, cJSON *root) {
  char *text = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (text == NULL) {
    tl_http_reply_error(x, 500, "internal", "The answer could not be built.");
    return;
  }
  tl_http_reply(x, status, "application/json", "", text, strlen(text));
  free(text);
}

void tl_api_reply_db_error(tl_http_exchange_t *x, int status) {
  switch (status) {
  case TL_EDB_DOWN:
  case TL_ECLOSED:
    tl_http_reply_error(x, 503, "db_unavailable", "The database is unavailable; retry shortly.");
    return;
  case TL_EBUSY:
  case TL_ETIMEDOUT:
    tl_http_reply_error(x, 503, "overloaded", "The server is busy; retry shortly.");
    return;
  default:
    tl_http_reply_error(x, 500, "internal", "The request failed inside the server.");
    return;
  }
}

void tl__api_json_or_404(tl_http_exchange_t *x, tl_api_t *api, int status,
                         const tl_db_result_t *res, void *ctx) {
  (void)api;
  const char *what = ctx ? (const char *)ctx : "object";
  const char *text = status == 0 && tl_db_result_rows(res) == 1 ? tl_db_result_value(res, 0, 0) : NULL;
  if (status != 0) {
    tl_api_reply_db_error(x, status);
  } else if (text == NULL) {
    char msg[80];
    snprintf(msg, sizeof msg, "There is no such %s.", what);
    tl_http_reply_error(x, 404, "not_found", msg);
  } else {
    tl_http_reply(x, 200, "application/json", "", text, strlen(text));
  }
}

typedef struct {
  tl_api_t *api;
  tl_http_exchange_t *x;
  tl_api_db_fn done;
  void *ctx;
} db_call_t;

static void db_call_done(void *arg, int status, const tl_db_result_t *res) {
  db_call_t *c = arg;
  if (status == TL_EDB)
    tl_log(TL_LOG_WARN, "db_statement_failed", "conn=%llu sqlstate=%s",
           (unsigned long long)tl_http_exchange_conn_id(c->x), tl_db_result_sqlstate(res));
  if (tl_http_exchange_alive(c->x)) c->done(c->x, c->api, status, res, c->ctx);
  tl_http_exchange_release(c->x);
  free(c->ctx);
  free(c);
}

void tl_api_db(tl_api_t *api, tl_http_exchange_t *x, const char *sql, int nparams,
               const char *const *params, tl_api_db_fn done, void *ctx) {
  db_call_t *c = malloc(sizeof *c);
  if (c == NULL) {
    free(ctx);
    tl_http_reply_error(x, 500, "internal", "The server ran out of memory.");
    return;
  }
  *c = (db_call_t){api, x, done, ctx};
  tl_http_exchange_hold(x);
  int rc = tl_db_exec(api->db, sql, nparams, params, db_call_done, c);
  if (rc != 0) {
    tl_http_exchange_release(x);
    free(ctx);
    free(c);
    tl_api_reply_db_error(x, rc);
  }
}

int tl_api_prepare(tl_db_pool_t *db) {
  int rc = tl_db_pool_prepare(db, "readyz", "SELECT 1");
  if (rc == 0) rc = tl_db_pool_prepare(db, "auth", tl__auth_sql);
  if (rc == 0) rc = tl__ingest_prepare(db);
  return rc;
}

int tl_api_routes(tl_router_t *r, tl_api_t *api) {
  int bad = 0;
  bad |= tl_router_add(r, "GET", "/healthz", tl__api_healthz, api) < 0;
  bad |= tl_router_add(r, "GET", "/readyz", tl__api_readyz, api) < 0;
  bad |= tl_router_add(r, "GET", "/metrics", tl__api_metrics, api) < 0;
  bad |= tl_router_add(r, "GET", "/openapi.json", tl__api_openapi, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/events", tl__api_events, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/tubes/{code}", tl__api_tube, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/boxes/{code}", tl__api_box, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/persons/lookup", tl__api_person_lookup, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/anomalies", tl__api_anomalies, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/anomalies/{id}/ack", tl__api_anomaly_ack, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/anomalies/{id}/resolve", tl__api_anomaly_resolve, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/followups", tl__api_followups, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/whoami", tl__api_whoami, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/stats", tl__api_stats, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/stats/charts", tl__api_charts, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/ledger", tl__api_ledger, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/labs/{code}/arrivals", tl__api_arrivals, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/export/fhir", tl__api_export_fhir, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/export/hl7v2", tl__api_export_hl7v2, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/export/epcis", tl__api_export_epcis, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/regions", tl__api_admin_regions, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/sites", tl__api_admin_sites, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/labs", tl__api_admin_labs, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/couriers", tl__api_admin_couriers, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/rounds", tl__api_admin_rounds, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/rounds/{code}/close", tl__api_admin_round_close, api) < 0;
  bad |= tl_router_add(r, "POST", "/v1/admin/tokens", tl__api_admin_tokens, api) < 0;
  bad |= tl_router_add(r, "GET", "/v1/admin/tokens", tl__api_admin_tokens_list, api) < 0;
  bad |= tl_router_add(r, "DELETE", "/v1/admin/tokens/{id}", tl__api_admin_token_delete, api) < 0;
  return bad ? TL_ENOMEM : 0;
}
