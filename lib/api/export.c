/* Standard exports for neighbouring systems (issue 8): a region's results of a day as an HL7
 * FHIR R4 Bundle (GET /v1/export/fhir) or as HL7 v2.5.1 ORU^R01 messages in a batch
 * (GET /v1/export/hl7v2), and its chain of custody as a GS1 EPCIS 2.0 JSON-LD document
 * (GET /v1/export/epcis). The documents are built by SQL functions next to the data
 * (sql/009_export.sql); this file checks the caller's scope exactly as /v1/stats does (a region
 * outside it is 403, a site outside it 404), reads the page cursor and size, and passes the
 * page through with a `Link: <…>; rel="next"` header while more remains. Every answer is one
 * bounded page: a region's day can be large, and nothing here holds more than one page. */
#include "api/internal.h"

#include "api/auth.h"
#include "domain/validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const char *name;         /* the path's last segment and the SQL function's format */
  const char *fn;           /* the SQL function that builds one page */
  const char *cursor_cast;  /* how the function takes the two cursor parts */
  const char *content_type; /* the standard's media type */
  int event_cursor;         /* 1: the cursor is "MICROSECONDS_UUID", 0: "SITE.TUBE" */
  long default_limit;       /* items per page (tubes; EPCIS: events) */
  long max_limit;
} export_format_t;

/* Pages are counted in tubes for FHIR and HL7 (a pooled tube brings up to 20 persons, each a
 * Patient, a swab Specimen and, in HL7, a message) and in events for EPCIS. The maxima keep one
 * answer to a few MiB. */
static const export_format_t formats[] = {
  {"fhir", "tl_fhir_bundle", "$8, $9, $10::int, base.url", "application/fhir+json; fhirVersion=4.0", 0, 100, 500},
  {"hl7v2", "tl_hl7_batch", "$8, $9, $10::int", "application/hl7-v2+er7; charset=utf-8", 0, 100, 500},
  {"epcis", "tl_epcis_document", "$8::bigint, $9::uuid, $10::int", "application/ld+json", 1, 1000, 5000},
};

typedef struct {
  char code[40];   /* region (GB/T 2260) or site code */
  int is_site;
  char day[16];    /* "" = today in the deployment's zone */
  char round[40];  /* "" = every round of the day */
  char after[2][48]; /* the cursor's two parts, "" on the first page */
  char limit[24];
} export_query_t;

/* A cursor this server gave: FHIR/HL7 "SITE.TUBE" (the last tube of the page), EPCIS
 * "MICROSECONDS_UUID" (the last event's time and id). */
static int parse_cursor(const export_format_t *f, const char *c, export_query_t *q) {
  const char *sep = strchr(c, f->event_cursor ? '_' : '.');
  if (sep == NULL || (size_t)(sep - c) >= sizeof q->after[0] || strlen(sep + 1) >= sizeof q->after[1]) return -1;
  size_t n1 = (size_t)(sep - c), n2 = strlen(sep + 1);
  memcpy(q->after[0], c, n1);
  q->after[0][n1] = '\0';
  memcpy(q->after[1], sep + 1, n2 + 1);
  if (f->event_cursor) {
    if (n1 == 0 || n1 > 18 || strspn(q->after[0], "0123456789") != n1) return -1;
    return tl_valid_uuid(q->after[1], n2) ? 0 : -1;
  }
  return tl_valid_code(q->after[0], n1) && tl_valid_barcode(q->after[1], n2) ? 0 : -1;
}

/* Reads region=, day= or round=, cursor= and limit=; answers and returns -1 on a problem.
 * Scope as /v1/stats: a region outside the caller's is 403, a site outside a site-scoped
 * reader's 404 (the SQL checks a site's township against a region reader's scope). */
static int read_query(tl_http_exchange_t *x, const tl_principal_t *p, const export_format_t *f,
                      export_query_t *q) {
  char cursor[128], limit[16];
  int nr = tl_http_exchange_query(x, "region", q->code, sizeof q->code);
  int nd = tl_http_exchange_query(x, "day", q->day, sizeof q->day);
  int no = tl_http_exchange_query(x, "round", q->round, sizeof q->round);
  int nc = tl_http_exchange_query(x, "cursor", cursor, sizeof cursor);
  int nl = tl_http_exchange_query(x, "limit", limit, sizeof limit);
  int64_t days;
  if (nr < 0 || (!tl_valid_region(q->code, (size_t)nr) && !tl_valid_code(q->code, (size_t)nr))) {
    tl_http_reply_error(x, 400, nr == -1 ? "missing_field" : "invalid_region",
                        "\"region\" must name a region (GB/T 2260) or a site.");
    return -1;
  }
  q->is_site = !tl_valid_region(q->code, (size_t)nr);
  if (nd == -2 || (nd >= 0 && tl_date_parse(q->day, (size_t)nd, &days) != 0)) {
    tl_http_reply_error(x, 400, "invalid_field", "\"day\" must be a date like 2021-10-08.");
    return -1;
  }
  if (no == -2 || (no >= 0 && !tl_valid_code(q->round, (size_t)no)) || (nd >= 0 && no >= 0)) {
    tl_http_reply_error(x, 400, "invalid_field", "Give a \"day\" or a \"round\" (a round code), not both.");
    return -1;
  }
  if (nd < 0) q->day[0] = '\0';
  if (no < 0) q->round[0] = '\0';
  q->after[0][0] = q->after[1][0] = '\0';
  if (nc == -2 || (nc >= 0 && parse_cursor(f, cursor, q) != 0)) {
    tl_http_reply_error(x, 400, "invalid_field", "\"cursor\" is not one this server gave.");
    return -1;
  }
  long n = f->default_limit;
  if (nl >= 0) {
    char *end;
    errno = 0;
    n = strtol(limit, &end, 10);
    if (nl == 0 || *end != '\0' || errno != 0) n = 0;
  }
  if (nl == -2 || n < 1 || n > f->max_limit) {
    char msg[64];
    snprintf(msg, sizeof msg, "\"limit\" must be 1 to %ld.", f->max_limit);
    tl_http_reply_error(x, 400, "invalid_field", msg);
    return -1;
  }
  snprintf(q->limit, sizeof q->limit, "%ld", n);
  if (q->is_site ? (p->site[0] && strcmp(q->code, p->site) != 0) : !tl_principal_sees(p, q->code)) {
    if (q->is_site)
      tl_http_reply_error(x, 404, "not_found", "There is no such site in your scope.");
    else
      tl_http_reply_error(x, 403, "out_of_scope", "The region is outside this token's scope.");
    return -1;
  }
  return 0;
}

