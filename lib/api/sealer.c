/* The custody chain's sealer (docs/RELIABILITY.md §9): a libuv timer, like the overdue sweep.
 * Each tick, outside every write transaction:
 *   1. on one pool connection held for one transaction (sql/018_chain_seal_c.sql): BEGIN;
 *      tl_chain_take(batch, tz, careful) — one daemon at a time (advisory lock), up to batch
 *      events committed since the last seal, each with its partition's head (after a failed
 *      step, careful: without the events already chained, sql/036); the links computed here
 *      (lib/crypto/chain.c, the encoding `tubeloopd verify` recomputes), which keeps the
 *      hashing off PostgreSQL's CPU; tl_chain_append — the links and the heads; COMMIT.
 *      Repeated at once while a whole batch was taken;
 *   2. SELECT tl_chain_due(...) — the heads due for a checkpoint, with the database's clock;
 *   3. each signed here with the keys file's last sign key (Ed25519), and stored with
 *      tl_chain_checkpoint. Only the daemon holds the key: the database cannot forge one.
 * Steps 2 and 3 are single statements on the pool. A failed step waits for the next tick; a
 * failed seal rolls back (the connection is released in its failed or open transaction), so
 * the pending ids it took return to the queue and nothing is half-written. */
#include "api/sealer.h"

#include "base/buf.h"
#include "base/log.h"
#include "crypto/chain.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void step_seal(tl_sealer_t *s);
static void seal_acquired(void *arg, int status, tl_db_conn_t *conn);

/* Ends a round: a held connection goes back (its open or failed transaction rolled back, so
 * the pending ids it took return to the queue). */
static void idle(tl_sealer_t *s) {
  if (s->conn) tl_db_release(s->conn);
  s->conn = NULL;
  s->running = 0;
}

static int failed(tl_sealer_t *s, const char *what, int status, const tl_db_result_t *res) {
  if (status == 0) return 0;
  s->careful = 1;
  if (!s->stopped)
    tl_log(TL_LOG_WARN, "chain_step_failed", "step=%s status=\"%s\" sqlstate=%s", what,
           tl_strerror(status), tl_db_result_sqlstate(res));
  idle(s);
  return 1;
}

static void checkpoint_done(void *arg, int status, const tl_db_result_t *res) {
  tl_sealer_t *s = arg;
  if (failed(s, "checkpoint", status, res)) return;
  const char *v = tl_db_result_value(res, 0, 0);
  long long n = v ? atoll(v) : 0;
  s->checkpoints += (unsigned long long)n;
  if (n > 0) tl_log(TL_LOG_DEBUG, "chain_checkpoints", "count=%lld", n);
  idle(s);
}

/* Signs every due head and stores the checkpoints in one statement. */
static void due_done(void *arg, int status, const tl_db_result_t *res) {
  tl_sealer_t *s = arg;
  if (failed(s, "due", status, res)) return;
  int rows = tl_db_result_rows(res);
  if (rows == 0 || s->stopped) {
    idle(s);
    return;
  }
  const unsigned char *seed = s->keys->sign[s->keys->nsign - 1];
  unsigned char pub[32];
  char key_id[17], signed_us[24];
  if (tl_chain_public_key(seed, pub) != 0) {
    tl_log(TL_LOG_ERROR, "chain_bad_sign_key", "");
    idle(s);
    return;
  }
  tl_chain_key_id(pub, key_id);
  snprintf(signed_us, sizeof signed_us, "%s", tl_db_result_value(res, 0, 3));
  long long us = atoll(signed_us);
  cJSON *arr = cJSON_CreateArray();
  for (int i = 0; arr != NULL && i < rows; i++) {
    const char *part = tl_db_result_value(res, i, 0);
    long long seq = atoll(tl_db_result_value(res, i, 1));
    unsigned char link[32], sig[64];
    char sighex[129];
    if (tl_chain_unhex(tl_db_result_value(res, i, 2), link, 32) != 0 ||
        tl_chain_sign(seed, part, seq, link, us, sig) != 0)
      continue;
    tl_chain_hex(sig, 64, sighex);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "partition", part);
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "link", tl_db_result_value(res, i, 2));
    cJSON_AddStringToObject(o, "signature", sighex);
    cJSON_AddItemToArray(arr, o);
  }
  char *json = arr ? cJSON_PrintUnformatted(arr) : NULL;
  cJSON_Delete(arr);
  if (json == NULL) {
    idle(s);
    return;
  }
  const char *params[] = {json, signed_us, key_id};
  int rc = tl_db_exec(s->db, "SELECT tl_chain_checkpoint($1::jsonb, $2::bigint, $3)", 3, params,
                      checkpoint_done, s);
  free(json);
  if (rc != 0) idle(s);
}

