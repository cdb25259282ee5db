/* POST /v1/events (DESIGN §4): decode and validate a batch, then apply it in one transaction:
 *
 *   acquire a connection → BEGIN → tl_load (advisory locks on every touched key, then the
 *   current facts) → the custody rules in C (lib/domain/custody.c), event by event →
 *   tl_write (set-based upserts, re-derived follow-ups and anomalies) → COMMIT → answer.
 *
 * The answer goes out only after COMMIT succeeded (synchronous_commit on), so an
 * acknowledged event is durable. A retried id whose stored digest matches is a duplicate with
 * the first outcome; other content under the same id is an id_conflict. Refused events are
 * not stored. Personal data is normalised, looked up by HMAC, encrypted and masked here; only
 * the HMAC and masked forms enter the event log. */
#include "api/internal.h"

#include "api/auth.h"
#include "api/json.h"
#include "base/log.h"
#include "crypto/digest.h"
#include "crypto/pii.h"
#include "domain/custody.h"
#include "domain/mask.h"
#include "domain/validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_EVENTS 1000
#define MAX_TUBES_PER_EVENT 500
#define FUTURE_LIMIT_MS (10 * 60 * 1000)

typedef enum {
  SLOT_REJECTED = 0, /* refused: code and message say why; nothing stored */
  SLOT_PENDING,      /* valid, waiting for the rules */
  SLOT_ACCEPTED,     /* applied and to be written */
  SLOT_DUPLICATE     /* seen before with the same content */
} slot_state_t;

typedef struct {
  slot_state_t state;
  tl_event_t ev;
  char id_text[40];      /* the id as sent (for the answer), even when invalid */
  int has_id;
  char digest[65];
  const char *code;
  char message[200];
  tl_code_t *tubes;      /* owned list for box.pack/box.receive */
  char *ct;              /* owned JSON text of ct */
  cJSON *body;           /* owned: the event as it enters the log (no personal data) */
  cJSON *person_row;     /* owned: the persons row for sample.add */
  char anomalies[8][24]; /* anomaly types opened (or stored, for duplicates) */
  int nanomalies;
} slot_t;

typedef struct {
  tl_api_t *api;
  tl_http_exchange_t *x;
  tl_sender_t sender;
  slot_t *slots;
  int n;
  int64_t now;
  tl_world_t world;
  tl_db_conn_t *conn;
} batch_t;

static void batch_free(batch_t *b) {
  for (int i = 0; i < b->n; i++) {
    free(b->slots[i].tubes);
    free(b->slots[i].ct);
    cJSON_Delete(b->slots[i].body);
    cJSON_Delete(b->slots[i].person_row);
  }
  free(b->slots);
  tl_world_dispose(&b->world);
  free(b);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void refuse(slot_t *s, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(slot_t *s, const char *code, const char *fmt, ...) {
  s->state = SLOT_REJECTED;
  s->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->message, sizeof s->message, fmt, ap);
  va_end(ap);
}

/* ---------- decoding ---------- */

static const char *const fields_by_type[TL_EV_COUNT][8] = {
    [TL_EV_TUBE_OPEN] = {"tube", "round", "capacity", NULL},
    [TL_EV_SAMPLE_ADD] = {"tube", "person", NULL},
    [TL_EV_TUBE_SEAL] = {"tube", "count", NULL},
    [TL_EV_BOX_PACK] = {"box", "tubes", NULL},
    [TL_EV_BOX_SEAL] = {"box", "lab", "count", NULL},
    [TL_EV_BOX_PICKUP] = {"box", NULL},
    [TL_EV_BOX_DELIVER] = {"box", "lab", NULL},
    [TL_EV_BOX_RECEIVE] = {"box", "tubes", NULL},
    [TL_EV_TUBE_REJECT] = {"tube", "reason", NULL},
    [TL_EV_TUBE_RESULT] = {"tube", "result", "ct", "amend", NULL},
};

/* Reads a barcode (tube or box) field into out. */
static int get_barcode(const cJSON *o, const char *key, tl_code_t out, slot_t *s, tl_api_err_t *err) {
  const char *v = tl_json_str(o, key, 1, "the event", err, NULL);
  if (v == NULL) return -1;
  if (!tl_valid_barcode(v, strlen(v)))
    return tl_api_fail(err, 400, "invalid_barcode", "\"%s\" must be 6-32 of A-Z a-z 0-9 -.", key);
  (void)s;
  snprintf(out, sizeof(tl_code_t), "%s", v);
  return 0;
}

static int get_code(const cJSON *o, const char *key, int required, tl_code_t out, tl_api_err_t *err) {
  int absent = 0;
  const char *v = tl_json_str(o, key, required, "the event", err, &absent);
  if (v == NULL) return absent && !required ? 0 : -1;
  if (!tl_valid_code(v, strlen(v)))
    return tl_api_fail(err, 400, "invalid_code", "\"%s\" must be 1-32 of A-Z a-z 0-9 -.", key);
  snprintf(out, sizeof(tl_code_t), "%s", v);
  return 0;
}

static int get_count(const cJSON *o, int *out, tl_api_err_t *err) {
  long v = -1;
  int rc = tl_json_int(o, "count", 0, "the event", err, &v);
  if (rc < 0) return -1;
  if (rc == 0 && (v < 0 || v > 10000))
    return tl_api_fail(err, 400, "invalid_count", "\"count\" must be 0 to 10000.");
  *out = rc == 0 ? (int)v : -1;
  return 0;
}

static int get_tubes(const cJSON *o, slot_t *s, tl_api_err_t *err) {
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "tubes");
  if (arr == NULL) return tl_api_fail(err, 400, "missing_field", "The event needs \"tubes\".");
  int n = cJSON_GetArraySize(arr);
  if (!cJSON_IsArray(arr) || n < 1 || n > MAX_TUBES_PER_EVENT)
    return tl_api_fail(err, 400, "invalid_field", "\"tubes\" must list 1 to %d tube codes.",
                       MAX_TUBES_PER_EVENT);
  s->tubes = calloc((size_t)n, sizeof *s->tubes);
  if (s->tubes == NULL) return tl_api_fail(err, 500, "internal", "Out of memory.");
  int i = 0;
  for (const cJSON *c = arr->child; c; c = c->next, i++) {
    if (!cJSON_IsString(c) || !tl_valid_barcode(c->valuestring, strlen(c->valuestring)))
      return tl_api_fail(err, 400, "invalid_barcode", "\"tubes\"[%d] is not a tube code.", i);
    for (int j = 0; j < i; j++)
      if (strcmp(s->tubes[j], c->valuestring) == 0)
        return tl_api_fail(err, 400, "invalid_field", "\"tubes\" lists a tube twice.");
    snprintf(s->tubes[i], sizeof s->tubes[i], "%s", c->valuestring);
  }
  s->ev.tubes = (const tl_code_t *)s->tubes;
  s->ev.ntubes = n;
  return 0;
}

