/* The registry and token calls (DESIGN §5 "Registry and tokens"): regions, sites, labs and
 * couriers are upserted in batches with one set-based statement each; rounds are created and
 * closed by an admin or a supervisor of their region; tokens are made (shown once) and
 * revoked. Everything is validated here first, and the schema checks it again. */
#include "api/internal.h"

#include "api/auth.h"
#include "api/authcache.h"
#include "api/json.h"
#include "crypto/token.h"
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_ITEMS 50000

static void reply_err(tl_http_exchange_t *x, const tl_api_err_t *e) {
  tl_http_reply_error(x, e->status, e->code, e->message);
}

/* Answers a failed registry statement: references and uniqueness are the client's mistake. */
static void registry_db_error(tl_http_exchange_t *x, int status, const tl_db_result_t *res,
                              const char *ref_message) {
  const char *st = tl_db_result_sqlstate(res);
  if (status == TL_EDB && strcmp(st, "23503") == 0)
    tl_http_reply_error(x, 400, "reference_unknown", ref_message);
  else if (status == TL_EDB && (strcmp(st, "23514") == 0 || strcmp(st, "22001") == 0))
    tl_http_reply_error(x, 400, "invalid_field", "A value breaks a rule of the registry.");
  else if (status == TL_EDB && strcmp(st, "23505") == 0)
    tl_http_reply_error(x, 409, "conflict", "An object with this code exists already.");
  else
    tl_api_reply_db_error(x, status);
}

static void upserted(tl_http_exchange_t *x, tl_api_t *api, int status, const tl_db_result_t *res,
                     void *ctx) {
  if (status != 0) {
    registry_db_error(x, status, res, ctx ? (const char *)ctx : "A referenced code does not exist.");
    return;
  }
  /* a site's township or a lab's county is part of its tokens' principals: this daemon
   * forgets them before it answers (the others when sql/038's NOTIFY reaches them) */
  tl_authcache_flush(api->auth_cache);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "upserted", (double)tl_db_result_affected(res));
  tl_api_reply_json(x, 200, o);
}

typedef int (*item_check_fn)(const cJSON *item, const char *where, tl_api_err_t *err);

static int check_name(const cJSON *item, const char *where, tl_api_err_t *err) {
  const char *name = tl_json_str(item, "name", 1, where, err, NULL);
  if (name == NULL) return -1;
  if (!tl_label_valid(name, strlen(name), 100))
    return tl_api_fail(err, 400, "invalid_field", "%s: \"name\" must be 1-100 characters of text.", where);
  return 0;
}

static int check_code(const cJSON *item, const char *where, tl_api_err_t *err) {
  const char *code = tl_json_str(item, "code", 1, where, err, NULL);
  if (code == NULL) return -1;
  if (!tl_valid_code(code, strlen(code)))
    return tl_api_fail(err, 400, "invalid_code", "%s: \"code\" must be 1-32 of A-Z a-z 0-9 -.", where);
  return 0;
}

static int check_region_field(const cJSON *item, const char *key, tl_region_level_t level,
                              const char *where, tl_api_err_t *err) {
  const char *v = tl_json_str(item, key, 1, where, err, NULL);
  if (v == NULL) return -1;
  if (tl_region_level(v, strlen(v)) != level)
    return tl_api_fail(err, 400, "invalid_region", "%s: \"%s\" must be a %s code.", where, key,
                       tl_region_level_name(level));
  return 0;
}

