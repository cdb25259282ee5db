/* Group commit of event batches (ingest.h): the queue, the groups and their transaction:
 *
 *   acquire a connection → BEGIN + tl_load (advisory locks on every touched key, then the
 *   current facts) → the custody rules in C, batch by batch, event by event → tl_write
 *   (set-based upserts, re-derived follow-ups, anomalies and roll-ups) + COMMIT → answers.
 *
 * Each "+" is one round trip: the two statements go out together (libpq pipeline mode,
 * tl_db_conn_query_around), so a group costs two round trips, not four. tl_load and the writes
 * are prepared on every connection (tl__ingest_prepare): no parse, no plan of their own.
 *
 * Answers go out only after COMMIT succeeded (synchronous_commit on): an acknowledged event is
 * durable. If a group of several batches fails on a database error, each of its batches is
 * retried alone, so one request's trouble never fails its neighbours. */
#include "api/ingest.h"

#include "base/hash.h"
#include "base/log.h"
#include "base/strmap.h"
#include "domain/validate.h"
#include "metrics/metrics.h"

#include <uv.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One transaction's worth of batches. */
typedef struct {
  tl_api_t *api;
  tl__batch_t **batches;
  int nbatches;
  tl__slot_t **slots;      /* every slot of every batch, in arrival order */
  tl__batch_t **owner;     /* the batch of each slot */
  int nslots;
  tl_world_t world;
  tl_strmap_t accepted;    /* event id -> the slot that accepted it (apply_all) */
  tl_db_conn_t *conn;
  uint64_t mark_ns;        /* when the step under way began (/metrics) */
} group_t;

/* The steps of a group, timed for /metrics: a batch's wait in the queue, then the group's
 * transaction step by step. BEGIN goes out with tl_load ("load") and COMMIT with the write
 * ("write"), each pair in one round trip; "rules" is the C between them; "commit" is a COMMIT
 * sent alone, by a group that had nothing new to write. */
enum { STEP_QUEUE, STEP_ACQUIRE, STEP_LOAD, STEP_RULES, STEP_WRITE, STEP_COMMIT, NSTEPS };
static const char *const step_names[NSTEPS] = {"queue", "acquire", "load",
                                               "rules", "write", "commit"};

/* The per-daemon queue. */
typedef struct {
  tl__batch_t *head, *tail;
  long queued;             /* events waiting */
  int inflight;            /* groups in the database */
  unsigned long long written[2]; /* groups written by tl_write, by tl_write_plain (/metrics) */
  tl_histogram_t steps[NSTEPS];
} ingest_t;

/* At most this many groups at once: the others queue up and join bigger groups, and the
 * pool keeps connections free for queries. */
#define MAX_INFLIGHT 2

/* A second group only for a queue worth it: --ingest-second-group events waiting (default
 * SECOND_GROUP_EVENTS), or a batch that has waited SECOND_GROUP_WAIT_MS (looked at when a
 * batch arrives or a group ends). A group costs PostgreSQL ~2 ms whatever its size, so a
 * trickle of single scans written two groups at a time paid that twice as often: at 1,000
 * requests/s the machine was 8-20 points busier for no shorter wait. Batches of 100 and deep
 * queues still get two groups at once, which batched ingest needs (one at a time: ~35 % fewer
 * events/s). docs/PERFORMANCE.md, sixth update. */
#define SECOND_GROUP_EVENTS 32
#define SECOND_GROUP_WAIT_MS 20

/* The group's statements, prepared on every connection by tl__ingest_prepare. */
static const struct {
  const char *name, *sql;
} statements[] = {
    {"ingest_load", "SELECT tl_load($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
                    " $6::text[], $7::text[])::text"},
    {"ingest_write", "SELECT event, type FROM tl_write($1::jsonb)"},
    {"ingest_write_plain", "SELECT event, type FROM tl_write_plain($1::jsonb)"},
};

