/* The custody chain's sealer (docs/RELIABILITY.md §9): a libuv timer, like the overdue sweep.
 * Each tick, outside every write transaction:
 *   1. SELECT tl_chain_seal(batch, tz) — the database chains the events committed since the
 *      last seal (sql/010_chain.sql), one daemon at a time (advisory lock); repeated at once
 *      while a whole batch was taken;
 *   2. SELECT tl_chain_due(...) — the heads due for a checkpoint, with the database's clock;
 *   3. each signed here with the keys file's last sign key (Ed25519), and stored with
 *      tl_chain_checkpoint. Only the daemon holds the key: the database cannot forge one.
 * Steps are single statements on the pool; a failed step waits for the next tick. */
#include "api/sealer.h"

#include "base/log.h"
#include "crypto/chain.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void step_seal(tl_sealer_t *s);

static void idle(tl_sealer_t *s) { s->running = 0; }

static int failed(tl_sealer_t *s, const char *what, int status, const tl_db_result_t *res) {
  if (status == 0) return 0;
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

static void seal_done(void *arg, int status, const tl_db_result_t *res) {
  tl_sealer_t *s = arg;
  if (failed(s, "seal", status, res)) return;
  long long sealed = atoll(tl_db_result_value(res, 0, 0) ? tl_db_result_value(res, 0, 0) : "0");
  const char *vanished = tl_db_result_value(res, 0, 2);
  if (vanished && strcmp(vanished, "0") != 0)
    tl_log(TL_LOG_WARN, "chain_event_vanished", "count=%s", vanished); /* deleted unsealed */
  if (sealed < 0) { /* another daemon is sealing */
    idle(s);
    return;
  }
  s->sealed += (unsigned long long)sealed;
  if (sealed > 0)
    tl_log(TL_LOG_DEBUG, "chain_sealed", "events=%lld partitions=%s", sealed,
           tl_db_result_value(res, 0, 1));
  if (s->stopped) {
    idle(s);
  } else if (sealed >= s->batch) {
    step_seal(s); /* more are waiting */
  } else {
    step_due(s);
  }
}

static void step_seal(tl_sealer_t *s) {
  char batch[16];
  snprintf(batch, sizeof batch, "%d", s->batch);
  const char *params[] = {batch, s->tz};
  if (tl_db_exec(s->db, "SELECT sealed, partitions, vanished FROM tl_chain_seal($1::int, $2)", 2,
                 params, seal_done, s) != 0)
    idle(s);
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
  s->batch = 20000;
}

int tl_sealer_start(tl_sealer_t *s, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms) {
  s->db = db;
  s->running = 0;
  s->stopped = 0;
  s->sealed = s->checkpoints = 0;
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
