/* The daemon under test: starts the real `tubeloopd serve` ($TUBELOOPD) as a child process
 * with a fresh self-signed certificate and keys file in a private folder under
 * $TUBELOOP_TEST_TMP, and lets a test talk to it, signal it, read its log and its memory.
 *
 * The daemon listens on 127.0.0.1:0 (the kernel picks a free port, so parallel tests never
 * collide); its port is read from the "listening" line of its log, and start returns only
 * once GET /healthz answers 200. The child's stdout and stderr go to DIR/daemon.log.
 * Cleanup kills whatever is still running (SIGKILL) and removes DIR, unless the environment
 * has TUBELOOP_TEST_KEEP=1. Also here: running other commands to completion (gen-keys,
 * migrate, pg.sh), and reading one value out of the /metrics text. */
#ifndef TL_TEST_DAEMON_H
#define TL_TEST_DAEMON_H

#include "support/tlsclient.h"

#include <sys/types.h>

#define TL_TEST_PATH 1024

typedef struct {
  const char *db;            /* conninfo; NULL means $TUBELOOP_TEST_DB */
  int no_tls;                /* --no-tls (plain HTTP) instead of the certificate */
  const char *const *extra;  /* more flags for serve, NULL-terminated; may be NULL */
  const char *asan_options;  /* appended to the child's ASAN_OPTIONS; may be NULL */
} tl_test_daemon_opts_t;

typedef struct {
  pid_t pid;                 /* the child while it runs, else 0 */
  int status;                /* exit status once reaped: 0-255, or 128+signal */
  int port;                  /* where it listens */
  int tls;                   /* 1 unless started with no_tls */
  char dir[TL_TEST_PATH];    /* private folder, made by tl_test_daemon_prepare */
  char cert[TL_TEST_PATH];   /* DIR/cert.pem: also the clients' trust anchor */
  char key[TL_TEST_PATH];    /* DIR/key.pem */
  char keys[TL_TEST_PATH];   /* DIR/keys: `tubeloopd gen-keys` output, mode 0600 */
  char log[TL_TEST_PATH];    /* DIR/daemon.log: the child's stdout and stderr */
} tl_test_daemon_t;

/* Makes DIR with the certificate, key and keys file, without starting anything. */
int tl_test_daemon_prepare(tl_test_daemon_t *d, const char *name);
/* prepare (if not done yet), spawn `tubeloopd serve`, wait up to 20 s for /healthz 200.
 * Returns 0, or -1 with the reason and the log's tail on stderr. */
int tl_test_daemon_start(tl_test_daemon_t *d, const char *name, const tl_test_daemon_opts_t *o);
/* Polls GET /readyz until 200 (the database pool is up): 0, or -1 after timeout_ms. */
int tl_test_daemon_wait_ready(const tl_test_daemon_t *d, int timeout_ms);
/* Sends SIGTERM and waits up to timeout_ms: the exit status, or -1 if it is still running
 * (it is then killed). A non-zero status prints the log's tail. */
int tl_test_daemon_stop(tl_test_daemon_t *d, int timeout_ms);
/* Waits up to timeout_ms for the child to exit: its status, or -1 while it still runs. */
int tl_test_daemon_wait(tl_test_daemon_t *d, int timeout_ms);
/* SIGKILL if still running, reap, remove DIR. Safe on a zeroed or stopped daemon. */
void tl_test_daemon_cleanup(tl_test_daemon_t *d);

/* Client options that reach this daemon (its certificate as trust anchor). */
tl_test_client_opts_t tl_test_daemon_client_opts(const tl_test_daemon_t *d);
/* GET path on a fresh connection. */
int tl_test_daemon_get(const tl_test_daemon_t *d, const char *path, tl_test_response_t *r);
/* Resident memory of the child in KiB (VmRSS), or -1. */
long tl_test_daemon_rss_kib(const tl_test_daemon_t *d);
/* 1 when the log contains needle. */
int tl_test_daemon_log_has(const tl_test_daemon_t *d, const char *needle);
/* Polls the log until needle appears: 1, or 0 after timeout_ms. */
int tl_test_daemon_log_wait(const tl_test_daemon_t *d, const char *needle, int timeout_ms);
/* Prints the last lines of the log to stderr (for failure reports). */
void tl_test_daemon_log_tail(const tl_test_daemon_t *d, int lines);

/* Runs argv[0] with argv to completion (killed after timeout_ms), its stdout and stderr
 * captured into out (NUL-terminated, truncated to outlen-1; out may be NULL). stdout_path,
 * when not NULL, receives stdout instead (created with mode 0600). Returns the exit status,
 * 128+signal, or -1 when it could not run or timed out. */
int tl_test_run(const char *const *argv, int timeout_ms, char *out, size_t outlen,
                const char *stdout_path);

/* The value of the series `name` (exactly as written, labels included) in Prometheus text,
 * or -1 when absent. */
double tl_test_metric(const char *text, const char *series);
/* Sum over the series of metric `name` whose labels contain `label` (e.g. status="405"). */
double tl_test_metric_sum(const char *text, const char *name, const char *label);

/* A required environment variable; aborts the test program when it is missing. */
const char *tl_test_env(const char *name);
/* $TUBELOOP_TEST_TMP, created (mode 0755) when missing. */
const char *tl_test_tmp(void);
/* A free TCP port on 127.0.0.1 right now (bind to port 0, read it, close). */
int tl_test_free_port(void);
void tl_test_sleep_ms(int ms);
long long tl_test_now_ms(void);

#endif
