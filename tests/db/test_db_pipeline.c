/* tl_db_conn_exec_around (lib/db/pool) against the shared test PostgreSQL: before, sql and
 * after go out in one pipeline, and what a caller sees must match what ran. The pool is
 * driven directly on a uv loop, one connection (so a new acquire gets the same session back),
 * every wait bounded by a deadline so that a hang fails instead of stalling CI. The cases:
 * BEGIN + sql + COMMIT gives sql's rows and leaves the session out of pipeline mode with the
 * transaction closed; a failing sql, after or before is reported as TL_EDB with its SQLSTATE
 * and the statement it came from (0, 1, -1), and the statements after it never ran; only
 * before or only after works too; and after a failure tl_db_release rolls back, so the next
 * acquire gets a usable session. The run has a scratch schema of its own (dropped at the
 * end, emptied before each test): a table t whose unique key is checked at COMMIT, and a
 * sequence s that the statements whose running is in question advance (nextval is not rolled
 * back, so s counts statements that ran even when their transaction did not commit).
 * tl_db_conn_query_around does the same with a registered statement: it runs prepared where
 * the session prepared it, and as its text where the prepare failed at connect (a function it
 * calls did not exist yet), so that it works once the function exists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "db/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEADLINE_MS 10000
/* A statement that leaves a trace whether or not its transaction commits. */
#define MARK "INSERT INTO t VALUES (nextval('s'))"
/* "rows/ran": the rows committed in t, the statements MARK counted. */
#define PROBE                                                                                  \
  "SELECT (SELECT count(*) FROM t) || '/' ||"                                                   \
  " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM s)"

/* What a callback reported, copied out while res was valid. */
typedef struct {
  int done, status, statement, rows;
  long affected;
  char sqlstate[6];
  char value[64]; /* row 0, column 0, or "(null)" */
} got_t;

static struct {
  uv_loop_t loop;
  uv_timer_t deadline;
  int late;           /* the deadline passed */
  tl_db_pool_t *pool;
  int connected;      /* a connection came up */
  int closed;         /* the pool's close finished */
  tl_db_conn_t *conn; /* held by the running test, or NULL */
  got_t got;          /* the last statement's outcome (here, not on a stack that a late
                       * callback after a failed wait could outlive) */
  int acquired;
  char schema[64];
} g;

static void on_deadline(uv_timer_t *t) {
  (void)t;
  g.late = 1;
}

/* Runs the loop until *flag is set; -1 when DEADLINE_MS passed first. */
static int run_until(const int *flag) {
  g.late = 0;
  uv_timer_start(&g.deadline, on_deadline, DEADLINE_MS, 0);
  while (!*flag && !g.late) uv_run(&g.loop, UV_RUN_ONCE);
  uv_timer_stop(&g.deadline);
  return *flag ? 0 : -1;
}

static void on_result(void *arg, int status, const tl_db_result_t *res) {
  got_t *r = arg;
  const char *v = tl_db_result_value(res, 0, 0);
  r->done = 1;
  r->status = status;
  r->statement = tl_db_result_statement(res);
  r->rows = tl_db_result_rows(res);
  r->affected = tl_db_result_affected(res);
  snprintf(r->sqlstate, sizeof r->sqlstate, "%s", tl_db_result_sqlstate(res));
  snprintf(r->value, sizeof r->value, "%s", v ? v : "(null)");
}

/* before, sql (with one parameter, or none when param is NULL) and after on the held
 * connection, in one pipeline; sql is a registered statement's name when registered is 1. */
static got_t run_around(int registered, const char *before, const char *sql, const char *param,
                        const char *after) {
  const char *params[] = {param};
  int n = param ? 1 : 0;
  memset(&g.got, 0, sizeof g.got);
  int rc = registered ? tl_db_conn_query_around(g.conn, before, sql, n, param ? params : NULL,
                                                after, on_result, &g.got)
                      : tl_db_conn_exec_around(g.conn, before, sql, n, param ? params : NULL,
                                               after, on_result, &g.got);
  assert_int_equal(rc, 0);
  assert_int_equal(run_until(&g.got.done), 0);
  return g.got;
}

static got_t around(const char *before, const char *sql, const char *param, const char *after) {
  return run_around(0, before, sql, param, after);
}

static got_t query_around(const char *before, const char *stmt, const char *param,
                          const char *after) {
  return run_around(1, before, stmt, param, after);
}

/* A plain statement on the held connection (simple query protocol, outside any pipeline);
 * -1 when it could not be submitted or did not finish in time. */
static int exec_wait(const char *sql) {
  memset(&g.got, 0, sizeof g.got);
  if (tl_db_conn_exec(g.conn, sql, 0, NULL, on_result, &g.got) != 0) return -1;
  return run_until(&g.got.done);
}

static got_t exec(const char *sql) {
  assert_int_equal(exec_wait(sql), 0);
  return g.got;
}

/* A pipeline's failure as reported: TL_EDB, the SQLSTATE, the statement it came from. */
static void expect_failure(got_t r, const char *sqlstate, int statement) {
  assert_int_equal(r.status, TL_EDB);
  assert_string_equal(r.sqlstate, sqlstate);
  assert_int_equal(r.statement, statement);
}

