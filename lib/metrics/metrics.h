/* Request metrics in the Prometheus text format: a counter per (route, status) and one
 * latency histogram; and the histogram type itself, for other timings (the ingest's steps).
 * Single-threaded, like the loop that feeds it.
 *
 * Routes are known up front (the router's table), so counters are arrays, not maps; the
 * route names are borrowed and must outlive the metrics. Index nroutes is "unmatched". */
#ifndef TL_METRICS_METRICS_H
#define TL_METRICS_METRICS_H

#include "base/buf.h"
#include "base/err.h"

#include <stdint.h>

#define TL_METRICS_MAX_ROUTES 65
#define TL_METRICS_STATUSES 16 /* distinct statuses remembered per route */
#define TL_METRICS_BUCKETS 14

typedef struct {
  int status;
  uint64_t count;
} tl_metrics_status_t;

/* Durations in fixed buckets from 0.5 ms to 10 s (per bucket here, cumulative when rendered). */
typedef struct {
  uint64_t buckets[TL_METRICS_BUCKETS];
  uint64_t count;
  double sum;
} tl_histogram_t;

void tl_histogram_observe(tl_histogram_t *h, double seconds);
/* Appends h's _bucket, _sum and _count lines for name; labels is "" or e.g. `step="load"`. The
 * HELP and TYPE lines are the caller's, once per name. */
TL_WUR int tl_histogram_render(const tl_histogram_t *h, const char *name, const char *labels,
                               tl_buf_t *out);

typedef struct {
  int nroutes;
  const char *names[TL_METRICS_MAX_ROUTES];
  tl_metrics_status_t counts[TL_METRICS_MAX_ROUTES][TL_METRICS_STATUSES];
  tl_histogram_t latency;
} tl_metrics_t;

/* names: nroutes borrowed strings (the routes' patterns). */
void tl_metrics_init(tl_metrics_t *m, int nroutes, const char *const *names);
/* route: index, or -1 for a request no route matched. */
void tl_metrics_observe(tl_metrics_t *m, int route, int status, double seconds);
/* Appends the counters and the histogram. */
TL_WUR int tl_metrics_render(const tl_metrics_t *m, tl_buf_t *out);
/* The count for (route, status); for tests. */
uint64_t tl_metrics_count(const tl_metrics_t *m, int route, int status);

#endif
