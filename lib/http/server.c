/* The HTTP/1.1 server of server.h: accept, per-connection state machine, exchanges, answers,
 * timers, back-pressure and graceful shutdown. */
#include "http/server.h"

#include "base/log.h"
#include "net/listen.h"
#include "net/stream.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Stop reading while this much of our answers waits for the client (slow reader). */
#define WRITE_HIGH_WATER (256 * 1024)
/* Stop reading while this much pipelined input waits behind a request in progress. */
#define INPUT_HIGH_WATER (64 * 1024)
/* An ending connection whose client does not take its last bytes is cut after this. */
#define LINGER_MS 5000

typedef enum {
  CONN_FIRST = 0, /* new connection: handshake and first head, under header_timeout */
  CONN_IDLE,      /* keep-alive, waiting for a request's first byte, under idle_timeout */
  CONN_HEAD,      /* reading a request head, under header_timeout */
  CONN_BODY,      /* reading a request body, under body_timeout */
  CONN_HANDLING,  /* a complete request is with its handler; no timer */
  CONN_ENDING,    /* last answer queued: flushing, then close; under the linger timer */
  CONN_CLOSING    /* handles closing; freed when both callbacks ran */
} conn_state_t;

typedef struct conn_s conn_t;

struct tl_http_exchange_s {
  conn_t *conn;          /* NULL once the connection is gone */
  int refs;              /* the connection's reference plus the handler's holds */
  int replied;
  int streaming;         /* tl_http_stream_start() was called */
  int route;             /* route index, -1 when none matched */
  const char *route_name;
  const char *method;
  uint64_t conn_id;
  uint64_t started;      /* uv_hrtime() at request completion */
  const char *path;      /* into the request target */
  size_t pathlen;
  const char *query;     /* after '?', or NULL */
  size_t querylen;
  tl_route_match_t match;
};

struct conn_s {
  tl_stream_t stream;
  uv_timer_t timer;
  tl_http_server_t *server;
  uint64_t id;
  conn_state_t state;
  int handles_open;      /* stream + timer: freed when it reaches 0 */
  int close_after;       /* end after the current answer */
  int processing;        /* inside conn_process (guards re-entry from a synchronous reply) */
  tl_http_parser_t parser;
  tl_buf_t in;           /* plaintext not yet parsed */
  tl_http_exchange_t *x; /* the request with its handler, or NULL */
  char peer[48];         /* the client's address, for rate limits (never logged with data) */
  conn_t *prev, *next;
};

struct tl_http_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t deadline;   /* shutdown's force-close timer */
  tl_http_server_opts_t opts;
  conn_t *conns;
  size_t nconns;
  uint64_t next_id;
  int listening;
  int draining;
  int handles_open;      /* listener + deadline */
  void (*done)(void *);
  void *done_arg;
};

static void conn_process(conn_t *c);
static void conn_end(conn_t *c);

/* ---------- answers ---------- */

const char *tl_http_status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

int tl_http_json_string(tl_buf_t *out, const char *s) {
  int rc = tl_buf_append(out, "\"", 1);
  const char *run = s;
  for (const char *p = s; rc == 0; p++) { /* runs of plain bytes go in at once */
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    rc = tl_buf_append(out, run, (size_t)(p - run));
    if (c == 0 || rc != 0) break;
    rc = c < 0x20 ? tl_buf_appendf(out, "\\u%04x", c) : tl_buf_appendf(out, "\\%c", c);
    run = p + 1;
  }
  return rc ? rc : tl_buf_append(out, "\"", 1);
}

static void exchange_free(tl_http_exchange_t *x) { free(x); }

void tl_http_exchange_hold(tl_http_exchange_t *x) { x->refs++; }

void tl_http_exchange_release(tl_http_exchange_t *x) {
  if (--x->refs == 0) exchange_free(x);
}

int tl_http_exchange_alive(const tl_http_exchange_t *x) { return x->conn != NULL; }

uint64_t tl_http_exchange_conn_id(const tl_http_exchange_t *x) { return x->conn_id; }

const char *tl_http_exchange_peer(const tl_http_exchange_t *x) { return x->conn ? x->conn->peer : ""; }

