/* The asynchronous PostgreSQL pool of pool.h. */
#include "db/pool.h"

#include "base/log.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  DBC_DOWN = 0,   /* no connection; the backoff timer will start one */
  DBC_CONNECTING, /* PQconnectPoll in progress, under connect_timeout */
  DBC_PREPARING,  /* connected; preparing the registered statements one by one */
  DBC_IDLE,       /* ready for a job; watching the socket for a server-side close */
  DBC_BUSY,       /* a job is sent and its results are being read */
  DBC_CLOSED      /* the pool is closing; handles closed or closing */
} dbc_state_t;

typedef struct job_s {
  struct job_s *next;
  tl_db_acquire_cb acquire; /* set: this job only asks for a connection to hold */
  int prepared;         /* text is a statement name */
  char *text;           /* statement name or SQL; points into the same allocation */
  char *before, *after; /* parameterless SQL sent with text in one pipeline, or NULL */
  int nparams;
  char **params;        /* into the same allocation */
  tl_db_cb cb;
  void *arg;
  uint64_t queued_at;   /* uv_now() when queued */
} job_t;

typedef struct {
  char *name;
  char *sql;
} stmt_t;

struct tl_db_result_s {
  PGresult *res;
  int statement; /* a pipeline job's: -1 before, 0 its text, 1 after */
};

typedef struct {
  tl_db_pool_t *pool;
  int index;
  dbc_state_t state;
  PGconn *pg;
  uv_poll_t *poll;      /* heap: replaced when the socket changes */
  uv_timer_t timer;     /* backoff and connect timeout */
  int backoff_ms;
  int prep_next;        /* the statement being prepared */
  uint64_t prepared_ok; /* bit i: registered statement i is prepared on this session */
  int flushing;         /* PQflush still has data to send */
  job_t *job;           /* running job, or NULL */
  PGresult *result;     /* the job's first error or last result (a pipeline: of its text) */
  int pipe_at;          /* a pipeline job: the statement whose results are being read */
  int result_at;        /* the statement result came from (tl_db_result_statement) */
  int ever_connected;
  uint64_t planned_at;  /* uv_now() of the connect or the last DISCARD PLANS */
  int held;             /* checked out by tl_db_acquire until tl_db_release */
  int held_lost;        /* the held session died: its transaction is gone */
} dbc_t;

struct tl_db_conn_s {
  dbc_t c; /* tl_db_conn_t is a dbc_t seen from outside */
};

struct tl_db_pool_s {
  uv_loop_t *loop;
  tl_db_pool_opts_t opts;
  char *conninfo;
  char options[128];    /* "-c jit=off" and "-c TimeZone=..." */
  stmt_t *stmts;
  int nstmts;
  dbc_t *conns;
  job_t *head, *tail;   /* waiting jobs, FIFO */
  int waiting;
  uv_timer_t sweep;     /* fails jobs that waited too long */
  uv_idle_t kick;       /* starts queued jobs on the next loop turn, outside submit */
  int closing;
  int handles_open;
  unsigned long long reconnects;
  char *connect_sql;    /* run after the prepares on every connect, or NULL */
  tl_db_notify_cb notify;
  void *notify_arg;
  void (*done)(void *);
  void *done_arg;
};

static void dbc_connect(dbc_t *c);
static void dbc_fail(dbc_t *c, const char *why);
static void pool_pump(tl_db_pool_t *p);
static void on_kick(uv_idle_t *h);

void tl_db_pool_opts_defaults(tl_db_pool_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->size = 4;
  o->queue_max = 1024;
  o->connect_timeout_ms = 5000;
  o->backoff_min_ms = 100;
  o->backoff_max_ms = 2000;
  o->wait_timeout_ms = 10000;
  o->replan_ms = 30000;
}

/* ---------- results ---------- */

int tl_db_result_rows(const tl_db_result_t *r) { return r && r->res ? PQntuples(r->res) : 0; }
int tl_db_result_cols(const tl_db_result_t *r) { return r && r->res ? PQnfields(r->res) : 0; }