static int check_region_item(const cJSON *item, const char *where, tl_api_err_t *err) {
  static const char *const allowed[] = {"code", "name", "parent", NULL};
  if (tl_json_only(item, allowed, where, err) != 0) return -1;
  const char *code = tl_json_str(item, "code", 1, where, err, NULL);
  if (code == NULL) return -1;
  tl_region_level_t lv = tl_region_level(code, strlen(code));
  if (lv == TL_REGION_INVALID)
    return tl_api_fail(err, 400, "invalid_region", "%s: \"code\" is not a GB/T 2260 code.", where);
  if (check_name(item, where, err) != 0) return -1;
  int absent = 0;
  const char *parent = tl_json_str(item, "parent", 0, where, err, &absent);
  if (parent == NULL && !absent) {
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(item, "parent");
    if (!cJSON_IsNull(pv)) return -1;
    err->code = NULL;
  }
  if (parent) {
    size_t plen = strlen(parent), want = lv == TL_REGION_TOWNSHIP ? 6 : strlen(code) - 2;
    if (plen != want || strncmp(code, parent, plen) != 0)
      return tl_api_fail(err, 400, "invalid_parent",
                         "%s: \"parent\" must be the next level up and a prefix of the code.", where);
  }
  return 0;
}

static int check_site_item(const cJSON *item, const char *where, tl_api_err_t *err) {
  static const char *const allowed[] = {"code", "name", "township", NULL};
  if (tl_json_only(item, allowed, where, err) != 0 || check_code(item, where, err) != 0 ||
      check_name(item, where, err) != 0)
    return -1;
  return check_region_field(item, "township", TL_REGION_TOWNSHIP, where, err);
}

static int check_county_item(const cJSON *item, const char *where, tl_api_err_t *err) {
  static const char *const allowed[] = {"code", "name", "county", NULL};
  if (tl_json_only(item, allowed, where, err) != 0 || check_code(item, where, err) != 0 ||
      check_name(item, where, err) != 0)
    return -1;
  return check_region_field(item, "county", TL_REGION_COUNTY, where, err);
}

/* Validates {"<list>": [items]} and runs sql with the list as $1 (jsonb). */
static void upsert_list(tl_http_exchange_t *x, tl_api_t *api, const char *list, item_check_fn check,
                        const char *sql, const char *ref_message) {
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  cJSON *root = tl_json_parse_body(req->body.data, req->body.len, &err);
  const char *const allowed[] = {list, NULL};
  char where[48];
  if (root == NULL || tl_json_only(root, allowed, "the body", &err) != 0) goto bad;
  cJSON *items = cJSON_GetObjectItemCaseSensitive(root, list);
  if (!cJSON_IsArray(items) || cJSON_GetArraySize(items) == 0 ||
      cJSON_GetArraySize(items) > MAX_ITEMS) {
    tl_api_fail(&err, 400, "invalid_field", "\"%s\" must be a list of 1 to %d objects.", list,
                MAX_ITEMS);
    goto bad;
  }
  int i = 0;
  for (cJSON *it = items->child; it; it = it->next, i++) {
    snprintf(where, sizeof where, "%s[%d]", list, i);
    if (check(it, where, &err) != 0) goto bad;
  }
  char *text = cJSON_PrintUnformatted(items);
  cJSON_Delete(root);
  if (text == NULL) {
    tl_http_reply_error(x, 500, "internal", "The server ran out of memory.");
    return;
  }
  const char *params[] = {text};
  char *ctx = strdup(ref_message);
  tl_api_db(api, x, sql, 1, params, upserted, ctx);
  free(text);
  return;
bad:
  cJSON_Delete(root);
  reply_err(x, &err);
}

static void regions_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  upsert_list(x, api, "regions", check_region_item,
              "INSERT INTO regions (code, name, parent)"
              " SELECT code, name, parent FROM jsonb_to_recordset($1::jsonb)"
              "  AS r(code text, name text, parent text) ORDER BY length(code), code"
              " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, parent = EXCLUDED.parent",
              "A parent region is not in the registry (send parents first or in the same call).");
}

static void sites_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  upsert_list(x, api, "sites", check_site_item,
              "INSERT INTO sites (code, name, township)"
              " SELECT code, name, township FROM jsonb_to_recordset($1::jsonb)"
              "  AS r(code text, name text, township text)"
              " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, township = EXCLUDED.township",
              "A township is not in the registry.");
}