static void on_acquired(void *arg, int status, tl_db_conn_t *conn) {
  (void)arg;
  g.acquired = 1;
  g.conn = status == 0 ? conn : NULL;
}

static int acquire(void) {
  g.acquired = 0;
  g.conn = NULL;
  if (tl_db_acquire(g.pool, on_acquired, NULL) != 0 || run_until(&g.acquired) != 0) return -1;
  return g.conn ? 0 : -1;
}

static void release(void) {
  if (g.conn) tl_db_release(g.conn);
  g.conn = NULL;
}

/* The state committed in the scratch schema, read through a fresh acquire (so after the
 * ROLLBACK that release runs on a transaction left open or failed). */
static const char *committed(void) {
  release();
  assert_int_equal(acquire(), 0);
  assert_int_equal(exec(PROBE).status, 0);
  return g.got.value;
}

static void on_notify(void *arg, const char *channel, const char *payload) {
  (void)arg;
  (void)payload;
  if (channel == NULL) g.connected = 1;
}

static void on_closed(void *arg) {
  (void)arg;
  g.closed = 1;
}

static int group_setup(void **state) {
  (void)state;
  const char *conninfo = getenv("TUBELOOP_TEST_DB");
  if (conninfo == NULL || conninfo[0] == '\0') {
    fprintf(stderr, "test: TUBELOOP_TEST_DB is not set (run the test via ctest)\n");
    return -1;
  }
  snprintf(g.schema, sizeof g.schema, "tl_pipeline_%d", (int)getpid());
  char sql[512];
  if (uv_loop_init(&g.loop) != 0 || uv_timer_init(&g.loop, &g.deadline) != 0) return -1;
  tl_db_pool_opts_t o;
  tl_db_pool_opts_defaults(&o);
  o.conninfo = conninfo;
  o.size = 1;
  o.app_name = "test_db_pipeline";
  if (tl_db_pool_new(&g.pool, &g.loop, &o) != 0) return -1;
  /* Prepared at connect: one that can be, and one calling a function of a schema that does
   * not exist yet (its prepare fails; the test creates the function later). */
  snprintf(sql, sizeof sql, "SELECT %s.late($1::int)", g.schema);
  if (tl_db_pool_prepare(g.pool, "add_one", "SELECT $1::int + 1") != 0 ||
      tl_db_pool_prepare(g.pool, "late", sql) != 0)
    return -1;
  snprintf(sql, sizeof sql, "SET search_path = %s", g.schema);
  if (tl_db_pool_on_connect(g.pool, sql) != 0) return -1;
  tl_db_pool_on_notify(g.pool, on_notify, NULL);
  tl_db_pool_start(g.pool);
  if (run_until(&g.connected) != 0 || acquire() != 0) {
    fprintf(stderr, "test: no connection to the test database\n");
    return -1;
  }
  snprintf(sql, sizeof sql,
           "CREATE SCHEMA %s;"
           " CREATE TABLE %s.t (v int UNIQUE DEFERRABLE INITIALLY DEFERRED);"
           " CREATE SEQUENCE %s.s",
           g.schema, g.schema, g.schema);
  if (exec_wait(sql) != 0 || g.got.status != 0) {
    fprintf(stderr, "test: creating the scratch schema failed (%s)\n", g.got.sqlstate);
    return -1;
  }
  release();
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  release();
  if (g.pool && acquire() == 0) {
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", g.schema);
    (void)exec_wait(sql);
    release();
  }
  if (g.pool) {
    tl_db_pool_close(g.pool, on_closed, NULL);
    (void)run_until(&g.closed);
    tl_db_pool_free(g.pool);
  }
  uv_close((uv_handle_t *)&g.deadline, NULL);
  uv_run(&g.loop, UV_RUN_DEFAULT);
  return uv_loop_close(&g.loop) == 0 ? 0 : -1;
}

/* Each test starts holding the connection, with t empty and s never called. */
static int setup(void **state) {
  (void)state;
  if (acquire() != 0) return -1;
  if (exec_wait("TRUNCATE t; ALTER SEQUENCE s RESTART") != 0 || g.got.status != 0) {
    release();
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  release();
  return 0;
}

static void test_begin_sql_commit(void **state) {
  (void)state;
  got_t r = around("BEGIN", "SELECT $1::int + 1", "41", "COMMIT");
  assert_int_equal(r.status, 0);
  assert_int_equal(r.statement, 0);
  assert_int_equal(r.rows, 1);
  assert_string_equal(r.value, "42");
  /* The session left pipeline mode: a plain query runs (in pipeline mode it would not). */
  r = exec("SELECT 1");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.value, "1");
  /* COMMIT ran: no transaction is open, so this statement starts its own. */
  r = exec("SELECT now() = statement_timestamp()");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.value, "t");
}

static void test_failing_sql_skips_after(void **state) {
  (void)state;
  got_t r = around("BEGIN", "SELECT 1 / $1::int", "0", MARK);
  expect_failure(r, "22012", 0);
  /* after never ran: s was not advanced (and nothing was committed). */
  assert_string_equal(committed(), "0/0");
}

