/* The read calls of DESIGN §5 and the anomaly loop: tubes, boxes, person lookup, anomalies
 * (list, acknowledge, resolve) and follow-ups. The JSON is built by SQL functions next to the
 * data (sql/005_queries.sql) and passed through; scope is part of every WHERE clause, so an
 * object outside the caller's scope is simply not found (404), and a region outside it is 403. */
#include "api/internal.h"

#include "api/auth.h"
#include "api/json.h"
#include "crypto/pii.h"
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const role_names[] = {"collector", "courier", "lab", "viewer", "supervisor", "admin"};


/* Copies route parameter 0 into out if it is a valid barcode. */
static int barcode_param(tl_http_exchange_t *x, tl_code_t out) {
  size_t len;
  const char *v = tl_http_exchange_param(x, 0, &len);
  if (v == NULL || !tl_valid_barcode(v, len)) return -1;
  memcpy(out, v, len);
  out[len] = '\0';
  return 0;
}

static void object_query(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p,
                         const char *fn, const char *what) {
  tl_code_t code;
  if (barcode_param(x, code) != 0) {
    char msg[80];
    snprintf(msg, sizeof msg, "There is no such %s.", what);
    tl_http_reply_error(x, 404, "not_found", msg);
    return;
  }
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT %s($1, $2, $3, $4)::text", fn);
  const char *params[] = {code, role_names[p->role], p->scope, p->region};
  tl_api_db(api, x, sql, 4, params, tl__api_json_or_404, strdup(what));
}

static void tube_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  object_query(x, api, p, "tl_tube_json", "tube");
}
static void box_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  object_query(x, api, p, "tl_box_json", "box");
}

void tl__api_tube(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLES_READERS | TL_ROLE_BIT(TL_ROLE_COLLECTOR) | TL_ROLE_BIT(TL_ROLE_LAB),
              tube_authed);
}
void tl__api_box(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLES_ALL, box_authed);
}

/* ---------- person lookup ---------- */

static void person_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  static const char *const allowed[] = {"id_type", "id_number", NULL};
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  cJSON *root = tl_json_parse_body(req->body.data, req->body.len, &err);
  const char *type = NULL, *number = NULL;
  if (root == NULL || tl_json_only(root, allowed, "the lookup", &err) != 0 ||
      (type = tl_json_str(root, "id_type", 1, "the lookup", &err, NULL)) == NULL ||
      (number = tl_json_str(root, "id_number", 1, "the lookup", &err, NULL)) == NULL) {
    cJSON_Delete(root);
    tl_http_reply_error(x, err.status, err.code, err.message);
    return;
  }
  int id_type = tl_id_type_parse(type, strlen(type));
  char norm[64], hmac[TL_PII_HMAC_HEX_LEN + 1];
  int rc = id_type < 0 ? -1 : tl_id_normalize(id_type, number, strlen(number), norm, sizeof norm);
  cJSON_Delete(root);
  if (rc != 0) {
    tl_http_reply_error(x, 400, "invalid_person",
                        id_type == TL_ID_RESIDENT ? tl_resident_id_error(rc)
                                                  : "The ID type or number is not valid.");
    return;
  }
  tl_pii_lookup_hmac(api->keys, id_type, norm, hmac);
  memset(norm, 0, sizeof norm);
  const char *params[] = {hmac, role_names[p->role], p->region, p->site};
  tl_api_db(api, x, "SELECT tl_person_json($1, $2, $3, $4)::text", 4, params, tl__api_json_or_404,
            strdup("person in your region"));
}

void tl__api_person_lookup(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLES_READERS, person_authed);
}

/* ---------- lists ---------- */

/* The region of a list call: the query's region (403 outside the caller's), else the
 * caller's own. Returns 0, or -1 after answering. */
static int list_region(tl_http_exchange_t *x, const tl_principal_t *p, char out[16]) {
  int n = tl_http_exchange_query(x, "region", out, 16);
  if (n == -2 || (n >= 0 && !tl_valid_region(out, (size_t)n))) {
    tl_http_reply_error(x, 400, "invalid_region", "\"region\" must be a GB/T 2260 code.");
    return -1;
  }
  if (n < 0) {
    snprintf(out, 16, "%s", p->region);
    return 0;
  }
  if (!tl_principal_sees(p, out)) {
    tl_http_reply_error(x, 403, "out_of_scope", "The region is outside this token's scope.");
    return -1;
  }
  return 0;
}

static int one_of(const char *v, const char *const *words) {
  for (; *words; words++)
    if (strcmp(v, *words) == 0) return 1;
  return 0;
}