static void labs_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  upsert_list(x, api, "labs", check_county_item,
              "INSERT INTO labs (code, name, county)"
              " SELECT code, name, county FROM jsonb_to_recordset($1::jsonb)"
              "  AS r(code text, name text, county text)"
              " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, county = EXCLUDED.county",
              "A county is not in the registry.");
}

static void couriers_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  upsert_list(x, api, "couriers", check_county_item,
              "INSERT INTO couriers (code, name, county)"
              " SELECT code, name, county FROM jsonb_to_recordset($1::jsonb)"
              "  AS r(code text, name text, county text)"
              " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, county = EXCLUDED.county",
              "A county is not in the registry.");
}

void tl__api_admin_regions(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), regions_authed);
}
void tl__api_admin_sites(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), sites_authed);
}
void tl__api_admin_labs(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), labs_authed);
}
void tl__api_admin_couriers(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), couriers_authed);
}

/* ---------- rounds ---------- */

static const char round_json_sql[] =
    "json_build_object('code', code, 'name', name, 'region', region, 'day', day,"
    " 'pool_size', pool_size, 'created_at', created_at, 'closed_at', closed_at)::text";

static void round_answer(tl_http_exchange_t *x, tl_api_t *api, int status,
                         const tl_db_result_t *res, void *ctx) {
  (void)api;
  int created = ctx != NULL;
  if (status != 0) {
    registry_db_error(x, status, res, "The region is not in the registry.");
    return;
  }
  if (tl_db_result_rows(res) == 0) {
    if (created)
      tl_http_reply_error(x, 409, "round_exists", "A round with this code exists already.");
    else
      tl_http_reply_error(x, 404, "not_found", "There is no such round.");
    return;
  }
  const char *text = tl_db_result_value(res, 0, 0);
  tl_http_reply(x, created ? 201 : 200, "application/json", "", text, strlen(text));
}

static void rounds_create_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  static const char *const allowed[] = {"code", "name", "region", "day", "pool_size", NULL};
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  cJSON *root = tl_json_parse_body(req->body.data, req->body.len, &err);
  const char *region = NULL, *day = NULL;
  long pool = 0;
  if (root == NULL || tl_json_only(root, allowed, "the round", &err) != 0 ||
      check_code(root, "the round", &err) != 0 || check_name(root, "the round", &err) != 0 ||
      (region = tl_json_str(root, "region", 1, "the round", &err, NULL)) == NULL ||
      (day = tl_json_str(root, "day", 1, "the round", &err, NULL)) == NULL ||
      tl_json_int(root, "pool_size", 1, "the round", &err, &pool) != 0)
    goto bad;
  if (tl_region_level(region, strlen(region)) == TL_REGION_INVALID) {
    tl_api_fail(&err, 400, "invalid_region", "\"region\" is not a GB/T 2260 code.");
    goto bad;
  }
  int64_t ms;
  char probe[40];
  snprintf(probe, sizeof probe, "%.10sT00:00:00Z", day);
  if (strlen(day) != 10 || tl_time_parse(probe, strlen(probe), &ms) != 0) {
    tl_api_fail(&err, 400, "invalid_field", "\"day\" must be a date like 2021-10-08.");
    goto bad;
  }
  if (pool != 1 && pool != 5 && pool != 8 && pool != 10 && pool != 20) {
    tl_api_fail(&err, 400, "invalid_capacity", "\"pool_size\" must be 1, 5, 8, 10 or 20.");
    goto bad;
  }
  if (!tl_principal_sees(p, region)) {
    tl_api_fail(&err, 403, "out_of_scope", "The region is outside this token's scope.");
    goto bad;
  }
  char pools[8];
  snprintf(pools, sizeof pools, "%ld", pool);
  const char *params[] = {cJSON_GetObjectItemCaseSensitive(root, "code")->valuestring,
                          cJSON_GetObjectItemCaseSensitive(root, "name")->valuestring, region, day,
                          pools};
  char sql[512];
  snprintf(sql, sizeof sql,
           "INSERT INTO rounds (code, name, region, day, pool_size) VALUES ($1, $2, $3, $4, $5)"
           " ON CONFLICT (code) DO NOTHING RETURNING %s", round_json_sql);
  tl_api_db(api, x, sql, 5, params, round_answer, strdup("created"));
  cJSON_Delete(root);
  return;