tl_tls_peer_t tl_http_exchange_client_cert(const tl_http_exchange_t *x, char *cn, size_t cnlen) {
  if (cnlen > 0) cn[0] = '\0';
  if (x->conn == NULL || !x->conn->stream.use_tls) return TL_TLS_PEER_NONE;
  return tl_tls_peer(&x->conn->stream.tls, cn, cnlen);
}

const tl_http_request_t *tl_http_exchange_request(const tl_http_exchange_t *x) {
  return x->conn ? &x->conn->parser.req : NULL;
}

const char *tl_http_exchange_path(const tl_http_exchange_t *x, size_t *len) {
  *len = x->pathlen;
  return x->path;
}

const char *tl_http_exchange_param(const tl_http_exchange_t *x, int i, size_t *len) {
  if (i < 0 || i >= x->match.nparams) return NULL;
  *len = x->match.params[i].len;
  return x->match.params[i].at;
}

static int hexdigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int tl_http_exchange_query(const tl_http_exchange_t *x, const char *name, char *out,
                           size_t outlen) {
  if (x->query == NULL) return -1;
  size_t nlen = strlen(name);
  const char *p = x->query, *end = x->query + x->querylen;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pend = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pend - p));
    const char *kend = eq ? eq : pend;
    if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
      size_t n = 0;
      for (const char *v = eq ? eq + 1 : pend; v < pend; v++) {
        char ch = *v;
        if (ch == '+') {
          ch = ' ';
        } else if (ch == '%') {
          if (pend - v < 3 || hexdigit(v[1]) < 0 || hexdigit(v[2]) < 0) return -2;
          ch = (char)(hexdigit(v[1]) << 4 | hexdigit(v[2]));
          v += 2;
        }
        if (n + 1 >= outlen || ch == '\0') return -2;
        out[n++] = ch;
      }
      out[n] = '\0';
      return (int)n;
    }
    p = pend + 1;
  }
  return -1;
}

static void timer_set(conn_t *c, int ms);

/* The one place a connection changes state (pgbouncer's rule); arms the matching timer. */
static void conn_set_state(conn_t *c, conn_state_t next) {
  const tl_http_server_opts_t *o = &c->server->opts;
  c->state = next;
  switch (next) {
  case CONN_FIRST: timer_set(c, o->header_timeout_ms); break;
  case CONN_IDLE: timer_set(c, o->idle_timeout_ms); break;
  case CONN_HEAD: timer_set(c, o->header_timeout_ms); break;
  case CONN_BODY: timer_set(c, o->body_timeout_ms); break;
  case CONN_HANDLING: uv_timer_stop(&c->timer); break;
  case CONN_ENDING: timer_set(c, LINGER_MS); break;
  case CONN_CLOSING: uv_timer_stop(&c->timer); break;
  default:
    tl_log(TL_LOG_ERROR, "bug", "where=conn_set_state state=%d", (int)next);
    abort();
  }
}

static int want_reading(const conn_t *c) {
  if (c->state == CONN_ENDING || c->state == CONN_CLOSING) return 0;
  if (c->stream.write_queued > WRITE_HIGH_WATER) return 0;
  if (c->state == CONN_HANDLING && c->in.len > INPUT_HIGH_WATER) return 0;
  return 1;
}

static void conn_update_reading(conn_t *c) {
  if (want_reading(c))
    tl_stream_resume(&c->stream);
  else
    tl_stream_pause(&c->stream);
}

void tl_http_reply(tl_http_exchange_t *x, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len) {
  if (x->replied) {
    tl_log(TL_LOG_ERROR, "bug", "where=tl_http_reply route=%s double_reply=1", x->route_name);
    return;
  }
  x->replied = 1;
  double secs = (double)(uv_hrtime() - x->started) / 1e9;
  conn_t *c = x->conn;
  if (c && c->server->opts.metrics) tl_metrics_observe(c->server->opts.metrics, x->route, status, secs);
  tl_log(TL_LOG_INFO, "access", "conn=%llu method=%s route=%s status=%d dur_ms=%.3f%s",
         (unsigned long long)x->conn_id, x->method, x->route_name, status, secs * 1000.0,
         c ? "" : " client_gone=1");
  if (c == NULL) return;
  int close = c->close_after || status == 400 || status == 408 || status == 413 ||
              status == 414 || status == 431;
  if (close) c->close_after = 1;
  tl_buf_t out;
  tl_buf_init(&out);
  int head_only = x->method && strcmp(x->method, "HEAD") == 0;
  int rc = tl_buf_appendf(&out,
                          "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
                          status, tl_http_status_text(status), content_type, len,
                          extra_headers ? extra_headers : "", close ? "Connection: close\r\n" : "");
  if (rc == 0 && !head_only) rc = tl_buf_append(&out, body, len);
  if (rc == 0) rc = tl_stream_write(&c->stream, out.data, out.len);
  tl_buf_dispose(&out);
  if (rc != 0) c->close_after = 1;
  c->x = NULL;
  x->conn = NULL;
  tl_http_exchange_release(x);
  if (c->close_after) {
    conn_end(c);
    return;
  }
  tl_http_parser_next(&c->parser);
  conn_set_state(c, CONN_IDLE);
  conn_update_reading(c);
  conn_process(c);
}

