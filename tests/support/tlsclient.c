/* The test HTTP client of tlsclient.h. The socket is non-blocking and every wait is a poll()
 * with a deadline, so OpenSSL's retries (WANT_READ / WANT_WRITE) and the timeouts live in
 * one place: ssl_wait(). */
#include "support/tlsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define MAX_HEAD (1024 * 1024)

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Waits for events on fd until deadline: 1 ready, TL_TEST_ETIMEOUT, or TL_TEST_ESYS. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return TL_TEST_ETIMEOUT;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (n > 0) return 1;
    if (n == 0) return TL_TEST_ETIMEOUT;
    if (errno != EINTR) return TL_TEST_ESYS;
  }
}

/* After an SSL call returned ret <= 0: waits as OpenSSL asks (1), or says why it cannot go
 * on: the peer closed (ECLOSED) or the TLS stream broke (ETLS). */
static int ssl_wait(tl_test_client_t *c, int ret, long long deadline) {
  int e = SSL_get_error(c->ssl, ret);
  switch (e) {
  case SSL_ERROR_WANT_READ: return wait_fd(c->fd, POLLIN, deadline);
  case SSL_ERROR_WANT_WRITE: return wait_fd(c->fd, POLLOUT, deadline);
  case SSL_ERROR_ZERO_RETURN: return TL_TEST_ECLOSED;
  case SSL_ERROR_SYSCALL:
    /* EOF without close_notify, a reset, or a write to a closed socket. */
    ERR_clear_error();
    return TL_TEST_ECLOSED;
  default:
    if (c->tls_error == 0) c->tls_error = ERR_peek_error();
    /* OpenSSL 3 reports a TCP EOF without close_notify as an SSL error. */
    if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      return TL_TEST_ECLOSED;
    }
    ERR_clear_error();
    return TL_TEST_ETLS;
  }
}

static int tcp_connect(tl_test_client_t *c, int port) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return TL_TEST_ESYS;
  int one = 1;
  /* Small pieces must leave as separate segments for the slow-client tests. */
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0) return 0;
  if (errno == ECONNREFUSED) return TL_TEST_EREFUSED;
  if (errno != EINPROGRESS) return TL_TEST_ESYS;
  int rc = wait_fd(c->fd, POLLOUT, now_ms() + c->timeout_ms);
  if (rc < 0) return rc;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return TL_TEST_ESYS;
  if (err == ECONNREFUSED) return TL_TEST_EREFUSED;
  errno = err;
  return err == 0 ? 0 : TL_TEST_ESYS;
}

static int tls_setup(tl_test_client_t *c, const tl_test_client_opts_t *o) {
  c->ctx = SSL_CTX_new(TLS_client_method());
  if (c->ctx == NULL) return TL_TEST_ETLS;
  if (o->min_version) SSL_CTX_set_min_proto_version(c->ctx, o->min_version);
  if (o->max_version) SSL_CTX_set_max_proto_version(c->ctx, o->max_version);
  if (o->min_version && o->min_version < TLS1_2_VERSION) {
    /* OpenSSL 3 will not even offer TLS 1.0/1.1 above security level 0; the client must be
     * able to ask for them, or "the server refuses them" would prove nothing. */
    SSL_CTX_set_security_level(c->ctx, 0);
    SSL_CTX_set_cipher_list(c->ctx, "DEFAULT:@SECLEVEL=0");
  }
  if (SSL_CTX_load_verify_locations(c->ctx, o->cafile, NULL) != 1) return TL_TEST_ETLS;
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  c->ssl = SSL_new(c->ctx);
  if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) return TL_TEST_ETLS;
  SSL_set_tlsext_host_name(c->ssl, "localhost");
  if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1") != 1)
    return TL_TEST_ETLS;
  return 0;
}

static int tls_handshake(tl_test_client_t *c) {
  long long deadline = now_ms() + c->timeout_ms;
  for (;;) {
    int ret = SSL_connect(c->ssl);
    if (ret == 1) return 0;
    int rc = ssl_wait(c, ret, deadline);
    if (rc == TL_TEST_ECLOSED) {
      /* Closed during the handshake is a refused handshake. */
      if (c->tls_error == 0) c->tls_error = ERR_peek_error();
      return TL_TEST_ETLS;
    }
    if (rc < 0) return rc;
  }
}