const char *tl_db_result_value(const tl_db_result_t *r, int row, int col) {
  if (r == NULL || r->res == NULL || row >= PQntuples(r->res) || col >= PQnfields(r->res) ||
      PQgetisnull(r->res, row, col))
    return NULL;
  return PQgetvalue(r->res, row, col);
}

int tl_db_result_statement(const tl_db_result_t *r) { return r ? r->statement : 0; }

const char *tl_db_result_sqlstate(const tl_db_result_t *r) {
  const char *s = r && r->res ? PQresultErrorField(r->res, PG_DIAG_SQLSTATE) : NULL;
  return s ? s : "";
}

long tl_db_result_affected(const tl_db_result_t *r) {
  return r && r->res ? strtol(PQcmdTuples(r->res), NULL, 10) : 0;
}

/* ---------- jobs ---------- */

static job_t *job_new_around(const char *before, int prepared, const char *text, int nparams,
                             const char *const *params, const char *after, tl_db_cb cb, void *arg) {
  size_t size = sizeof(job_t) + (size_t)nparams * sizeof(char *) + strlen(text) + 1;
  for (int i = 0; i < nparams; i++)
    if (params[i]) size += strlen(params[i]) + 1;
  if (before) size += strlen(before) + 1;
  if (after) size += strlen(after) + 1;
  job_t *j = calloc(1, size);
  if (j == NULL) return NULL;
  j->params = (char **)(j + 1);
  char *s = (char *)(j->params + nparams);
  j->prepared = prepared;
  j->nparams = nparams;
  j->cb = cb;
  j->arg = arg;
  j->text = s;
  s = stpcpy(s, text) + 1;
  for (int i = 0; i < nparams; i++) {
    if (params[i] == NULL) continue;
    j->params[i] = s;
    s = stpcpy(s, params[i]) + 1;
  }
  if (before) {
    j->before = s;
    s = stpcpy(s, before) + 1;
  }
  if (after) j->after = strcpy(s, after);
  return j;
}

static job_t *job_new(int prepared, const char *text, int nparams, const char *const *params,
                      tl_db_cb cb, void *arg) {
  return job_new_around(NULL, prepared, text, nparams, params, NULL, cb, arg);
}

static void job_finish(job_t *j, int status, PGresult *res, int statement) {
  tl_db_result_t r = {res, statement};
  if (j->acquire)
    j->acquire(j->arg, status, NULL);
  else if (j->cb)
    j->cb(j->arg, status, &r);
  free(j);
}

/* ---------- socket watching ---------- */

static void on_poll(uv_poll_t *h, int status, int events);

static void free_handle(uv_handle_t *h) { free(h); }

static void unwatch(dbc_t *c) {
  if (c->poll == NULL) return;
  uv_close((uv_handle_t *)c->poll, free_handle);
  c->poll = NULL;
}

/* Watches PQsocket() for events; with fresh=1 the poll handle is replaced (connect steps may
 * have closed the old socket and opened a new one, possibly with the same number). */
static int watch(dbc_t *c, int events, int fresh) {
  int fd = PQsocket(c->pg);
  if (fd < 0) return -1;
  if (fresh) unwatch(c);
  if (c->poll == NULL) {
    c->poll = malloc(sizeof *c->poll);
    if (c->poll == NULL) return -1;
    if (uv_poll_init(c->pool->loop, c->poll, fd) != 0) {
      free(c->poll);
      c->poll = NULL;
      return -1;
    }
    c->poll->data = c;
  }
  return uv_poll_start(c->poll, events, on_poll);
}

/* ---------- connection state machine ---------- */

static int pool_up(const tl_db_pool_t *p) {
  for (int i = 0; i < p->opts.size; i++)
    if (p->conns[i].state == DBC_PREPARING || p->conns[i].state == DBC_IDLE ||
        p->conns[i].state == DBC_BUSY)
      return 1;
  return 0;
}

