/* The custody chain's sealer (see sealer.c). Caller-owned; start after the pool, stop before
 * closing the pool (a step in flight still calls back with TL_ECLOSED, which only logs). */
#ifndef TL_API_SEALER_H
#define TL_API_SEALER_H

#include "crypto/keys.h"
#include "db/pool.h"

#include <uv.h>

typedef struct {
  uv_timer_t timer;
  tl_db_pool_t *db;          /* borrowed */
  const tl_keys_t *keys;     /* borrowed: the last sign key signs checkpoints */
  const char *tz;            /* borrowed: the zone of the partitions' days */
  int checkpoint_interval_s; /* a moved head is signed at least this often */
  int checkpoint_links;      /* ... and whenever it moved this many links */
  int batch;                 /* events chained per transaction */
  int running;               /* a step is in the database */
  int careful;               /* a step failed: the next take skips chained events (sql/036) */
  int stopped;
  tl_db_conn_t *conn;        /* held for the seal transaction, else NULL */
  long long round_links;     /* links computed in the current seal transaction */
  int round_parts;           /* ... in this many partitions */
  unsigned long long round_hash_us; /* ... taking this long in C */
  unsigned long long sealed;      /* events chained by this daemon */
  unsigned long long checkpoints; /* checkpoints written by this daemon */
} tl_sealer_t;

/* Fills the settings above with their defaults (except db, keys, tz). */
void tl_sealer_defaults(tl_sealer_t *s);
TL_WUR int tl_sealer_start(tl_sealer_t *s, uv_loop_t *loop, tl_db_pool_t *db, int interval_ms);
void tl_sealer_stop(tl_sealer_t *s);

#endif