static void anomalies_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  static const char *const states[] = {"open", "acknowledged", "resolved", "auto_resolved", NULL};
  static const char *const types[] = {"person_repeat", "seal_count_mismatch", "custody_gap",
                                      "wrong_lab", "tube_missing", "tube_unexpected",
                                      "orphan_result", "overdue_transport", "overdue_test",
                                      "overdue_followup", NULL};
  char region[16], state[24] = "", type[32] = "", cursor[80] = "", limit_s[8] = "";
  if (list_region(x, p, region) != 0) return;
  int ns = tl_http_exchange_query(x, "state", state, sizeof state);
  int nt = tl_http_exchange_query(x, "type", type, sizeof type);
  int nc = tl_http_exchange_query(x, "cursor", cursor, sizeof cursor);
  int nl = tl_http_exchange_query(x, "limit", limit_s, sizeof limit_s);
  if (ns == -2 || (ns >= 0 && !one_of(state, states)) || nt == -2 || (nt >= 0 && !one_of(type, types))) {
    tl_http_reply_error(x, 400, "invalid_field", "Unknown state or type.");
    return;
  }
  long limit = nl >= 0 ? strtol(limit_s, NULL, 10) : 50;
  if (nl == -2 || limit < 1 || limit > 500) {
    tl_http_reply_error(x, 400, "invalid_field", "\"limit\" must be 1 to 500.");
    return;
  }
  /* cursor = "<opened_at epoch microseconds>_<id>" of the last row of the previous page */
  char cur_ts[32] = "", cur_id[40] = "";
  if (nc == -2 || (nc >= 0 && (sscanf(cursor, "%20[0-9]_%36[0-9a-f-]", cur_ts, cur_id) != 2 ||
                               !tl_valid_uuid(cur_id, strlen(cur_id))))) {
    tl_http_reply_error(x, 400, "invalid_field", "\"cursor\" is not one this server gave.");
    return;
  }
  char lim[8];
  snprintf(lim, sizeof lim, "%ld", limit);
  const char *params[] = {region, ns >= 0 ? state : NULL, nt >= 0 ? type : NULL,
                          nc >= 0 ? cur_ts : NULL, nc >= 0 ? cur_id : NULL, lim, p->site};
  tl_api_db(api, x,
            "WITH page AS ("
            " SELECT a.* FROM anomalies a"
            " WHERE left(a.region, length($1)) = $1 AND ($7 = '' OR a.site = $7)"
            "  AND ($2::text IS NULL OR a.state = $2) AND ($3::text IS NULL OR a.type = $3)"
            "  AND ($4::bigint IS NULL OR ((extract(epoch FROM a.opened_at) * 1000000)::bigint, a.id)"
            "       < ($4::bigint, $5::uuid))"
            " ORDER BY a.opened_at DESC, a.id DESC LIMIT $6::int + 1),"
            " shown AS (SELECT * FROM page ORDER BY opened_at DESC, id DESC LIMIT $6::int)"
            " SELECT jsonb_build_object("
            "  'anomalies', coalesce((SELECT jsonb_agg(tl_anomaly_json(s) ORDER BY s.opened_at DESC, s.id DESC)"
            "   FROM shown s), '[]'),"
            "  'next_cursor', CASE WHEN (SELECT count(*) FROM page) > $6::int THEN"
            "   (SELECT (extract(epoch FROM l.opened_at) * 1000000)::bigint || '_' || l.id"
            "    FROM shown l ORDER BY l.opened_at, l.id LIMIT 1) END)::text",
            7, params, tl__api_json_or_404, NULL);
}

void tl__api_anomalies(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLES_READERS, anomalies_authed);
}

static void anomaly_changed(tl_http_exchange_t *x, tl_api_t *api, int status,
                            const tl_db_result_t *res, void *ctx) {
  (void)api;
  (void)ctx;
  if (status != 0) {
    tl_api_reply_db_error(x, status);
    return;
  }
  const char *found = tl_db_result_rows(res) == 1 ? tl_db_result_value(res, 0, 0) : NULL;
  const char *text = found ? tl_db_result_value(res, 0, 1) : NULL;
  if (found == NULL)
    tl_http_reply_error(x, 404, "not_found", "There is no such anomaly.");
  else if (text == NULL)
    tl_http_reply_error(x, 409, "anomaly_closed", "The anomaly is already resolved.");
  else
    tl_http_reply(x, 200, "application/json", "", text, strlen(text));
}