static void fail_waiting(tl_db_pool_t *p, int status) {
  while (p->head) {
    job_t *j = p->head;
    p->head = j->next;
    p->waiting--;
    job_finish(j, status, NULL, 0);
  }
  p->tail = NULL;
}

static void on_retry_timer(uv_timer_t *t) {
  dbc_t *c = t->data;
  if (c->state == DBC_DOWN) dbc_connect(c);
  else if (c->state == DBC_CONNECTING) dbc_fail(c, "connect timeout");
}

static void dbc_set_state(dbc_t *c, dbc_state_t next) {
  c->state = next;
  switch (next) {
  case DBC_DOWN: {
    /* Full jitter over [backoff/2, backoff]: daemons restarted together spread out. */
    int ms = c->backoff_ms / 2 + rand() % (c->backoff_ms / 2 + 1);
    uv_timer_start(&c->timer, on_retry_timer, (uint64_t)ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > c->pool->opts.backoff_max_ms ? c->pool->opts.backoff_max_ms
                                                                       : c->backoff_ms * 2;
    break;
  }
  case DBC_CONNECTING:
    uv_timer_start(&c->timer, on_retry_timer, (uint64_t)c->pool->opts.connect_timeout_ms, 0);
    break;
  case DBC_PREPARING:
  case DBC_IDLE:
  case DBC_BUSY: uv_timer_stop(&c->timer); break;
  case DBC_CLOSED: uv_timer_stop(&c->timer); break;
  default:
    tl_log(TL_LOG_ERROR, "bug", "where=dbc_set_state state=%d", (int)next);
    abort();
  }
}

static void dbc_fail(dbc_t *c, const char *why) {
  tl_db_pool_t *p = c->pool;
  /* Never log PQerrorMessage: it can quote the conninfo's host and user, and statement
   * errors can quote data. The reason and the connection index are enough to act on. */
  tl_log(c->state == DBC_CONNECTING ? TL_LOG_DEBUG : TL_LOG_WARN, "db_conn_lost",
         "conn=%d reason=\"%s\"", c->index, why);
  unwatch(c);
  if (c->result) PQclear(c->result);
  c->result = NULL;
  if (c->pg) PQfinish(c->pg);
  c->pg = NULL;
  c->flushing = 0;
  job_t *j = c->job;
  c->job = NULL;
  if (c->held) c->held_lost = 1;
  dbc_set_state(c, DBC_DOWN);
  if (j) job_finish(j, TL_EDB_DOWN, NULL, 0);
  if (!pool_up(p)) fail_waiting(p, TL_EDB_DOWN);
}

static void dbc_connect(dbc_t *c) {
  /* options first: a conninfo that sets its own options wins over ours. */
  static const char *const keys[] = {"options", "dbname", "fallback_application_name", NULL};
  const char *const values[] = {c->pool->options, c->pool->conninfo,
                                c->pool->opts.app_name ? c->pool->opts.app_name : "tubeloopd", NULL};
  c->pg = PQconnectStartParams(keys, values, 1);
  if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
    dbc_set_state(c, DBC_CONNECTING);
    dbc_fail(c, "connect start failed");
    return;
  }
  PQsetnonblocking(c->pg, 1);
  dbc_set_state(c, DBC_CONNECTING);
  /* The docs: behave as if PQconnectPoll last returned PGRES_POLLING_WRITING. */
  if (watch(c, UV_WRITABLE, 1) != 0) dbc_fail(c, "no socket");
}

/* Sends one PREPARE or the job; the answer arrives through on_poll. */
static void dbc_send_flush(dbc_t *c) {
  int f = PQflush(c->pg);
  if (f < 0) {
    dbc_fail(c, "flush failed");
    return;
  }
  c->flushing = f == 1;
  if (watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), 0) != 0) dbc_fail(c, "watch failed");
}

