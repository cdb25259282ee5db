/* Unit tests of lib/http/parser: strict HTTP/1.1 parsing and tubeloop's limits, in memory.
 * Every valid case is also fed one byte at a time: what a slow network does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "http/parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  const char *bytes;
  int status; /* 0 = a complete valid request */
  const char *code;
} case_t;

static const case_t cases[] = {
    {"simple get", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL},
    {"content-length body", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 0,
     NULL},
    {"chunked body",
     "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0,
     NULL},
    {"bad method", "GOT / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
    {"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     400, "bad_request"},
    {"duplicate CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     400, "bad_request"},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, "bad_request"},
    {"bare LF line end", "GET / HTTP/1.1\nHost: x\n\n", 400, "bad_request"},
    {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "bad_request"},
    {"negative CL", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"},
    {"TE not chunked last", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
     "bad_request"},
    {"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad_request"},
    {"upgrade", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 400,
     "upgrade_unsupported"},
    {"CL over 1 MiB", "POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413, "body_too_large"},
};

/* Feeds everything at once or byte by byte; returns the final parser state. */
static tl_http_parse_state_t feed(tl_http_parser_t *p, const char *bytes, size_t len, int split) {
  size_t off = 0;
  while (off < len) {
    size_t n = split ? 1 : len - off;
    size_t used = tl_http_parser_feed(p, bytes + off, n);
    if (p->state == TL_HTTP_PARSE_COMPLETE || p->state == TL_HTTP_PARSE_ERROR) break;
    assert_int_equal(used, n);
    off += n;
  }
  return p->state;
}

static void test_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int split = 0; split < 2; split++) {
      tl_http_parser_t p;
      tl_http_parser_init(&p);
      tl_http_parse_state_t st = feed(&p, cases[i].bytes, strlen(cases[i].bytes), split);
      if (cases[i].status == 0) {
        if (st != TL_HTTP_PARSE_COMPLETE) fail_msg("%s (split %d): state %d", cases[i].name, split, st);
      } else {
        if (st != TL_HTTP_PARSE_ERROR || p.status != cases[i].status ||
            strcmp(p.code, cases[i].code) != 0)
          fail_msg("%s (split %d): state %d status %d code %s", cases[i].name, split, st, p.status,
                   p.code ? p.code : "-");
      }
      tl_http_parser_dispose(&p);
    }
  }
}

static void test_request_fields(void **state) {
  (void)state;
  const char req[] = "POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nAUTHORIZATION: Bearer t\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
  tl_http_parser_t p;
  tl_http_parser_init(&p);
  assert_int_equal(feed(&p, req, sizeof req - 1, 1), TL_HTTP_PARSE_COMPLETE);
  assert_string_equal(p.req.method_name, "POST");
  assert_string_equal(tl_buf_cstr(&p.req.target), "/v1/x?a=1");
  size_t len;
  const char *v = tl_http_request_header(&p.req, "authorization", &len);
  assert_non_null(v);
  assert_int_equal(len, 8);
  assert_memory_equal(v, "Bearer t", 8);
  assert_null(tl_http_request_header(&p.req, "cookie", &len));
  assert_int_equal(p.req.body.len, 3);
  assert_memory_equal(p.req.body.data, "abc", 3);
  assert_true(p.req.keep_alive);
  tl_http_parser_dispose(&p);
}

static void test_pipelined_in_order(void **state) {
  (void)state;
  const char two[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n"
                     "Connection: close\r\n\r\n";
  tl_http_parser_t p;
  tl_http_parser_init(&p);
  size_t used = tl_http_parser_feed(&p, two, sizeof two - 1);
  assert_int_equal(p.state, TL_HTTP_PARSE_COMPLETE);
  assert_string_equal(tl_buf_cstr(&p.req.target), "/one");
  assert_true(used < sizeof two - 1); /* the second request waits */
  assert_int_equal(tl_http_parser_feed(&p, two + used, sizeof two - 1 - used), 0);
  tl_http_parser_next(&p);
  size_t used2 = tl_http_parser_feed(&p, two + used, sizeof two - 1 - used);
  assert_int_equal(used + used2, sizeof two - 1);
  assert_int_equal(p.state, TL_HTTP_PARSE_COMPLETE);
  assert_string_equal(tl_buf_cstr(&p.req.target), "/two");
  assert_false(p.req.keep_alive);
  tl_http_parser_dispose(&p);
}

/* Builds "GET /… HTTP/1.1" with the given header block and parses it. */
static tl_http_parser_t *parse_built(const char *target, const char *headers) {
  tl_buf_t b;
  tl_buf_init(&b);
  assert_int_equal(tl_buf_appendf(&b, "GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n", target, headers), 0);
  tl_http_parser_t *p = malloc(sizeof *p);
  tl_http_parser_init(p);
  tl_http_parser_feed(p, b.data, b.len);
  tl_buf_dispose(&b);
  return p;
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

static void expect(tl_http_parser_t *p, int status, const char *code) {
  if (status == 0) {
    assert_int_equal(p->state, TL_HTTP_PARSE_COMPLETE);
  } else {
    assert_int_equal(p->state, TL_HTTP_PARSE_ERROR);
    assert_int_equal(p->status, status);
    assert_string_equal(p->code, code);
  }
  tl_http_parser_dispose(p);
  free(p);
}

static void test_limits(void **state) {
  (void)state;
  char target[4200] = "/";
  char *a = repeat('a', TL_HTTP_MAX_TARGET - 1);
  strcpy(target + 1, a);
  expect(parse_built(target, ""), 0, NULL); /* exactly 2048 */
  strcat(target, "b");
  expect(parse_built(target, ""), 414, "uri_too_long");
  free(a);

  tl_buf_t h;
  tl_buf_init(&h);
  char *v = repeat('v', 4000);
  assert_int_equal(tl_buf_appendf(&h, "X-Long: %s\r\n", v), 0);
  expect(parse_built("/", tl_buf_cstr(&h)), 0, NULL);
  free(v);
  tl_buf_reset(&h);
  v = repeat('v', 4100);
  assert_int_equal(tl_buf_appendf(&h, "X-Long: %s\r\n", v), 0);
  expect(parse_built("/", tl_buf_cstr(&h)), 431, "header_too_large");
  free(v);

  tl_buf_reset(&h); /* 47 + Host = 48 headers: fine; 49: refused */
  for (int i = 0; i < 47; i++) assert_int_equal(tl_buf_appendf(&h, "X-%d: 1\r\n", i), 0);
  expect(parse_built("/", tl_buf_cstr(&h)), 0, NULL);
  assert_int_equal(tl_buf_appendf(&h, "X-last: 1\r\n"), 0);
  expect(parse_built("/", tl_buf_cstr(&h)), 431, "too_many_headers");

  tl_buf_reset(&h); /* 5 lines of 3.5 KiB: each fine, together over 16 KiB */
  v = repeat('v', 3500);
  for (int i = 0; i < 5; i++) assert_int_equal(tl_buf_appendf(&h, "X-%d: %s\r\n", i, v), 0);
  expect(parse_built("/", tl_buf_cstr(&h)), 431, "headers_too_large");
  free(v);
  tl_buf_dispose(&h);
}

static void test_chunked_body_limit(void **state) {
  (void)state;
  tl_http_parser_t p;
  tl_http_parser_init(&p);
  const char head[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  assert_int_equal(tl_http_parser_feed(&p, head, sizeof head - 1), sizeof head - 1);
  assert_int_equal(p.state, TL_HTTP_PARSE_BODY);
  char *chunk = repeat('z', 65536);
  char line[32];
  int i = 0;
  while (p.state == TL_HTTP_PARSE_BODY && i < 40) {
    snprintf(line, sizeof line, "10000\r\n");
    tl_http_parser_feed(&p, line, strlen(line));
    if (p.state != TL_HTTP_PARSE_BODY) break;
    tl_http_parser_feed(&p, chunk, 65536);
    if (p.state != TL_HTTP_PARSE_BODY) break;
    tl_http_parser_feed(&p, "\r\n", 2);
    i++;
  }
  free(chunk);
  assert_int_equal(p.state, TL_HTTP_PARSE_ERROR);
  assert_int_equal(p.status, 413);
  assert_int_equal(i, 16); /* 16 chunks of 64 KiB = 1 MiB accepted, the 17th refused */
  tl_http_parser_dispose(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_request_fields),
      cmocka_unit_test(test_pipelined_in_order),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_chunked_body_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