/* Appends "KEYID:BASE64" of plain to row[key]. */
static int add_encrypted(const tl_keys_t *k, cJSON *row, const char *key, const char *plain) {
  tl_buf_t b;
  tl_buf_init(&b);
  unsigned id = 0;
  char prefix[16];
  int rc = tl_pii_encrypt(k, plain, strlen(plain), &b, &id);
  if (rc == 0) {
    tl_buf_t v;
    tl_buf_init(&v);
    snprintf(prefix, sizeof prefix, "%u:", id);
    rc = tl_buf_append(&v, prefix, strlen(prefix));
    if (rc == 0) rc = tl_buf_append(&v, b.data, b.len);
    if (rc == 0 && cJSON_AddStringToObject(row, key, tl_buf_cstr(&v)) == NULL) rc = TL_ENOMEM;
    tl_buf_dispose(&v);
  }
  tl_buf_dispose(&b);
  return rc;
}

/* Validates the person of a sample.add; fills ev.person (HMAC), the persons row and the
 * sanitised person for the log. Personal data never reaches an error message. */
static int get_person(const tl_api_t *api, const cJSON *o, slot_t *s, tl_api_err_t *err) {
  static const char *const allowed[] = {"id_type", "id_number", "name", "phone", NULL};
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "person");
  if (p == NULL) return tl_api_fail(err, 400, "missing_field", "The event needs \"person\".");
  if (tl_json_only(p, allowed, "\"person\"", err) != 0) {
    err->code = "invalid_person";
    return -1;
  }
  int absent_name = 0, absent_phone = 0;
  const char *type = tl_json_str(p, "id_type", 1, "\"person\"", err, NULL);
  const char *number = type ? tl_json_str(p, "id_number", 1, "\"person\"", err, NULL) : NULL;
  const char *name = number ? tl_json_str(p, "name", 0, "\"person\"", err, &absent_name) : NULL;
  const char *phone = number ? tl_json_str(p, "phone", 0, "\"person\"", err, &absent_phone) : NULL;
  if (type == NULL || number == NULL || (name == NULL && !absent_name) ||
      (phone == NULL && !absent_phone)) {
    err->code = "invalid_person";
    return -1;
  }
  int id_type = tl_id_type_parse(type, strlen(type));
  if (id_type < 0)
    return tl_api_fail(err, 400, "invalid_person",
                       "\"id_type\" must be resident_id, passport or other.");
  char norm[64], phone_norm[32] = "", masked_id[64], masked_name[160] = "", masked_phone[40] = "";
  int rc = tl_id_normalize(id_type, number, strlen(number), norm, sizeof norm);
  if (rc != 0)
    return tl_api_fail(err, 400, "invalid_person", "%s",
                       id_type == TL_ID_RESIDENT ? tl_resident_id_error(rc)
                                                 : "The ID number is not valid.");
  if (name && (!tl_name_valid(name, strlen(name)) ||
               tl_mask_name(name, strlen(name), masked_name, sizeof masked_name) != 0))
    return tl_api_fail(err, 400, "invalid_person", "The name is not valid text (1-64 bytes).");
  if (phone && (tl_phone_normalize(phone, strlen(phone), phone_norm, sizeof phone_norm) != 0 ||
                tl_mask_phone(phone_norm, masked_phone, sizeof masked_phone) != 0))
    return tl_api_fail(err, 400, "invalid_person", "The phone number is not valid.");
  if (tl_mask_id(id_type, norm, masked_id, sizeof masked_id) != 0)
    return tl_api_fail(err, 400, "invalid_person", "The ID number is not valid.");
  tl_pii_lookup_hmac(api->keys, id_type, norm, s->ev.person);

  cJSON *row = s->person_row = cJSON_CreateObject();
  cJSON_AddStringToObject(row, "hmac", s->ev.person);
  cJSON_AddStringToObject(row, "id_type", type);
  cJSON_AddStringToObject(row, "id_masked", masked_id);
  if (name) cJSON_AddStringToObject(row, "name_masked", masked_name);
  if (phone) cJSON_AddStringToObject(row, "phone_masked", masked_phone);
  rc = add_encrypted(api->keys, row, "id_enc", norm);
  if (rc == 0 && name) rc = add_encrypted(api->keys, row, "name_enc", name);
  if (rc == 0 && phone) rc = add_encrypted(api->keys, row, "phone_enc", phone_norm);
  memset(norm, 0, sizeof norm);
  memset(phone_norm, 0, sizeof phone_norm);
  if (rc != 0) return tl_api_fail(err, 500, "internal", "Personal data could not be encrypted.");

  /* The log keeps who was sampled as HMAC and masked forms only. */
  cJSON *logged = cJSON_CreateObject();
  cJSON_AddStringToObject(logged, "id_type", type);
  cJSON_AddStringToObject(logged, "hmac", s->ev.person);
  cJSON_AddStringToObject(logged, "id_masked", masked_id);
  if (name) cJSON_AddStringToObject(logged, "name_masked", masked_name);
  cJSON_ReplaceItemInObjectCaseSensitive(s->body, "person", logged);
  return 0;
}