int tl_http_stream_start(tl_http_exchange_t *x, const char *content_type,
                         const char *extra_headers) {
  conn_t *c = x->conn;
  if (x->replied || c == NULL) return TL_ECLOSED;
  x->replied = 1;
  x->streaming = 1;
  c->close_after = 1;
  tl_buf_t out;
  tl_buf_init(&out);
  int rc = tl_buf_appendf(&out,
                          "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
                          "X-Content-Type-Options: nosniff\r\n%sConnection: close\r\n\r\n",
                          content_type, extra_headers ? extra_headers : "");
  if (rc == 0) rc = tl_stream_write(&c->stream, out.data, out.len);
  tl_buf_dispose(&out);
  return rc;
}

int tl_http_stream_write(tl_http_exchange_t *x, const char *data, size_t len) {
  conn_t *c = x->conn;
  if (c == NULL || !x->streaming || c->state != CONN_HANDLING) return TL_ECLOSED;
  /* A client that does not read its stream is dropped rather than buffered without bound. */
  if (c->stream.write_queued > WRITE_HIGH_WATER) return TL_EBUSY;
  return tl_stream_write(&c->stream, data, len);
}

void tl_http_stream_end(tl_http_exchange_t *x) {
  if (!x->streaming) return;
  x->streaming = 0;
  double secs = (double)(uv_hrtime() - x->started) / 1e9;
  conn_t *c = x->conn;
  if (c && c->server->opts.metrics) tl_metrics_observe(c->server->opts.metrics, x->route, 200, secs);
  tl_log(TL_LOG_INFO, "access", "conn=%llu method=%s route=%s status=200 dur_ms=%.3f stream=1%s",
         (unsigned long long)x->conn_id, x->method, x->route_name, secs * 1000.0,
         c ? "" : " client_gone=1");
  if (c == NULL) return;
  c->x = NULL;
  x->conn = NULL;
  tl_http_exchange_release(x);
  conn_end(c);
}

void tl_http_reply_error(tl_http_exchange_t *x, int status, const char *code,
                         const char *message) {
  tl_buf_t b;
  tl_buf_init(&b);
  int rc = tl_buf_append(&b, "{\"error\":{\"code\":", 17);
  if (rc == 0) rc = tl_http_json_string(&b, code);
  if (rc == 0) rc = tl_buf_append(&b, ",\"message\":", 11);
  if (rc == 0) rc = tl_http_json_string(&b, message);
  if (rc == 0) rc = tl_buf_append(&b, "}}\n", 3);
  const char *extra = status == 503 ? "Retry-After: 1\r\n" : "";
  if (rc == 0)
    tl_http_reply(x, status, "application/json", extra, b.data, b.len);
  else
    tl_http_reply(x, 500, "application/json", "", "", 0);
  tl_buf_dispose(&b);
}

/* ---------- requests ---------- */

static tl_http_exchange_t *exchange_new(conn_t *c, const char *method) {
  tl_http_exchange_t *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  x->conn = c;
  x->refs = 1;
  x->route = -1;
  x->route_name = "unmatched";
  x->method = method ? method : "-";
  x->conn_id = c->id;
  x->started = uv_hrtime();
  c->x = x;
  return x;
}

/* Answers a request that never reached a handler (parse error, timeout) and closes. */
static void conn_refuse(conn_t *c, int status, const char *code, const char *message) {
  c->close_after = 1;
  conn_set_state(c, CONN_HANDLING);
  tl_http_exchange_t *x = exchange_new(c, NULL);
  if (x == NULL) {
    conn_end(c);
    return;
  }
  tl_http_reply_error(x, status, code, message);
}