static void step_due(tl_sealer_t *s) {
  char links[16], every[16];
  snprintf(links, sizeof links, "%d", s->checkpoint_links);
  snprintf(every, sizeof every, "%d", s->checkpoint_interval_s);
  const char *params[] = {links, every};
  if (tl_db_exec(s->db,
                 "SELECT partition, seq, link, now_us FROM tl_chain_due($1::bigint,"
                 " make_interval(secs => $2::int))",
                 2, params, due_done, s) != 0)
    idle(s);
}

/* ---------- the seal transaction: acquire, BEGIN + take, link, append + COMMIT ---------- */

static void seal_taken(void *arg, int status, const tl_db_result_t *res);
static void seal_committed(void *arg, int status, const tl_db_result_t *res);

/* tl_chain_take's rows: column 0 partition, 1 head seq, 2 head link (hex), then the
 * TL_CHAIN_NFIELDS event columns, read from the event row exactly as `tubeloopd verify` reads
 * them. Partition NULL: a vanished event (head seq NULL) or "another daemon seals" (-1). */
#define TAKE_SQL                                                                              \
  "SELECT t.partition, t.head_seq, t.head_link, " TL_CHAIN_COLUMNS                            \
  " FROM tl_chain_take($1::int, $2, $3::boolean) t, LATERAL (SELECT (t.ev).*) e"
#define TAKE_FIRST_FIELD 3

static void step_seal(tl_sealer_t *s) {
  if (tl_db_acquire(s->db, seal_acquired, s) != 0) idle(s);
}

static void seal_acquired(void *arg, int status, tl_db_conn_t *conn) {
  tl_sealer_t *s = arg;
  if (failed(s, "acquire", status, NULL)) return;
  s->conn = conn;
  if (s->stopped) {
    idle(s);
    return;
  }
  /* BEGIN goes out with the take, in one round trip */
  char batch[16];
  snprintf(batch, sizeof batch, "%d", s->batch);
  const char *params[] = {batch, s->tz, s->careful ? "true" : "false"};
  int rc = tl_db_conn_exec_around(conn, "BEGIN", TAKE_SQL, 3, params, NULL, seal_taken, s);
  if (rc != 0) failed(s, "take", rc, NULL);
}

/* The arrays of tl_chain_append, as PostgreSQL array literals. */
typedef struct {
  tl_buf_t part, seq, id, link;
} links_t;

/* Links every event row of tl_chain_take in C (lib/crypto/chain.c: the encoding `verify`
 * recomputes) into l. Rows come ordered by (partition, received_at, id): a partition's run
 * starts from its head and counts seq up from there (a partition met twice would repeat a
 * seq, which chain_links' key refuses). Returns 0 or a negative code; counts the links and
 * partitions in s->round_links and s->round_parts. */
static int links_build(tl_sealer_t *s, const tl_db_result_t *res, links_t *l) {
  tl_buf_t *all[] = {&l->part, &l->seq, &l->id, &l->link};
  for (int k = 0; k < 4; k++)
    if (tl_buf_append(all[k], "{", 1) != 0) return TL_ENOMEM;
  const char *run = NULL; /* the partition of the current run */
  long long seq = 0;
  unsigned char chain[32];
  char hex[65], num[24];
  for (int i = 0; i < tl_db_result_rows(res); i++) {
    const char *part = tl_db_result_value(res, i, 0);
    if (part == NULL) continue; /* vanished */
    if (run == NULL || strcmp(part, run) != 0) {
      const char *head = tl_db_result_value(res, i, 1);
      if (head == NULL || tl_chain_unhex(tl_db_result_value(res, i, 2), chain, 32) != 0)
        return TL_EINVAL;
      run = part;
      seq = atoll(head);
      s->round_parts++;
    }
    const char *fields[TL_CHAIN_NFIELDS];
    for (int k = 0; k < TL_CHAIN_NFIELDS; k++)
      fields[k] = tl_db_result_value(res, i, TAKE_FIRST_FIELD + k);
    if (fields[0] == NULL) return TL_EINVAL;
    int rc = tl_chain_link(chain, part, ++seq, fields, chain);
    if (rc != 0) return rc;
    tl_chain_hex(chain, 32, hex);
    snprintf(num, sizeof num, "%lld", seq);
    /* Partitions match chain_links' CHECK (^[0-9]{6}/[0-9]{4}-[0-9]{2}-[0-9]{2}$; one that
     * did not would fail the insert anyway), ids are uuids: no element needs quoting. */
    if (tl_buf_array_add(&l->part, part) != 0 || tl_buf_array_add(&l->seq, num) != 0 ||
        tl_buf_array_add(&l->id, fields[0]) != 0 || tl_buf_array_add(&l->link, hex) != 0)
      return TL_ENOMEM;
    s->round_links++;
  }
  for (int k = 0; k < 4; k++)
    if (tl_buf_append(all[k], "}", 1) != 0) return TL_ENOMEM;
  return 0;
}

