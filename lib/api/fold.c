/* The roll-up fold: a libuv timer that moves the deltas every write appends (stats_delta) into
 * the dashboards' roll-ups (tl_fold, sql/008_rollup_deltas.sql), so that they stay small when
 * nobody reads. Reads (and the live stream's snapshots) fold first, so what a reader sees does
 * not depend on this timer: it folds every FOLD_EVERY ticks. A fold rewrites every stats row
 * the deltas reach, each with its stored answer (sql/016), whether one delta or a hundred
 * reached it: measured with single-event requests spread over 200 sites, ~400 rows and
 * ~160 ms of PostgreSQL per fold, 10 % of its CPU when folding every second.
 * The database lets one fold run at a time.
 *
 * A fold that finds nothing to fold while stats_delta still has pages asks for a VACUUM of it:
 * every fold deletes what it folded, and every read (and fold) first asks whether the table
 * holds anything, which reads every page of an emptied table until a vacuum gives them back.
 * After a city's day of writes that was 17 MB, ~1.5 ms of each dashboard read at rest (30 ms
 * from a cold cache); autovacuum had vacuumed it but could not truncate it while writes went
 * on, and does not come back to an empty table. When writes stop the VACUUM truncates it to
 * nothing; SKIP_LOCKED, so that it never waits behind autovacuum. It is asked again only once
 * the table's size has changed, so a VACUUM that could not shrink it (a role that does not own
 * the table gets a warning and nothing else) is not repeated every fold.
 *
 * Every tick the same timer also asks the database to ANALYZE the tables that changed more
 * than the planner knows of (tl_analyze_grown, sql/017): a fresh database fills faster than
 * autovacuum's one-minute naps, and plans made for empty tables cost 3x the CPU per event.
 * The question costs one read of pg_stat_user_tables; a table is analyzed only when it has
 * about doubled since its last ANALYZE, so a busy fresh database gets its first statistics
 * after a second of ingest rather than five (the plans of those first seconds were measured
 * at up to 50x the steady cost per group, sql/019). */
#include "api/fold.h"

#include "base/log.h"

#include <stdlib.h>

#define FOLD_EVERY 5
/* Pages of an emptied stats_delta worth a VACUUM (reading fewer is cheaper than vacuuming). */
#define DELTA_PAGES_WORTH_VACUUM 8

/* 1 when a statement of the timer's failed, logged as event. */
static int failed(int status, const tl_db_result_t *res, const char *event) {
  if (status != 0)
    tl_log(TL_LOG_WARN, event, "status=\"%s\" sqlstate=%s", tl_strerror(status),
           tl_db_result_sqlstate(res));
  return status != 0;
}

static void vacuum_done(void *arg, int status, const tl_db_result_t *res) {
  tl_fold_t *f = arg;
  f->vacuuming = 0;
  (void)failed(status, res, "delta_vacuum_failed");
}

static void fold_done(void *arg, int status, const tl_db_result_t *res) {
  tl_fold_t *f = arg;
  f->running = 0;
  if (failed(status, res, "fold_failed")) return;
  f->folds++;
  const char *folded = tl_db_result_value(res, 0, 0), *pages = tl_db_result_value(res, 0, 1);
  long n = pages ? atol(pages) : 0;
  if (folded && atol(folded) == 0 && n >= DELTA_PAGES_WORTH_VACUUM && n != f->vacuumed_pages &&
      !f->vacuuming &&
      tl_db_exec(f->db, "VACUUM (SKIP_LOCKED) stats_delta", 0, NULL, vacuum_done, f) == 0) {
    f->vacuuming = 1;
    f->vacuumed_pages = n;
  } else if (n != f->vacuumed_pages) {
    f->vacuumed_pages = -1; /* the table changed since that VACUUM: the next one may help */
  }
}

static void analyze_done(void *arg, int status, const tl_db_result_t *res) {
  tl_fold_t *f = arg;
  f->analyzing = 0;
  (void)failed(status, res, "analyze_failed");
}

static void on_tick(uv_timer_t *t) {
  tl_fold_t *f = t->data;
  if (!f->analyzing &&
      tl_db_exec(f->db, "SELECT tl_analyze_grown()", 0, NULL, analyze_done, f) == 0)
    f->analyzing = 1;
  if (f->running || ++f->ticks % FOLD_EVERY != 0) return; /* or the last one is still running */
  static const char fold_sql[] = "SELECT tl_fold(), pg_relation_size('stats_delta') / 8192";
  if (tl_db_exec(f->db, fold_sql, 0, NULL, fold_done, f) == 0) f->running = 1;
}

int tl_fold_start(tl_fold_t *f, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms) {
  f->db = db;
  f->running = 0;
  f->analyzing = 0;
  f->vacuuming = 0;
  f->vacuumed_pages = -1;
  f->ticks = 0;
  f->folds = 0;
  int rc = uv_timer_init(loop, &f->timer);
  if (rc != 0) return rc;
  f->timer.data = f;
  return uv_timer_start(&f->timer, on_tick, (uint64_t)interval_ms, (uint64_t)interval_ms);
}

static void on_closed(uv_handle_t *h) { (void)h; }

void tl_fold_stop(tl_fold_t *f) {
  if (!uv_is_closing((uv_handle_t *)&f->timer)) uv_close((uv_handle_t *)&f->timer, on_closed);
}
