/* The counters and histogram of metrics.h. */
#include "metrics/metrics.h"

#include <string.h>

static const double bounds[TL_METRICS_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    2.5, 10};

void tl_metrics_init(tl_metrics_t *m, int nroutes, const char *const *names) {
  memset(m, 0, sizeof *m);
  if (nroutes > TL_METRICS_MAX_ROUTES - 1) nroutes = TL_METRICS_MAX_ROUTES - 1;
  m->nroutes = nroutes;
  for (int i = 0; i < nroutes; i++) m->names[i] = names[i];
  m->names[nroutes] = "unmatched";
}

static int slot(const tl_metrics_t *m, int route) {
  return route < 0 || route >= m->nroutes ? m->nroutes : route;
}

void tl_metrics_observe(tl_metrics_t *m, int route, int status, double seconds) {
  tl_metrics_status_t *row = m->counts[slot(m, route)];
  for (int i = 0; i < TL_METRICS_STATUSES; i++) {
    if (row[i].status == status || row[i].status == 0) {
      row[i].status = status;
      row[i].count++;
      break;
    }
  }
  int b = 0;
  while (b < TL_METRICS_BUCKETS - 1 && seconds > bounds[b]) b++;
  m->buckets[b]++;
  m->observations++;
  m->seconds_sum += seconds;
}

uint64_t tl_metrics_count(const tl_metrics_t *m, int route, int status) {
  const tl_metrics_status_t *row = m->counts[slot(m, route)];
  for (int i = 0; i < TL_METRICS_STATUSES; i++)
    if (row[i].status == status) return row[i].count;
  return 0;
}

int tl_metrics_render(const tl_metrics_t *m, tl_buf_t *out) {
  int rc = tl_buf_appendf(out, "# HELP tubeloop_http_requests_total HTTP requests answered, by "
                               "route and status.\n# TYPE tubeloop_http_requests_total counter\n");
  for (int r = 0; r <= m->nroutes && rc == 0; r++)
    for (int i = 0; i < TL_METRICS_STATUSES && m->counts[r][i].status && rc == 0; i++)
      rc = tl_buf_appendf(out, "tubeloop_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                          m->names[r], m->counts[r][i].status,
                          (unsigned long long)m->counts[r][i].count);
  if (rc == 0)
    rc = tl_buf_appendf(out, "# HELP tubeloop_http_request_duration_seconds Time from a "
                             "complete request to its queued answer.\n"
                             "# TYPE tubeloop_http_request_duration_seconds histogram\n");
  uint64_t cum = 0;
  for (int b = 0; b < TL_METRICS_BUCKETS - 1 && rc == 0; b++) {
    cum += m->buckets[b];
    rc = tl_buf_appendf(out, "tubeloop_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                        bounds[b], (unsigned long long)cum);
  }
  if (rc == 0)
    rc = tl_buf_appendf(out,
                        "tubeloop_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "tubeloop_http_request_duration_seconds_sum %.6f\n"
                        "tubeloop_http_request_duration_seconds_count %llu\n",
                        (unsigned long long)m->observations, m->seconds_sum,
                        (unsigned long long)m->observations);
  return rc;
}