static void dbc_prepare_next(dbc_t *c) {
  tl_db_pool_t *p = c->pool;
  if (c->prep_next == p->nstmts && p->connect_sql) {
    if (!PQsendQuery(c->pg, p->connect_sql)) {
      dbc_fail(c, "connect statement send failed");
      return;
    }
    dbc_send_flush(c);
    return;
  }
  if (c->prep_next >= p->nstmts) {
    if (c->ever_connected) p->reconnects++;
    c->ever_connected = 1;
    c->planned_at = uv_now(p->loop);
    c->backoff_ms = p->opts.backoff_min_ms;
    dbc_set_state(c, DBC_IDLE);
    if (watch(c, UV_READABLE, 0) != 0) {
      dbc_fail(c, "watch failed");
      return;
    }
    if (p->notify) p->notify(p->notify_arg, NULL, NULL);
    pool_pump(p);
    return;
  }
  const stmt_t *s = &p->stmts[c->prep_next];
  if (!PQsendPrepare(c->pg, s->name, s->sql, 0, NULL)) {
    dbc_fail(c, "prepare send failed");
    return;
  }
  dbc_send_flush(c);
}

/* Sends a job's statement: a registered one by name where this session prepared it, else as
 * its SQL text, unnamed (its prepare failed, e.g. the daemon connected before `tubeloopd
 * migrate` created a function it calls: the text works as soon as the function exists, and
 * the session prepares it when it next connects). A pipeline takes the extended protocol only;
 * elsewhere SQL without parameters may hold several statements. */
static int dbc_send_statement(dbc_t *c, const job_t *j, int in_pipeline) {
  const tl_db_pool_t *p = c->pool;
  const char *sql = j->text;
  if (j->prepared) {
    int i = 0;
    while (i < p->nstmts && strcmp(p->stmts[i].name, j->text) != 0) i++;
    if (i == p->nstmts || (c->prepared_ok >> i & 1))
      return PQsendQueryPrepared(c->pg, j->text, j->nparams, (const char *const *)j->params, NULL,
                                 NULL, 0);
    sql = p->stmts[i].sql;
  }
  return j->nparams > 0 || in_pipeline
             ? PQsendQueryParams(c->pg, sql, j->nparams, NULL, (const char *const *)j->params, NULL,
                                 NULL, 0)
             : PQsendQuery(c->pg, sql);
}

/* A pipeline job: before, text and after go out together with one Sync (libpq pipeline mode,
 * extended protocol for all three), and come back in one round trip. */
static int dbc_send_pipeline(dbc_t *c, const job_t *j) {
  c->pipe_at = j->before ? -1 : 0; /* numbered as tl_db_result_statement counts */
  if (!PQenterPipelineMode(c->pg)) return 0;
  int ok = 1;
  if (j->before) ok = PQsendQueryParams(c->pg, j->before, 0, NULL, NULL, NULL, NULL, 0);
  if (ok) ok = dbc_send_statement(c, j, 1);
  if (ok && j->after) ok = PQsendQueryParams(c->pg, j->after, 0, NULL, NULL, NULL, NULL, 0);
  return ok && PQpipelineSync(c->pg);
}

static void dbc_run(dbc_t *c, job_t *j) {
  c->job = j;
  c->result_at = 0;
  dbc_set_state(c, DBC_BUSY);
  int ok = j->before || j->after ? dbc_send_pipeline(c, j) : dbc_send_statement(c, j, 0);
  if (!ok) {
    dbc_fail(c, "send failed");
    return;
  }
  dbc_send_flush(c);
}

