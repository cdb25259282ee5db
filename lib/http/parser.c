/* The strict HTTP request parser of parser.h, on llhttp's callbacks. */
#include "http/parser.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

static size_t execute_once(tl_http_parser_t *p, const char *data, size_t len);

static tl_http_parser_t *self(llhttp_t *l) { return l->data; }

static int refuse(tl_http_parser_t *p, int status, const char *code, const char *message) {
  p->status = status;
  p->code = code;
  p->message = message;
  return -1; /* llhttp stops with HPE_USER-like callback error */
}

static int oom(tl_http_parser_t *p) {
  return refuse(p, 500, "internal", "The server ran out of memory.");
}

static int on_message_begin(llhttp_t *l) {
  tl_http_parser_t *p = self(l);
  p->state = TL_HTTP_PARSE_HEAD;
  return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t len) {
  tl_http_parser_t *p = self(l);
  if (p->req.target.len + len > TL_HTTP_MAX_TARGET)
    return refuse(p, 414, "uri_too_long", "The request target is longer than 2 KiB.");
  return tl_buf_append(&p->req.target, at, len) == 0 ? 0 : oom(p);
}

static int count_header_bytes(tl_http_parser_t *p, size_t len) {
  p->line_bytes += len;
  p->header_bytes += len;
  if (p->line_bytes > TL_HTTP_MAX_HEADER_LINE)
    return refuse(p, 431, "header_too_large", "A header line is longer than 4 KiB.");
  if (p->header_bytes > TL_HTTP_MAX_HEADERS_BYTES)
    return refuse(p, 431, "headers_too_large", "The headers are larger than 16 KiB.");
  return 0;
}

static int on_header_field(llhttp_t *l, const char *at, size_t len) {
  tl_http_parser_t *p = self(l);
  if (count_header_bytes(p, len) != 0) return -1;
  if (p->in_value || p->req.nheaders == 0 ||
      p->req.headers[p->req.nheaders - 1].value_off != UINT32_MAX) {
    /* A new header begins. */
    if (p->req.nheaders == TL_HTTP_MAX_HEADERS)
      return refuse(p, 431, "too_many_headers", "More than 48 headers.");
    tl_http_header_t *h = &p->req.headers[p->req.nheaders++];
    h->name_off = (uint32_t)p->req.hbuf.len;
    h->name_len = 0;
    h->value_off = UINT32_MAX; /* no value yet */
    h->value_len = 0;
    p->in_value = 0;
  }
  tl_http_header_t *h = &p->req.headers[p->req.nheaders - 1];
  if (tl_buf_append(&p->req.hbuf, at, len) != 0) return oom(p);
  for (size_t i = 0; i < len; i++) {
    char *c = &p->req.hbuf.data[h->name_off + h->name_len + i];
    *c = (char)tolower((unsigned char)*c);
  }
  h->name_len += (uint32_t)len;
  return 0;
}

/* The byte k positions before at (1 = just before), looking back into the previous feed. */
static char byte_before(const tl_http_parser_t *p, const char *at, size_t k) {
  size_t here = (size_t)(at - p->feed_at);
  if (k <= here) return at[-(ptrdiff_t)k];
  k -= here;
  return k <= 3 ? p->tail[3 - k] : 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len) {
  tl_http_parser_t *p = self(l);
  if (count_header_bytes(p, len) != 0) return -1;
  /* Obsolete line folding (RFC 9112 §5.2): a value span that starts right after CRLF (or
   * after CRLF and a blank) continues the previous line. Refuse it, as the RFC allows, rather
   * than guess how a proxy in front of us joined the lines. */
  {
    int k = byte_before(p, at, 1) == ' ' || byte_before(p, at, 1) == '\t' ? 2 : 1;
    if (p->in_value && byte_before(p, at, (size_t)k) == '\n' && byte_before(p, at, (size_t)k + 1) == '\r')
      return refuse(p, 400, "bad_request", "Folded header lines are not accepted.");
  }
  tl_http_header_t *h = &p->req.headers[p->req.nheaders - 1];
  if (h->value_off == UINT32_MAX) h->value_off = (uint32_t)p->req.hbuf.len;
  p->in_value = 1;
  if (tl_buf_append(&p->req.hbuf, at, len) != 0) return oom(p);
  h->value_len += (uint32_t)len;
  return 0;
}