static void test_failing_commit(void **state) {
  (void)state;
  assert_int_equal(exec("INSERT INTO t VALUES (100)").status, 0);
  /* The duplicate passes the INSERT (the key is checked at COMMIT) and fails the COMMIT. */
  got_t r = around("BEGIN", "INSERT INTO t VALUES ($1)", "100", "COMMIT");
  expect_failure(r, "23505", 1);
  assert_string_equal(committed(), "1/0");
  /* A failing after of any kind: sql ran (s counted it) but its row was not committed. */
  r = around("BEGIN", MARK, NULL, "SELECT 1 / 0");
  expect_failure(r, "22012", 1);
  assert_string_equal(committed(), "1/1");
}

static void test_failing_before(void **state) {
  (void)state;
  got_t r = around("SELECT 1 / 0", MARK, NULL, "COMMIT");
  expect_failure(r, "22012", -1);
  /* sql never ran: s was not advanced. */
  assert_string_equal(committed(), "0/0");
}

static void test_only_before_or_after(void **state) {
  (void)state;
  got_t r = around("BEGIN", "INSERT INTO t VALUES ($1) RETURNING v", "1", NULL);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.statement, 0);
  assert_int_equal(r.affected, 1);
  assert_string_equal(r.value, "1");
  /* BEGIN ran: the transaction is still open, now() is its start. */
  assert_string_equal(exec("SELECT now() = statement_timestamp()").value, "f");
  /* sql's rows, not COMMIT's (which has none), come back. */
  r = around(NULL, "INSERT INTO t VALUES ($1) RETURNING v", "2", "COMMIT");
  assert_int_equal(r.status, 0);
  assert_int_equal(r.statement, 0);
  assert_int_equal(r.affected, 1);
  assert_string_equal(r.value, "2");
  /* COMMIT ran: both rows survive the release (which would roll an open transaction back). */
  assert_string_equal(committed(), "2/0");
}

static void test_release_after_failure(void **state) {
  (void)state;
  got_t r = around("BEGIN", "SELECT $1::int", "x", "COMMIT");
  expect_failure(r, "22P02", 0);
  /* The transaction is left failed: the session refuses statements until it ends. */
  r = exec("SELECT 1");
  assert_int_equal(r.status, TL_EDB);
  assert_string_equal(r.sqlstate, "25P02");
  /* release rolls it back: the same session (the pool has one) works again. */
  release();
  assert_int_equal(acquire(), 0);
  r = exec("SELECT 1");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.value, "1");
}

/* How often the session ran a prepared statement of that name (its plans, custom or
 * generic), or -1 when the session has none of that name. */
static long runs_of_prepared(const char *name) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT coalesce((SELECT generic_plans + custom_plans FROM pg_prepared_statements"
           " WHERE name = '%s'), -1)",
           name);
  assert_int_equal(exec(sql).status, 0);
  return strtol(g.got.value, NULL, 10);
}

static void test_registered_statement_runs_prepared(void **state) {
  (void)state;
  long before = runs_of_prepared("add_one");
  assert_true(before >= 0); /* prepared when the session connected */
  got_t r = query_around("BEGIN", "add_one", "41", "COMMIT");
  assert_int_equal(r.status, 0);
  assert_int_equal(r.statement, 0);
  assert_string_equal(r.value, "42");
  /* It ran as the prepared statement, not as text, and COMMIT closed the transaction. */
  assert_int_equal(runs_of_prepared("add_one"), before + 1);
  assert_string_equal(exec("SELECT now() = statement_timestamp()").value, "t");
  /* A failure is reported as with text: the statement, its SQLSTATE, after not run. */
  r = query_around("BEGIN", "add_one", "x", MARK);
  expect_failure(r, "22P02", 0);
  assert_string_equal(committed(), "0/0");
}

static void test_statement_whose_prepare_failed_runs_as_text(void **state) {
  (void)state;
  /* Its prepare failed at connect: the session has no statement of that name. */
  assert_int_equal(runs_of_prepared("late"), -1);
  /* Its text fails for what it is (no such function), not for a missing prepared statement. */
  got_t r = query_around(NULL, "late", "4", NULL);
  assert_int_equal(r.status, TL_EDB);
  assert_string_equal(r.sqlstate, "42883");
  /* Once the function exists, the same call works on the same session. */
  char sql[256];
  snprintf(sql, sizeof sql,
           "CREATE OR REPLACE FUNCTION %s.late(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 10'",
           g.schema);
  assert_int_equal(exec(sql).status, 0);
  r = query_around("BEGIN", "late", "4", "COMMIT");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.value, "40");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_begin_sql_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failing_sql_skips_after, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failing_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failing_before, setup, teardown),
      cmocka_unit_test_setup_teardown(test_only_before_or_after, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_after_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_registered_statement_runs_prepared, setup, teardown),
      cmocka_unit_test_setup_teardown(test_statement_whose_prepare_failed_runs_as_text, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