/* All results of the current command are in. */
static void dbc_command_done(dbc_t *c) {
  tl_db_pool_t *p = c->pool;
  PGresult *res = c->result;
  c->result = NULL;
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    if (res) PQclear(res);
    dbc_fail(c, "connection closed by the server");
    return;
  }
  if (c->state == DBC_PREPARING) {
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
      tl_log(TL_LOG_ERROR, "db_prepare_failed", "statement=%s sqlstate=%s",
             c->prep_next < p->nstmts ? p->stmts[c->prep_next].name : "(on connect)",
             PQresultErrorField(res, PG_DIAG_SQLSTATE));
    else if (res && c->prep_next < p->nstmts)
      c->prepared_ok |= (uint64_t)1 << c->prep_next;
    if (res) PQclear(res);
    c->prep_next++;
    dbc_prepare_next(c);
    return;
  }
  job_t *j = c->job;
  c->job = NULL;
  dbc_set_state(c, DBC_IDLE);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  int status = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : TL_EDB;
  if (watch(c, UV_READABLE, 0) != 0) {
    job_finish(j, status, res, c->result_at);
    if (res) PQclear(res);
    dbc_fail(c, "watch failed");
    return;
  }
  job_finish(j, status, res, c->result_at);
  if (res) PQclear(res);
  pool_pump(p);
}

/* One result of a pipeline job: each statement's results end with NULL, the pipeline with
 * PGRES_PIPELINE_SYNC; after an error the rest come as PGRES_PIPELINE_ABORTED. Keeps the first
 * error, else the last result of the job's text. Returns 1 when the job is done (or the
 * connection failed). */
static int pipeline_result(dbc_t *c, PGresult *r) {
  const job_t *j = c->job;
  if (r == NULL) {
    /* (more ends than statements sent: libpq and we disagree; never spin on it) */
    if (++c->pipe_at > 1 + (j && j->after)) {
      dbc_fail(c, "pipeline out of step");
      return 1;
    }
    return 0;
  }
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_PIPELINE_SYNC) {
    PQclear(r);
    if (!PQexitPipelineMode(c->pg)) {
      dbc_fail(c, "pipeline exit failed");
      return 1;
    }
    dbc_command_done(c);
    return 1;
  }
  if ((c->result && PQresultStatus(c->result) == PGRES_FATAL_ERROR) || st == PGRES_PIPELINE_ABORTED ||
      (st != PGRES_FATAL_ERROR && c->pipe_at != 0)) {
    PQclear(r);
    return 0;
  }
  if (c->result) PQclear(c->result);
  c->result = r;
  c->result_at = c->pipe_at;
  return 0;
}

static void dbc_read(dbc_t *c) {
  if (!PQconsumeInput(c->pg)) {
    dbc_fail(c, "read failed");
    return;
  }
  for (PGnotify *n; (n = PQnotifies(c->pg)) != NULL;) {
    if (c->pool->notify) c->pool->notify(c->pool->notify_arg, n->relname, n->extra);
    PQfreemem(n);
  }
  if (c->state == DBC_IDLE) {
    if (PQstatus(c->pg) == CONNECTION_BAD) dbc_fail(c, "connection closed by the server");
    return;
  }
  while (!PQisBusy(c->pg)) {
    PGresult *r = PQgetResult(c->pg);
    if (PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) {
      if (pipeline_result(c, r)) return;
      continue;
    }
    if (r == NULL) {
      dbc_command_done(c);
      return;
    }
    /* Keep the first error, else the last result. */
    if (c->result && PQresultStatus(c->result) == PGRES_FATAL_ERROR) {
      PQclear(r);
    } else {
      if (c->result) PQclear(c->result);
      c->result = r;
    }
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) dbc_fail(c, "connection closed by the server");
}

static void on_poll(uv_poll_t *h, int status, int events) {
  dbc_t *c = h->data;
  if (c->state == DBC_CLOSED) return;
  if (status < 0) {
    dbc_fail(c, "socket error");
    return;
  }
  if (c->state == DBC_CONNECTING) {
    PostgresPollingStatusType r = PQconnectPoll(c->pg);
    switch (r) {
    case PGRES_POLLING_READING:
      if (watch(c, UV_READABLE, 1) != 0) dbc_fail(c, "no socket");
      return;
    case PGRES_POLLING_WRITING:
      if (watch(c, UV_WRITABLE, 1) != 0) dbc_fail(c, "no socket");
      return;
    case PGRES_POLLING_OK:
      tl_log(TL_LOG_INFO, "db_connected", "conn=%d", c->index);
      c->prep_next = 0;
      c->prepared_ok = 0;
      dbc_set_state(c, DBC_PREPARING);
      if (watch(c, UV_READABLE, 1) != 0) {
        dbc_fail(c, "no socket");
        return;
      }
      dbc_prepare_next(c);
      return;
    default: dbc_fail(c, "connect failed"); return;
    }
  }
  if ((events & UV_WRITABLE) && c->flushing) {
    int f = PQflush(c->pg);
    if (f < 0) {
      dbc_fail(c, "flush failed");
      return;
    }
    c->flushing = f == 1;
    if (!c->flushing && watch(c, UV_READABLE, 0) != 0) {
      dbc_fail(c, "watch failed");
      return;
    }
  }
  if (events & UV_READABLE) dbc_read(c);
}