static int on_header_value_complete(llhttp_t *l) {
  tl_http_parser_t *p = self(l);
  tl_http_header_t *h = &p->req.headers[p->req.nheaders - 1];
  if (h->value_off == UINT32_MAX) h->value_off = (uint32_t)p->req.hbuf.len; /* empty value */

  p->line_bytes = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *l) {
  tl_http_parser_t *p = self(l);
  if ((l->flags & F_CONTENT_LENGTH) && l->content_length > TL_HTTP_MAX_BODY)
    return refuse(p, 413, "body_too_large", "The request body is larger than 1 MiB.");
  if (l->upgrade)
    return refuse(p, 400, "upgrade_unsupported", "Protocol upgrades are not supported.");
  p->req.method = l->method;
  p->req.method_name = llhttp_method_name((llhttp_method_t)l->method);
  p->state = TL_HTTP_PARSE_BODY;
  return 0;
}

static int on_body(llhttp_t *l, const char *at, size_t len) {
  tl_http_parser_t *p = self(l);
  if (p->req.body.len + len > TL_HTTP_MAX_BODY)
    return refuse(p, 413, "body_too_large", "The request body is larger than 1 MiB.");
  return tl_buf_append(&p->req.body, at, len) == 0 ? 0 : oom(p);
}

static int on_message_complete(llhttp_t *l) {
  tl_http_parser_t *p = self(l);
  p->req.keep_alive = llhttp_should_keep_alive(l);
  p->state = TL_HTTP_PARSE_COMPLETE;
  return HPE_PAUSED; /* one request at a time: pipelined bytes wait for next() */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void request_init(tl_http_request_t *r) {
  memset(r, 0, sizeof *r);
  tl_buf_init(&r->target);
  tl_buf_init(&r->hbuf);
  tl_buf_init(&r->body);
}

static void request_clear(tl_http_request_t *r) {
  tl_buf_reset(&r->target);
  tl_buf_reset(&r->hbuf);
  tl_buf_reset(&r->body);
  r->nheaders = 0;
  r->method = 0;
  r->method_name = NULL;
  r->keep_alive = 0;
}

void tl_http_parser_init(tl_http_parser_t *p) {
  memset(p, 0, sizeof *p);
  request_init(&p->req);
  llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
  p->llhttp.data = p;
}

void tl_http_parser_dispose(tl_http_parser_t *p) {
  tl_buf_dispose(&p->req.target);
  tl_buf_dispose(&p->req.hbuf);
  tl_buf_dispose(&p->req.body);
}

static void keep_tail(tl_http_parser_t *p, const char *data, size_t used) {
  for (size_t i = used > 3 ? used - 3 : 0; i < used; i++) {
    p->tail[0] = p->tail[1];
    p->tail[1] = p->tail[2];
    p->tail[2] = data[i];
  }
}

size_t tl_http_parser_feed(tl_http_parser_t *p, const char *data, size_t len) {
  if (p->state == TL_HTTP_PARSE_COMPLETE || p->state == TL_HTTP_PARSE_ERROR || len == 0) return 0;
  p->feed_at = data;
  size_t used = execute_once(p, data, len);
  keep_tail(p, data, used);
  return used;
}

/* One llhttp_execute and its outcome; returns the bytes consumed. */
static size_t execute_once(tl_http_parser_t *p, const char *data, size_t len) {
  llhttp_errno_t e = llhttp_execute(&p->llhttp, data, len);
  if (e == HPE_OK) return len;
  const char *pos = llhttp_get_error_pos(&p->llhttp);
  size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
  if (e == HPE_PAUSED && p->state == TL_HTTP_PARSE_COMPLETE) return used;
  p->state = TL_HTTP_PARSE_ERROR;
  if (p->status == 0) {
    /* llhttp's own refusal: a protocol error in the request. */
    p->status = 400;
    p->code = "bad_request";
    p->message = "The request is not valid HTTP/1.1.";
  }
  return used;
}

void tl_http_parser_next(tl_http_parser_t *p) {
  request_clear(&p->req);
  p->header_bytes = 0;
  p->line_bytes = 0;
  p->in_value = 0;
  p->state = TL_HTTP_PARSE_IDLE;
  llhttp_resume(&p->llhttp);
}

const char *tl_http_request_header(const tl_http_request_t *r, const char *name, size_t *len) {
  size_t n = strlen(name);
  for (int i = 0; i < r->nheaders; i++) {
    const tl_http_header_t *h = &r->headers[i];
    if (h->name_len == n && memcmp(r->hbuf.data + h->name_off, name, n) == 0) {
      if (len) *len = h->value_len;
      return r->hbuf.data + h->value_off;
    }
  }
  return NULL;
}