static void export_done(tl_http_exchange_t *x, tl_api_t *api, int status, const tl_db_result_t *res,
                        void *ctx) {
  (void)api;
  const export_format_t *f = &formats[*(const int *)ctx];
  if (status != 0) {
    tl_api_reply_db_error(x, status);
    return;
  }
  const char *body = tl_db_result_rows(res) == 1 ? tl_db_result_value(res, 0, 0) : NULL;
  if (body == NULL) {
    tl_http_reply_error(x, 404, "not_found", "There is no such region or site in your scope.");
    return;
  }
  const char *next = tl_db_result_value(res, 0, 1);
  char link[256] = "";
  if (next != NULL && snprintf(link, sizeof link, "Link: <%s>; rel=\"next\"\r\n", next) >= (int)sizeof link) {
    tl_http_reply_error(x, 500, "internal", "The next page's link is too long.");
    return;
  }
  tl_http_reply(x, 200, f->content_type, link, body, strlen(body));
}

static void export_call(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p, int which) {
  static const char *const roles[] = {"collector", "courier", "lab", "viewer", "supervisor", "admin"};
  const export_format_t *f = &formats[which];
  export_query_t q;
  if (read_query(x, p, f, &q) != 0) return;
  int *ctx = malloc(sizeof *ctx);
  if (ctx == NULL) {
    tl_http_reply_error(x, 500, "internal", "The server ran out of memory.");
    return;
  }
  *ctx = which;
  const char *params[] = {q.code, q.day[0] ? q.day : NULL, q.round[0] ? q.round : NULL,
                          roles[p->role], p->region, p->scope, q.is_site ? "true" : "false",
                          q.after[0][0] ? q.after[0] : NULL, q.after[1][0] ? q.after[1] : NULL, q.limit};
  /* The rounds of the day (or the one round), the page's own URL for the next link (with the
   * day pinned, so paging across midnight does not move), and the same scope test as the
   * stats: a site's township must lie in a region reader's region; an unknown code is 404. */
  char sql[1536];
  snprintf(sql, sizeof sql,
           "WITH d AS (SELECT coalesce($2::date, current_date) AS day),"
           " rs AS (SELECT CASE WHEN $3::text IS NOT NULL THEN ARRAY[$3::text]"
           "  ELSE ARRAY(SELECT code FROM rounds, d WHERE rounds.day = d.day) END AS rounds),"
           " base AS (SELECT '/v1/export/%s?region=' || $1 || CASE WHEN $3::text IS NOT NULL"
           "  THEN '&round=' || $3 ELSE '&day=' || d.day END || '&limit=' || $10 AS url FROM d)"
           " SELECT x.body, base.url || '&cursor=' || x.next_cursor"
           " FROM rs, base, %s($1, $7::boolean, rs.rounds, $4, $6, $5, %s) x"
           " WHERE ($4 = 'admin' OR left(coalesce((SELECT township FROM sites WHERE code = $1), $1),"
           "  length($5)) = $5)"
           "  AND CASE WHEN $7::boolean THEN EXISTS (SELECT 1 FROM sites WHERE code = $1)"
           "   ELSE EXISTS (SELECT 1 FROM regions WHERE code = $1) END",
           f->name, f->fn, f->cursor_cast);
  tl_api_db(api, x, sql, 10, params, export_done, ctx);
}

static void fhir_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  export_call(x, api, p, 0);
}
static void hl7v2_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  export_call(x, api, p, 1);
}
static void epcis_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  export_call(x, api, p, 2);
}

void tl__api_export_fhir(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_READERS, fhir_authed); }
void tl__api_export_hl7v2(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_READERS, hl7v2_authed); }
void tl__api_export_epcis(tl_http_exchange_t *x, void *ctx) { tl_api_auth(ctx, x, TL_ROLES_READERS, epcis_authed); }
