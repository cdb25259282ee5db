/* Fuzz target: the HTTP request parser fed in random chunk splits. The first byte seeds the
 * split sizes; the rest is the byte stream of a connection (several pipelined requests).
 * Invariants: the parser never consumes more than it was given, never makes progress after an
 * error, and every completed request has a method and a target within the limits. */
#include "http/parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned seed = data[0];
  const char *p = (const char *)data + 1;
  size_t left = size - 1;
  tl_http_parser_t parser;
  tl_http_parser_init(&parser);
  int requests = 0;
  while (left > 0 && requests < 64) {
    seed = seed * 1103515245u + 12345u;
    size_t chunk = 1 + (seed >> 16) % 97;
    if (chunk > left) chunk = left;
    size_t used = tl_http_parser_feed(&parser, p, chunk);
    if (used > chunk) abort();
    p += used;
    left -= used;
    if (parser.state == TL_HTTP_PARSE_ERROR) {
      if (parser.status < 400 || parser.status > 599 || parser.code == NULL) abort();
      if (tl_http_parser_feed(&parser, p, left) != 0) abort();
      break;
    }
    if (parser.state == TL_HTTP_PARSE_COMPLETE) {
      if (parser.req.method_name == NULL || parser.req.target.len > TL_HTTP_MAX_TARGET ||
          parser.req.body.len > TL_HTTP_MAX_BODY || parser.req.nheaders > TL_HTTP_MAX_HEADERS)
        abort();
      size_t n;
      (void)tl_http_request_header(&parser.req, "content-type", &n);
      tl_http_parser_next(&parser);
      requests++;
    } else if (used < chunk) {
      abort(); /* neither complete nor an error, yet bytes were left over */
    }
  }
  tl_http_parser_dispose(&parser);
  return 0;
}
