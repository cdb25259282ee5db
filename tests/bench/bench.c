/* Helpers of the benchmark programs (bench.h). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

const char *bb_opt(int argc, char **argv, const char *key, const char *dflt) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], key) != 0) continue;
    if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) return argv[i + 1];
    return "1";
  }
  return dflt;
}

long bb_opt_long(int argc, char **argv, const char *key, long dflt) {
  const char *v = bb_opt(argc, argv, key, NULL);
  return v ? strtol(v, NULL, 10) : dflt;
}

double bb_opt_double(int argc, char **argv, const char *key, double dflt) {
  const char *v = bb_opt(argc, argv, key, NULL);
  return v ? strtod(v, NULL) : dflt;
}

void bb_workload_params(int argc, char **argv, bm_params_t *p) {
  memset(p, 0, sizeof *p);
  p->seed = (uint64_t)bb_opt_long(argc, argv, "--seed", 20220404);
  p->tag = bb_opt(argc, argv, "--tag", "a");
  p->person_block = (int)bb_opt_long(argc, argv, "--block", 0);
  p->person_offset = bb_opt_long(argc, argv, "--person-offset", 0);
  p->base_ms = (int64_t)bb_opt_double(argc, argv, "--base-ms", 0);
  if (p->base_ms == 0) p->base_ms = bm_wall_ms() - 150LL * 60000;
  p->boxes_per_site = (int)bb_opt_long(argc, argv, "--boxes", 1);
  p->sites = (int)bb_opt_long(argc, argv, "--sites", 0);
  p->site_offset = (int)bb_opt_long(argc, argv, "--site-offset", 0);
  p->positive_rate = bb_opt_double(argc, argv, "--positive-rate", 0.005);
  p->site_only = bb_opt(argc, argv, "--site-only", NULL) != NULL;
}

void bb_lat_add(bb_lat_t *l, double ms) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 1024;
    double *nv = realloc(l->v, nc * sizeof *nv);
    if (nv == NULL) return;
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = ms;
}

void bb_lat_merge(bb_lat_t *into, const bb_lat_t *from) {
  for (size_t i = 0; i < from->n; i++) bb_lat_add(into, from->v[i]);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double bb_lat_pct(bb_lat_t *l, double p) {
  if (l->n == 0) return 0;
  qsort(l->v, l->n, sizeof *l->v, cmp_double);
  size_t rank = (size_t)(p * (double)l->n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > l->n) rank = l->n;
  return l->v[rank - 1];
}

void bb_lat_free(bb_lat_t *l) {
  free(l->v);
  memset(l, 0, sizeof *l);
}

double bb_cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}
