/* The API layer: handlers that join HTTP exchanges, JSON (cJSON) and the database pool.
 *
 * tl_api_routes() puts every route of the daemon into the router. A cJSON tree never leaves
 * this layer: handlers build one and answer with tl_api_reply_json(). */
#ifndef TL_API_API_H
#define TL_API_API_H

#include "conf/config.h"
#include "crypto/keys.h"
#include "db/pool.h"
#include "http/router.h"
#include "http/server.h"
#include "metrics/metrics.h"

#include <cjson/cJSON.h>

typedef struct {
  tl_db_pool_t *db;           /* borrowed */
  const tl_keys_t *keys;      /* borrowed: PII encryption and lookup keys */
  const char *tz;             /* deployment time zone for day boundaries */
  int transit_default_min;    /* arrival estimate when a route has no history */
  long ingest_queue_max;      /* events waiting for group commit before 503 (0: default) */
  int ingest_max_wait_ms;     /* the oldest waiting batch's wait before new ones get 503 (0: off) */
  int ingest_second_group;    /* events waiting before a second group starts (0: the default) */
  struct tl_live_s *live;     /* the live stats hub (SSE), or NULL */
  void *ingest;               /* the group-commit queue (ingest.c), made on first use */
  void *per_token;            /* tl_limit_t: requests per token (limit.h), or NULL */
  void *per_address;          /* tl_limit_t: requests per client address, or NULL */
  struct tl_authcache_s *auth_cache; /* principals of known tokens (authcache.h), or NULL */
  tl_device_certs_t device_certs; /* client certificates of device tokens (devcert.h) */
  tl_metrics_t *metrics;      /* borrowed */
  tl_http_server_t *server;   /* borrowed; set once the server exists (connection gauge) */
} tl_api_t;

/* Runs a statement for the handler of x and calls done(x, api, status, res, ctx) when it
 * finishes, only if the client is still there. Submit failures are answered here. ctx is
 * freed with free() afterwards (may be NULL). */
typedef void (*tl_api_db_fn)(tl_http_exchange_t *x, tl_api_t *api, int status,
                             const tl_db_result_t *res, void *ctx);
void tl_api_db(tl_api_t *api, tl_http_exchange_t *x, const char *sql, int nparams,
               const char *const *params, tl_api_db_fn done, void *ctx);

/* Registers the statements the hot calls run by name (prepared on every connection, again
 * after every reconnect). Call before tl_db_pool_start. */
TL_WUR int tl_api_prepare(tl_db_pool_t *db);

/* Registers all routes. Returns 0 or TL_ENOMEM (router full). */
TL_WUR int tl_api_routes(tl_router_t *r, tl_api_t *api);

/* Answers with root printed compactly, and frees root. */
void tl_api_reply_json(tl_http_exchange_t *x, int status, cJSON *root);

/* Answers a failed database job or submit (TL_EDB_DOWN, TL_EBUSY, ...) with the right
 * status: 503 + Retry-After when retrying can help, 500 otherwise. */
void tl_api_reply_db_error(tl_http_exchange_t *x, int status);

#endif