/* Validates one event object into slot s. On failure s is REJECTED with the reason. */
static void decode_event(batch_t *b, const cJSON *o, slot_t *s) {
  tl_api_err_t err = {0};
  s->ev.count = -1;
  if (!cJSON_IsObject(o)) {
    refuse(s, "invalid_event", "An event must be a JSON object.");
    return;
  }
  const char *id = tl_json_str(o, "id", 1, "the event", &err, NULL);
  if (id) {
    snprintf(s->id_text, sizeof s->id_text, "%.36s", id);
    s->has_id = 1;
  }
  if (id == NULL || !tl_valid_uuid(id, strlen(id))) {
    refuse(s, "invalid_id", "\"id\" must be a UUID.");
    return;
  }
  tl_uuid_lower(s->ev.id, id);
  const char *type = tl_json_str(o, "type", 1, "the event", &err, NULL);
  int t = type ? tl_event_type_parse(type) : -1;
  if (t < 0) {
    refuse(s, "invalid_type", "\"type\" is not an event type of DESIGN §4.");
    return;
  }
  s->ev.type = (tl_event_type_t)t;
  const char *allowed[12] = {"id", "type", "at"};
  int na = 3;
  for (int i = 0; fields_by_type[t][i]; i++) allowed[na++] = fields_by_type[t][i];
  allowed[na] = NULL;
  if (tl_json_only(o, allowed, "the event", &err) != 0) goto bad;
  const char *at = tl_json_str(o, "at", 1, "the event", &err, NULL);
  if (at == NULL) goto bad;
  if (tl_time_parse(at, strlen(at), &s->ev.at) != 0) {
    refuse(s, "invalid_time", "\"at\" must be an RFC 3339 time with an offset.");
    return;
  }
  if (s->ev.at > b->now + FUTURE_LIMIT_MS) {
    refuse(s, "future_time", "\"at\" is more than 10 minutes in the future.");
    return;
  }
  s->body = cJSON_Duplicate(o, 1);
  if (s->body == NULL) {
    refuse(s, "internal", "Out of memory.");
    return;
  }
  switch (s->ev.type) {
  case TL_EV_TUBE_OPEN: {
    long cap = 0;
    if (get_barcode(o, "tube", s->ev.tube, s, &err) || get_code(o, "round", 1, s->ev.round, &err))
      goto bad;
    int rc = tl_json_int(o, "capacity", 0, "the event", &err, &cap);
    if (rc < 0) goto bad;
    if (rc == 0 && cap != 1 && cap != 5 && cap != 8 && cap != 10 && cap != 20) {
      refuse(s, "invalid_capacity", "\"capacity\" must be 1, 5, 8, 10 or 20.");
      return;
    }
    s->ev.capacity = (int)cap;
    break;
  }
  case TL_EV_SAMPLE_ADD:
    if (get_barcode(o, "tube", s->ev.tube, s, &err) || get_person(b->api, o, s, &err)) goto bad;
    break;
  case TL_EV_TUBE_SEAL:
    if (get_barcode(o, "tube", s->ev.tube, s, &err) || get_count(o, &s->ev.count, &err)) goto bad;
    break;
  case TL_EV_BOX_PACK:
  case TL_EV_BOX_RECEIVE:
    if (get_barcode(o, "box", s->ev.box, s, &err) || get_tubes(o, s, &err)) goto bad;
    break;
  case TL_EV_BOX_SEAL:
    if (get_barcode(o, "box", s->ev.box, s, &err) || get_code(o, "lab", 1, s->ev.lab, &err) ||
        get_count(o, &s->ev.count, &err))
      goto bad;
    break;
  case TL_EV_BOX_PICKUP:
    if (get_barcode(o, "box", s->ev.box, s, &err)) goto bad;
    break;
  case TL_EV_BOX_DELIVER:
    if (get_barcode(o, "box", s->ev.box, s, &err) ||
        get_code(o, "lab", b->sender.role == TL_ROLE_COURIER, s->ev.lab, &err))
      goto bad;
    break;
  case TL_EV_TUBE_REJECT: {
    if (get_barcode(o, "tube", s->ev.tube, s, &err)) goto bad;
    const char *reason = tl_json_str(o, "reason", 1, "the event", &err, NULL);
    int r = reason ? tl_reason_parse(reason) : -1;
    if (reason == NULL) goto bad;
    if (r < 0) {
      refuse(s, "invalid_reason", "\"reason\" must be leak, unlabeled, insufficient or other.");
      return;
    }
    s->ev.reason = (tl_reason_t)r;
    break;
  }
  case TL_EV_TUBE_RESULT: {
    if (get_barcode(o, "tube", s->ev.tube, s, &err)) goto bad;
    const char *result = tl_json_str(o, "result", 1, "the event", &err, NULL);
    if (result == NULL) goto bad;
    int r = tl_result_parse(result);
    if (r < 0) {
      refuse(s, "invalid_result", "\"result\" must be negative, positive or invalid.");
      return;
    }
    s->ev.result = (tl_result_t)r;
    if (tl_json_bool(o, "amend", "the event", &err, &s->ev.amend) < 0) goto bad;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "ct");
    if (ct) {
      int ok = cJSON_IsObject(ct) && cJSON_GetArraySize(ct) <= 16;
      for (const cJSON *g = ok ? ct->child : NULL; g && ok; g = g->next)
        ok = cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble <= 100 &&
             tl_valid_code(g->string, strlen(g->string));
      if (!ok) {
        refuse(s, "invalid_field", "\"ct\" must map up to 16 gene names to Ct values 0-100.");
        return;
      }
      s->ct = cJSON_PrintUnformatted(ct);
      s->ev.ct = s->ct;
    }
    break;
  }
  case TL_EV_COUNT: break;
  }
  /* The digest covers the event as sent (canonical form), personal data included, keyed. */
  tl_buf_t canon;
  tl_buf_init(&canon);
  if (tl_json_canonical(o, &canon) != 0) {
    tl_buf_dispose(&canon);
    refuse(s, "internal", "Out of memory.");
    return;
  }
  tl_digest_hmac(b->api->keys, canon.data, canon.len, s->digest);
  memset(canon.data, 0, canon.len);
  tl_buf_dispose(&canon);
  s->state = SLOT_PENDING;
  return;
