/* tl_pgload — the database-side yardsticks of the benchmark (issue 6), on the same PostgreSQL
 * and exactly the same event JSON as tl_loadgen's ingest (same workload options):
 *
 *   tl_pgload ceiling --db CONNINFO --sessions 1|2 [workload options]
 *       COPY of every event into copy_ceiling(event_id uuid PRIMARY KEY, sender text, type text,
 *       at timestamptz, payload jsonb), 1000 rows per committed transaction (one COPY statement,
 *       autocommit), the rows split over the sessions: the cost of merely storing these facts
 *       durably here.
 *   tl_pgload naive --db CONNINFO --conns 16 --seconds S [workload options]
 *       the same events inserted one per transaction into copy_naive (same columns) by --conns
 *       concurrent connections: what a straightforward per-request service reaches.
 *
 * Both (re)create and empty their table first, and print "result ceiling|naive ..." lines. */
#include "bench.h"
#include "model.h"

#include "domain/validate.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char table_sql[] =
    "(event_id uuid PRIMARY KEY, sender text NOT NULL, type text NOT NULL,"
    " at timestamptz NOT NULL, payload jsonb NOT NULL)";

static PGconn *connect_db(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "pgload: %s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) fprintf(stderr, "pgload: %s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  return ok ? 0 : -1;
}

/* Appends s to out with COPY text-format escaping (backslash, tab, newline, carriage return). */
static size_t copy_escape(char *out, const char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
      out[o++] = '\\';
      c = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
    }
    out[o++] = c;
  }
  return o;
}

typedef struct {
  const char *conninfo;
  const bm_workload_t *w;
  const bm_registry_t *r;
  int k, sessions, rows_per_tx;
  long rows;
  int failed;
} copy_job_t;

static void *copy_worker(void *arg) {
  copy_job_t *j = arg;
  PGconn *c = connect_db(j->conninfo);
  if (c == NULL) {
    j->failed = 1;
    return NULL;
  }
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  const bm_workload_t *w = j->w;
  int chunks = (w->nevents + j->rows_per_tx - 1) / j->rows_per_tx;
  /* chunk c goes to session c % sessions: both sessions copy through the whole run */
  for (int ch = j->k; ch < chunks && !j->failed; ch += j->sessions) {
    PGresult *r = PQexec(c, "COPY copy_ceiling (event_id, sender, type, at, payload) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
      fprintf(stderr, "pgload: COPY: %s", PQerrorMessage(c));
      PQclear(r);
      j->failed = 1;
      break;
    }
    PQclear(r);
    int first = ch * j->rows_per_tx, last = first + j->rows_per_tx;
    if (last > w->nevents) last = w->nevents;
    len = 0;
    for (int i = first; i < last; i++) {
      const bm_event_t *e = &w->events[i];
      if (len + 2 * e->len + 256 > cap) {
        if (PQputCopyData(c, buf, (int)len) != 1) j->failed = 1;
        len = 0;
      }
      char when[TL_TIME_TEXT_MAX];
      if (tl_time_format(e->at, 480, when) != 0) j->failed = 1;
      len += (size_t)snprintf(buf + len, cap - len, "%s\t%s\t%s\t%s\t", e->id, j->r->senders[e->sender].code,
                              bm_type_names[e->type], when);
      len += copy_escape(buf + len, e->json, e->len);
      buf[len++] = '\n';
    }
    if (len && PQputCopyData(c, buf, (int)len) != 1) j->failed = 1;
    if (PQputCopyEnd(c, NULL) != 1) j->failed = 1;
    while ((r = PQgetResult(c)) != NULL) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pgload: COPY end: %s", PQerrorMessage(c));
        j->failed = 1;
      }
      PQclear(r);
    }
    j->rows += last - first;
  }
  free(buf);
  PQfinish(c);
  return NULL;
}

static int cmd_ceiling(int argc, char **argv, const char *conninfo, const bm_workload_t *w, const bm_registry_t *r) {
  int sessions = (int)bb_opt_long(argc, argv, "--sessions", 1);
  int per_tx = (int)bb_opt_long(argc, argv, "--rows-per-tx", 1000);
  PGconn *c = connect_db(conninfo);
  if (c == NULL) return 1;
  char sql[512];
  snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS copy_ceiling %s", table_sql);
  if (exec_ok(c, sql) != 0 || exec_ok(c, "TRUNCATE copy_ceiling") != 0 || exec_ok(c, "CHECKPOINT") != 0) {
    PQfinish(c);
    return 1;
  }
  copy_job_t *jobs = calloc((size_t)sessions, sizeof *jobs);
  pthread_t *th = calloc((size_t)sessions, sizeof *th);
  double t0 = bm_now_s();
  for (int i = 0; i < sessions; i++) {
    jobs[i] = (copy_job_t){.conninfo = conninfo, .w = w, .r = r, .k = i, .sessions = sessions, .rows_per_tx = per_tx};
    pthread_create(&th[i], NULL, copy_worker, &jobs[i]);
  }
  long rows = 0;
  int failed = 0;
  for (int i = 0; i < sessions; i++) {
    pthread_join(th[i], NULL);
    rows += jobs[i].rows;
    failed |= jobs[i].failed;
  }
  double secs = bm_now_s() - t0;
  PGresult *res = PQexec(c, "SELECT count(*) FROM copy_ceiling");
  long in_table = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;
  PQclear(res);
  printf("ceiling: COPY of %ld events (%.1f MB of JSON) into copy_ceiling, %d rows per transaction, %d session%s:"
         " %.2f s, %.0f rows/s (%ld rows in the table)\n",
         rows, (double)w->bytes / 1e6, per_tx, sessions, sessions > 1 ? "s" : "", secs, (double)rows / secs, in_table);
  printf("result ceiling sessions=%d rows=%ld seconds=%.3f rows_per_s=%.0f in_table=%ld ok=%d\n", sessions, rows, secs,
         (double)rows / secs, in_table, !failed && in_table == rows);
  free(jobs);
  free(th);
  PQfinish(c);
  return failed || in_table != rows;
}

