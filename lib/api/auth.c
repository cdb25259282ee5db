/* Token authentication (auth.h). One indexed lookup per request whose token is not in the
 * cache (authcache.h); the scope's region is resolved in the same query so handlers can check
 * "inside my region" without another trip. */
#include "api/auth.h"

#include "api/authcache.h"
#include "api/devcert.h"
#include "api/live.h"
#include "api/limit.h"
#include "base/log.h"
#include "crypto/token.h"

#include <stdio.h>
#include <time.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
  tl_api_t *api;
  tl_http_exchange_t *x;
  unsigned roles;
  tl_api_authed_fn next;
  char hash[TL_TOKEN_HASH_LEN + 1];
  tl_tls_peer_t peer; /* the connection's client certificate, read before the lookup */
  char cn[128];       /* its subject CN */
  uint64_t generation; /* of the token cache when the lookup started */
} auth_job_t;

const char tl__auth_sql[] =
    "SELECT t.id, t.role, coalesce(t.scope, ''), t.hash,"
    " coalesce(CASE t.role WHEN 'collector' THEN (SELECT township FROM sites WHERE code = t.scope)"
    "  WHEN 'courier' THEN (SELECT county FROM couriers WHERE code = t.scope)"
    "  WHEN 'lab' THEN (SELECT county FROM labs WHERE code = t.scope)"
    "  WHEN 'admin' THEN ''"
    "  ELSE coalesce((SELECT township FROM sites WHERE code = t.scope), t.scope) END, '-'),"
    " CASE WHEN t.role IN ('viewer', 'supervisor') AND EXISTS (SELECT 1 FROM sites WHERE code = t.scope)"
    "  THEN t.scope ELSE '' END"
    " FROM tokens t WHERE t.hash = $1 AND t.revoked_at IS NULL";

int tl_principal_sees(const tl_principal_t *p, const char *region_code) {
  if (p->role == TL_ROLE_ADMIN) return 1;
  if (p->site[0]) return 0; /* a site's reader sees its site, no region as a whole */
  return region_code && tl_region_contains(p->region, region_code);
}

static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(dst, src, n);
  dst[n] = '\0';
}

static void unauthorized(tl_http_exchange_t *x) {
  tl_http_reply(x, 401, "application/json", "WWW-Authenticate: Bearer\r\n",
                "{\"error\":{\"code\":\"unauthorized\",\"message\":\"A valid bearer token is "
                "required.\"}}\n",
                sizeof "{\"error\":{\"code\":\"unauthorized\",\"message\":\"A valid bearer token is "
                       "required.\"}}\n" - 1);
}

static int limited(tl_http_exchange_t *x, void *limit, const char *key, size_t keylen);

/* 403 when a device token comes without the certificate --device-certs asks for; returns 1
 * when answered. The log names role, scope and reason (never the token or the CN text, which
 * an unverified certificate's sender chose). */
static int refused_device(tl_http_exchange_t *x, const auth_job_t *j, const tl_principal_t *p) {
  tl_devcert_verdict_t v =
      tl_devcert_check(j->api->device_certs, p->role, p->scope, j->peer, j->cn);
  if (v == TL_DEVCERT_OK) return 0;
  const char *code = tl_devcert_code(v);
  tl_log(TL_LOG_WARN, "device_cert_refused", "conn=%llu role=%s scope=%s reason=%s",
         (unsigned long long)tl_http_exchange_conn_id(x), tl_role_name(p->role), p->scope, code);
  tl_http_reply_error(x, 403, code, tl_devcert_message(v));
  return 1;
}

/* Whether the database announces changes to principals (sql/038), asked once. */
#define ANNOUNCED_SQL                                                                         \
  "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tokens_principals'"                \
  " AND tgrelid = to_regclass('tokens'))"

static void announced_checked(void *arg, int status, const tl_db_result_t *res) {
  const char *yes = status == 0 ? tl_db_result_value(res, 0, 0) : NULL;
  int announced = yes && strcmp(yes, "t") == 0;
  if (status == 0 && !announced)
    tl_log(TL_LOG_WARN, "auth_cache_off", "reason=\"no tl_principals trigger: run tubeloopd migrate\"");
  tl_authcache_checked(arg, status, announced);
}

/* The principal is known: the per-token limit, the device certificate, the role; then next. */
static void authed(tl_http_exchange_t *x, const auth_job_t *j, const tl_principal_t *p) {
  if (limited(x, j->api->per_token, p->token_id, strlen(p->token_id))) return;
  if (refused_device(x, j, p)) return;
  if (!(j->roles & TL_ROLE_BIT(p->role))) {
    tl_http_reply_error(x, 403, "forbidden", "This token's role may not make this call.");
    return;
  }
  j->next(x, j->api, p);
}