bad:
  refuse(s, err.code ? err.code : "invalid_event", "%s", err.message);
}

/* ---------- answering ---------- */

static const char *const state_names[] = {"rejected", "pending", "accepted", "duplicate"};

static void answer(batch_t *b) {
  cJSON *root = cJSON_CreateObject();
  cJSON *results = cJSON_AddArrayToObject(root, "results");
  for (int i = 0; i < b->n; i++) {
    slot_t *s = &b->slots[i];
    cJSON *r = cJSON_CreateObject();
    if (s->has_id)
      cJSON_AddStringToObject(r, "id", s->state == SLOT_REJECTED && !s->ev.id[0] ? s->id_text : s->ev.id);
    else
      cJSON_AddNullToObject(r, "id");
    cJSON_AddStringToObject(r, "status", state_names[s->state]);
    if (s->state == SLOT_REJECTED) {
      cJSON_AddStringToObject(r, "code", s->code);
      cJSON_AddStringToObject(r, "message", s->message);
    }
    cJSON *an = cJSON_AddArrayToObject(r, "anomalies");
    for (int k = 0; k < s->nanomalies; k++) cJSON_AddItemToArray(an, cJSON_CreateString(s->anomalies[k]));
    cJSON_AddItemToArray(results, r);
  }
  tl_api_reply_json(b->x, 200, root);
}

/* Ends the batch: answers (if the client is still there), releases and frees. */
static void finish(batch_t *b, int db_status) {
  if (b->conn) tl_db_release(b->conn);
  b->conn = NULL;
  if (tl_http_exchange_alive(b->x)) {
    if (db_status == 0) answer(b);
    else tl_api_reply_db_error(b->x, db_status);
  }
  tl_http_exchange_release(b->x);
  batch_free(b);
}

static void fail_db(batch_t *b, int status, const tl_db_result_t *res, const char *step) {
  const char *st = res ? tl_db_result_sqlstate(res) : "";
  tl_log(TL_LOG_WARN, "ingest_failed", "step=%s status=%s sqlstate=%s events=%d", step,
         tl_strerror(status), st[0] ? st : "-", b->n);
  /* Deadlocks and serialization failures are transient: tell the client to retry. */
  if (status == TL_EDB && (strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0 ||
                           strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0))
    status = TL_EDB_DOWN;
  finish(b, status);
}

/* ---------- the transaction ---------- */

static void step_commit_done(void *arg, int status, const tl_db_result_t *res);

/* 64-bit FNV-1a of "kind:code": the advisory lock key of an object. */
static long long lock_key(char kind, const char *code) {
  unsigned long long h = 1469598103934665603ULL;
  h = (h ^ (unsigned char)kind) * 1099511628211ULL;
  h = (h ^ ':') * 1099511628211ULL;
  for (const unsigned char *p = (const unsigned char *)code; *p; p++) h = (h ^ *p) * 1099511628211ULL;
  return (long long)h;
}

/* Appends item to a PostgreSQL array literal being built in b ("{a,b"); codes and UUIDs need
 * no quoting (their character sets exclude every special character). */
static int arr_add(tl_buf_t *b, const char *item) {
  return tl_buf_appendf(b, "%s%s", b->len > 1 ? "," : "", item);
}

static int64_t json_time(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  int64_t ms = 0;
  if (cJSON_IsString(v) && tl_time_parse(v->valuestring, strlen(v->valuestring), &ms) != 0) ms = 0;
  return ms;
}