/* ---------- the pool ---------- */

/* PL/pgSQL functions and prepared statements keep the plans a session made first, and the
 * statistics they were made with may describe tables a hundred times smaller (a fresh
 * database filling up): plans are dropped on a timer so that they follow the data. Returns 1
 * when c is now busy with the DISCARD. */
static int replan_if_due(tl_db_pool_t *p, dbc_t *c) {
  uint64_t now = uv_now(p->loop);
  if (p->opts.replan_ms <= 0 || now - c->planned_at < (uint64_t)p->opts.replan_ms) return 0;
  job_t *d = job_new(0, "DISCARD PLANS", 0, NULL, NULL, NULL);
  if (d == NULL) return 0;
  c->planned_at = now;
  dbc_run(c, d);
  return 1;
}

static void pool_pump(tl_db_pool_t *p) {
  for (int i = 0; i < p->opts.size && p->head; i++) {
    dbc_t *c = &p->conns[i];
    if (c->state != DBC_IDLE || c->held) continue;
    if (replan_if_due(p, c)) continue;
    job_t *j = p->head;
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    p->waiting--;
    if (j->acquire) {
      c->held = 1;
      c->held_lost = 0;
      tl_db_acquire_cb cb = j->acquire;
      void *arg = j->arg;
      free(j);
      cb(arg, 0, (tl_db_conn_t *)c);
      continue;
    }
    dbc_run(c, j);
  }
}

static void on_sweep(uv_timer_t *t) {
  tl_db_pool_t *p = t->data;
  uint64_t now = uv_now(p->loop);
  while (p->head && now - p->head->queued_at >= (uint64_t)p->opts.wait_timeout_ms) {
    job_t *j = p->head;
    p->head = j->next;
    if (p->head == NULL) p->tail = NULL;
    p->waiting--;
    job_finish(j, TL_ETIMEDOUT, NULL, 0);
  }
}

static void on_kick(uv_idle_t *h) {
  uv_idle_stop(h);
  pool_pump(h->data);
}

static int submit(tl_db_pool_t *p, job_t *j) {
  if (j == NULL) return TL_ENOMEM;
  int rc = 0;
  if (p->closing) rc = TL_ECLOSED;
  else if (!pool_up(p)) rc = TL_EDB_DOWN;
  else if (p->waiting >= p->opts.queue_max) rc = TL_EBUSY;
  if (rc != 0) {
    free(j);
    return rc;
  }
  j->queued_at = uv_now(p->loop);
  if (p->tail)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  p->waiting++;
  /* Started on the next loop turn, so a failure can never call back inside submit. */
  uv_idle_start(&p->kick, on_kick);
  return 0;
}

int tl_db_acquire(tl_db_pool_t *p, tl_db_acquire_cb cb, void *arg) {
  job_t *j = job_new(0, "", 0, NULL, NULL, arg);
  if (j) j->acquire = cb;
  return submit(p, j);
}

static int held_run(tl_db_conn_t *conn, job_t *j) {
  dbc_t *c = &conn->c;
  if (j == NULL) return TL_ENOMEM;
  if (!c->held || c->held_lost || c->state != DBC_IDLE || c->pool->closing) {
    free(j);
    return c->pool->closing ? TL_ECLOSED : TL_EDB_DOWN;
  }
  dbc_run(c, j);
  return 0;
}