static void seal_taken(void *arg, int status, const tl_db_result_t *res) {
  tl_sealer_t *s = arg;
  if (failed(s, tl_db_result_statement(res) == -1 ? "begin" : "take", status, res)) return;
  long long vanished = 0; /* pending ids whose event is gone (deleted before it was sealed) */
  int locked = 0;          /* another daemon is sealing */
  for (int i = 0; i < tl_db_result_rows(res); i++)
    if (tl_db_result_value(res, i, 0) == NULL) {
      if (tl_db_result_value(res, i, 1) == NULL)
        vanished++;
      else
        locked = 1;
    }
  if (locked || s->stopped) { /* roll back: nothing was taken, or it returns to the queue */
    idle(s);
    return;
  }
  if (vanished > 0)
    tl_log(TL_LOG_WARN, "chain_event_vanished", "count=%lld", vanished);
  uint64_t t0 = uv_hrtime();
  links_t l;
  tl_buf_init(&l.part);
  tl_buf_init(&l.seq);
  tl_buf_init(&l.id);
  tl_buf_init(&l.link);
  s->round_links = 0;
  s->round_parts = 0;
  int rc = links_build(s, res, &l);
  s->round_hash_us = (uv_hrtime() - t0) / 1000;
  const char *step = "hash";
  if (rc == 0 && s->round_links == 0) {
    /* nothing to link: commit the queue rows taken (vanished, or chained already) */
    step = "commit";
    rc = tl_db_conn_exec(s->conn, "COMMIT", 0, NULL, seal_committed, s);
  } else if (rc == 0) {
    const char *params[] = {tl_buf_cstr(&l.part), tl_buf_cstr(&l.seq), tl_buf_cstr(&l.id),
                            tl_buf_cstr(&l.link)};
    step = "append"; /* with its COMMIT, in one round trip */
    rc = tl_db_conn_exec_around(s->conn, NULL,
                                "SELECT sealed FROM tl_chain_append($1::text[], $2::bigint[],"
                                " $3::uuid[], $4::text[])",
                                4, params, "COMMIT", seal_committed, s);
  }
  tl_buf_dispose(&l.part);
  tl_buf_dispose(&l.seq);
  tl_buf_dispose(&l.id);
  tl_buf_dispose(&l.link);
  if (rc != 0) failed(s, step, rc, NULL);
}

static void seal_committed(void *arg, int status, const tl_db_result_t *res) {
  tl_sealer_t *s = arg;
  if (failed(s, tl_db_result_statement(res) == 0 && s->round_links > 0 ? "append" : "commit", status,
             res))
    return;
  tl_db_release(s->conn);
  s->conn = NULL;
  s->careful = 0;
  long long sealed = s->round_links;
  s->sealed += (unsigned long long)sealed;
  if (sealed > 0)
    tl_log(TL_LOG_DEBUG, "chain_sealed", "events=%lld partitions=%d hash_ms=%.1f", sealed,
           s->round_parts, (double)s->round_hash_us / 1000.0);
  if (s->stopped) {
    idle(s);
  } else if (sealed >= s->batch) {
    step_seal(s); /* more are waiting */
  } else {
    step_due(s);
  }
}

static void on_tick(uv_timer_t *t) {
  tl_sealer_t *s = t->data;
  if (s->running || s->stopped) return; /* the last one is still in the database */
  s->running = 1;
  step_seal(s);
}

void tl_sealer_defaults(tl_sealer_t *s) {
  s->checkpoint_interval_s = 60;
  s->checkpoint_links = 10000;
  /* tl_chain_take answers with the whole events (~1 KB each): the batch bounds the daemon's
   * memory for a result, and after a backlog the sealer takes the next batch at once. */
  s->batch = 1000;
}

int tl_sealer_start(tl_sealer_t *s, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms) {
  s->db = db;
  s->running = 0;
  s->stopped = 0;
  s->careful = 0;
  s->sealed = s->checkpoints = 0;
  s->conn = NULL;
  int rc = uv_timer_init(loop, &s->timer);
  if (rc != 0) return rc;
  s->timer.data = s;
  return uv_timer_start(&s->timer, on_tick, (uint64_t)interval_ms, (uint64_t)interval_ms);
}

static void on_closed(uv_handle_t *h) { (void)h; }

void tl_sealer_stop(tl_sealer_t *s) {
  s->stopped = 1;
  if (!uv_is_closing((uv_handle_t *)&s->timer)) uv_close((uv_handle_t *)&s->timer, on_closed);
}