int tl__ingest_prepare(tl_db_pool_t *db) {
  int rc = 0;
  for (size_t i = 0; i < sizeof statements / sizeof statements[0] && rc == 0; i++)
    rc = tl_db_pool_prepare(db, statements[i].name, statements[i].sql);
  return rc;
}

static ingest_t *queue_of(tl_api_t *api) {
  if (api->ingest == NULL) api->ingest = calloc(1, sizeof(ingest_t));
  return api->ingest;
}

long tl__ingest_queued(const tl_api_t *api) {
  const ingest_t *q = api->ingest;
  return q ? q->queued : 0;
}

double tl__ingest_oldest_wait(const tl_api_t *api) {
  const ingest_t *q = api->ingest;
  return q && q->head ? (double)(uv_hrtime() - q->head->queued_ns) / 1e9 : 0.0;
}

unsigned long long tl__ingest_written(const tl_api_t *api, int plain) {
  const ingest_t *q = api->ingest;
  return q ? q->written[plain != 0] : 0;
}

int tl__ingest_render_metrics(const tl_api_t *api, tl_buf_t *out) {
  static const tl_histogram_t none;
  const ingest_t *q = api->ingest;
  int rc = tl_buf_appendf(out, "# HELP tubeloop_ingest_step_seconds Group commit, step by step: "
                               "a batch's wait in the queue, then each step of its group's "
                               "transaction.\n# TYPE tubeloop_ingest_step_seconds histogram\n");
  char label[32];
  for (int i = 0; i < NSTEPS && rc == 0; i++) {
    snprintf(label, sizeof label, "step=\"%s\"", step_names[i]);
    rc = tl_histogram_render(q ? &q->steps[i] : &none, "tubeloop_ingest_step_seconds", label, out);
  }
  return rc;
}

static void ingest_pump(tl_api_t *api);

/* ---------- the transaction ---------- */

/* The step under way ended now: time it, and the next one starts. */
static void step_timed(group_t *g, int step) {
  uint64_t now = uv_hrtime();
  tl_histogram_observe(&queue_of(g->api)->steps[step], (double)(now - g->mark_ns) / 1e9);
  g->mark_ns = now;
}

static void step_commit_done(void *arg, int status, const tl_db_result_t *res);
static void group_finish(group_t *g, int status);
static void group_fail(group_t *g, int status, const tl_db_result_t *res, const char *step);

/* 64-bit FNV-1a of "kind:code": the advisory lock key of an object. */
static long long lock_key(char kind, const char *code) {
  const char prefix[2] = {kind, ':'};
  return (long long)tl_fnv1a_str(tl_fnv1a(TL_FNV1A_START, prefix, 2), code);
}