typedef struct {
  const char *conninfo;
  const bm_workload_t *w;
  const bm_registry_t *r;
  atomic_long *next;
  double deadline;
  long rows;
  int failed;
} naive_job_t;

static void *naive_worker(void *arg) {
  naive_job_t *j = arg;
  PGconn *c = connect_db(j->conninfo);
  if (c == NULL) {
    j->failed = 1;
    return NULL;
  }
  PGresult *r = PQprepare(c, "ins", "INSERT INTO copy_naive (event_id, sender, type, at, payload)"
                                    " VALUES ($1, $2, $3, $4, $5)", 5, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    fprintf(stderr, "pgload: prepare: %s", PQerrorMessage(c));
    j->failed = 1;
  }
  PQclear(r);
  while (!j->failed && bm_now_s() < j->deadline) {
    long i = atomic_fetch_add(j->next, 1);
    if (i >= j->w->nevents) break;
    const bm_event_t *e = &j->w->events[i];
    char when[TL_TIME_TEXT_MAX];
    if (tl_time_format(e->at, 480, when) != 0) break;
    const char *params[] = {e->id, j->r->senders[e->sender].code, bm_type_names[e->type], when, e->json};
    r = PQexecPrepared(c, "ins", 5, params, NULL, NULL, 0); /* autocommit: one transaction each */
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      fprintf(stderr, "pgload: insert: %s", PQerrorMessage(c));
      j->failed = 1;
    } else {
      j->rows++;
    }
    PQclear(r);
  }
  PQfinish(c);
  return NULL;
}

static int cmd_naive(int argc, char **argv, const char *conninfo, const bm_workload_t *w, const bm_registry_t *r) {
  int conns = (int)bb_opt_long(argc, argv, "--conns", 16);
  double seconds = bb_opt_double(argc, argv, "--seconds", 10);
  PGconn *c = connect_db(conninfo);
  if (c == NULL) return 1;
  char sql[512];
  snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS copy_naive %s", table_sql);
  if (exec_ok(c, sql) != 0 || exec_ok(c, "TRUNCATE copy_naive") != 0 || exec_ok(c, "CHECKPOINT") != 0) {
    PQfinish(c);
    return 1;
  }
  atomic_long next = 0;
  naive_job_t *jobs = calloc((size_t)conns, sizeof *jobs);
  pthread_t *th = calloc((size_t)conns, sizeof *th);
  double t0 = bm_now_s();
  for (int i = 0; i < conns; i++) {
    jobs[i] = (naive_job_t){.conninfo = conninfo, .w = w, .r = r, .next = &next, .deadline = t0 + seconds};
    pthread_create(&th[i], NULL, naive_worker, &jobs[i]);
  }
  long rows = 0;
  int failed = 0;
  for (int i = 0; i < conns; i++) {
    pthread_join(th[i], NULL);
    rows += jobs[i].rows;
    failed |= jobs[i].failed;
  }
  double secs = bm_now_s() - t0;
  printf("naive: %ld events inserted one per transaction by %d connections in %.2f s: %.0f rows/s\n", rows, conns, secs,
         (double)rows / secs);
  printf("result naive conns=%d rows=%ld seconds=%.3f rows_per_s=%.0f ok=%d\n", conns, rows, secs, (double)rows / secs,
         !failed);
  free(jobs);
  free(th);
  PQfinish(c);
  return failed;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    fprintf(stderr, "usage: tl_pgload ceiling|naive --db CONNINFO --registry FILE [workload options]\n");
    return 2;
  }
  const char *conninfo = bb_opt(argc, argv, "--db", NULL);
  const char *path = bb_opt(argc, argv, "--registry", NULL);
  if (conninfo == NULL || path == NULL) {
    fprintf(stderr, "tl_pgload: --db and --registry are required\n");
    return 2;
  }
  bm_registry_t r;
  if (bm_registry_load(&r, path) != 0) return 1;
  bm_params_t p;
  bb_workload_params(argc, argv, &p);
  bm_workload_t w;
  if (bm_workload_build(&w, &r, &p) != 0) return 1;
  int rc;
  if (strcmp(argv[1], "ceiling") == 0) rc = cmd_ceiling(argc, argv, conninfo, &w, &r);
  else if (strcmp(argv[1], "naive") == 0) rc = cmd_naive(argc, argv, conninfo, &w, &r);
  else {
    fprintf(stderr, "tl_pgload: unknown command %s\n", argv[1]);
    rc = 2;
  }
  bm_workload_dispose(&w);
  bm_registry_dispose(&r);
  return rc;
}
