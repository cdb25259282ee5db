/* The supervisor of `tubeloopd serve --workers N` (workers.h).
 *
 * It binds the port once with SO_REUSEPORT (port 0: the kernel's choice, which every worker
 * then binds too) and keeps that socket, never listening on it, so that the port stays ours
 * while a worker restarts. Then it forks the workers. Each is a whole daemon (tl_serve: its own
 * loop, TLS context, pool, group commit and timers) listening with SO_REUSEPORT on its own
 * socket; the kernel spreads new connections over the listening sockets. Workers share nothing
 * but the database, where they coordinate as separate daemons do (advisory locks for the
 * sealer, the sweep and the fold; the custody rules per group under row and advisory locks).
 *
 * Signals: SIGTERM and SIGINT go on to every worker, which drains as a lone daemon does; the
 * supervisor exits when all have exited, with 0 when every one exited with 0. A worker killed
 * by a signal (a crash, the OOM killer, kill -9) is logged and started again, at most once a
 * second per slot. A worker that exits with a failure by itself could not start (keys, TLS,
 * the database's statements, the port): the supervisor then stops the others and fails too,
 * rather than restarting into the same failure forever. A worker whose supervisor dies gets
 * SIGTERM (PR_SET_PDEATHSIG). No libuv here: the supervisor only waits for signals. */
#include "workers.h"

#include "serve.h"

#include "base/log.h"
#include "net/listen.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64

typedef struct {
  pid_t pid;          /* 0: not running */
  double started;     /* monotonic seconds of the last start */
  int restart;        /* killed: start again when a second has passed since started */
} worker_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Forks one worker: it restores the signal mask, lets go of the supervisor's socket and serves. */
static pid_t start_worker(tl_config_t *cfg, int reserve_fd, const sigset_t *mask, pid_t supervisor) {
  pid_t pid = fork();
  if (pid != 0) return pid; /* the supervisor (or -1) */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != supervisor) _exit(1); /* the supervisor died before the line above */
  sigprocmask(SIG_SETMASK, mask, NULL);
  close(reserve_fd);
  exit(tl_serve(cfg));
}

static int running(const worker_t *w, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) k += w[i].pid > 0;
  return k;
}

static void signal_all(const worker_t *w, int n, int sig) {
  for (int i = 0; i < n; i++)
    if (w[i].pid > 0) kill(w[i].pid, sig);
}

int tl_workers_run(tl_config_t *cfg) {
  int n = cfg->workers < MAX_WORKERS ? cfg->workers : MAX_WORKERS;
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &old); /* before the first fork: no signal is missed */

  struct sockaddr_storage addr;
  int fd = tl_net_addr(cfg->listen_host, cfg->listen_port, &addr);
  if (fd == 0) fd = tl_net_bind_reuseport(&addr);
  if (fd < 0) {
    tl_log(TL_LOG_ERROR, "listen_failed", "listen=%s error=%s", cfg->listen, tl_strerror(fd));
    return 1;
  }
  cfg->listen_port = tl_net_bound_port(fd);
  cfg->reuseport = 1;

  worker_t w[MAX_WORKERS];
  memset(w, 0, sizeof w);
  pid_t self = getpid();
  int stopping = 0, status = 0;
  for (int i = 0; i < n; i++) {
    w[i].pid = start_worker(cfg, fd, &old, self);
    w[i].started = now_s();
    if (w[i].pid < 0) {
      tl_log(TL_LOG_ERROR, "worker_fork_failed", "error=%s", strerror(errno));
      w[i].pid = 0;
      stopping = 1;
      status = 1;
    }
  }
  if (stopping) signal_all(w, n, SIGTERM);
  else tl_log(TL_LOG_INFO, "workers", "n=%d port=%d supervisor=%d", n, cfg->listen_port, (int)self);

  for (;;) {
    siginfo_t si;
    struct timespec tick = {0, 200 * 1000 * 1000}; /* also the pace of delayed restarts */
    int sig = sigtimedwait(&set, &si, &tick);
    if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
      stopping = 1;
      tl_log(TL_LOG_INFO, "workers_stopping", "signal=%d", sig);
      signal_all(w, n, sig);
    }
    int ws;
    pid_t pid;
    while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
      int i = 0;
      while (i < n && w[i].pid != pid) i++;
      if (i == n) continue;
      w[i].pid = 0;
      int failed = WIFEXITED(ws) && WEXITSTATUS(ws) != 0;
      if (stopping) {
        if (!WIFEXITED(ws) || failed) status = 1;
      } else if (failed) { /* it could not start: neither will the next one */
        tl_log(TL_LOG_ERROR, "worker_failed", "pid=%d status=%d", (int)pid, WEXITSTATUS(ws));
        stopping = 1;
        status = 1;
        signal_all(w, n, SIGTERM);
      } else {
        tl_log(TL_LOG_WARN, "worker_exited", "pid=%d signal=%d restart=1", (int)pid,
               WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
        w[i].restart = 1;
      }
    }
    for (int i = 0; i < n && !stopping; i++) {
      if (!w[i].restart || now_s() - w[i].started < 1.0) continue;
      w[i].restart = 0;
      w[i].started = now_s();
      if ((w[i].pid = start_worker(cfg, fd, &old, self)) < 0) {
        tl_log(TL_LOG_ERROR, "worker_fork_failed", "error=%s", strerror(errno));
        w[i].pid = 0;
        w[i].restart = 1;
      }
    }
    if (stopping && running(w, n) == 0) break;
  }
  close(fd);
  tl_log(TL_LOG_INFO, "workers_stopped", "status=%d", status);
  return status;
}