static void json_code(const cJSON *o, const char *key, char *out, size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static int json_int(const cJSON *o, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valueint : dflt;
}

/* Fills the world from tl_load's answer. */
static int load_world(batch_t *b, const char *text, cJSON **events_out) {
  cJSON *root = cJSON_Parse(text);
  if (root == NULL) return TL_EINVAL;
  tl_world_t *w = &b->world;
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "tubes")) {
    tl_tube_t *t = tl_world_tube(w, cJSON_GetObjectItemCaseSensitive(it, "code")->valuestring, 1);
    if (t == NULL) goto nomem;
    json_code(it, "region", t->region, sizeof t->region);
    json_code(it, "round", t->round, sizeof t->round);
    json_code(it, "site", t->site, sizeof t->site);
    t->capacity = json_int(it, "capacity", 0);
    t->opened_at = json_time(it, "opened_at");
    t->sampled = json_int(it, "sampled", 0);
    t->first_sample_at = json_time(it, "first_sample_at");
    t->sealed_at = json_time(it, "sealed_at");
    t->seal_count = json_int(it, "seal_count", -1);
    json_code(it, "box", t->box, sizeof t->box);
    t->packed_at = json_time(it, "packed_at");
    t->received_at = json_time(it, "received_at");
    json_code(it, "received_lab", t->received_lab, sizeof t->received_lab);
    json_code(it, "received_box", t->received_box, sizeof t->received_box);
    t->rejected_at = json_time(it, "rejected_at");
    const cJSON *rr = cJSON_GetObjectItemCaseSensitive(it, "reject_reason");
    t->reject_reason = cJSON_IsString(rr) ? (tl_reason_t)tl_reason_parse(rr->valuestring) : TL_REASON_NONE;
    json_code(it, "rejected_lab", t->rejected_lab, sizeof t->rejected_lab);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(it, "result");
    t->result = cJSON_IsString(res) ? (tl_result_t)tl_result_parse(res->valuestring) : TL_RESULT_NONE;
    t->result_at = json_time(it, "result_at");
    json_code(it, "result_lab", t->result_lab, sizeof t->result_lab);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(it, "ct");
    if (cJSON_IsObject(ct) && (t->ct = cJSON_PrintUnformatted(ct)) == NULL) goto nomem;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "samples")) {
    tl_tube_t *t = tl_world_tube(w, cJSON_GetArrayItem(it, 0)->valuestring, 0);
    if (t && tl_tube_add_person(t, cJSON_GetArrayItem(it, 1)->valuestring) != 0) goto nomem;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "boxes")) {
    tl_box_t *x = tl_world_box(w, cJSON_GetObjectItemCaseSensitive(it, "code")->valuestring, 1);
    if (x == NULL) goto nomem;
    json_code(it, "region", x->region, sizeof x->region);
    json_code(it, "site", x->site, sizeof x->site);
    json_code(it, "dest_lab", x->dest_lab, sizeof x->dest_lab);
    json_code(it, "courier", x->courier, sizeof x->courier);
    json_code(it, "delivered_lab", x->delivered_lab, sizeof x->delivered_lab);
    json_code(it, "received_lab", x->received_lab, sizeof x->received_lab);
    x->packed_at = json_time(it, "packed_at");
    x->sealed_at = json_time(it, "sealed_at");
    x->picked_up_at = json_time(it, "picked_up_at");
    x->delivered_at = json_time(it, "delivered_at");
    x->received_at = json_time(it, "received_at");
    x->seal_count = json_int(it, "seal_count", -1);
    x->packed = json_int(it, "packed", 0);
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "rounds")) {
    tl_round_t r;
    memset(&r, 0, sizeof r);
    json_code(it, "code", r.code, sizeof r.code);
    json_code(it, "region", r.region, sizeof r.region);
    r.pool_size = json_int(it, "pool_size", 10);
    r.closed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "closed"));
    if (tl_world_add_round(w, &r) != 0) goto nomem;
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "labs")) {
    if (cJSON_IsString(it) && tl_world_add_lab(w, it->valuestring) != 0) goto nomem;
  }
  *events_out = cJSON_DetachItemFromObjectCaseSensitive(root, "events");
  cJSON_Delete(root);
  return 0;
nomem:
  cJSON_Delete(root);
  return TL_ENOMEM;
}

static void add_anomaly(slot_t *s, const char *type) {
  for (int k = 0; k < s->nanomalies; k++)
    if (strcmp(s->anomalies[k], type) == 0) return;
  if (s->nanomalies < 8) snprintf(s->anomalies[s->nanomalies++], sizeof s->anomalies[0], "%s", type);
}

/* Duplicates and conflicts, then the rules, event by event in the order sent. */
static void apply_all(batch_t *b, const cJSON *stored) {
  for (int i = 0; i < b->n; i++) {
    slot_t *s = &b->slots[i];
    if (s->state != SLOT_PENDING) continue;
    const cJSON *prev = NULL, *it;
    cJSON_ArrayForEach(it, stored) {
      if (strcmp(cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring, s->ev.id) == 0) prev = it;
    }
    if (prev) {
      if (strcmp(cJSON_GetObjectItemCaseSensitive(prev, "digest")->valuestring, s->digest) != 0) {
        refuse(s, "id_conflict", "This event id was used before for other content.");
        continue;
      }
      s->state = SLOT_DUPLICATE;
      cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(prev, "anomalies")) {
        if (cJSON_IsString(it)) add_anomaly(s, it->valuestring);
      }
      continue;
    }
    const slot_t *same = NULL;
    for (int j = 0; j < i && !same; j++)
      if (b->slots[j].state == SLOT_ACCEPTED && strcmp(b->slots[j].ev.id, s->ev.id) == 0) same = &b->slots[j];
    if (same) {
      if (strcmp(same->digest, s->digest) != 0)
        refuse(s, "id_conflict", "This event id was used before for other content.");
      else
        s->state = SLOT_DUPLICATE; /* its anomalies are filled in after the write */
      continue;
    }
    tl_refusal_t r = tl_custody_apply(&b->world, &b->sender, &s->ev);
    if (r.code) {
      refuse(s, r.code, "%s", r.message);
      continue;
    }
    s->state = SLOT_ACCEPTED;
  }
}

