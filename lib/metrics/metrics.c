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
  tl_histogram_observe(&m->latency, seconds);
}

void tl_histogram_observe(tl_histogram_t *h, double seconds) {
  int b = 0;
  while (b < TL_METRICS_BUCKETS - 1 && seconds > bounds[b]) b++;
  h->buckets[b]++;
  h->count++;
  h->sum += seconds;
}

int tl_histogram_render(const tl_histogram_t *h, const char *name, const char *labels,
                        tl_buf_t *out) {
  const char *sep = labels[0] ? "," : "";
  int rc = 0;
  uint64_t cum = 0;
  for (int b = 0; b < TL_METRICS_BUCKETS - 1 && rc == 0; b++) {
    cum += h->buckets[b];
    rc = tl_buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[b],
                        (unsigned long long)cum);
  }
  if (rc == 0)
    rc = tl_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                        (unsigned long long)h->count);
  const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
  if (rc == 0)
    rc = tl_buf_appendf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels, close,
                        h->sum, name, open, labels, close, (unsigned long long)h->count);
  return rc;
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
  if (rc == 0)
    rc = tl_histogram_render(&m->latency, "tubeloop_http_request_duration_seconds", "", out);
  return rc;
}