/* ack (resolve = 0) or resolve (1) the anomaly in the route, inside the caller's region. */
static void anomaly_step(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p, int resolve) {
  size_t len;
  const char *id = tl_http_exchange_param(x, 0, &len);
  char lower[37];
  if (!tl_valid_uuid(id, len)) {
    tl_http_reply_error(x, 404, "not_found", "There is no such anomaly.");
    return;
  }
  tl_uuid_lower(lower, id);
  const char *field = resolve ? "note" : "owner";
  size_t maxlen = resolve ? 2000 : 100;
  const char *const allowed[] = {field, NULL};
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  cJSON *root = tl_json_parse_body(req->body.data, req->body.len, &err);
  const char *v = NULL;
  if (root == NULL || tl_json_only(root, allowed, "the body", &err) != 0 ||
      (v = tl_json_str(root, field, 1, "the body", &err, NULL)) == NULL) {
    cJSON_Delete(root);
    tl_http_reply_error(x, err.status, err.code, err.message);
    return;
  }
  if (!tl_name_valid(v, strlen(v)) && !(resolve && tl_utf8_valid(v, strlen(v)) && strlen(v) > 0)) {
    cJSON_Delete(root);
    tl_http_reply_error(x, 400, "invalid_field", resolve ? "\"note\" must be text." : "\"owner\" must be text.");
    return;
  }
  if (strlen(v) > maxlen) {
    cJSON_Delete(root);
    tl_http_reply_error(x, 400, "invalid_field", "The text is too long.");
    return;
  }
  const char *params[] = {lower, p->role == TL_ROLE_ADMIN ? "" : p->region, v, p->site};
  /* Found-but-closed answers (id, NULL) so the caller can say 409 rather than 404. */
  const char *sql = resolve
      ? "WITH target AS (SELECT subject, id, state FROM anomalies WHERE id = $1"
        " AND left(region, length($2)) = $2 AND ($4 = '' OR site = $4)), done AS (UPDATE anomalies a SET state = 'resolved',"
        " note = $3, resolved_at = now() FROM target t WHERE a.subject = t.subject AND a.id = t.id"
        " AND t.state IN ('open', 'acknowledged') RETURNING a.*)"
        " SELECT t.id, (SELECT tl_anomaly_json(d::anomalies)::text FROM done d) FROM target t"
      : "WITH target AS (SELECT subject, id, state FROM anomalies WHERE id = $1"
        " AND left(region, length($2)) = $2 AND ($4 = '' OR site = $4)), done AS (UPDATE anomalies a SET state = 'acknowledged',"
        " owner = $3, acknowledged_at = coalesce(a.acknowledged_at, now()) FROM target t"
        " WHERE a.subject = t.subject AND a.id = t.id AND t.state IN ('open', 'acknowledged') RETURNING a.*)"
        " SELECT t.id, (SELECT tl_anomaly_json(d::anomalies)::text FROM done d) FROM target t";
  tl_api_db(api, x, sql, 4, params, anomaly_changed, NULL);
  cJSON_Delete(root);
}

static void ack_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  anomaly_step(x, api, p, 0);
}
static void resolve_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  anomaly_step(x, api, p, 1);
}

#define SUPERVISORS (TL_ROLE_BIT(TL_ROLE_SUPERVISOR) | TL_ROLE_BIT(TL_ROLE_ADMIN))
void tl__api_anomaly_ack(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, SUPERVISORS, ack_authed); }
void tl__api_anomaly_resolve(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, SUPERVISORS, resolve_authed);
}

static void followups_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  static const char *const states[] = {"open", "closed", "all", NULL};
  char region[16], state[16] = "open";
  if (list_region(x, p, region) != 0) return;
  int ns = tl_http_exchange_query(x, "state", state, sizeof state);
  if (ns == -2 || (ns >= 0 && !one_of(state, states))) {
    tl_http_reply_error(x, 400, "invalid_field", "\"state\" must be open, closed or all.");
    return;
  }
  const char *params[] = {region, state, p->site};
  tl_api_db(api, x,
            "SELECT jsonb_build_object('followups', coalesce(jsonb_agg(jsonb_build_object("
            " 'tube', f.tube, 'round', f.round, 'region', f.region, 'kind', f.kind,"
            " 'state', f.state, 'opened_at', f.opened_at, 'linked_tube', f.linked_tube,"
            " 'linked_at', f.linked_at, 'result', f.result, 'closed_at', f.closed_at,"
            " 'person', jsonb_build_object('id_type', p.id_type, 'id_number', p.id_masked,"
            "   'name', p.name_masked, 'phone', p.phone_masked))"
            " ORDER BY f.opened_at, f.tube), '[]'))::text"
            " FROM followups f JOIN persons p ON p.hmac = f.person"
            " WHERE left(f.region, length($1)) = $1 AND ($2 = 'all' OR f.state = $2)"
            "  AND ($3 = '' OR f.site = $3)",
            3, params, tl__api_json_or_404, NULL);
}

void tl__api_followups(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLES_READERS, followups_authed);
}

/* GET /v1/whoami: the caller's role and scope, so a dashboard can start in the right region
 * and show only the actions the role may take. Any valid token; never the token itself. */
static void whoami_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  const char *params[] = {p->token_id, role_names[p->role], p->scope, p->region, p->site};
  tl_api_db(api, x,
            "SELECT jsonb_build_object('role', $2::text, 'scope', nullif($3, ''),"
            " 'label', (SELECT label FROM tokens WHERE id = $1::uuid),"
            " 'region', (SELECT jsonb_build_object('code', r.code, 'name', r.name, 'level', r.level)"
            "            FROM regions r WHERE r.code = nullif($4, '')),"
            " 'site', (SELECT jsonb_build_object('code', s.code, 'name', s.name, 'township', s.township)"
            "          FROM sites s WHERE s.code = nullif($5, '') OR ($2 = 'collector' AND s.code = $3)))::text",
            5, params, tl__api_json_or_404, NULL);
}

void tl__api_whoami(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_ALL, whoami_authed); }