bad:
  cJSON_Delete(root);
  reply_err(x, &err);
}

static void rounds_close_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  size_t len;
  const char *code = tl_http_exchange_param(x, 0, &len);
  char c[TL_CODE_MAX + 1];
  if (!tl_valid_code(code, len)) {
    tl_http_reply_error(x, 404, "not_found", "There is no such round.");
    return;
  }
  memcpy(c, code, len);
  c[len] = '\0';
  /* A supervisor sees only rounds inside its region: others answer 404 like unknown ones. */
  const char *params[] = {c, p->role == TL_ROLE_ADMIN ? "" : p->region};
  char sql[512];
  snprintf(sql, sizeof sql,
           "UPDATE rounds SET closed_at = coalesce(closed_at, now())"
           " WHERE code = $1 AND left(region, length($2)) = $2 RETURNING %s", round_json_sql);
  tl_api_db(api, x, sql, 2, params, round_answer, NULL);
}

#define ROUND_ROLES (TL_ROLE_BIT(TL_ROLE_ADMIN) | TL_ROLE_BIT(TL_ROLE_SUPERVISOR))
void tl__api_admin_rounds(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, ROUND_ROLES, rounds_create_authed);
}
void tl__api_admin_round_close(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, ROUND_ROLES, rounds_close_authed);
}

/* ---------- tokens ---------- */

typedef struct {
  char token[TL_TOKEN_LEN + 1];
} token_ctx_t;

static void token_created(tl_http_exchange_t *x, tl_api_t *api, int status,
                          const tl_db_result_t *res, void *ctx) {
  (void)api;
  token_ctx_t *t = ctx;
  if (status != 0) {
    registry_db_error(x, status, res, "The scope does not exist.");
  } else if (tl_db_result_rows(res) == 0) {
    tl_http_reply_error(x, 400, "scope_unknown", "The scope does not name a registered object of this role.");
  } else {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", tl_db_result_value(res, 0, 0));
    cJSON_AddStringToObject(o, "token", t->token);
    tl_api_reply_json(x, 201, o);
  }
  memset(t->token, 0, sizeof t->token);
}