int tl_test_client_connect(tl_test_client_t *c, int port, const tl_test_client_opts_t *o) {
  static const tl_test_client_opts_t plain = {0};
  if (o == NULL) o = &plain;
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
  signal(SIGPIPE, SIG_IGN);
  ERR_clear_error();
  int rc = tcp_connect(c, port);
  if (rc == 0 && o->cafile) {
    rc = tls_setup(c, o);
    if (rc == 0) rc = tls_handshake(c);
    if (rc == TL_TEST_ETLS && c->tls_error == 0) c->tls_error = ERR_peek_error();
  }
  if (rc != 0) {
    unsigned long tls_error = c->tls_error;
    c->eof = 1; /* no close_notify on a failed connection */
    tl_test_client_close(c);
    c->tls_error = tls_error;
  }
  return rc;
}

void tl_test_client_close(tl_test_client_t *c) {
  if (c->ssl) {
    if (!c->eof) SSL_shutdown(c->ssl); /* one non-blocking attempt; a courtesy only */
    SSL_free(c->ssl);
  }
  SSL_CTX_free(c->ctx);
  if (c->fd >= 0) close(c->fd);
  free(c->in);
  ERR_clear_error();
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

/* Writes some of data: the count written, or a negative code. */
static int write_some(tl_test_client_t *c, const char *data, size_t len, long long deadline) {
  int chunk = len > INT_MAX ? INT_MAX : (int)len;
  for (;;) {
    if (c->ssl == NULL) {
      ssize_t n = send(c->fd, data, (size_t)chunk, MSG_NOSIGNAL);
      if (n >= 0) return (int)n;
      if (errno == EPIPE || errno == ECONNRESET) return TL_TEST_ECLOSED;
      if (errno != EAGAIN && errno != EINTR) return TL_TEST_ESYS;
      int rc = wait_fd(c->fd, POLLOUT, deadline);
      if (rc < 0) return rc;
      continue;
    }
    int n = SSL_write(c->ssl, data, chunk);
    if (n > 0) return n;
    int rc = ssl_wait(c, n, deadline);
    if (rc < 0) return rc;
  }
}

int tl_test_client_send(tl_test_client_t *c, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    int n = write_some(c, p, len, now_ms() + c->timeout_ms);
    if (n < 0) return n;
    p += n;
    len -= (size_t)n;
    c->bytes_sent += (size_t)n;
  }
  return 0;
}

int tl_test_client_send_str(tl_test_client_t *c, const char *s) {
  return tl_test_client_send(c, s, strlen(s));
}

int tl_test_client_send_slowly(tl_test_client_t *c, const void *data, size_t len, size_t piece,
                               int delay_ms) {
  const char *p = data;
  for (size_t off = 0; off < len; off += piece) {
    if (off > 0) sleep_ms(delay_ms);
    size_t n = len - off < piece ? len - off : piece;
    int rc = tl_test_client_send(c, p + off, n);
    if (rc != 0) return rc;
  }
  return 0;
}

/* Reads more bytes into c->in, waiting until deadline: the count, ECLOSED or ETIMEOUT. */
static int fill(tl_test_client_t *c, long long deadline) {
  if (c->eof) return TL_TEST_ECLOSED;
  if (c->incap - c->inlen < READ_CHUNK) {
    char *bigger = realloc(c->in, c->incap + 4 * READ_CHUNK);
    if (bigger == NULL) return TL_TEST_ESYS;
    c->in = bigger;
    c->incap += 4 * READ_CHUNK;
  }
  for (;;) {
    if (c->ssl == NULL) {
      ssize_t n = recv(c->fd, c->in + c->inlen, READ_CHUNK, 0);
      if (n > 0) {
        c->inlen += (size_t)n;
        return (int)n;
      }
      if (n == 0 || errno == ECONNRESET) {
        c->eof = 1;
        return TL_TEST_ECLOSED;
      }
      if (errno != EAGAIN && errno != EINTR) return TL_TEST_ESYS;
      int rc = wait_fd(c->fd, POLLIN, deadline);
      if (rc < 0) return rc;
      continue;
    }
    int n = SSL_read(c->ssl, c->in + c->inlen, READ_CHUNK);
    if (n > 0) {
      c->inlen += (size_t)n;
      return n;
    }
    int rc = ssl_wait(c, n, deadline);
    if (rc == TL_TEST_ECLOSED || rc == TL_TEST_ETLS) {
      c->eof = 1;
      return TL_TEST_ECLOSED;
    }
    if (rc < 0) return rc;
  }
}

static void consume(tl_test_client_t *c, size_t n) {
  memmove(c->in, c->in + n, c->inlen - n);
  c->inlen -= n;
}

