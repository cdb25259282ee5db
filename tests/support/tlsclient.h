/* A small HTTP/1.1 client for the end-to-end tests: one connection to 127.0.0.1, over TLS
 * that verifies the test certificate (or plain TCP), sending raw bytes the test chooses and
 * reading answers one at a time.
 *
 * It is deliberately not a general client: it sends exactly the bytes it is given (malformed
 * requests included), reads responses framed by Content-Length (all the daemon sends), keeps
 * bytes past one response for the next call (pipelining), and tells "the server closed the
 * connection" apart from "nothing arrived yet". Every wait is bounded by timeout_ms, so a
 * test never hangs on a server that stopped answering. SIGPIPE is ignored once a client is
 * made: writing to a closed connection is an error code here, not a signal.
 *
 * Errors are the negative TL_TEST_E* values below; 0 is success. */
#ifndef TL_TEST_TLSCLIENT_H
#define TL_TEST_TLSCLIENT_H

#include <openssl/ssl.h>
#include <stddef.h>

enum {
  TL_TEST_OK = 0,
  TL_TEST_ECLOSED = -1,   /* the server closed the connection */
  TL_TEST_ETIMEOUT = -2,  /* nothing (more) happened within timeout_ms */
  TL_TEST_EREFUSED = -3,  /* connect() was refused: nobody listens */
  TL_TEST_ETLS = -4,      /* TLS handshake failed; tls_error says why */
  TL_TEST_EPROTO = -5,    /* the bytes that came back are not an HTTP/1.1 response */
  TL_TEST_EDATA = -6,     /* bytes arrived where the caller expected a close */
  TL_TEST_ESYS = -7       /* a system call failed (errno is kept) */
};

typedef struct {
  const char *cafile; /* PEM trust anchor; NULL means plain TCP, no TLS */
  int min_version;    /* TLS1_VERSION … TLS1_3_VERSION, 0 for the library's default */
  int max_version;    /* likewise */
  int timeout_ms;     /* bound of each wait; 0 means 5000 */
} tl_test_client_opts_t;

typedef struct {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;               /* NULL for plain TCP */
  int timeout_ms;         /* may be changed between calls */
  char *in;               /* received, not yet returned bytes (owned) */
  size_t inlen, incap;
  int eof;                /* the server closed its side */
  size_t bytes_sent;      /* plaintext bytes accepted by the connection so far */
  unsigned long tls_error; /* first OpenSSL error of a failed handshake, else 0 */
} tl_test_client_t;

typedef struct {
  int status;
  char *head;       /* status line and header lines, NUL-terminated (owned) */
  char *body;       /* NUL-terminated (owned) */
  size_t body_len;
} tl_test_response_t;

/* Connects to 127.0.0.1:port and, with a cafile, completes the TLS handshake verifying the
 * server's certificate for 127.0.0.1. On error c needs no close. */
int tl_test_client_connect(tl_test_client_t *c, int port, const tl_test_client_opts_t *o);
/* Closes (a TLS close_notify first when possible) and frees everything. Idempotent. */
void tl_test_client_close(tl_test_client_t *c);

/* Sends all len bytes. TL_TEST_ETIMEOUT when the server stops taking them for timeout_ms
 * (bytes_sent says how far it got). */
int tl_test_client_send(tl_test_client_t *c, const void *data, size_t len);
int tl_test_client_send_str(tl_test_client_t *c, const char *s);
/* Sends in pieces of `piece` bytes with delay_ms between them (a slow client). */
int tl_test_client_send_slowly(tl_test_client_t *c, const void *data, size_t len, size_t piece,
                               int delay_ms);

/* Reads one response. TL_TEST_ECLOSED when the connection ended before a whole one. */
int tl_test_client_read_response(tl_test_client_t *c, tl_test_response_t *r);
/* Waits up to timeout_ms for the server to close: 0 when it closed and sent nothing more,
 * TL_TEST_EDATA when bytes came instead, TL_TEST_ETIMEOUT when it is still open. */
int tl_test_client_wait_closed(tl_test_client_t *c, int timeout_ms);
/* 1 when bytes or a close are waiting to be read right now, else 0. */
int tl_test_client_readable(tl_test_client_t *c);
/* The negotiated protocol ("TLSv1.3"), or "plain". */
const char *tl_test_client_version(const tl_test_client_t *c);

/* Copies the value of header `name` (any case) into out; 1 when present, else 0. */
int tl_test_response_header(const tl_test_response_t *r, const char *name, char *out,
                            size_t outlen);
void tl_test_response_free(tl_test_response_t *r);

/* One request on a fresh connection: GET path, read the answer, close. */
int tl_test_get(int port, const char *cafile, const char *path, tl_test_response_t *r);

/* A name for a TL_TEST_E* code, for failure messages. */
const char *tl_test_strerror(int code);

#endif
