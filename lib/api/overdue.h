/* The periodic overdue sweep (see overdue.c). Caller-owned; start after the pool, stop before
 * closing the pool (a sweep in flight still calls back with TL_ECLOSED, which only logs). */
#ifndef TL_API_OVERDUE_H
#define TL_API_OVERDUE_H

#include "db/pool.h"

#include <uv.h>

typedef struct {
  uv_timer_t timer;
  tl_db_pool_t *db;   /* borrowed */
  int transport_min;  /* sealed → received limit */
  int test_min;       /* received → resulted limit */
  int followup_min;   /* follow-up open limit */
  int running;        /* a sweep is in the database */
  unsigned long sweeps;
} tl_overdue_t;

TL_WUR int tl_overdue_start(tl_overdue_t *o, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms);
void tl_overdue_stop(tl_overdue_t *o);

#endif
