/* The HTTP/1.1 request parser: llhttp in strict mode plus tubeloop's limits. Pure, no I/O.
 *
 * Feed bytes with tl_http_parser_feed(); it stops after one complete request
 * (TL_HTTP_PARSE_COMPLETE: the request is in p->req, later bytes are left unconsumed so
 * pipelined requests wait their turn) or at the first error (TL_HTTP_PARSE_ERROR: p->status,
 * p->code and p->message say what to answer; the connection must close afterwards).
 * tl_http_parser_next() makes it ready for the next request on the same connection.
 *
 * Limits (refused with the status in brackets): request target 2 KiB [414], one header line
 * 4 KiB, all headers 16 KiB, 48 headers [431], body 1 MiB [413] — announced Content-Length is
 * refused from the head, before any body byte is read. llhttp's lenient modes are never set:
 * CL together with TE, duplicate Content-Length, bare CR/LF and bad methods are errors [400]. */
#ifndef TL_HTTP_PARSER_H
#define TL_HTTP_PARSER_H

#include "base/buf.h"

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#define TL_HTTP_MAX_TARGET 2048
#define TL_HTTP_MAX_HEADER_LINE 4096
#define TL_HTTP_MAX_HEADERS_BYTES 16384
#define TL_HTTP_MAX_HEADERS 48
#define TL_HTTP_MAX_BODY (1024 * 1024)

typedef struct {
  uint32_t name_off, name_len;   /* name, lower-cased, in hbuf */
  uint32_t value_off, value_len; /* value in hbuf */
} tl_http_header_t;

typedef struct {
  int method;        /* llhttp_method_t */
  const char *method_name;
  tl_buf_t target;   /* request target as sent: path and query */
  tl_buf_t hbuf;     /* header names and values back to back */
  tl_http_header_t headers[TL_HTTP_MAX_HEADERS];
  int nheaders;
  tl_buf_t body;
  int keep_alive;    /* llhttp_should_keep_alive() at completion */
} tl_http_request_t;

typedef enum {
  TL_HTTP_PARSE_IDLE = 0,  /* no byte of the next request yet */
  TL_HTTP_PARSE_HEAD,      /* inside the request line or headers */
  TL_HTTP_PARSE_BODY,      /* head complete, reading the body */
  TL_HTTP_PARSE_COMPLETE,  /* a whole request is in req; call next() before feeding more */
  TL_HTTP_PARSE_ERROR      /* the stream is broken: answer status and close */
} tl_http_parse_state_t;

typedef struct {
  llhttp_t llhttp;
  tl_http_parse_state_t state;
  tl_http_request_t req;
  size_t header_bytes;   /* all header bytes so far */
  size_t line_bytes;     /* bytes of the current header line */
  int in_value;          /* the last header callback was a value */
  const char *feed_at;   /* start of the bytes being fed (to look behind a span) */
  char tail[3];          /* the last bytes fed before them, oldest first */
  int status;            /* on error: HTTP status to answer */
  const char *code;      /* on error: machine code, e.g. "header_too_large" */
  const char *message;   /* on error: one sentence for a person */
} tl_http_parser_t;

void tl_http_parser_init(tl_http_parser_t *p);
void tl_http_parser_dispose(tl_http_parser_t *p);

/* Parses from data; returns the bytes consumed. Look at p->state afterwards. */
size_t tl_http_parser_feed(tl_http_parser_t *p, const char *data, size_t len);

/* After COMPLETE: clears the request and resumes parsing. */
void tl_http_parser_next(tl_http_parser_t *p);

/* The value of a header (name lower-case) or NULL; *len gets its length. */
const char *tl_http_request_header(const tl_http_request_t *r, const char *name, size_t *len);

#endif
