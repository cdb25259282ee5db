/* The asynchronous PostgreSQL pool: non-blocking libpq on the libuv loop (Kore's way).
 *
 * Each connection is a state machine (see dbc_state_t in pool.c) driven by a uv_poll_t on
 * PQsocket(): PQconnectStartParams/PQconnectPoll to connect (the socket is re-read after
 * every step), the registered statements prepared again after every (re)connect, then
 * PQsendQuery, PQflush/PQconsumeInput/PQisBusy/PQgetResult for jobs. A lost connection fails
 * its job with TL_EDB_DOWN and reconnects with jittered exponential backoff. Nothing blocks.
 *
 * Submitting (tl_db_query / tl_db_exec) runs the job on an idle connection or queues it.
 * It returns an error and never calls the callback when no connection is up (TL_EDB_DOWN), the
 * bounded queue is full (TL_EBUSY) or the pool is closing (TL_ECLOSED). Otherwise the callback
 * runs exactly once, later (never inside the submit call), with:
 *   0             the statement succeeded, res holds its rows;
 *   TL_EDB        PostgreSQL refused it, res holds the SQLSTATE;
 *   TL_EDB_DOWN   the connection died under it (it may or may not have committed);
 *   TL_ETIMEDOUT  it waited in the queue longer than wait_timeout_ms;
 *   TL_ECLOSED    the pool closed first.
 * res is borrowed, valid only during the callback (a PGresult never leaves this module). */
#ifndef TL_DB_POOL_H
#define TL_DB_POOL_H

#include "base/err.h"

#include <uv.h>

typedef struct tl_db_pool_s tl_db_pool_t;
typedef struct tl_db_result_s tl_db_result_t;
typedef struct tl_db_conn_s tl_db_conn_t;
typedef void (*tl_db_cb)(void *arg, int status, const tl_db_result_t *res);
/* conn is NULL unless status is 0. */
typedef void (*tl_db_acquire_cb)(void *arg, int status, tl_db_conn_t *conn);

typedef struct {
  const char *conninfo;   /* copied */
  int size;               /* connections */
  int queue_max;          /* jobs allowed to wait */
  int connect_timeout_ms; /* a connection attempt is abandoned after this */
  int backoff_min_ms;     /* first reconnect delay */
  int backoff_max_ms;     /* reconnect delay cap */
  int wait_timeout_ms;    /* a queued job fails with TL_ETIMEDOUT after this */
  const char *time_zone;  /* session TimeZone (copied), or NULL for the server's */
  const char *app_name;   /* fallback_application_name (static string), default "tubeloopd" */
  int replan_ms;          /* an idle connection drops its cached plans (DISCARD PLANS) when
                           * they are this old, before its next job; 0: never. Default 30 s */
} tl_db_pool_opts_t;

typedef struct {
  int size;      /* connections configured */
  int connected; /* connections up (idle or busy) */
  int busy;      /* connections running a job */
  int waiting;   /* jobs in the queue */
  unsigned long long reconnects; /* successful connections after the first */
} tl_db_pool_stats_t;

void tl_db_pool_opts_defaults(tl_db_pool_opts_t *o);
TL_WUR int tl_db_pool_new(tl_db_pool_t **out, uv_loop_t *loop, const tl_db_pool_opts_t *opts);
/* Registers a statement prepared on every connection (at most 64). Call before
 * tl_db_pool_start. Where its prepare failed (say, a function it calls did not exist yet), a
 * connection runs its SQL text instead, until the connection is made again. */
TL_WUR int tl_db_pool_prepare(tl_db_pool_t *p, const char *name, const char *sql);
/* SQL run on every connection right after the statements are prepared, e.g. "LISTEN x"
 * (copied). Call before tl_db_pool_start. */
TL_WUR int tl_db_pool_on_connect(tl_db_pool_t *p, const char *sql);
/* cb(arg, channel, payload) for every NOTIFY a connection receives; cb(arg, NULL, NULL) each
 * time a connection is (re)established, since notifications sent meanwhile were missed. */