static void tokens_create_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  static const char *const allowed[] = {"role", "scope", "label", NULL};
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  cJSON *root = tl_json_parse_body(req->body.data, req->body.len, &err);
  const char *role = NULL, *scope = NULL, *label = NULL;
  int scope_absent = 0, label_absent = 0;
  if (root == NULL || tl_json_only(root, allowed, "the token", &err) != 0 ||
      (role = tl_json_str(root, "role", 1, "the token", &err, NULL)) == NULL)
    goto bad;
  scope = tl_json_str(root, "scope", 0, "the token", &err, &scope_absent);
  if (scope == NULL && !scope_absent) goto bad;
  label = tl_json_str(root, "label", 0, "the token", &err, &label_absent);
  if (label == NULL && !label_absent) goto bad;
  int r = tl_role_parse(role);
  if (r < 0) {
    tl_api_fail(&err, 400, "invalid_role",
                "\"role\" must be collector, courier, lab, viewer, supervisor or admin.");
    goto bad;
  }
  if ((r == TL_ROLE_ADMIN) != (scope == NULL)) {
    tl_api_fail(&err, 400, "invalid_scope", "An admin token has no scope; every other role needs one.");
    goto bad;
  }
  if (scope && !tl_valid_code(scope, strlen(scope))) {
    tl_api_fail(&err, 400, "invalid_scope", "\"scope\" must be a site, courier, lab or region code.");
    goto bad;
  }
  if (label && label[0] && !tl_label_valid(label, strlen(label), 200)) {
    tl_api_fail(&err, 400, "invalid_field", "\"label\" must be up to 200 characters of text.");
    goto bad;
  }
  token_ctx_t *t = calloc(1, sizeof *t);
  if (t == NULL || tl_token_new(t->token) != 0) {
    free(t);
    tl_api_fail(&err, 500, "internal", "No token could be made.");
    goto bad;
  }
  char hash[TL_TOKEN_HASH_LEN + 1];
  tl_token_hash(t->token, TL_TOKEN_LEN, hash);
  const char *params[] = {hash, role, scope, label ? label : ""};
  tl_api_db(api, x,
            "INSERT INTO tokens (hash, role, scope, label) SELECT $1, $2, $3, $4 WHERE CASE $2"
            " WHEN 'collector' THEN EXISTS (SELECT 1 FROM sites WHERE code = $3)"
            " WHEN 'courier' THEN EXISTS (SELECT 1 FROM couriers WHERE code = $3)"
            " WHEN 'lab' THEN EXISTS (SELECT 1 FROM labs WHERE code = $3)"
            " WHEN 'admin' THEN true"
            " ELSE EXISTS (SELECT 1 FROM regions WHERE code = $3)"
            "   OR EXISTS (SELECT 1 FROM sites WHERE code = $3) END RETURNING id",
            4, params, token_created, t);
  cJSON_Delete(root);
  return;
bad:
  cJSON_Delete(root);
  reply_err(x, &err);
}

static void token_revoked(tl_http_exchange_t *x, tl_api_t *api, int status,
                          const tl_db_result_t *res, void *ctx) {
  (void)ctx;
  /* revoked from the answer on, here (the other daemons when sql/038's NOTIFY reaches them) */
  if (status == 0) tl_authcache_flush(api->auth_cache);
  if (status != 0) {
    tl_api_reply_db_error(x, status);
  } else if (tl_db_result_rows(res) == 0) {
    tl_http_reply_error(x, 404, "not_found", "There is no such token.");
  } else {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", tl_db_result_value(res, 0, 0));
    cJSON_AddBoolToObject(o, "revoked", 1);
    tl_api_reply_json(x, 200, o);
  }
}

static void tokens_delete_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  size_t len;
  const char *id = tl_http_exchange_param(x, 0, &len);
  char lower[37];
  if (!tl_valid_uuid(id, len)) {
    tl_http_reply_error(x, 404, "not_found", "There is no such token.");
    return;
  }
  tl_uuid_lower(lower, id);
  const char *params[] = {lower};
  tl_api_db(api, x,
            "UPDATE tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id",
            1, params, token_revoked, NULL);
}

void tl__api_admin_tokens(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), tokens_create_authed);
}
void tl__api_admin_token_delete(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), tokens_delete_authed);
}

static void tokens_listed(tl_http_exchange_t *x, tl_api_t *api, int status, const tl_db_result_t *res,
                          void *ctx) {
  (void)api;
  (void)ctx;
  const char *text = status == 0 ? tl_db_result_value(res, 0, 0) : NULL;
  if (text == NULL)
    tl_api_reply_db_error(x, status ? status : TL_EDB);
  else
    tl_http_reply(x, 200, "application/json", "", text, strlen(text));
}

/* The tokens, newest first; never a token or its hash. */
static void tokens_list_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  (void)p;
  tl_api_db(api, x,
            "SELECT jsonb_build_object('tokens', coalesce(jsonb_agg(jsonb_build_object('id', id,"
            " 'role', role, 'scope', scope, 'label', label, 'created_at', created_at,"
            " 'revoked_at', revoked_at) ORDER BY created_at DESC, id), '[]'))::text FROM tokens",
            0, NULL, tokens_listed, NULL);
}

void tl__api_admin_tokens_list(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_ADMIN), tokens_list_authed);
}
