/* Handlers of the API layer, shared between its files (not part of the public API). */
#ifndef TL_API_INTERNAL_H
#define TL_API_INTERNAL_H

#include "api/api.h"

#include <string.h>

extern const char tl__auth_sql[]; /* auth.c: the token lookup, prepared as "auth" */
/* A tl_api_db callback: answers the first row's one JSON value, 404 "There is no such <ctx>."
 * when there is none, or the database error. */
void tl__api_json_or_404(tl_http_exchange_t *x, tl_api_t *api, int status,
                         const tl_db_result_t *res, void *ctx);
void tl__api_healthz(tl_http_exchange_t *x, void *ctx);
void tl__api_readyz(tl_http_exchange_t *x, void *ctx);
void tl__api_metrics(tl_http_exchange_t *x, void *ctx);
/* openapi.c, and the document's bytes generated at build time from lib/api/openapi.json */
extern const unsigned char tl__openapi_json[];
extern const size_t tl__openapi_json_len;
void tl__api_openapi(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_regions(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_sites(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_labs(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_couriers(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_rounds(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_round_close(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_tokens(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_token_delete(tl_http_exchange_t *x, void *ctx);
void tl__api_admin_tokens_list(tl_http_exchange_t *x, void *ctx);
void tl__api_events(tl_http_exchange_t *x, void *ctx);
void tl__api_tube(tl_http_exchange_t *x, void *ctx);
void tl__api_box(tl_http_exchange_t *x, void *ctx);
void tl__api_person_lookup(tl_http_exchange_t *x, void *ctx);
void tl__api_anomalies(tl_http_exchange_t *x, void *ctx);
void tl__api_anomaly_ack(tl_http_exchange_t *x, void *ctx);
void tl__api_anomaly_resolve(tl_http_exchange_t *x, void *ctx);
void tl__api_followups(tl_http_exchange_t *x, void *ctx);
void tl__api_whoami(tl_http_exchange_t *x, void *ctx);
void tl__api_stats(tl_http_exchange_t *x, void *ctx);
void tl__api_charts(tl_http_exchange_t *x, void *ctx);
void tl__api_ledger(tl_http_exchange_t *x, void *ctx);
void tl__api_arrivals(tl_http_exchange_t *x, void *ctx);
void tl__api_export_fhir(tl_http_exchange_t *x, void *ctx);  /* export.c */
void tl__api_export_hl7v2(tl_http_exchange_t *x, void *ctx);
void tl__api_export_epcis(tl_http_exchange_t *x, void *ctx);

#endif
