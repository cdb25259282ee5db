/* The daemon under test (daemon.h): a child process of the test, driven with fork/exec,
 * signals and waitpid, observed through its log file and /proc. */
#include "support/daemon.h"

#include "support/cert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 20000
#define MAX_ARGS 64

long long tl_test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl_test_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

const char *tl_test_env(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || v[0] == '\0') {
    fprintf(stderr, "test: the environment variable %s is not set (run the test via ctest)\n",
            name);
    exit(1);
  }
  return v;
}

static int mkdir_p(const char *path) {
  char tmp[TL_TEST_PATH];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

const char *tl_test_tmp(void) {
  const char *tmp = tl_test_env("TUBELOOP_TEST_TMP");
  if (mkdir_p(tmp) != 0) {
    fprintf(stderr, "test: cannot create %s: %s\n", tmp, strerror(errno));
    exit(1);
  }
  return tmp;
}

int tl_test_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

/* ---------- child processes ---------- */

static int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

/* In the child, between fork and exec: the ASan option appended, fds in place. */
static void child_exec(const char *const *argv, int out_fd, int err_fd, const char *asan) {
  /* If the test program dies (a crash, a ctest timeout), its children die with it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (asan) {
    const char *old = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%s%s", old ? old : "", old && old[0] ? ":" : "", asan);
    setenv("ASAN_OPTIONS", opts, 1);
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (out_fd >= 0) dup2(out_fd, 1);
  if (err_fd >= 0) dup2(err_fd, 2);
  /* execv wants char *const[]: copies, because the caller's strings are const. */
  char *args[MAX_ARGS];
  int n = 0;
  for (; argv[n] && n < MAX_ARGS - 1; n++) args[n] = strdup(argv[n]);
  args[n] = NULL;
  execv(args[0], args);
  fprintf(stderr, "test: cannot run %s: %s\n", args[0], strerror(errno));
  _exit(127);
}

static pid_t spawn(const char *const *argv, int out_fd, int err_fd, const char *asan) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) child_exec(argv, out_fd, err_fd, asan);
  return pid;
}

/* Waits for pid up to timeout_ms: its decoded status, or -1 while it runs. */
static int reap(pid_t pid, int timeout_ms) {
  long long deadline = tl_test_now_ms() + timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return decode_status(st);
    if (r < 0 && errno != EINTR) return -1;
    if (tl_test_now_ms() >= deadline) return -1;
    tl_test_sleep_ms(10);
  }
}

/* Reads the pipe into out until the child exits (a daemonised grandchild may keep the
 * pipe open, so EOF alone is not the end) or the deadline passes. */
static void capture(int fd, pid_t pid, long long deadline, char *out, size_t outlen,
                    int *status) {
  size_t used = 0;
  int eof = 0;
  *status = -1;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (eof) {
      tl_test_sleep_ms(20);
    } else if (poll(&p, 1, 50) > 0) {
      char chunk[4096];
      ssize_t n = read(fd, chunk, sizeof chunk);
      if (n > 0 && out && used + 1 < outlen) {
        size_t take = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
        memcpy(out + used, chunk, take);
        used += take;
      }
      if (n > 0) continue;
      if (n == 0 || errno != EINTR) eof = 1;
    }
    int st;
    if (*status < 0 && waitpid(pid, &st, WNOHANG) == pid) {
      *status = decode_status(st);
      deadline = tl_test_now_ms() + 200; /* collect what is still in the pipe */
    }
    if (tl_test_now_ms() >= deadline) break;
  }
  if (out && outlen) out[used] = '\0';
}

int tl_test_run(const char *const *argv, int timeout_ms, char *out, size_t outlen,
                const char *stdout_path) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  int file = -1;
  if (stdout_path) {
    file = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (file < 0) {
      close(p[0]);
      close(p[1]);
      return -1;
    }
  }
  pid_t pid = spawn(argv, file >= 0 ? file : p[1], p[1], NULL);
  close(p[1]);
  if (file >= 0) close(file);
  if (pid < 0) {
    close(p[0]);
    return -1;
  }
  int status;
  capture(p[0], pid, tl_test_now_ms() + timeout_ms, out, outlen, &status);
  close(p[0]);
  if (status < 0) {
    kill(pid, SIGKILL);
    reap(pid, 5000);
    fprintf(stderr, "test: %s %s did not finish within %d ms\n", argv[0],
            argv[1] ? argv[1] : "", timeout_ms);
  }
  return status;
}

/* ---------- the daemon ---------- */

static void path_in(char *out, const tl_test_daemon_t *d, const char *file) {
  snprintf(out, TL_TEST_PATH, "%.*s/%s", TL_TEST_PATH - 32, d->dir, file);
}