/* The arrays of tl_load are built with tl_buf_array_add: codes and UUIDs need no quoting
 * (their character sets exclude every special character). */

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
static int load_world(group_t *g, const char *text, cJSON **events_out) {
  cJSON *root = cJSON_Parse(text);
  if (root == NULL) return TL_EINVAL;
  tl_world_t *w = &g->world;
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

static void add_anomaly(tl__slot_t *s, const char *type) {
  for (int k = 0; k < s->nanomalies; k++)
    if (strcmp(s->anomalies[k], type) == 0) return;
  if (s->nanomalies < 8) snprintf(s->anomalies[s->nanomalies++], sizeof s->anomalies[0], "%s", type);
}

/* Duplicates and conflicts, then the rules, event by event in the order sent. 0 or TL_ENOMEM. */
static int apply_all(group_t *g, const cJSON *stored) {
  /* the stored events by id (a whole batch sent again finds its thousand at once) */
  int nstored = cJSON_GetArraySize(stored), k = 0;
  const cJSON **by_pos = malloc(((size_t)nstored + 1) * sizeof *by_pos), *it;
  tl_strmap_t stored_index;
  tl_strmap_init(&stored_index);
  if (by_pos == NULL) return TL_ENOMEM;
  cJSON_ArrayForEach(it, stored) {
    by_pos[k] = it;
    if (tl_strmap_put(&stored_index, cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring, k++) != 0) {
      free(by_pos);
      tl_strmap_dispose(&stored_index);
      return TL_ENOMEM;
    }
  }
  int rc = 0;
  for (int i = 0; i < g->nslots && rc == 0; i++) {
    tl__slot_t *s = g->slots[i];
    if (s->state != TL__SLOT_PENDING) continue;
    int at = tl_strmap_get(&stored_index, s->ev.id);
    const cJSON *prev = at >= 0 ? by_pos[at] : NULL;
    if (prev) {
      if (strcmp(cJSON_GetObjectItemCaseSensitive(prev, "digest")->valuestring, s->digest) != 0) {
        tl__slot_refuse(s, "id_conflict", "This event id was used before for other content.");
        continue;
      }
      s->state = TL__SLOT_DUPLICATE;
      cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(prev, "anomalies")) {
        if (cJSON_IsString(it)) add_anomaly(s, it->valuestring);
      }
      continue;
    }
    int j = tl_strmap_get(&g->accepted, s->ev.id);
    const tl__slot_t *same = j >= 0 ? g->slots[j] : NULL;
    if (same) {
      if (strcmp(same->digest, s->digest) != 0)
        tl__slot_refuse(s, "id_conflict", "This event id was used before for other content.");
      else
        s->state = TL__SLOT_DUPLICATE; /* its anomalies are filled in after the write */
      continue;
    }
    tl_refusal_t r = tl_custody_apply(&g->world, &g->owner[i]->sender, &s->ev);
    if (r.code) {
      tl__slot_refuse(s, r.code, "%s", r.message);
      continue;
    }
    if (tl_strmap_put(&g->accepted, s->ev.id, i) != 0) {
      rc = TL_ENOMEM; /* the group fails whole */
      break;
    }
    s->state = TL__SLOT_ACCEPTED;
  }
  free(by_pos);
  tl_strmap_dispose(&stored_index);
  return rc;
}

/* 1 when the rules left a group that only opens and samples tubes without seal, box, receipt,
 * result or rejection: then tl_write_plain (sql/025) writes it with a handful of statements.
 * The function checks the same against the stored facts, and what the daemon does not see
 * (the persons' follow-ups and other samples in the round), and hands anything else to
 * tl_write; this is only the cheap first guess that keeps other groups from paying for that
 * check. */
static int plain_group(const group_t *g) {
  for (int i = 0; i < g->nslots; i++) {
    const tl__slot_t *s = g->slots[i];
    if (s->state == TL__SLOT_ACCEPTED && s->ev.type != TL_EV_TUBE_OPEN && s->ev.type != TL_EV_SAMPLE_ADD)
      return 0;
  }
  const tl_world_t *w = &g->world;
  for (int i = 0; i < w->nboxes; i++)
    if (w->boxes[i].touched) return 0;
  for (int i = 0; i < w->ntubes; i++) {
    const tl_tube_t *t = &w->tubes[i];
    if (t->touched && (t->opened_at == 0 || t->sealed_at || t->box[0] || t->received_at ||
                       t->received_box[0] || t->rejected_at || t->result != TL_RESULT_NONE))
      return 0;
  }
  return w->nreceipts == 0;
}

/* The write and its COMMIT came back together (one round trip): the group is durable. */
static void step_write_done(void *arg, int status, const tl_db_result_t *res) {
  group_t *g = arg;
  if (status != 0) {
    group_fail(g, status, res, tl_db_result_statement(res) == 1 ? "commit" : "write");
    return;
  }
  step_timed(g, STEP_WRITE);
  for (int r = 0; r < tl_db_result_rows(res); r++) {
    const char *ev = tl_db_result_value(res, r, 0), *type = tl_db_result_value(res, r, 1);
    int i = ev && type ? tl_strmap_get(&g->accepted, ev) : -1;
    if (i >= 0) add_anomaly(g->slots[i], type);
  }
  /* A repeat inside the batch answers with its first's anomalies. */
  for (int i = 0; i < g->nslots; i++) {
    tl__slot_t *s = g->slots[i];
    if (s->state != TL__SLOT_DUPLICATE || s->nanomalies) continue;
    int j = tl_strmap_get(&g->accepted, s->ev.id);
    for (int k = 0; j >= 0 && k < g->slots[j]->nanomalies; k++) add_anomaly(s, g->slots[j]->anomalies[k]);
  }
  group_finish(g, 0);
}