static void add_time(cJSON *o, const char *key, int64_t ms) {
  char text[TL_TIME_TEXT_MAX];
  if (ms == 0 || tl_time_format(ms, 0, text) != 0)
    cJSON_AddNullToObject(o, key);
  else
    cJSON_AddStringToObject(o, key, text);
}

static void add_code(cJSON *o, const char *key, const char *v) {
  if (v[0]) cJSON_AddStringToObject(o, key, v);
  else cJSON_AddNullToObject(o, key);
}

static void add_count(cJSON *o, const char *key, int v) {
  if (v >= 0) cJSON_AddNumberToObject(o, key, v);
  else cJSON_AddNullToObject(o, key);
}

static cJSON *tube_row(const tl_tube_t *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", t->code);
  cJSON_AddStringToObject(o, "region", t->region);
  add_code(o, "round", t->round);
  add_code(o, "site", t->site);
  add_count(o, "capacity", t->capacity ? t->capacity : -1);
  add_time(o, "opened_at", t->opened_at);
  cJSON_AddNumberToObject(o, "sampled", t->sampled);
  add_time(o, "first_sample_at", t->first_sample_at);
  add_time(o, "sealed_at", t->sealed_at);
  add_count(o, "seal_count", t->seal_count);
  add_code(o, "box", t->box);
  add_time(o, "packed_at", t->packed_at);
  add_time(o, "received_at", t->received_at);
  add_code(o, "received_lab", t->received_lab);
  add_code(o, "received_box", t->received_box);
  add_time(o, "rejected_at", t->rejected_at);
  if (t->reject_reason) cJSON_AddStringToObject(o, "reject_reason", tl_reason_name(t->reject_reason));
  add_code(o, "rejected_lab", t->rejected_lab);
  if (t->result) cJSON_AddStringToObject(o, "result", tl_result_name(t->result));
  add_time(o, "result_at", t->result_at);
  add_code(o, "result_lab", t->result_lab);
  if (t->ct) cJSON_AddRawToObject(o, "ct", t->ct);
  return o;
}

static cJSON *box_row(const tl_box_t *x) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", x->code);
  cJSON_AddStringToObject(o, "region", x->region);
  add_code(o, "site", x->site);
  add_time(o, "packed_at", x->packed_at);
  add_time(o, "sealed_at", x->sealed_at);
  add_code(o, "dest_lab", x->dest_lab);
  add_count(o, "seal_count", x->seal_count);
  add_time(o, "picked_up_at", x->picked_up_at);
  add_code(o, "courier", x->courier);
  add_time(o, "delivered_at", x->delivered_at);
  add_code(o, "delivered_lab", x->delivered_lab);
  add_time(o, "received_at", x->received_at);
  add_code(o, "received_lab", x->received_lab);
  return o;
}

/* Records that the event (of type etype, at position ord in the batch) touched subject. */
static void attribute(cJSON *attr, const char *subject, const slot_t *s, int ord) {
  cJSON *a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "subject", subject);
  cJSON_AddStringToObject(a, "event", s->ev.id);
  cJSON_AddStringToObject(a, "etype", tl_event_type_name(s->ev.type));
  cJSON_AddNumberToObject(a, "ord", ord);
  cJSON_AddItemToArray(attr, a);
}