typedef void (*tl_db_notify_cb)(void *arg, const char *channel, const char *payload);
void tl_db_pool_on_notify(tl_db_pool_t *p, tl_db_notify_cb cb, void *arg);
/* Reads what the idle connections' sockets hold now, without waiting, and calls the notify
 * callback for each notification in it: for a caller that must not act on news older than
 * what has already arrived. */
void tl_db_pool_poll_notifies(tl_db_pool_t *p);
void tl_db_pool_start(tl_db_pool_t *p);
/* Stops: queued and running jobs get TL_ECLOSED, connections close; done(arg) when every
 * handle is closed. Then tl_db_pool_free. */
void tl_db_pool_close(tl_db_pool_t *p, void (*done)(void *), void *arg);
void tl_db_pool_free(tl_db_pool_t *p);
void tl_db_pool_stats(const tl_db_pool_t *p, tl_db_pool_stats_t *out);

/* Runs a registered statement with text parameters (copied; NULL = SQL NULL). */
TL_WUR int tl_db_query(tl_db_pool_t *p, const char *stmt, int nparams,
                       const char *const *params, tl_db_cb cb, void *arg);
/* Runs SQL text (one statement when nparams > 0; several allowed when 0). */
TL_WUR int tl_db_exec(tl_db_pool_t *p, const char *sql, int nparams, const char *const *params,
                      tl_db_cb cb, void *arg);

/* Checks a connection out for a transaction of several steps: cb gets it (later, like every
 * callback) and it stays the caller's until tl_db_release(). Submit errors as above. */
TL_WUR int tl_db_acquire(tl_db_pool_t *p, tl_db_acquire_cb cb, void *arg);
/* Run a statement on a held connection. Returns TL_EDB_DOWN (no callback) when the session
 * died since it was acquired: the transaction is gone, release and start again. One
 * statement at a time: call again from the callback. */
TL_WUR int tl_db_conn_query(tl_db_conn_t *c, const char *stmt, int nparams,
                            const char *const *params, tl_db_cb cb, void *arg);
TL_WUR int tl_db_conn_exec(tl_db_conn_t *c, const char *sql, int nparams,
                           const char *const *params, tl_db_cb cb, void *arg);
/* sql with parameterless statements before and/or after it (each may be NULL), sent together
 * in one round trip (libpq pipeline mode), e.g. "BEGIN" before a transaction's first statement
 * or "COMMIT" after its last. The callback gets sql's result when all three succeeded, else
 * the first failure's status and result; the statements after a failure do not run, and a
 * transaction it was in is left failed (tl_db_release rolls it back). */
TL_WUR int tl_db_conn_exec_around(tl_db_conn_t *c, const char *before, const char *sql,
                                  int nparams, const char *const *params, const char *after,
                                  tl_db_cb cb, void *arg);
/* The same with a registered statement's name instead of sql. */
TL_WUR int tl_db_conn_query_around(tl_db_conn_t *c, const char *before, const char *stmt,
                                   int nparams, const char *const *params, const char *after,
                                   tl_db_cb cb, void *arg);
/* Gives the connection back; an open or failed transaction is rolled back first. */
void tl_db_release(tl_db_conn_t *c);

int tl_db_result_rows(const tl_db_result_t *r);
int tl_db_result_cols(const tl_db_result_t *r);
/* NULL for SQL NULL (or no result). */
const char *tl_db_result_value(const tl_db_result_t *r, int row, int col);
/* Five-character SQLSTATE of a failed statement, or "". */
const char *tl_db_result_sqlstate(const tl_db_result_t *r);
/* Which statement of a tl_db_conn_exec_around the result is from: -1 before, 0 sql, 1 after
 * (0 for every other job). */
int tl_db_result_statement(const tl_db_result_t *r);
/* Rows affected by an INSERT/UPDATE/DELETE. */
long tl_db_result_affected(const tl_db_result_t *r);

#endif