int tl_test_daemon_prepare(tl_test_daemon_t *d, const char *name) {
  memset(d, 0, sizeof *d);
  snprintf(d->dir, sizeof d->dir, "%.900s/%.60s-XXXXXX", tl_test_tmp(), name);
  if (mkdtemp(d->dir) == NULL) {
    fprintf(stderr, "test: mkdtemp %s: %s\n", d->dir, strerror(errno));
    d->dir[0] = '\0';
    return -1;
  }
  path_in(d->cert, d, "cert.pem");
  path_in(d->key, d, "key.pem");
  path_in(d->keys, d, "keys");
  path_in(d->log, d, "daemon.log");
  if (tl_test_cert_write(d->cert, d->key) != 0) return -1;
  const char *argv[] = {tl_test_env("TUBELOOPD"), "gen-keys", NULL};
  char out[1024];
  int st = tl_test_run(argv, 10000, out, sizeof out, d->keys);
  if (st != 0) {
    fprintf(stderr, "test: tubeloopd gen-keys exited %d: %s\n", st, out);
    return -1;
  }
  return 0;
}

/* The port from the daemon's "listening" log line, or 0 when it is not there yet. */
static int port_from_log(const tl_test_daemon_t *d) {
  FILE *f = fopen(d->log, "r");
  if (f == NULL) return 0;
  char line[4096];
  int port = 0;
  while (port == 0 && fgets(line, sizeof line, f)) {
    const char *url = strstr(line, "msg=listening url=");
    const char *host = url ? strstr(url, "://") : NULL;
    const char *slash = host ? strchr(host + 3, '/') : NULL;
    if (slash == NULL) continue;
    const char *colon = slash;
    while (colon > host + 3 && *colon != ':') colon--;
    if (*colon == ':') port = atoi(colon + 1);
  }
  fclose(f);
  return port;
}

static int build_serve_args(const tl_test_daemon_t *d, const tl_test_daemon_opts_t *o,
                            const char **argv) {
  int n = 0;
  argv[n++] = tl_test_env("TUBELOOPD");
  argv[n++] = "serve";
  argv[n++] = "--db";
  argv[n++] = o->db ? o->db : tl_test_env("TUBELOOP_TEST_DB");
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  argv[n++] = "--keys";
  argv[n++] = d->keys;
  if (o->no_tls) {
    argv[n++] = "--no-tls";
  } else {
    argv[n++] = "--tls-cert";
    argv[n++] = d->cert;
    argv[n++] = "--tls-key";
    argv[n++] = d->key;
  }
  for (int i = 0; o->extra && o->extra[i]; i++) {
    if (n >= MAX_ARGS - 1) return -1;
    argv[n++] = o->extra[i];
  }
  argv[n] = NULL;
  return 0;
}

/* Until /healthz answers 200: 0, or -1 when the child died or time ran out. */
static int wait_healthy(tl_test_daemon_t *d) {
  long long deadline = tl_test_now_ms() + START_TIMEOUT_MS;
  while (tl_test_now_ms() < deadline) {
    if (tl_test_daemon_wait(d, 0) >= 0) {
      fprintf(stderr, "test: tubeloopd exited with status %d while starting\n", d->status);
      return -1;
    }
    if (d->port == 0) d->port = port_from_log(d);
    if (d->port != 0) {
      tl_test_response_t r;
      int rc = tl_test_daemon_get(d, "/healthz", &r);
      int ok = rc == 0 && r.status == 200;
      tl_test_response_free(&r);
      if (ok) return 0;
    }
    tl_test_sleep_ms(50);
  }
  fprintf(stderr, "test: tubeloopd did not answer /healthz within %d ms\n", START_TIMEOUT_MS);
  return -1;
}

int tl_test_daemon_start(tl_test_daemon_t *d, const char *name, const tl_test_daemon_opts_t *o) {
  static const tl_test_daemon_opts_t defaults = {0};
  if (o == NULL) o = &defaults;
  if (d->dir[0] == '\0' && tl_test_daemon_prepare(d, name) != 0) return -1;
  const char *argv[MAX_ARGS];
  if (build_serve_args(d, o, argv) != 0) return -1;
  int log = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return -1;
  d->tls = !o->no_tls;
  d->port = 0;
  d->status = -1;
  d->pid = spawn(argv, log, log, o->asan_options);
  close(log);
  if (d->pid < 0) {
    d->pid = 0;
    return -1;
  }
  if (wait_healthy(d) != 0) {
    tl_test_daemon_log_tail(d, 30);
    return -1;
  }
  return 0;
}

int tl_test_daemon_wait_ready(const tl_test_daemon_t *d, int timeout_ms) {
  long long deadline = tl_test_now_ms() + timeout_ms;
  for (;;) {
    tl_test_response_t r;
    int rc = tl_test_daemon_get(d, "/readyz", &r);
    int status = rc == 0 ? r.status : rc;
    tl_test_response_free(&r);
    if (status == 200) return 0;
    if (tl_test_now_ms() >= deadline) {
      fprintf(stderr, "test: /readyz still not 200 after %d ms (last: %d)\n", timeout_ms, status);
      tl_test_daemon_log_tail(d, 30);
      return -1;
    }
    tl_test_sleep_ms(50);
  }
}

