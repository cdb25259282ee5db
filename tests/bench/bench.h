/* Small helpers shared by the benchmark programs (loadgen.c, pgload.c): options, latency
 * samples and their percentiles, machine-readable result lines. */
#ifndef TL_BENCH_BENCH_H
#define TL_BENCH_BENCH_H

#include "model.h"

#include <stddef.h>

/* "--key value" options: the value of key, or dflt. Flags ("--key" alone) read as "1". */
const char *bb_opt(int argc, char **argv, const char *key, const char *dflt);
long bb_opt_long(int argc, char **argv, const char *key, long dflt);
double bb_opt_double(int argc, char **argv, const char *key, double dflt);

/* The workload parameters every command that replays the model takes:
 * --seed --tag --block --base-ms --boxes --sites --site-offset --positive-rate --site-only. */
void bb_workload_params(int argc, char **argv, bm_params_t *p);

/* A growable array of latencies in milliseconds. */
typedef struct {
  double *v;
  size_t n, cap;
} bb_lat_t;

void bb_lat_add(bb_lat_t *l, double ms);
void bb_lat_merge(bb_lat_t *into, const bb_lat_t *from);
/* Sorts and returns the nearest-rank percentile (p in 0..1); 0 when empty. */
double bb_lat_pct(bb_lat_t *l, double p);
void bb_lat_free(bb_lat_t *l);

/* CPU seconds (user + system) this process used so far. */
double bb_cpu_self(void);

#endif