int tl_db_conn_query(tl_db_conn_t *c, const char *stmt, int nparams, const char *const *params,
                     tl_db_cb cb, void *arg) {
  return held_run(c, job_new(1, stmt, nparams, params, cb, arg));
}

int tl_db_conn_exec(tl_db_conn_t *c, const char *sql, int nparams, const char *const *params,
                    tl_db_cb cb, void *arg) {
  return held_run(c, job_new(0, sql, nparams, params, cb, arg));
}

int tl_db_conn_exec_around(tl_db_conn_t *c, const char *before, const char *sql, int nparams,
                           const char *const *params, const char *after, tl_db_cb cb, void *arg) {
  return held_run(c, job_new_around(before, 0, sql, nparams, params, after, cb, arg));
}

int tl_db_conn_query_around(tl_db_conn_t *c, const char *before, const char *stmt, int nparams,
                            const char *const *params, const char *after, tl_db_cb cb, void *arg) {
  return held_run(c, job_new_around(before, 1, stmt, nparams, params, after, cb, arg));
}

void tl_db_release(tl_db_conn_t *conn) {
  dbc_t *c = &conn->c;
  tl_db_pool_t *p = c->pool;
  if (!c->held) return;
  c->held = 0;
  int lost = c->held_lost;
  c->held_lost = 0;
  if (p->closing) return;
  if (!lost && c->state == DBC_IDLE && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
    /* Kore's rule: a connection never goes back with a transaction open or failed. */
    job_t *j = job_new(0, "ROLLBACK", 0, NULL, NULL, NULL);
    if (j == NULL) {
      dbc_fail(c, "out of memory for rollback");
      return;
    }
    dbc_run(c, j);
    return;
  }
  uv_idle_start(&p->kick, on_kick);
}

int tl_db_query(tl_db_pool_t *p, const char *stmt, int nparams, const char *const *params,
                tl_db_cb cb, void *arg) {
  return submit(p, job_new(1, stmt, nparams, params, cb, arg));
}

int tl_db_exec(tl_db_pool_t *p, const char *sql, int nparams, const char *const *params,
               tl_db_cb cb, void *arg) {
  return submit(p, job_new(0, sql, nparams, params, cb, arg));
}