static void step_commit_done(void *arg, int status, const tl_db_result_t *res) {
  group_t *g = arg;
  if (status != 0) {
    group_fail(g, status, res, "commit");
    return;
  }
  step_timed(g, STEP_COMMIT);
  group_finish(g, 0);
}

static void step_load_done(void *arg, int status, const tl_db_result_t *res) {
  group_t *g = arg;
  if (status != 0) {
    group_fail(g, status, res, tl_db_result_statement(res) == -1 ? "begin" : "load");
    return;
  }
  step_timed(g, STEP_LOAD);
  cJSON *stored = NULL;
  int rc = load_world(g, tl_db_result_value(res, 0, 0), &stored);
  if (rc != 0) {
    group_fail(g, rc, NULL, "load-parse");
    return;
  }
  rc = apply_all(g, stored);
  cJSON_Delete(stored);
  if (rc != 0) {
    group_fail(g, rc, NULL, "rules");
    return;
  }
  int naccepted = 0;
  char *text = tl__write_arg(g->slots, g->owner, g->nslots, &g->world, &naccepted);
  if (text == NULL) {
    group_fail(g, TL_ENOMEM, NULL, "build");
    return;
  }
  step_timed(g, STEP_RULES);
  if (naccepted == 0) {
    /* Nothing new: end the transaction (its locks) and answer. */
    free(text);
    rc = tl_db_conn_exec(g->conn, "COMMIT", 0, NULL, step_commit_done, g);
    if (rc != 0) group_fail(g, rc, NULL, "commit");
    return;
  }
  const char *params[] = {text};
  int plain = plain_group(g);
  queue_of(g->api)->written[plain]++;
  rc = tl_db_conn_query_around(g->conn, NULL, plain ? "ingest_write_plain" : "ingest_write", 1,
                               params, "COMMIT", step_write_done, g);
  free(text);
  if (rc != 0) group_fail(g, rc, NULL, "write");
}

/* BEGIN and tl_load go out together (one round trip). */
static void step_acquired(void *arg, int status, tl_db_conn_t *conn) {
  group_t *g = arg;
  if (status != 0) {
    group_finish(g, status);
    return;
  }
  g->conn = conn;
  step_timed(g, STEP_ACQUIRE);
  tl_buf_t locks, ids, tubes, boxes, rounds, labs, persons;
  tl_buf_t *all[] = {&locks, &ids, &tubes, &boxes, &rounds, &labs, &persons};
  int rc = 0;
  for (int k = 0; k < 7; k++) {
    tl_buf_init(all[k]);
    rc |= tl_buf_append(all[k], "{", 1);
  }
  char num[32];
  for (int i = 0; i < g->nslots && rc == 0; i++) {
    const tl__slot_t *s = g->slots[i];
    if (g->owner[i]->sender.role == TL_ROLE_LAB) rc |= tl_buf_array_add(&labs, g->owner[i]->sender.code);
    if (s->state != TL__SLOT_PENDING) continue;
    rc |= tl_buf_array_add(&ids, s->ev.id);
    snprintf(num, sizeof num, "%lld", lock_key('e', s->ev.id));
    rc |= tl_buf_array_add(&locks, num);
    if (s->ev.tube[0]) {
      rc |= tl_buf_array_add(&tubes, s->ev.tube);
      snprintf(num, sizeof num, "%lld", lock_key('t', s->ev.tube));
      rc |= tl_buf_array_add(&locks, num);
    }
    for (int k = 0; k < s->ev.ntubes; k++) {
      rc |= tl_buf_array_add(&tubes, s->ev.tubes[k]);
      snprintf(num, sizeof num, "%lld", lock_key('t', s->ev.tubes[k]));
      rc |= tl_buf_array_add(&locks, num);
    }
    if (s->ev.box[0]) {
      rc |= tl_buf_array_add(&boxes, s->ev.box);
      snprintf(num, sizeof num, "%lld", lock_key('b', s->ev.box));
      rc |= tl_buf_array_add(&locks, num);
    }
    if (s->ev.round[0]) rc |= tl_buf_array_add(&rounds, s->ev.round);
    if (s->ev.type == TL_EV_SAMPLE_ADD) rc |= tl_buf_array_add(&persons, s->ev.person);
    if (s->ev.lab[0]) rc |= tl_buf_array_add(&labs, s->ev.lab);
  }
  for (int k = 0; k < 7; k++) rc |= tl_buf_append(all[k], "}", 1);
  if (rc == 0) {
    const char *params[] = {tl_buf_cstr(&locks), tl_buf_cstr(&ids),   tl_buf_cstr(&tubes),
                            tl_buf_cstr(&boxes), tl_buf_cstr(&rounds), tl_buf_cstr(&labs),
                            tl_buf_cstr(&persons)};
    rc = tl_db_conn_query_around(g->conn, "BEGIN", "ingest_load", 7, params, NULL, step_load_done,
                                 g);
  }
  for (int k = 0; k < 7; k++) tl_buf_dispose(all[k]);
  if (rc != 0) group_fail(g, rc < 0 ? rc : TL_ENOMEM, NULL, "load");
}