static void auth_done(void *arg, int status, const tl_db_result_t *res) {
  auth_job_t *j = arg;
  tl_http_exchange_t *x = j->x;
  if (!tl_http_exchange_alive(x)) goto out;
  if (status != 0) {
    tl_api_reply_db_error(x, status);
    goto out;
  }
  const char *hash = tl_db_result_rows(res) == 1 ? tl_db_result_value(res, 0, 3) : NULL;
  if (hash == NULL || strlen(hash) != TL_TOKEN_HASH_LEN ||
      !tl_token_equal(hash, j->hash, TL_TOKEN_HASH_LEN)) {
    unauthorized(x);
    goto out;
  }
  tl_principal_t p;
  memset(&p, 0, sizeof p);
  int role = tl_role_parse(tl_db_result_value(res, 0, 1));
  if (role < 0) {
    unauthorized(x);
    goto out;
  }
  p.role = (tl_role_t)role;
  copy_str(p.token_id, sizeof p.token_id, tl_db_result_value(res, 0, 0));
  copy_str(p.scope, sizeof p.scope, tl_db_result_value(res, 0, 2));
  copy_str(p.region, sizeof p.region, tl_db_result_value(res, 0, 4));
  copy_str(p.site, sizeof p.site, tl_db_result_value(res, 0, 5));
  tl_authcache_put(j->api->auth_cache, j->generation, j->hash, &p);
  authed(x, j, &p);
out:
  tl_http_exchange_release(x);
  free(j);
}

/* 429 with Retry-After when the bucket of key is empty; returns 1 when answered. */
static int limited(tl_http_exchange_t *x, void *limit, const char *key, size_t keylen) {
  if (limit == NULL) return 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  int wait = tl_limit_take(limit, key, keylen, now);
  if (wait == 0) return 0;
  char retry[48];
  snprintf(retry, sizeof retry, "Retry-After: %d\r\n", wait);
  static const char body[] = "{\"error\":{\"code\":\"rate_limited\",\"message\":\"Too many "
                             "requests; slow down and retry after the time given.\"}}\n";
  tl_http_reply(x, 429, "application/json", retry, body, sizeof body - 1);
  return 1;
}

void tl_api_auth(tl_api_t *api, tl_http_exchange_t *x, unsigned roles, tl_api_authed_fn next) {
  char probe[8];
  const char *peer = tl_http_exchange_peer(x);
  if (limited(x, api->per_address, peer, strlen(peer))) return;
  if (tl_http_exchange_query(x, "access_token", probe, sizeof probe) != -1 ||
      tl_http_exchange_query(x, "token", probe, sizeof probe) != -1) {
    tl_http_reply_error(x, 400, "token_in_url",
                        "Tokens go in the Authorization header, never in the URL.");
    return;
  }
  size_t len = 0;
  const tl_http_request_t *req = tl_http_exchange_request(x);
  const char *h = tl_http_request_header(req, "authorization", &len);
  if (h == NULL || len < 7 || strncasecmp(h, "Bearer ", 7) != 0) {
    unauthorized(x);
    return;
  }
  h += 7;
  len -= 7;
  while (len > 0 && *h == ' ') h++, len--;
  while (len > 0 && h[len - 1] == ' ') len--;
  if (!tl_token_well_formed(h, len)) {
    unauthorized(x);
    return;
  }
  auth_job_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    tl_http_reply_error(x, 500, "internal", "The server ran out of memory.");
    return;
  }
  j->api = api;
  j->x = x;
  j->roles = roles;
  j->next = next;
  tl_token_hash(h, len, j->hash);
  if (api->device_certs != TL_DEVICE_CERTS_OFF)
    j->peer = tl_http_exchange_client_cert(x, j->cn, sizeof j->cn);
  /* A known token needs no query: the cache is used only while the connection that hears
   * about changes is up, and after reading what it has heard (authcache.h). */
  if (!tl_live_listening(api->live))
    tl_authcache_set_on(api->auth_cache, 0);
  else if (tl_authcache_check_due(api->auth_cache) &&
           tl_db_exec(api->db, ANNOUNCED_SQL, 0, NULL, announced_checked, api->auth_cache) != 0)
    tl_authcache_checked(api->auth_cache, TL_EDB_DOWN, 0);
  tl_principal_t known;
  if (tl_authcache_get(api->auth_cache, j->hash, &known)) {
    authed(x, j, &known);
    free(j);
    return;
  }
  j->generation = tl_authcache_generation(api->auth_cache);
  const char *params[] = {j->hash};
  tl_http_exchange_hold(x);
  int rc = tl_db_query(api->db, "auth", 1, params, auth_done, j);
  if (rc != 0) {
    tl_http_exchange_release(x);
    free(j);
    tl_api_reply_db_error(x, rc);
  }
}
