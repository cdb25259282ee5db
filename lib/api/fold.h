/* The roll-up fold, and the statistics of fast-growing tables (see fold.c). Caller-owned; start after the pool, stop before closing it. */
#ifndef TL_API_FOLD_H
#define TL_API_FOLD_H

#include "db/pool.h"

#include <uv.h>

typedef struct {
  uv_timer_t timer;
  tl_db_pool_t *db; /* borrowed */
  int running;      /* a fold is in the database */
  int analyzing;    /* a tl_analyze_grown is in the database */
  int vacuuming;    /* a VACUUM of the emptied stats_delta is in the database */
  long vacuumed_pages; /* stats_delta's pages when the last VACUUM was asked for, while they
                        * stay so; else -1 */
  unsigned long ticks;  /* timer ticks since the start: a fold every FOLD_EVERY-th */
  unsigned long folds;
} tl_fold_t;

TL_WUR int tl_fold_start(tl_fold_t *f, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms);
void tl_fold_stop(tl_fold_t *f);

#endif