/* The argument of tl_write: every new or changed fact of the batch. */
static char *build_write(batch_t *b, int *naccepted) {
  cJSON *p = cJSON_CreateObject();
  cJSON *events = cJSON_AddArrayToObject(p, "events");
  cJSON *persons = cJSON_AddArrayToObject(p, "persons");
  cJSON *tubes = cJSON_AddArrayToObject(p, "tubes");
  cJSON *boxes = cJSON_AddArrayToObject(p, "boxes");
  cJSON *samples = cJSON_AddArrayToObject(p, "samples");
  cJSON *receipts = cJSON_AddArrayToObject(p, "receipts");
  cJSON *attr = cJSON_AddArrayToObject(p, "attribution");
  static const char *const roles[] = {"collector", "courier", "lab"};
  *naccepted = 0;
  for (int i = 0; i < b->n; i++) {
    slot_t *s = &b->slots[i];
    if (s->state != SLOT_ACCEPTED) continue;
    (*naccepted)++;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", s->ev.id);
    cJSON_AddStringToObject(e, "type", tl_event_type_name(s->ev.type));
    add_time(e, "at", s->ev.at);
    cJSON_AddStringToObject(e, "sender_role", roles[b->sender.role]);
    cJSON_AddStringToObject(e, "sender", b->sender.code);
    add_time(e, "received_at", b->now);
    cJSON_AddStringToObject(e, "digest", s->digest);
    add_code(e, "tube", s->ev.tube);
    add_code(e, "box", s->ev.box);
    cJSON_AddItemToObject(e, "body", s->body);
    s->body = NULL;
    cJSON_AddArrayToObject(e, "anomalies");
    cJSON_AddItemToArray(events, e);
    if (s->ev.tube[0]) attribute(attr, s->ev.tube, s, i);
    if (s->ev.box[0]) attribute(attr, s->ev.box, s, i);
    for (int k = 0; k < s->ev.ntubes; k++) attribute(attr, s->ev.tubes[k], s, i);
    if (s->ev.type == TL_EV_SAMPLE_ADD) {
      tl_tube_t *t = tl_world_tube(&b->world, s->ev.tube, 0);
      char subject[TL_CODE_MAX + TL_HMAC_HEX + 2];
      snprintf(subject, sizeof subject, "%s/%s", t ? t->round : "", s->ev.person);
      attribute(attr, subject, s, i);
      /* one row per person: the last scan's name and phone win */
      cJSON *it, *found = NULL;
      cJSON_ArrayForEach(it, persons) {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(it, "hmac")->valuestring, s->ev.person) == 0) found = it;
      }
      cJSON *row = s->person_row;
      s->person_row = NULL;
      add_time(row, "updated_at", b->now);
      if (found) {
        /* a later scan without name or phone keeps what an earlier one gave */
        static const char *const keep[] = {"name_enc", "name_masked", "phone_enc", "phone_masked"};
        for (int k = 0; k < 4; k++)
          if (!cJSON_HasObjectItem(row, keep[k]) && cJSON_HasObjectItem(found, keep[k]))
            cJSON_AddItemToObject(row, keep[k],
                                  cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(found, keep[k]), 1));
        cJSON_ReplaceItemViaPointer(persons, found, row);
      } else {
        cJSON_AddItemToArray(persons, row);
      }
    }
  }
  for (int i = 0; i < b->world.ntubes; i++)
    if (b->world.tubes[i].touched) cJSON_AddItemToArray(tubes, tube_row(&b->world.tubes[i]));
  for (int i = 0; i < b->world.nboxes; i++)
    if (b->world.boxes[i].touched) cJSON_AddItemToArray(boxes, box_row(&b->world.boxes[i]));
  for (int i = 0; i < b->world.nsamples; i++) {
    const tl_sample_t *sm = &b->world.samples[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tube", sm->tube);
    cJSON_AddStringToObject(o, "person", sm->person);
    cJSON_AddStringToObject(o, "round", sm->round);
    cJSON_AddStringToObject(o, "site", sm->site);
    add_time(o, "at", sm->at);
    cJSON_AddStringToObject(o, "event", sm->event);
    cJSON_AddItemToArray(samples, o);
  }
  for (int i = 0; i < b->world.nreceipts; i++) {
    const tl_receipt_t *r = &b->world.receipts[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "box", r->box);
    cJSON_AddStringToObject(o, "tube", r->tube);
    cJSON_AddStringToObject(o, "lab", r->lab);
    add_time(o, "at", r->at);
    cJSON_AddStringToObject(o, "event", r->event);
    cJSON_AddItemToArray(receipts, o);
  }
  char *text = cJSON_PrintUnformatted(p);
  cJSON_Delete(p);
  return text;
}

static void step_write_done(void *arg, int status, const tl_db_result_t *res) {
  batch_t *b = arg;
  if (status != 0) {
    fail_db(b, status, res, "write");
    return;
  }
  for (int r = 0; r < tl_db_result_rows(res); r++) {
    const char *ev = tl_db_result_value(res, r, 0), *type = tl_db_result_value(res, r, 1);
    for (int i = 0; i < b->n && ev && type; i++)
      if (b->slots[i].state == SLOT_ACCEPTED && strcmp(b->slots[i].ev.id, ev) == 0)
        add_anomaly(&b->slots[i], type);
  }
  /* A repeat inside the batch answers with its first's anomalies. */
  for (int i = 0; i < b->n; i++) {
    slot_t *s = &b->slots[i];
    if (s->state != SLOT_DUPLICATE || s->nanomalies) continue;
    for (int j = 0; j < i; j++)
      if (b->slots[j].state == SLOT_ACCEPTED && strcmp(b->slots[j].ev.id, s->ev.id) == 0)
        for (int k = 0; k < b->slots[j].nanomalies; k++) add_anomaly(s, b->slots[j].anomalies[k]);
  }
  int rc = tl_db_conn_exec(b->conn, "COMMIT", 0, NULL, step_commit_done, b);
  if (rc != 0) fail_db(b, rc, NULL, "commit");
}

static void step_commit_done(void *arg, int status, const tl_db_result_t *res) {
  batch_t *b = arg;
  if (status != 0) {
    fail_db(b, status, res, "commit");
    return;
  }
  finish(b, 0);
}

static void step_load_done(void *arg, int status, const tl_db_result_t *res) {
  batch_t *b = arg;
  if (status != 0) {
    fail_db(b, status, res, "load");
    return;
  }
  cJSON *stored = NULL;
  int rc = load_world(b, tl_db_result_value(res, 0, 0), &stored);
  if (rc != 0) {
    fail_db(b, rc, NULL, "load-parse");
    return;
  }
  apply_all(b, stored);
  cJSON_Delete(stored);
  int naccepted = 0;
  char *text = build_write(b, &naccepted);
  if (text == NULL) {
    fail_db(b, TL_ENOMEM, NULL, "build");
    return;
  }
  if (naccepted == 0) {
    /* Nothing new: end the transaction (its locks) and answer. */
    free(text);
    rc = tl_db_conn_exec(b->conn, "COMMIT", 0, NULL, step_commit_done, b);
    if (rc != 0) fail_db(b, rc, NULL, "commit");
    return;
  }
  const char *params[] = {text};
  rc = tl_db_conn_exec(b->conn, "SELECT event, type FROM tl_write($1::jsonb)", 1, params,
                       step_write_done, b);
  free(text);
  if (rc != 0) fail_db(b, rc, NULL, "write");
}