static void group_free(group_t *g) {
  free(g->batches);
  free(g->slots);
  free(g->owner);
  tl_world_dispose(&g->world);
  tl_strmap_dispose(&g->accepted);
  free(g);
}

/* Answers every batch of the group and moves on to the next group. */
static void group_finish(group_t *g, int status) {
  tl_api_t *api = g->api;
  ingest_t *q = queue_of(api);
  if (g->conn) tl_db_release(g->conn);
  g->conn = NULL;
  for (int i = 0; i < g->nbatches; i++) tl__batch_finish(g->batches[i], status);
  q->inflight--;
  group_free(g);
  ingest_pump(api);
}

static void group_fail(group_t *g, int status, const tl_db_result_t *res, const char *step) {
  const char *st = res ? tl_db_result_sqlstate(res) : "";
  tl_log(TL_LOG_WARN, "ingest_failed", "step=%s status=\"%s\" sqlstate=%s batches=%d events=%d", step,
         tl_strerror(status), st[0] ? st : "-", g->nbatches, g->nslots);
  /* Deadlocks, serialization failures and lost sessions are transient: retry. */
  if (status == TL_EDB && (strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0 ||
                           strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0))
    status = TL_EDB_DOWN;
  if (status == TL_EDB && g->nbatches > 1) {
    /* Something in one request broke the statement: give each request its own try. The
     * transaction rolled back (release), and no batch of the group was answered. */
    ingest_t *q = queue_of(g->api);
    tl_api_t *api = g->api;
    if (g->conn) tl_db_release(g->conn);
    g->conn = NULL;
    for (int i = g->nbatches - 1; i >= 0; i--) {
      tl__batch_t *b = g->batches[i];
      for (int k = 0; k < b->n; k++) {
        /* the rules run again on fresh facts: what they refused in the group may have been
         * refused for a neighbour's event that was never stored */
        tl__slot_t *s = &b->slots[k];
        if (!s->valid) continue;
        s->state = TL__SLOT_PENDING;
        s->code = NULL;
        s->message[0] = '\0';
        s->nanomalies = 0;
      }
      b->solo = 1;
      b->next = q->head;
      q->head = b;
      if (q->tail == NULL) q->tail = b;
      q->queued += b->n;
    }
    q->inflight--;
    group_free(g);
    ingest_pump(api);
    return;
  }
  group_finish(g, status);
}

