/* The overdue sweep: a libuv timer that asks the database to open the overdue_* anomalies whose
 * limit has passed and to close those whose object moved on (sql/007_overdue.sql). Every daemon
 * runs one; the database makes concurrent sweeps harmless. */
#include "api/overdue.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sweep_done(void *arg, int status, const tl_db_result_t *res) {
  tl_overdue_t *o = arg;
  o->running = 0;
  if (status != 0) {
    tl_log(TL_LOG_WARN, "overdue_sweep_failed", "status=\"%s\" sqlstate=%s", tl_strerror(status),
           tl_db_result_sqlstate(res));
    return;
  }
  const char *v = tl_db_result_value(res, 0, 0);
  if (v && strcmp(v, "0") != 0 && strcmp(v, "-1") != 0)
    tl_log(TL_LOG_INFO, "overdue_opened", "count=%s", v);
  o->sweeps++;
}

static void on_tick(uv_timer_t *t) {
  tl_overdue_t *o = t->data;
  if (o->running) return; /* the last one is still in the database */
  char transport[16], test[16], followup[16];
  snprintf(transport, sizeof transport, "%d", o->transport_min);
  snprintf(test, sizeof test, "%d", o->test_min);
  snprintf(followup, sizeof followup, "%d", o->followup_min);
  const char *params[] = {transport, test, followup};
  int rc = tl_db_exec(o->db,
                      "SELECT tl_overdue_sweep(now(), make_interval(mins => $1::int),"
                      " make_interval(mins => $2::int), make_interval(mins => $3::int))",
                      3, params, sweep_done, o);
  if (rc == 0) o->running = 1;
}

int tl_overdue_start(tl_overdue_t *o, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms) {
  o->db = db;
  o->running = 0;
  o->sweeps = 0;
  int rc = uv_timer_init(loop, &o->timer);
  if (rc != 0) return rc;
  o->timer.data = o;
  /* first sweep soon after start, then every interval */
  return uv_timer_start(&o->timer, on_tick, 1000, (uint64_t)interval_ms);
}

static void on_closed(uv_handle_t *h) { (void)h; }

void tl_overdue_stop(tl_overdue_t *o) {
  if (!uv_is_closing((uv_handle_t *)&o->timer)) uv_close((uv_handle_t *)&o->timer, on_closed);
}