static void step_begin_done(void *arg, int status, const tl_db_result_t *res) {
  batch_t *b = arg;
  if (status != 0) {
    fail_db(b, status, res, "begin");
    return;
  }
  tl_buf_t locks, ids, tubes, boxes, rounds, labs;
  tl_buf_t *all[] = {&locks, &ids, &tubes, &boxes, &rounds, &labs};
  int rc = 0;
  for (int k = 0; k < 6; k++) {
    tl_buf_init(all[k]);
    rc |= tl_buf_append(all[k], "{", 1);
  }
  char num[32];
  if (b->sender.role == TL_ROLE_LAB) rc |= arr_add(&labs, b->sender.code);
  for (int i = 0; i < b->n && rc == 0; i++) {
    const slot_t *s = &b->slots[i];
    if (s->state != SLOT_PENDING) continue;
    rc |= arr_add(&ids, s->ev.id);
    snprintf(num, sizeof num, "%lld", lock_key('e', s->ev.id));
    rc |= arr_add(&locks, num);
    if (s->ev.tube[0]) {
      rc |= arr_add(&tubes, s->ev.tube);
      snprintf(num, sizeof num, "%lld", lock_key('t', s->ev.tube));
      rc |= arr_add(&locks, num);
    }
    for (int k = 0; k < s->ev.ntubes; k++) {
      rc |= arr_add(&tubes, s->ev.tubes[k]);
      snprintf(num, sizeof num, "%lld", lock_key('t', s->ev.tubes[k]));
      rc |= arr_add(&locks, num);
    }
    if (s->ev.box[0]) {
      rc |= arr_add(&boxes, s->ev.box);
      snprintf(num, sizeof num, "%lld", lock_key('b', s->ev.box));
      rc |= arr_add(&locks, num);
    }
    if (s->ev.round[0]) rc |= arr_add(&rounds, s->ev.round);
    if (s->ev.lab[0]) rc |= arr_add(&labs, s->ev.lab);
  }
  for (int k = 0; k < 6; k++) rc |= tl_buf_append(all[k], "}", 1);
  if (rc == 0) {
    const char *params[] = {tl_buf_cstr(&locks), tl_buf_cstr(&ids), tl_buf_cstr(&tubes),
                            tl_buf_cstr(&boxes), tl_buf_cstr(&rounds), tl_buf_cstr(&labs)};
    rc = tl_db_conn_exec(b->conn,
                         "SELECT tl_load($1::bigint[], $2::uuid[], $3::text[], $4::text[],"
                         " $5::text[], $6::text[])::text",
                         6, params, step_load_done, b);
  }
  for (int k = 0; k < 6; k++) tl_buf_dispose(all[k]);
  if (rc != 0) fail_db(b, rc < 0 ? rc : TL_ENOMEM, NULL, "load");
}

static void step_acquired(void *arg, int status, tl_db_conn_t *conn) {
  batch_t *b = arg;
  if (status != 0) {
    finish(b, status);
    return;
  }
  b->conn = conn;
  int rc = tl_db_conn_exec(conn, "BEGIN", 0, NULL, step_begin_done, b);
  if (rc != 0) fail_db(b, rc, NULL, "begin");
}

static void events_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  cJSON *root = tl_json_parse_body(req->body.data, req->body.len, &err);
  static const char *const allowed[] = {"events", NULL};
  if (root == NULL || tl_json_only(root, allowed, "the body", &err) != 0) goto bad;
  const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "events");
  int n = cJSON_GetArraySize(events);
  if (!cJSON_IsArray(events) || n < 1 || n > MAX_EVENTS) {
    tl_api_fail(&err, n > MAX_EVENTS ? 413 : 400, n > MAX_EVENTS ? "too_many_events" : "invalid_field",
                "\"events\" must be a list of 1 to %d events.", MAX_EVENTS);
    goto bad;
  }
  batch_t *b = calloc(1, sizeof *b);
  if (b == NULL || (b->slots = calloc((size_t)n, sizeof *b->slots)) == NULL) {
    free(b);
    tl_api_fail(&err, 500, "internal", "Out of memory.");
    goto bad;
  }
  b->api = api;
  b->x = x;
  b->n = n;
  b->now = wall_ms();
  tl_world_init(&b->world);
  b->sender.role = p->role;
  snprintf(b->sender.code, sizeof b->sender.code, "%s", p->scope);
  snprintf(b->sender.region, sizeof b->sender.region, "%s", p->region);
  int i = 0, pending = 0;
  for (const cJSON *e = events->child; e; e = e->next, i++) {
    decode_event(b, e, &b->slots[i]);
    if (b->slots[i].state == SLOT_PENDING && !tl_event_allowed(p->role, b->slots[i].ev.type))
      refuse(&b->slots[i], "forbidden", "This role may not send this event type.");
    pending += b->slots[i].state == SLOT_PENDING;
  }
  cJSON_Delete(root);
  tl_http_exchange_hold(x);
  if (pending == 0) {
    finish(b, 0);
    return;
  }
  int rc = tl_db_acquire(api->db, step_acquired, b);
  if (rc != 0) finish(b, rc);
  return;
bad:
  cJSON_Delete(root);
  tl_http_reply_error(x, err.status ? err.status : 400, err.code, err.message);
}

void tl__api_events(tl_http_exchange_t *x, void *ctx) {
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_COLLECTOR) | TL_ROLE_BIT(TL_ROLE_COURIER) | TL_ROLE_BIT(TL_ROLE_LAB),
              events_authed);
}