static void conn_dispatch(conn_t *c) {
  tl_http_server_t *s = c->server;
  tl_http_request_t *req = &c->parser.req;
  conn_set_state(c, CONN_HANDLING);
  if (!req->keep_alive || s->draining) c->close_after = 1;
  tl_http_exchange_t *x = exchange_new(c, req->method_name);
  if (x == NULL) {
    conn_end(c);
    return;
  }
  const char *target = tl_buf_cstr(&req->target);
  const char *q = strchr(target, '?');
  x->path = target;
  x->pathlen = q ? (size_t)(q - target) : req->target.len;
  x->query = q ? q + 1 : NULL;
  x->querylen = q ? req->target.len - x->pathlen - 1 : 0;
  if (x->path[0] != '/') {
    tl_http_reply_error(x, 400, "bad_request", "The request target must be a path.");
    return;
  }
  const tl_router_t *r = s->opts.router;
  tl_router_match(r, req->method_name, x->path, x->pathlen, &x->match);
  if (x->match.status == 404) {
    tl_http_reply_error(x, 404, "not_found", "There is no such resource.");
    return;
  }
  if (x->match.status == 405) {
    x->route = x->match.route;
    x->route_name = r->routes[x->match.route].pattern;
    char allow[64];
    snprintf(allow, sizeof allow, "Allow: %s\r\n", x->match.allow);
    static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\",\"message\":"
                               "\"This resource does not answer that method.\"}}\n";
    tl_http_reply(x, 405, "application/json", allow, body, sizeof body - 1);
    return;
  }
  const tl_route_t *route = &r->routes[x->match.route];
  x->route = x->match.route;
  x->route_name = route->pattern;
  route->handler(x, route->ctx);
}

