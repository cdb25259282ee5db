/* Database faults under a running daemon: what an operator watching /readyz and /metrics
 * would see when PostgreSQL goes away and comes back.
 *
 * The test owns a private cluster (pg.sh init/start next to $TUBELOOP_TEST_PG_DIR, on a free
 * port), so stopping it disturbs no other test. One daemon runs through the whole sequence, which
 * is the point: the database stops (immediate: no goodbye to the clients) → /readyz turns
 * 503 db_unavailable within seconds while /healthz stays 200; it starts again → /readyz is
 * 200 again without restarting the daemon; its backends are killed with
 * pg_terminate_backend → the pool replaces them (new backend pids, the reconnect counter
 * grows) and /readyz stays 200. The tests run in order and build on each other. */
#include "support/daemon.h"
#include "support/tlsclient.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define POOL_SIZE 2
#define MAX_PIDS 16

static struct {
  char dir[TL_TEST_PATH];   /* the private cluster */
  char conninfo[2048];
  int migrate_status;
  char migrate_out[4096];
  tl_test_daemon_t d;
} g;

/* pg.sh SUBCOMMAND DIR [ARG]: exit status; output into out when given. */
static int pg(const char *sub, const char *arg, char *out, size_t outlen) {
  const char *argv[] = {tl_test_env("TUBELOOP_TEST_PG_SH"), sub, g.dir, arg, NULL};
  char buf[4096];
  int st = tl_test_run(argv, 90000, out ? out : buf, out ? outlen : sizeof buf, NULL);
  if (st != 0) fprintf(stderr, "test: pg.sh %s exited %d: %s\n", sub, st, out ? out : buf);
  return st;
}

/* One SQL statement through pg.sh psql; the unaligned output into out. */
static int psql(const char *sql, char *out, size_t outlen) {
  const char *argv[] = {tl_test_env("TUBELOOP_TEST_PG_SH"), "psql", g.dir, "-At", "-c", sql, NULL};
  int st = tl_test_run(argv, 30000, out, outlen, NULL);
  if (st != 0) fprintf(stderr, "test: psql exited %d: %s\n", st, out);
  return st;
}

static int setup(void **state) {
  (void)state;
  char port[16];
  snprintf(port, sizeof port, "%d", tl_test_free_port());
  /* A sibling of the shared cluster's folder: its parents are known to be traversable by
   * the unprivileged PostgreSQL user, which a build tree's may not be. */
  snprintf(g.dir, sizeof g.dir, "%.900s-faults-%d", tl_test_env("TUBELOOP_TEST_PG_DIR"),
           (int)getpid());
  if (pg("init", port, NULL, 0) != 0 || pg("start", NULL, NULL, 0) != 0) return -1;
  if (pg("conninfo", NULL, g.conninfo, sizeof g.conninfo) != 0) return -1;
  g.conninfo[strcspn(g.conninfo, "\n")] = '\0';
  const char *migrate[] = {tl_test_env("TUBELOOPD"), "migrate", "--db", g.conninfo, NULL};
  g.migrate_status = tl_test_run(migrate, 60000, g.migrate_out, sizeof g.migrate_out, NULL);
  static const char *const flags[] = {"--pool-size", "2", NULL};
  tl_test_daemon_opts_t o = {.db = g.conninfo, .extra = flags};
  return tl_test_daemon_start(&g.d, "db-faults", &o);
}

static int teardown(void **state) {
  (void)state;
  tl_test_daemon_cleanup(&g.d);
  if (g.dir[0]) pg("destroy", NULL, NULL, 0);
  return 0;
}

/* GET path: the status, or a negative client error. The body's error code into code. */
static int get(const char *path, char *code, size_t codelen, char *retry_after, size_t ralen) {
  tl_test_response_t r;
  int rc = tl_test_daemon_get(&g.d, path, &r);
  if (rc != 0) return rc;
  int status = r.status;
  if (code) {
    const char *c = strstr(r.body, "\"code\":\"");
    snprintf(code, codelen, "%.*s", c ? (int)strcspn(c + 8, "\"") : 0, c ? c + 8 : "");
  }
  if (retry_after && !tl_test_response_header(&r, "Retry-After", retry_after, ralen))
    retry_after[0] = '\0';
  tl_test_response_free(&r);
  return status;
}

static double metric(const char *series) {
  tl_test_response_t r;
  if (tl_test_daemon_get(&g.d, "/metrics", &r) != 0) return -1;
  double v = tl_test_metric(r.body, series);
  tl_test_response_free(&r);
  return v;
}

/* Polls /readyz until it answers want: the milliseconds it took, or -1. */
static long long readyz_becomes(int want, int timeout_ms) {
  long long t0 = tl_test_now_ms();
  while (tl_test_now_ms() - t0 < timeout_ms) {
    if (get("/readyz", NULL, 0, NULL, 0) == want) return tl_test_now_ms() - t0;
    tl_test_sleep_ms(50);
  }
  return -1;
}