/* Whether the queue's head may start a group now. */
static int group_due(const tl_api_t *api, const ingest_t *q) {
  if (q->head == NULL || q->inflight >= MAX_INFLIGHT) return 0;
  long enough = api->ingest_second_group > 0 ? api->ingest_second_group : SECOND_GROUP_EVENTS;
  return q->inflight == 0 || q->queued >= enough ||
         uv_hrtime() - q->head->queued_ns >= (uint64_t)SECOND_GROUP_WAIT_MS * 1000000u;
}

/* Starts groups while there is room. */
static void ingest_pump(tl_api_t *api) {
  ingest_t *q = queue_of(api);
  while (q && group_due(api, q)) {
    group_t *g = calloc(1, sizeof *g);
    int cap = 0, total = 0;
    for (tl__batch_t *b = q->head; b && (cap == 0 || (!b->solo && total + b->n <= TL__GROUP_EVENTS));
         b = b->next) {
      cap++;
      total += b->n;
      if (b->solo) break;
    }
    if (g == NULL || (g->batches = calloc((size_t)cap, sizeof *g->batches)) == NULL ||
        (g->slots = calloc((size_t)total, sizeof *g->slots)) == NULL ||
        (g->owner = calloc((size_t)total, sizeof *g->owner)) == NULL) {
      if (g) group_free(g);
      return; /* out of memory: try again with the next request */
    }
    g->api = api;
    g->mark_ns = uv_hrtime();
    tl_world_init(&g->world);
    for (int i = 0; i < cap; i++) {
      tl__batch_t *b = q->head;
      q->head = b->next;
      if (q->head == NULL) q->tail = NULL;
      q->queued -= b->n;
      tl_histogram_observe(&q->steps[STEP_QUEUE], (double)(g->mark_ns - b->queued_ns) / 1e9);
      b->next = NULL;
      g->batches[g->nbatches++] = b;
      for (int k = 0; k < b->n; k++) {
        g->slots[g->nslots] = &b->slots[k];
        g->owner[g->nslots++] = b;
      }
    }
    q->inflight++;
    int rc = tl_db_acquire(api->db, step_acquired, g);
    if (rc != 0) group_finish(g, rc);
  }
}

/* Overload: 1 when a new batch should be refused (503, Retry-After) rather than queued behind
 * work nobody will wait for. Two bounds: the events waiting (memory; a batch bigger than the
 * whole bound still gets in when nothing waits), and how long the oldest waiting batch has
 * waited — a measured wait, which follows the database's real pace (a minute's backlog at
 * one pace is a second's at another) and cannot be fooled by an idle spell, as a rate
 * estimate would be. While the head has waited longer than --ingest-max-wait, the queue is
 * full in time: what arrives now would wait longer still. */
static int waited_too_long(const tl_api_t *api, const ingest_t *q, uint64_t now_ns) {
  return api->ingest_max_wait_ms > 0 && q->head != NULL &&
         now_ns - q->head->queued_ns > (uint64_t)api->ingest_max_wait_ms * 1000000u;
}

static int too_many(const tl_api_t *api, const ingest_t *q, long n) {
  long max = api->ingest_queue_max > 0 ? api->ingest_queue_max : TL__QUEUE_EVENTS;
  return q->queued > 0 && q->queued + n > max;
}

static int overloaded(const tl_api_t *api, const ingest_t *q, const tl__batch_t *b, uint64_t now_ns) {
  return too_many(api, q, b->n) || waited_too_long(api, q, now_ns);
}

int tl__ingest_busy(const tl_api_t *api, long events) {
  const ingest_t *q = api->ingest;
  return q != NULL && (too_many(api, q, events) || waited_too_long(api, q, uv_hrtime()));
}

void tl__ingest_submit(tl_api_t *api, tl__batch_t *b) {
  ingest_t *q = queue_of(api);
  uint64_t now_ns = uv_hrtime();
  if (q == NULL || overloaded(api, q, b, now_ns)) {
    tl__batch_finish(b, TL_EBUSY);
    return;
  }
  b->queued_ns = now_ns;
  b->next = NULL;
  if (q->tail)
    q->tail->next = b;
  else
    q->head = b;
  q->tail = b;
  q->queued += b->n;
  ingest_pump(api);
}