static char *dup_bytes(const char *p, size_t n) {
  char *s = malloc(n + 1);
  if (s == NULL) return NULL;
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* Length of the head (through the blank line) once it is buffered, reading as needed. */
static int read_head(tl_test_client_t *c, size_t *headlen) {
  for (;;) {
    const char *end = c->inlen ? memmem(c->in, c->inlen, "\r\n\r\n", 4) : NULL;
    if (end) {
      *headlen = (size_t)(end - c->in) + 4;
      return 0;
    }
    if (c->inlen > MAX_HEAD) return TL_TEST_EPROTO;
    int n = fill(c, now_ms() + c->timeout_ms);
    if (n < 0) return n;
  }
}

int tl_test_client_read_response(tl_test_client_t *c, tl_test_response_t *r) {
  memset(r, 0, sizeof *r);
  size_t headlen;
  int rc = read_head(c, &headlen);
  if (rc != 0) return rc;
  if (headlen < 12 || memcmp(c->in, "HTTP/1.1 ", 9) != 0) return TL_TEST_EPROTO;
  r->status = atoi(c->in + 9);
  r->head = dup_bytes(c->in, headlen - 2); /* keep the last header's CRLF */
  if (r->head == NULL) return TL_TEST_ESYS;
  char cl[32];
  long long want = -1; /* without Content-Length the body runs to the close */
  if (tl_test_response_header(r, "Content-Length", cl, sizeof cl)) want = atoll(cl);
  while (want < 0 || c->inlen < headlen + (size_t)want) {
    int n = fill(c, now_ms() + c->timeout_ms);
    if (n == TL_TEST_ECLOSED && want < 0) break;
    if (n < 0) {
      tl_test_response_free(r);
      return n;
    }
  }
  r->body_len = want < 0 ? c->inlen - headlen : (size_t)want;
  r->body = dup_bytes(c->in + headlen, r->body_len);
  consume(c, headlen + r->body_len);
  if (r->body == NULL) {
    tl_test_response_free(r);
    return TL_TEST_ESYS;
  }
  return 0;
}

int tl_test_client_wait_closed(tl_test_client_t *c, int timeout_ms) {
  if (c->inlen > 0) return TL_TEST_EDATA;
  int n = fill(c, now_ms() + timeout_ms);
  if (n > 0) return TL_TEST_EDATA;
  return n == TL_TEST_ECLOSED ? 0 : n;
}

int tl_test_client_readable(tl_test_client_t *c) {
  if (c->inlen > 0 || c->eof) return 1;
  /* A readable socket is not enough: TLS 1.3 session tickets arrive after the handshake
   * and carry no application bytes. Try a read that does not wait. */
  int n = fill(c, now_ms());
  return n > 0 || n == TL_TEST_ECLOSED;
}

const char *tl_test_client_version(const tl_test_client_t *c) {
  return c->ssl ? SSL_get_version(c->ssl) : "plain";
}

int tl_test_response_header(const tl_test_response_t *r, const char *name, char *out,
                            size_t outlen) {
  if (r->head == NULL) return 0;
  size_t nlen = strlen(name);
  const char *line = strstr(r->head, "\r\n");
  while (line && line[2] != '\0') {
    line += 2;
    const char *eol = strstr(line, "\r\n");
    if (eol == NULL) break;
    if ((size_t)(eol - line) > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
      const char *v = line + nlen + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char *vend = eol;
      while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
      snprintf(out, outlen, "%.*s", (int)(vend - v), v);
      return 1;
    }
    line = eol;
  }
  return 0;
}

void tl_test_response_free(tl_test_response_t *r) {
  free(r->head);
  free(r->body);
  memset(r, 0, sizeof *r);
}

int tl_test_get(int port, const char *cafile, const char *path, tl_test_response_t *r) {
  tl_test_client_opts_t o = {.cafile = cafile};
  tl_test_client_t c;
  memset(r, 0, sizeof *r);
  int rc = tl_test_client_connect(&c, port, &o);
  if (rc != 0) return rc;
  char req[4096];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
           path);
  rc = tl_test_client_send_str(&c, req);
  if (rc == 0) rc = tl_test_client_read_response(&c, r);
  tl_test_client_close(&c);
  return rc;
}

const char *tl_test_strerror(int code) {
  switch (code) {
  case TL_TEST_OK: return "ok";
  case TL_TEST_ECLOSED: return "connection closed by the server";
  case TL_TEST_ETIMEOUT: return "timed out";
  case TL_TEST_EREFUSED: return "connection refused";
  case TL_TEST_ETLS: return "TLS handshake failed";
  case TL_TEST_EPROTO: return "not an HTTP/1.1 response";
  case TL_TEST_EDATA: return "data arrived instead of a close";
  case TL_TEST_ESYS: return strerror(errno);
  default: return "unknown error";
  }
}