int tl_test_daemon_wait(tl_test_daemon_t *d, int timeout_ms) {
  if (d->pid <= 0) return d->status;
  int st = reap(d->pid, timeout_ms);
  if (st >= 0) {
    d->status = st;
    d->pid = 0;
  }
  return st;
}

int tl_test_daemon_stop(tl_test_daemon_t *d, int timeout_ms) {
  if (d->pid <= 0) return d->status;
  kill(d->pid, SIGTERM);
  int st = tl_test_daemon_wait(d, timeout_ms);
  if (st < 0) {
    fprintf(stderr, "test: tubeloopd did not exit within %d ms of SIGTERM; killing it\n",
            timeout_ms);
    kill(d->pid, SIGKILL);
    tl_test_daemon_wait(d, 5000);
    d->status = -1;
  }
  if (st != 0) tl_test_daemon_log_tail(d, 30);
  return st;
}

static void remove_dir(const tl_test_daemon_t *d) {
  const char *keep = getenv("TUBELOOP_TEST_KEEP");
  if (keep && strcmp(keep, "1") == 0) {
    fprintf(stderr, "test: kept %s\n", d->dir);
    return;
  }
  unlink(d->cert);
  unlink(d->key);
  unlink(d->keys);
  unlink(d->log);
  rmdir(d->dir);
}

void tl_test_daemon_cleanup(tl_test_daemon_t *d) {
  if (d->pid > 0) {
    if (tl_test_daemon_wait(d, 0) > 0) {
      /* It died on its own during the test: that log is the evidence. */
      fprintf(stderr, "test: tubeloopd had exited with status %d\n", d->status);
      tl_test_daemon_log_tail(d, 30);
    } else if (d->pid > 0) {
      kill(d->pid, SIGKILL);
      tl_test_daemon_wait(d, 5000);
    }
  }
  if (d->dir[0]) remove_dir(d);
  memset(d, 0, sizeof *d);
}

tl_test_client_opts_t tl_test_daemon_client_opts(const tl_test_daemon_t *d) {
  tl_test_client_opts_t o = {.cafile = d->tls ? d->cert : NULL};
  return o;
}

int tl_test_daemon_get(const tl_test_daemon_t *d, const char *path, tl_test_response_t *r) {
  return tl_test_get(d->port, d->tls ? d->cert : NULL, path, r);
}

long tl_test_daemon_rss_kib(const tl_test_daemon_t *d) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)d->pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

/* The whole log as a string (malloc'd), or NULL. */
static char *read_log(const tl_test_daemon_t *d) {
  FILE *f = fopen(d->log, "r");
  if (f == NULL) return NULL;
  size_t cap = 65536, len = 0;
  char *text = malloc(cap);
  size_t n;
  while (text && (n = fread(text + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 4096) {
      char *bigger = realloc(text, cap * 2);
      if (bigger == NULL) {
        free(text);
        text = NULL;
        break;
      }
      text = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (text) text[len] = '\0';
  return text;
}

int tl_test_daemon_log_has(const tl_test_daemon_t *d, const char *needle) {
  char *text = read_log(d);
  int found = text && strstr(text, needle) != NULL;
  free(text);
  return found;
}

int tl_test_daemon_log_wait(const tl_test_daemon_t *d, const char *needle, int timeout_ms) {
  long long deadline = tl_test_now_ms() + timeout_ms;
  for (;;) {
    if (tl_test_daemon_log_has(d, needle)) return 1;
    if (tl_test_now_ms() >= deadline) return 0;
    tl_test_sleep_ms(20);
  }
}

void tl_test_daemon_log_tail(const tl_test_daemon_t *d, int lines) {
  char *text = read_log(d);
  if (text == NULL) return;
  char *start = text + strlen(text);
  for (int seen = 0; start > text; start--)
    if (start[-1] == '\n' && ++seen > lines) break;
  fprintf(stderr, "test: last lines of the daemon log:\n");
  for (char *line = strtok(start, "\n"); line; line = strtok(NULL, "\n"))
    fprintf(stderr, "    %s\n", line);
  free(text);
}

/* ---------- /metrics ---------- */

static const char *next_line(const char *line) {
  const char *nl = strchr(line, '\n');
  return nl ? nl + 1 : NULL;
}

double tl_test_metric(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *line = text; line && *line; line = next_line(line)) {
    if (strncmp(line, series, n) == 0 && line[n] == ' ') return strtod(line + n + 1, NULL);
  }
  return -1;
}

double tl_test_metric_sum(const char *text, const char *name, const char *label) {
  size_t n = strlen(name);
  double sum = 0;
  for (const char *line = text; line && *line; line = next_line(line)) {
    if (strncmp(line, name, n) != 0 || line[n] != '{') continue;
    const char *close = strstr(line, "} ");
    const char *eol = strchr(line, '\n');
    if (close == NULL || (eol && close > eol)) continue;
    const char *hit = strstr(line, label);
    if (hit && hit < close) sum += strtod(close + 2, NULL);
  }
  return sum;
}