/* Parses what is buffered and dispatches complete requests, one at a time. */
static void conn_process(conn_t *c) {
  if (c->processing) return;
  c->processing = 1;
  while (c->in.len > 0 && (c->state == CONN_FIRST || c->state == CONN_IDLE ||
                           c->state == CONN_HEAD || c->state == CONN_BODY)) {
    if (c->stream.write_queued > WRITE_HIGH_WATER) break; /* drain_cb resumes */
    size_t used = tl_http_parser_feed(&c->parser, c->in.data, c->in.len);
    tl_buf_consume(&c->in, used);
    switch (c->parser.state) {
    case TL_HTTP_PARSE_IDLE: break;
    case TL_HTTP_PARSE_HEAD:
      if (c->state == CONN_IDLE) conn_set_state(c, CONN_HEAD);
      break;
    case TL_HTTP_PARSE_BODY:
      if (c->state != CONN_BODY) {
        conn_set_state(c, CONN_BODY);
        /* A client that asks before sending its body gets the go-ahead (RFC 9110 §10.1.1);
         * a body too large was already refused from the head. */
        size_t n = 0;
        const char *expect = tl_http_request_header(&c->parser.req, "expect", &n);
        if (expect && n == 12 && strncasecmp(expect, "100-continue", 12) == 0 && c->in.len == 0 &&
            tl_stream_write(&c->stream, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
          c->close_after = 1;
      }
      break;
    case TL_HTTP_PARSE_COMPLETE: conn_dispatch(c); break;
    case TL_HTTP_PARSE_ERROR:
      c->in.len = 0;
      conn_refuse(c, c->parser.status, c->parser.code, c->parser.message);
      break;
    }
    if (used == 0 && c->parser.state != TL_HTTP_PARSE_COMPLETE) break;
  }
  c->processing = 0;
  if (c->state != CONN_CLOSING && c->state != CONN_ENDING) {
    if (c->stream.eof && c->state != CONN_HANDLING) {
      /* The client finished sending and nothing is left to answer. */
      conn_end(c);
      return;
    }
    conn_update_reading(c);
  }
}

/* ---------- connection lifetime ---------- */

static void server_handle_closed(uv_handle_t *h);

static void server_close_deadline(tl_http_server_t *s) {
  if (!uv_is_closing((uv_handle_t *)&s->deadline))
    uv_close((uv_handle_t *)&s->deadline, server_handle_closed);
}

static void conn_free(conn_t *c) {
  tl_http_server_t *s = c->server;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  tl_http_parser_dispose(&c->parser);
  tl_buf_dispose(&c->in);
  free(c);
  if (s->draining && s->nconns == 0) server_close_deadline(s);
}

static void conn_handle_closed(conn_t *c) {
  if (--c->handles_open == 0) conn_free(c);
}

static void on_timer_closed(uv_handle_t *h) { conn_handle_closed(h->data); }

/* Immediate close of both handles (each only once, whichever path got here first); a request
 * still with its handler is orphaned. */
static void conn_close(conn_t *c) {
  if (c->state == CONN_CLOSING) return;
  conn_set_state(c, CONN_CLOSING);
  if (c->x) {
    c->x->conn = NULL; /* its handler's reply will be dropped */
    tl_http_exchange_release(c->x);
    c->x = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&c->timer))
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  tl_stream_close(&c->stream); /* no-op when the stream is closing already */
}

/* The stream closed (after a graceful end, or on its own): close the rest. */
static void on_stream_closed(tl_stream_t *st) {
  conn_t *c = st->data;
  conn_close(c);
  conn_handle_closed(c);
}

/* Graceful close after the queued answer is flushed. */
static void conn_end(conn_t *c) {
  if (c->state == CONN_ENDING || c->state == CONN_CLOSING) return;
  conn_set_state(c, CONN_ENDING);
  tl_stream_end(&c->stream);
}

static void on_stream_read(tl_stream_t *st, const char *data, size_t len) {
  conn_t *c = st->data;
  if (c->state == CONN_ENDING || c->state == CONN_CLOSING) return;
  if (tl_buf_append(&c->in, data, len) != 0) {
    conn_close(c);
    return;
  }
  conn_process(c);
}

static void on_stream_error(tl_stream_t *st, int code) {
  conn_t *c = st->data;
  if (code == UV_EOF && c->x && c->x->streaming) {
    conn_close(c); /* a stream's client hung up: nobody reads what follows */
    return;
  }
  if (code == UV_EOF && c->state != CONN_CLOSING) {
    /* Half-close: answer what is complete, then end. */
    if (c->state == CONN_HANDLING || c->in.len > 0) {
      c->close_after = 1;
      conn_process(c);
      return;
    }
    conn_end(c);
    return;
  }
  tl_log(TL_LOG_DEBUG, "conn_error", "conn=%llu error=%s", (unsigned long long)c->id,
         tl_strerror(code));
  conn_close(c);
}

static void on_stream_drain(tl_stream_t *st) {
  conn_t *c = st->data;
  if (c->state == CONN_ENDING || c->state == CONN_CLOSING) return;
  conn_update_reading(c);
  conn_process(c);
}

static void on_conn_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  switch (c->state) {
  case CONN_FIRST:
  case CONN_IDLE:
    if (c->in.len > 0 || c->stream.write_queued > 0) {
      /* Answers wait for a client that stopped reading: give up on it, visibly. */
      tl_log(TL_LOG_WARN, "conn_stalled", "conn=%llu queued=%zu pipelined=%zu",
             (unsigned long long)c->id, c->stream.write_queued, c->in.len);
      conn_close(c);
      return;
    }
    /* Nothing was asked: close without an answer. */
    if (c->parser.state == TL_HTTP_PARSE_IDLE) {
      conn_end(c);
      return;
    }
    conn_refuse(c, 408, "request_timeout", "The request took too long to arrive.");
    return;
  case CONN_HEAD:
  case CONN_BODY:
    conn_refuse(c, 408, "request_timeout", "The request took too long to arrive.");
    return;
  case CONN_ENDING: conn_close(c); return;
  case CONN_HANDLING:
  case CONN_CLOSING: return;
  }
}

static void timer_set(conn_t *c, int ms) {
  if (ms <= 0) {
    uv_timer_stop(&c->timer);
    return;
  }
  uv_timer_start(&c->timer, on_conn_timer, (uint64_t)ms, 0);
}

