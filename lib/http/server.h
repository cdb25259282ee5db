/* The HTTP/1.1 server: listener, connections and exchanges (one request and its answer).
 *
 * A connection reads plaintext from its tl_stream_t, parses one request at a time, and hands
 * it to the route's handler as a tl_http_exchange_t. Pipelined requests wait in the input
 * buffer until the previous answer is queued, so answers leave in request order. Reading
 * stops while the answer queue is large or too many pipelined bytes wait.
 *
 * Handler contract: call one of the tl_http_reply* functions exactly once, now or later. To
 * answer later (after a database round trip), call tl_http_exchange_hold() first and
 * tl_http_exchange_release() when done; if the client hung up meanwhile,
 * tl_http_exchange_alive() is false and the reply is dropped (it is still counted). The
 * request (tl_http_exchange_request, params, query) is valid until the reply or until the
 * exchange stops being alive — copy what an async step needs.
 *
 * Timers: a new connection must send a complete head within header_timeout (this also bounds
 * the TLS handshake); after that, a keep-alive connection may idle for idle_timeout; a started
 * head must complete within header_timeout and a body within body_timeout, or 408. */
#ifndef TL_HTTP_SERVER_H
#define TL_HTTP_SERVER_H

#include "base/err.h"
#include "http/parser.h"
#include "http/router.h"
#include "metrics/metrics.h"
#include "net/tls.h"

#include <uv.h>

typedef struct tl_http_server_s tl_http_server_t;
typedef struct tl_http_exchange_s tl_http_exchange_t;

typedef struct {
  const tl_router_t *router; /* borrowed */
  tl_metrics_t *metrics;     /* borrowed, may be NULL */
  tl_tls_ctx_t *tls;         /* borrowed, NULL = plain HTTP */
  int header_timeout_ms;
  int body_timeout_ms;
  int idle_timeout_ms;
  int max_connections;
  int reuseport;             /* listen with SO_REUSEPORT: one of several processes on the port */
} tl_http_server_opts_t;

TL_WUR int tl_http_server_new(tl_http_server_t **out, uv_loop_t *loop,
                              const tl_http_server_opts_t *opts);
/* Binds and listens. port 0 picks a free port (see tl_http_server_port). */
TL_WUR int tl_http_server_listen(tl_http_server_t *s, const char *host, int port);
int tl_http_server_port(const tl_http_server_t *s);
size_t tl_http_server_connections(const tl_http_server_t *s);

/* Graceful stop: close the listener, close idle connections, let requests in progress (also
 * half-received ones) finish with "Connection: close", force-close whatever remains after
 * timeout_ms. done(arg) runs once every handle is closed; then call tl_http_server_free(). */
void tl_http_server_shutdown(tl_http_server_t *s, int timeout_ms, void (*done)(void *), void *arg);
void tl_http_server_free(tl_http_server_t *s);

/* --- for handlers --- */
const tl_http_request_t *tl_http_exchange_request(const tl_http_exchange_t *x);
/* Path without the query string. */
const char *tl_http_exchange_path(const tl_http_exchange_t *x, size_t *len);
/* Route parameter i ({...} segment), or NULL. */
const char *tl_http_exchange_param(const tl_http_exchange_t *x, int i, size_t *len);
/* Query parameter `name`, %-decoded into out. Returns its length, -1 when absent, -2 when
 * malformed or longer than outlen-1. */
int tl_http_exchange_query(const tl_http_exchange_t *x, const char *name, char *out,
                           size_t outlen);
uint64_t tl_http_exchange_conn_id(const tl_http_exchange_t *x);
/* The client's address as text ("127.0.0.1", "::1"), or "" when unknown. */
const char *tl_http_exchange_peer(const tl_http_exchange_t *x);
/* The connection's client certificate (plain HTTP, a dead exchange: none) and its subject
 * CN, copied into cn (see tl_tls_peer). */
tl_tls_peer_t tl_http_exchange_client_cert(const tl_http_exchange_t *x, char *cn, size_t cnlen);
void tl_http_exchange_hold(tl_http_exchange_t *x);
void tl_http_exchange_release(tl_http_exchange_t *x);
int tl_http_exchange_alive(const tl_http_exchange_t *x);

/* Answers. extra_headers is "" or complete lines ("Retry-After: 1\r\n"). */
void tl_http_reply(tl_http_exchange_t *x, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len);
/* {"error":{"code":CODE,"message":MESSAGE}} with the status. */
void tl_http_reply_error(tl_http_exchange_t *x, int status, const char *code,
                         const char *message);

/* Streamed answers (Server-Sent Events): the head goes out without Content-Length and the
 * connection closes when the stream ends. While streaming, the exchange counts as answered
 * (no tl_http_reply); the client hanging up makes tl_http_exchange_alive() false and writes
 * return TL_ECLOSED. tl_http_stream_end() logs and counts the request and ends the connection;
 * call it exactly once (also for a dead exchange), then release any hold. */
TL_WUR int tl_http_stream_start(tl_http_exchange_t *x, const char *content_type,
                                const char *extra_headers);
TL_WUR int tl_http_stream_write(tl_http_exchange_t *x, const char *data, size_t len);
void tl_http_stream_end(tl_http_exchange_t *x);

/* Appends s as a JSON string literal (quotes included). */
TL_WUR int tl_http_json_string(tl_buf_t *out, const char *s);
const char *tl_http_status_text(int status);

#endif
