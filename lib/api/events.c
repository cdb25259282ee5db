/* POST /v1/events (DESIGN §4): authenticate, decode and validate a batch of events, and hand
 * it to the group commit (ingest.c), which answers it once it is durable.
 *
 * Validation happens here, per event (a bad event is refused, the batch goes on). Personal
 * data is normalised, looked up by HMAC, encrypted and masked here; only the HMAC and masked
 * forms enter the event log. The content digest (keyed HMAC of the canonical JSON) is what
 * tells a retry (duplicate) from a reused id (id_conflict). */
#include "api/internal.h"

#include "api/ingest.h"

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
#include <string.h>
#include <time.h>

#define MAX_EVENTS 1000
#define MAX_TUBES_PER_EVENT 500
#define FUTURE_LIMIT_MS (10 * 60 * 1000)

void tl__batch_free(tl__batch_t *b) {
  for (int i = 0; i < b->n; i++) {
    free(b->slots[i].tubes);
    free(b->slots[i].ct);
    cJSON_Delete(b->slots[i].body);
    cJSON_Delete(b->slots[i].person_row);
  }
  free(b->slots);
  free(b);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl__slot_refuse(tl__slot_t *s, const char *code, const char *fmt, ...) {
  s->state = TL__SLOT_REJECTED;
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
static int get_barcode(const cJSON *o, const char *key, tl_code_t out, tl__slot_t *s, tl_api_err_t *err) {
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

static int get_tubes(const cJSON *o, tl__slot_t *s, tl_api_err_t *err) {
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
    rc = tl_buf_puts(&v, prefix);
    if (rc == 0) rc = tl_buf_append(&v, b.data, b.len);
    if (rc == 0 && cJSON_AddStringToObject(row, key, tl_buf_cstr(&v)) == NULL) rc = TL_ENOMEM;
    tl_buf_dispose(&v);
  }
  tl_buf_dispose(&b);
  return rc;
}

/* Validates the person of a sample.add; fills ev.person (HMAC), the persons row and the
 * sanitised person for the log. Personal data never reaches an error message. */
static int get_person(const tl_api_t *api, const cJSON *o, tl__slot_t *s, tl_api_err_t *err) {
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
static void decode_event(tl__batch_t *b, const cJSON *o, tl__slot_t *s) {
  tl_api_err_t err = {0};
  s->ev.count = -1;
  if (!cJSON_IsObject(o)) {
    tl__slot_refuse(s, "invalid_event", "An event must be a JSON object.");
    return;
  }
  const char *id = tl_json_str(o, "id", 1, "the event", &err, NULL);
  if (id) {
    snprintf(s->id_text, sizeof s->id_text, "%.36s", id);
    s->has_id = 1;
  }
  if (id == NULL || !tl_valid_uuid(id, strlen(id))) {
    tl__slot_refuse(s, "invalid_id", "\"id\" must be a UUID.");
    return;
  }
  tl_uuid_lower(s->ev.id, id);
  const char *type = tl_json_str(o, "type", 1, "the event", &err, NULL);
  int t = type ? tl_event_type_parse(type) : -1;
  if (t < 0) {
    tl__slot_refuse(s, "invalid_type", "\"type\" is not an event type of DESIGN §4.");
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
    tl__slot_refuse(s, "invalid_time", "\"at\" must be an RFC 3339 time with an offset.");
    return;
  }
  if (s->ev.at > b->now + FUTURE_LIMIT_MS) {
    tl__slot_refuse(s, "future_time", "\"at\" is more than 10 minutes in the future.");
    return;
  }
  s->body = cJSON_Duplicate(o, 1);
  if (s->body == NULL) {
    tl__slot_refuse(s, "internal", "Out of memory.");
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
      tl__slot_refuse(s, "invalid_capacity", "\"capacity\" must be 1, 5, 8, 10 or 20.");
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
      tl__slot_refuse(s, "invalid_reason", "\"reason\" must be leak, unlabeled, insufficient or other.");
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
      tl__slot_refuse(s, "invalid_result", "\"result\" must be negative, positive or invalid.");
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
        tl__slot_refuse(s, "invalid_field", "\"ct\" must map up to 16 gene names to Ct values 0-100.");
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
    tl__slot_refuse(s, "internal", "Out of memory.");
    return;
  }
  tl_digest_hmac(b->api->keys, canon.data, canon.len, s->digest);
  memset(canon.data, 0, canon.len);
  tl_buf_dispose(&canon);
  s->state = TL__SLOT_PENDING;
  return;
bad:
  tl__slot_refuse(s, err.code ? err.code : "invalid_event", "%s", err.message);
}

/* ---------- answering ---------- */

static const char *const state_names[] = {"rejected", "pending", "accepted", "duplicate"};

/* {"results": [{"id", "status", "code" and "message" when rejected, "anomalies"}, ...]},
 * written straight into a buffer (one answer per batch, up to 1,000 results). */
static int answer_text(const tl__batch_t *b, tl_buf_t *out) {
  int rc = tl_buf_puts(out, "{\"results\":[");
  for (int i = 0; i < b->n && rc == 0; i++) {
    const tl__slot_t *s = &b->slots[i];
    rc = i ? tl_buf_puts(out, ",{\"id\":") : tl_buf_puts(out, "{\"id\":");
    if (rc == 0)
      rc = !s->has_id ? tl_buf_puts(out, "null")
                      : tl_http_json_string(out, s->state == TL__SLOT_REJECTED && !s->ev.id[0]
                                                     ? s->id_text : s->ev.id);
    if (rc == 0) rc = tl_buf_appendf(out, ",\"status\":\"%s\"", state_names[s->state]);
    if (rc == 0 && s->state == TL__SLOT_REJECTED) {
      rc = tl_buf_puts(out, ",\"code\":");
      if (rc == 0) rc = tl_http_json_string(out, s->code);
      if (rc == 0) rc = tl_buf_puts(out, ",\"message\":");
      if (rc == 0) rc = tl_http_json_string(out, s->message);
    }
    if (rc == 0) rc = tl_buf_puts(out, ",\"anomalies\":[");
    for (int k = 0; k < s->nanomalies && rc == 0; k++) {
      if (k) rc = tl_buf_puts(out, ",");
      if (rc == 0) rc = tl_http_json_string(out, s->anomalies[k]);
    }
    if (rc == 0) rc = tl_buf_puts(out, "]}");
  }
  return rc ? rc : tl_buf_puts(out, "]}");
}

static void answer(tl__batch_t *b) {
  tl_buf_t text;
  tl_buf_init(&text);
  if (answer_text(b, &text) != 0)
    tl_http_reply_error(b->x, 500, "internal", "The answer could not be built.");
  else
    tl_http_reply(b->x, 200, "application/json", "", text.data, text.len);
  tl_buf_dispose(&text);
}

/* Ends the batch: answers (if the client is still there), releases and frees. */
void tl__batch_finish(tl__batch_t *b, int status) {
  if (b->x == NULL) { /* decoded without a request (fuzzing) */
    tl__batch_free(b);
    return;
  }
  if (tl_http_exchange_alive(b->x)) {
    if (status == 0) answer(b);
    else tl_api_reply_db_error(b->x, status);
  }
  tl_http_exchange_release(b->x);
  tl__batch_free(b);
}

tl__batch_t *tl__batch_decode(tl_api_t *api, tl_role_t role, const char *scope, const char *region,
                              const char *body, size_t len, tl_api_err_t *err) {
  cJSON *root = tl_json_parse_body(body, len, err);
  static const char *const allowed[] = {"events", NULL};
  tl__batch_t *b = NULL;
  if (root == NULL || tl_json_only(root, allowed, "the body", err) != 0) goto out;
  const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "events");
  int n = cJSON_GetArraySize(events);
  if (!cJSON_IsArray(events) || n < 1 || n > MAX_EVENTS) {
    tl_api_fail(err, n > MAX_EVENTS ? 413 : 400, n > MAX_EVENTS ? "too_many_events" : "invalid_field",
                "\"events\" must be a list of 1 to %d events.", MAX_EVENTS);
    goto out;
  }
  b = calloc(1, sizeof *b);
  if (b == NULL || (b->slots = calloc((size_t)n, sizeof *b->slots)) == NULL) {
    free(b);
    b = NULL;
    tl_api_fail(err, 500, "internal", "Out of memory.");
    goto out;
  }
  b->api = api;
  b->n = n;
  b->now = wall_ms();
  b->sender.role = role;
  snprintf(b->sender.code, sizeof b->sender.code, "%s", scope);
  snprintf(b->sender.region, sizeof b->sender.region, "%s", region);
  int i = 0;
  for (const cJSON *e = events->child; e; e = e->next, i++) {
    decode_event(b, e, &b->slots[i]);
    if (b->slots[i].state == TL__SLOT_PENDING && !tl_event_allowed(role, b->slots[i].ev.type))
      tl__slot_refuse(&b->slots[i], "forbidden", "This role may not send this event type.");
    b->slots[i].valid = b->slots[i].state == TL__SLOT_PENDING;
    b->pending += b->slots[i].valid;
  }
out:
  cJSON_Delete(root);
  return b;
}

/* The events in a body, counted without decoding it: the "type" keys (a key with its quotes
 * cannot occur inside a JSON string, where quotes are escaped). Exact for a well-formed
 * batch, which has one per event and no other; only a body the decoding would refuse can
 * count more. */
static long count_events(const char *body, size_t len) {
  static const char key[] = "\"type\"";
  long n = 0;
  const char *p = body, *end = body + len;
  while (p && (size_t)(end - p) >= sizeof key - 1) {
    p = memmem(p, (size_t)(end - p), key, sizeof key - 1);
    if (p) {
      n++;
      p += sizeof key - 1;
    }
  }
  return n;
}

/* While the group commit is behind (the queue full in time, --ingest-max-wait, or in events,
 * --ingest-queue), a batch is refused first thing: before the token lookup, a database round
 * trip, and before the decoding, the checks, the keyed hashes and the encryption of personal
 * data (~360 µs of the daemon's CPU for 100 events, measured in a burst). In a burst most
 * requests are refused and sent again, so this is where the daemon's and the database's time
 * would otherwise go. An unauthenticated request is refused the same way then: a 503 tells
 * nothing about a token. Asked before the token lookup and again after it. */
static int refused_busy(tl_http_exchange_t *x, tl_api_t *api) {
  const tl_http_request_t *req = tl_http_exchange_request(x);
  /* (counted only while batches wait: an empty queue takes a batch of any size, and the
   * scan of the body is then work for nothing on every request) */
  long events = tl__ingest_queued(api) > 0 ? count_events(req->body.data, req->body.len) : 0;
  if (!tl__ingest_busy(api, events)) return 0;
  tl_api_reply_db_error(x, TL_EBUSY);
  return 1;
}

static void events_authed(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p) {
  tl_api_err_t err = {0};
  const tl_http_request_t *req = tl_http_exchange_request(x);
  /* Asked again: the queue may have filled while the token was looked up. In a burst that
   * lookup waits for a pool connection behind the writes, and 27 % of the refusals came
   * after it, each having decoded its 100 events for nothing (docs/PERFORMANCE.md, seventh
   * update). The decoding runs to the queue without a pause, so this is the last look. */
  if (refused_busy(x, api)) return;
  tl__batch_t *b = tl__batch_decode(api, p->role, p->scope, p->region, req->body.data, req->body.len, &err);
  if (b == NULL) {
    tl_http_reply_error(x, err.status ? err.status : 400, err.code, err.message);
    return;
  }
  b->x = x;
  tl_http_exchange_hold(x);
  if (b->pending == 0) {
    tl__batch_finish(b, 0); /* every event refused on its face: nothing to write */
    return;
  }
  tl__ingest_submit(api, b);
}

void tl__api_events(tl_http_exchange_t *x, void *ctx) {
  if (refused_busy(x, ctx)) return;
  tl_api_auth(ctx, x, TL_ROLE_BIT(TL_ROLE_COLLECTOR) | TL_ROLE_BIT(TL_ROLE_COURIER) | TL_ROLE_BIT(TL_ROLE_LAB),
              events_authed);
}