/* Until the pool reports all its connections up: 1, or 0 after timeout_ms. */
static int pool_full(int timeout_ms) {
  long long t0 = tl_test_now_ms();
  while (tl_test_now_ms() - t0 < timeout_ms) {
    if (metric("tubeloop_db_pool_connected") == POOL_SIZE) return 1;
    tl_test_sleep_ms(50);
  }
  return 0;
}

/* The daemon's backends: their pids, sorted; returns how many. */
static int backend_pids(long *pids) {
  char out[4096];
  int st = psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'tubeloopd' "
                "ORDER BY pid", out, sizeof out);
  assert_int_equal(st, 0);
  int n = 0;
  for (char *line = strtok(out, "\n"); line && n < MAX_PIDS; line = strtok(NULL, "\n"))
    pids[n++] = atol(line);
  return n;
}

static void migrate_applies_the_schema_to_a_fresh_cluster(void **state) {
  (void)state;
  if (g.migrate_status != 0)
    fail_msg("tubeloopd migrate exited %d: %s", g.migrate_status, g.migrate_out);
  char out[256];
  assert_int_equal(psql("SELECT to_regclass('tokens') IS NOT NULL", out, sizeof out), 0);
  assert_string_equal(out, "t\n");
}

static void readyz_is_200_while_the_database_is_up(void **state) {
  (void)state;
  assert_true(readyz_becomes(200, 10000) >= 0);
  assert_true(pool_full(10000));
}

static void database_down_makes_readyz_503(void **state) {
  (void)state;
  assert_int_equal(pg("stop", "immediate", NULL, 0), 0);
  long long took = readyz_becomes(503, 3000);
  if (took < 0) fail_msg("/readyz did not turn 503 within 3 s of the database stopping");
  char code[64], retry[16];
  assert_int_equal(get("/readyz", code, sizeof code, retry, sizeof retry), 503);
  assert_string_equal(code, "db_unavailable");
  assert_true(atoi(retry) >= 1);
  assert_int_equal(get("/healthz", NULL, 0, NULL, 0), 200); /* alive, just not ready */
  assert_true(metric("tubeloop_db_pool_connected") == 0);
}

static void database_back_makes_readyz_200_without_a_restart(void **state) {
  (void)state;
  pid_t pid = g.d.pid;
  assert_int_equal(pg("start", NULL, NULL, 0), 0);
  long long took = readyz_becomes(200, 10000);
  if (took < 0) fail_msg("/readyz did not turn 200 within 10 s of the database starting");
  assert_true(pool_full(10000));
  assert_int_equal(tl_test_daemon_wait(&g.d, 0), -1); /* still the same process */
  assert_int_equal(g.d.pid, pid);
}

static void terminated_backends_are_replaced(void **state) {
  (void)state;
  long before[MAX_PIDS], after[MAX_PIDS];
  assert_int_equal(backend_pids(before), POOL_SIZE);
  double reconnects = metric("tubeloop_db_reconnects_total");
  assert_true(reconnects >= 0);
  char out[256];
  assert_int_equal(psql("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                        "pg_stat_activity WHERE application_name = 'tubeloopd') t",
                        out, sizeof out),
                   0);
  assert_int_equal(atoi(out), POOL_SIZE);
  if (readyz_becomes(200, 5000) < 0) fail_msg("/readyz not 200 within 5 s of the kill");
  assert_true(pool_full(10000));
  double now = metric("tubeloop_db_reconnects_total");
  if (now < reconnects + POOL_SIZE)
    fail_msg("tubeloop_db_reconnects_total went from %g to %g", reconnects, now);
  assert_true(now > 0);
  /* New backends, none of the killed ones. */
  int n = backend_pids(after);
  assert_int_equal(n, POOL_SIZE);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < POOL_SIZE; j++) assert_true(after[i] != before[j]);
  for (int i = 0; i < 5; i++) assert_int_equal(get("/readyz", NULL, 0, NULL, 0), 200);
}

static void daemon_stops_cleanly_after_the_faults(void **state) {
  (void)state;
  assert_int_equal(tl_test_daemon_stop(&g.d, 15000), 0);
  assert_true(tl_test_daemon_log_has(&g.d, "msg=stopped"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(migrate_applies_the_schema_to_a_fresh_cluster),
      cmocka_unit_test(readyz_is_200_while_the_database_is_up),
      cmocka_unit_test(database_down_makes_readyz_503),
      cmocka_unit_test(database_back_makes_readyz_200_without_a_restart),
      cmocka_unit_test(terminated_backends_are_replaced),
      cmocka_unit_test(daemon_stops_cleanly_after_the_faults),
  };
  return cmocka_run_group_tests_name("db faults", tests, setup, teardown);
}