int tl_db_pool_new(tl_db_pool_t **out, uv_loop_t *loop, const tl_db_pool_opts_t *opts) {
  tl_db_pool_t *p = calloc(1, sizeof *p);
  if (p == NULL) return TL_ENOMEM;
  p->loop = loop;
  p->opts = *opts;
  if (p->opts.size < 1) p->opts.size = 1;
  p->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
  /* JIT off: its compile time buys nothing for statements of milliseconds, and its estimate
   * misjudges them. The overdue sweep (a 20 ms statement whose planned cost crosses
   * jit_optimize_above_cost once there are some 30,000 anomalies) spent 955 ms compiling, on
   * one of the two cores, every minute (auto_explain on a benchmark cluster).
   * Time zone names are letters, digits, '/', '_', '+', '-': nothing that could split the
   * options string. Anything else is ignored (the server's zone applies). */
  const char *tz = opts->time_zone;
  if (tz && tz[0] && strlen(tz) < 64 &&
      strspn(tz, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") == strlen(tz))
    snprintf(p->options, sizeof p->options, "-c jit=off -c TimeZone=%s", tz);
  else
    snprintf(p->options, sizeof p->options, "-c jit=off");
  p->conns = calloc((size_t)p->opts.size, sizeof *p->conns);
  if (p->conninfo == NULL || p->conns == NULL) {
    free(p->conninfo);
    free(p->conns);
    free(p);
    return TL_ENOMEM;
  }
  *out = p;
  return 0;
}

int tl_db_pool_prepare(tl_db_pool_t *p, const char *name, const char *sql) {
  if (p->nstmts == 64) return TL_EINVAL; /* a session's prepared_ok has a bit for each */
  stmt_t *s = realloc(p->stmts, (size_t)(p->nstmts + 1) * sizeof *s);
  if (s == NULL) return TL_ENOMEM;
  p->stmts = s;
  s[p->nstmts].name = strdup(name);
  s[p->nstmts].sql = strdup(sql);
  if (s[p->nstmts].name == NULL || s[p->nstmts].sql == NULL) {
    free(s[p->nstmts].name);
    free(s[p->nstmts].sql);
    return TL_ENOMEM;
  }
  p->nstmts++;
  return 0;
}

int tl_db_pool_on_connect(tl_db_pool_t *p, const char *sql) {
  free(p->connect_sql);
  p->connect_sql = strdup(sql);
  return p->connect_sql ? 0 : TL_ENOMEM;
}

void tl_db_pool_on_notify(tl_db_pool_t *p, tl_db_notify_cb cb, void *arg) {
  p->notify = cb;
  p->notify_arg = arg;
}

void tl_db_pool_start(tl_db_pool_t *p) {
  uv_timer_init(p->loop, &p->sweep);
  p->sweep.data = p;
  p->handles_open++;
  uv_timer_start(&p->sweep, on_sweep, 500, 500);
  uv_idle_init(p->loop, &p->kick);
  p->kick.data = p;
  p->handles_open++;
  for (int i = 0; i < p->opts.size; i++) {
    dbc_t *c = &p->conns[i];
    c->pool = p;
    c->index = i;
    c->backoff_ms = p->opts.backoff_min_ms;
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    p->handles_open++;
    dbc_connect(c);
  }
}

static void pool_handle_closed(tl_db_pool_t *p) {
  if (--p->handles_open == 0 && p->done) {
    void (*done)(void *) = p->done;
    p->done = NULL;
    done(p->done_arg);
  }
}

static void on_conn_timer_closed(uv_handle_t *h) { pool_handle_closed(((dbc_t *)h->data)->pool); }
static void on_sweep_closed(uv_handle_t *h) { pool_handle_closed(h->data); }

void tl_db_pool_close(tl_db_pool_t *p, void (*done)(void *), void *arg) {
  if (p->closing) return;
  p->closing = 1;
  p->done = done;
  p->done_arg = arg;
  fail_waiting(p, TL_ECLOSED);
  int started = p->handles_open > 0;
  for (int i = 0; i < p->opts.size && started; i++) {
    dbc_t *c = &p->conns[i];
    job_t *j = c->job;
    c->job = NULL;
    unwatch(c);
    if (c->result) PQclear(c->result);
    c->result = NULL;
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    dbc_set_state(c, DBC_CLOSED);
    uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
    if (j) job_finish(j, TL_ECLOSED, NULL, 0);
  }
  if (started) {
    uv_close((uv_handle_t *)&p->sweep, on_sweep_closed);
    uv_close((uv_handle_t *)&p->kick, on_sweep_closed);
  }
  else if (done)
    done(arg);
}

void tl_db_pool_free(tl_db_pool_t *p) {
  if (p == NULL) return;
  for (int i = 0; i < p->nstmts; i++) {
    free(p->stmts[i].name);
    free(p->stmts[i].sql);
  }
  free(p->stmts);
  free(p->connect_sql);
  free(p->conns);
  free(p->conninfo);
  free(p);
}

void tl_db_pool_poll_notifies(tl_db_pool_t *p) {
  for (int i = 0; i < p->opts.size; i++) {
    dbc_t *c = &p->conns[i];
    if (c->state == DBC_IDLE && !c->held) dbc_read(c);
  }
}

void tl_db_pool_stats(const tl_db_pool_t *p, tl_db_pool_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->size = p->opts.size;
  out->waiting = p->waiting;
  out->reconnects = p->reconnects;
  for (int i = 0; i < p->opts.size; i++) {
    if (p->conns[i].state == DBC_IDLE || p->conns[i].state == DBC_BUSY) out->connected++;
    if (p->conns[i].state == DBC_BUSY) out->busy++;
  }
}