static void on_connection(uv_stream_t *listener, int status) {
  tl_http_server_t *s = listener->data;
  if (status < 0) {
    tl_log(TL_LOG_WARN, "accept_failed", "error=%s", uv_strerror(status));
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  c->server = s;
  c->id = ++s->next_id;
  c->stream.data = c;
  c->stream.read_cb = on_stream_read;
  c->stream.error_cb = on_stream_error;
  c->stream.drain_cb = on_stream_drain;
  c->stream.close_cb = on_stream_closed;
  tl_http_parser_init(&c->parser);
  tl_buf_init(&c->in);
  int rc = tl_stream_accept(&c->stream, listener, s->opts.tls);
  if (rc != 0 && c->stream.state == TL_STREAM_CLOSED) {
    tl_http_parser_dispose(&c->parser);
    free(c);
    return;
  }
  /* From here the connection is listed and freed by conn_free. */
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  c->handles_open = 2;
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  if (rc != 0) {
    c->state = CONN_CLOSING; /* the stream is already closing */
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    return;
  }
  struct sockaddr_storage peer;
  int plen = sizeof peer;
  if (uv_tcp_getpeername(&c->stream.tcp, (struct sockaddr *)&peer, &plen) == 0) {
    if (peer.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&peer, c->peer, sizeof c->peer);
    else
      uv_ip4_name((struct sockaddr_in *)&peer, c->peer, sizeof c->peer);
  }
  if (s->nconns > (size_t)s->opts.max_connections || s->draining) {
    tl_log(TL_LOG_WARN, "conn_refused", "reason=max_connections open=%zu", s->nconns);
    conn_close(c);
    return;
  }
  conn_set_state(c, CONN_FIRST);
}

/* ---------- server ---------- */

int tl_http_server_new(tl_http_server_t **out, uv_loop_t *loop,
                       const tl_http_server_opts_t *opts) {
  tl_http_server_t *s = calloc(1, sizeof *s);
  if (s == NULL) return TL_ENOMEM;
  s->loop = loop;
  s->opts = *opts;
  if (s->opts.max_connections <= 0) s->opts.max_connections = 20000;
  *out = s;
  return 0;
}

int tl_http_server_listen(tl_http_server_t *s, const char *host, int port) {
  struct sockaddr_storage addr;
  int rc = tl_net_addr(host, port, &addr);
  if (rc != 0) return rc;
  rc = uv_tcp_init(s->loop, &s->listener);
  if (rc != 0) return rc;
  s->listener.data = s;
  s->listening = 1;
  s->handles_open = 1;
  if (s->opts.reuseport) {
    int fd = tl_net_bind_reuseport(&addr);
    rc = fd < 0 ? fd : uv_tcp_open(&s->listener, fd);
    if (fd >= 0 && rc != 0) close(fd);
  } else {
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  }
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
  return rc; /* on error the caller shuts the server down, which closes the listener */
}

int tl_http_server_port(const tl_http_server_t *s) {
  struct sockaddr_storage addr;
  int len = sizeof addr;
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&addr, &len) != 0) return -1;
  if (addr.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
  return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

size_t tl_http_server_connections(const tl_http_server_t *s) { return s->nconns; }

static void server_handle_closed(uv_handle_t *h) {
  tl_http_server_t *s = h->data;
  if (h == (uv_handle_t *)&s->listener) s->listening = 0;
  s->handles_open--;
  if (s->handles_open == 0 && s->nconns == 0 && s->done) {
    void (*done)(void *) = s->done;
    s->done = NULL;
    done(s->done_arg);
  }
}

static void on_deadline(uv_timer_t *t) {
  tl_http_server_t *s = t->data;
  tl_log(TL_LOG_WARN, "shutdown_deadline", "connections=%zu", s->nconns);
  for (conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    conn_close(c);
  }
}

void tl_http_server_shutdown(tl_http_server_t *s, int timeout_ms, void (*done)(void *), void *arg) {
  if (s->draining) return;
  s->draining = 1;
  s->done = done;
  s->done_arg = arg;
  uv_timer_init(s->loop, &s->deadline);
  s->deadline.data = s;
  s->handles_open++;
  if (s->listening) uv_close((uv_handle_t *)&s->listener, server_handle_closed);
  for (conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    if ((c->state == CONN_FIRST || c->state == CONN_IDLE) && c->parser.state == TL_HTTP_PARSE_IDLE)
      conn_end(c);
    else
      c->close_after = 1; /* answer what is in progress, then close */
  }
  if (s->nconns == 0)
    server_close_deadline(s);
  else
    uv_timer_start(&s->deadline, on_deadline, (uint64_t)(timeout_ms > 0 ? timeout_ms : 1), 0);
}

void tl_http_server_free(tl_http_server_t *s) { free(s); }
