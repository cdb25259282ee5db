/* The officials' read calls (DESIGN §5): stats from the roll-ups, the lab arrival board and the
 * daily ledger. A region outside the caller's scope is 403; a site or lab outside it is 404. */
#include "api/internal.h"

#include "api/auth.h"
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>


/* Reads region= (a region code, or a site code), day= or round=. Answers and returns -1 on
 * a problem. *is_site is set for a site code. */
static int region_day_round(tl_http_exchange_t *x, const tl_principal_t *p, char region[40],
                            char day[16], char round[40], int *is_site) {
  int nr = tl_http_exchange_query(x, "region", region, 40);
  int nd = tl_http_exchange_query(x, "day", day, 16);
  int no = tl_http_exchange_query(x, "round", round, 40);
  if (nr < 0) {
    tl_http_reply_error(x, 400, nr == -1 ? "missing_field" : "invalid_region",
                        "\"region\" must name a region (GB/T 2260) or a site.");
    return -1;
  }
  *is_site = !tl_valid_region(region, (size_t)nr);
  if (*is_site && !tl_valid_code(region, (size_t)nr)) {
    tl_http_reply_error(x, 400, "invalid_region", "\"region\" must name a region (GB/T 2260) or a site.");
    return -1;
  }
  if (*is_site && p->site[0] && strcmp(region, p->site) != 0) {
    tl_http_reply_error(x, 404, "not_found", "There is no such site in your scope.");
    return -1;
  }
  if (!*is_site && !tl_principal_sees(p, region)) {
    tl_http_reply_error(x, 403, "out_of_scope", "The region is outside this token's scope.");
    return -1;
  }
  int64_t days;
  if (nd == -2 || (nd >= 0 && tl_date_parse(day, (size_t)nd, &days) != 0)) {
    tl_http_reply_error(x, 400, "invalid_field", "\"day\" must be a date like 2021-10-08.");
    return -1;
  }
  if (no == -2 || (no >= 0 && !tl_valid_code(round, (size_t)no))) {
    tl_http_reply_error(x, 400, "invalid_code", "\"round\" is not a round code.");
    return -1;
  }
  if (nd >= 0 && no >= 0) {
    tl_http_reply_error(x, 400, "invalid_field", "Give either \"day\" or \"round\", not both.");
    return -1;
  }
  if (nd < 0) day[0] = '\0';
  if (no < 0) round[0] = '\0';
  return 0;
}

/* The SQL that picks the rounds ($2 day or today, $3 round) and checks a site's scope
 * ($1 code, $4 role, $5 region prefix); fn(code, rounds) builds the answer. */
static void region_call(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p,
                        const char *fn, const char *extra) {
  char region[40], day[16], round[40];
  int is_site = 0;
  if (region_day_round(x, p, region, day, round, &is_site) != 0) return;
  static const char *const roles[] = {"collector", "courier", "lab", "viewer", "supervisor", "admin"};
  const char *params[] = {region, day[0] ? day : NULL, round[0] ? round : NULL, roles[p->role], p->region};
  char sql[1024];
  snprintf(sql, sizeof sql,
           "WITH d AS (SELECT coalesce($2::date, current_date) AS day),"
           " rs AS (SELECT CASE WHEN $3::text IS NOT NULL THEN ARRAY[$3::text]"
           "  ELSE ARRAY(SELECT code FROM rounds, d WHERE rounds.day = d.day) END AS rounds)"
           " SELECT (%s($1, rs.rounds) || jsonb_build_object('day', CASE WHEN $3::text IS NULL"
           "  THEN d.day END, 'round', $3::text)%s)::text FROM d, rs"
           " WHERE $4 = 'admin' OR left(coalesce((SELECT township FROM sites WHERE code = $1), $1),"
           "  length($5)) = $5",
           fn, extra);
  tl_api_db(api, x, sql, 5, params, tl__api_json_or_404, strdup(is_site ? "site in your scope" : "region"));
}

static void stats_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  region_call(x, api, p, "tl_stats_json", "");
}
static void ledger_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  region_call(x, api, p, "tl_ledger_json", "");
}

static void charts_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  region_call(x, api, p, "tl_charts_json", "");
}

void tl__api_charts(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_READERS, charts_authed); }
void tl__api_stats(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_READERS, stats_authed); }
void tl__api_ledger(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_READERS, ledger_authed); }

static void arrivals_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  size_t len;
  const char *code = tl_http_exchange_param(x, 0, &len);
  char lab[40], minutes[16];
  if (!tl_valid_code(code, len)) {
    tl_http_reply_error(x, 404, "not_found", "There is no such lab.");
    return;
  }
  memcpy(lab, code, len);
  lab[len] = '\0';
  if (p->role == TL_ROLE_LAB && strcmp(p->scope, lab) != 0) {
    tl_http_reply_error(x, 404, "not_found", "There is no such lab.");
    return;
  }
  snprintf(minutes, sizeof minutes, "%d", api->transit_default_min);
  const char *params[] = {lab, p->role == TL_ROLE_ADMIN || p->role == TL_ROLE_LAB ? "" : p->region, minutes};
  tl_api_db(api, x,
            "SELECT tl_arrivals_json(l.code, make_interval(mins => $3::int))::text FROM labs l"
            " WHERE l.code = $1 AND left(l.county, length($2)) = $2",
            3, params, tl__api_json_or_404, strdup("lab"));
}

void tl__api_arrivals(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLES_READERS | TL_ROLE_BIT(TL_ROLE_LAB), arrivals_authed);
}
