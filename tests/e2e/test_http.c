/* End-to-end HTTP/1.1 tests: the real tubeloopd over real TLS, spoken to byte by byte.
 *
 * What a client of the daemon would notice: keep-alive and pipelining work and answers come
 * back in request order; bodies (chunked or Content-Length) are consumed so the connection
 * stays usable; every limit of lib/http/parser.h answers its status and closes, while a
 * request just inside the limit is served; malformed requests get 400 and lose only their
 * own connection; slow or stalled clients get 408 or a quiet close after the configured
 * timeouts; a client that never reads cannot make the daemon's memory grow without bound;
 * /metrics counts what was answered; TLS below 1.2 is refused; --no-tls is loopback only.
 *
 * Groups: "http" shares one daemon with default settings, "timeouts" one with 1 s timeouts;
 * the slow-reader and --no-tls tests start their own. */
#include "support/daemon.h"
#include "support/tlsclient.h"

#include "base/buf.h"

#include <openssl/err.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MIB (1024 * 1024)
#define GET_HEALTHZ "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"

static tl_test_daemon_t main_d;  /* default timeouts: group "http" */
static tl_test_daemon_t short_d; /* 1 s timeouts: group "timeouts" */
static tl_test_daemon_t own_d;   /* a test's own daemon; cleaned up even when it fails */

static int own_teardown(void **state) {
  (void)state;
  tl_test_daemon_cleanup(&own_d);
  return 0;
}

/* ---------- helpers ---------- */

static void open_client(tl_test_client_t *c, const tl_test_daemon_t *d) {
  tl_test_client_opts_t o = tl_test_daemon_client_opts(d);
  int rc = tl_test_client_connect(c, d->port, &o);
  if (rc != 0) fail_msg("connect to the daemon: %s", tl_test_strerror(rc));
}

static void send_all(tl_test_client_t *c, const void *data, size_t len) {
  int rc = tl_test_client_send(c, data, len);
  if (rc != 0) fail_msg("send: %s", tl_test_strerror(rc));
}

static void read_response(tl_test_client_t *c, tl_test_response_t *r) {
  int rc = tl_test_client_read_response(c, r);
  if (rc != 0) fail_msg("reading a response: %s", tl_test_strerror(rc));
}

/* Reads one response and checks its status; frees it. */
static void expect_status(tl_test_client_t *c, int status) {
  tl_test_response_t r;
  read_response(c, &r);
  if (r.status != status) fail_msg("expected %d, got %d: %s", status, r.status, r.body);
  tl_test_response_free(&r);
}

static int has_close(const tl_test_response_t *r) {
  char v[64];
  return tl_test_response_header(r, "Connection", v, sizeof v) && strcmp(v, "close") == 0;
}

/* A refusal: status, the JSON error code, "Connection: close", then the server closes. */
static void expect_refusal(tl_test_client_t *c, int status, const char *code) {
  tl_test_response_t r;
  read_response(c, &r);
  char want[128];
  snprintf(want, sizeof want, "\"code\":\"%s\"", code);
  if (r.status != status || strstr(r.body, want) == NULL)
    fail_msg("expected %d %s, got %d: %s", status, code, r.status, r.body);
  assert_true(has_close(&r));
  tl_test_response_free(&r);
  int rc = tl_test_client_wait_closed(c, 3000);
  if (rc != 0) fail_msg("the connection should close after %d: %s", status, tl_test_strerror(rc));
}

static void put(tl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(tl_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = tl_buf_vappendf(b, fmt, ap);
  va_end(ap);
  assert_int_equal(rc, 0);
}

static void put_repeat(tl_buf_t *b, char ch, size_t n) {
  assert_int_equal(tl_buf_reserve(b, n), 0);
  memset(b->data + b->len, ch, n);
  b->len += n;
}

/* GET /healthz on c answers 200: the connection still works. */
static void expect_usable(tl_test_client_t *c) {
  send_all(c, GET_HEALTHZ, strlen(GET_HEALTHZ));
  expect_status(c, 200);
}

/* One request on a fresh connection of daemon d; returns the status. */
static int status_of(const tl_test_daemon_t *d, const char *bytes, size_t len) {
  tl_test_client_t c;
  open_client(&c, d);
  send_all(&c, bytes, len);
  tl_test_response_t r;
  read_response(&c, &r);
  int status = r.status;
  tl_test_response_free(&r);
  tl_test_client_close(&c);
  return status;
}

/* ---------- group "http": default settings ---------- */

static int http_setup(void **state) {
  (void)state;
  /* /readyz too: the pipelining test needs the database. */
  if (tl_test_daemon_start(&main_d, "e2e-http", NULL) != 0) return -1;
  return tl_test_daemon_wait_ready(&main_d, 10000);
}

static int http_teardown(void **state) {
  (void)state;
  tl_test_daemon_cleanup(&main_d);
  return 0;
}

static void keep_alive_serves_three_requests_on_one_connection(void **state) {
  (void)state;
  tl_test_client_t c;
  open_client(&c, &main_d);
  for (int i = 0; i < 3; i++) {
    send_all(&c, GET_HEALTHZ, strlen(GET_HEALTHZ));
    tl_test_response_t r;
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    assert_false(has_close(&r));
    tl_test_response_free(&r);
  }
  /* Still open: neither closed nor anything unasked for. */
  assert_int_equal(tl_test_client_wait_closed(&c, 200), TL_TEST_ETIMEOUT);
  tl_test_client_close(&c);
}

static void pipelined_requests_are_answered_in_order(void **state) {
  (void)state;
  /* /readyz answers after a database round trip, the other two at once: a server that
   * answered as handlers finish would put /readyz last. */
  static const char reqs[] = "GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                             "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n"
                             "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, reqs, strlen(reqs));
  tl_test_response_t r;
  read_response(&c, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"status\":\"ready\"}");
  tl_test_response_free(&r);
  read_response(&c, &r);
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "\"code\":\"not_found\""));
  tl_test_response_free(&r);
  read_response(&c, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"status\":\"ok\"}");
  tl_test_response_free(&r);
  expect_usable(&c);
  tl_test_client_close(&c);
}

static void expect_405_then_usable(tl_test_client_t *c) {
  tl_test_response_t r;
  read_response(c, &r);
  assert_int_equal(r.status, 405);
  char allow[64];
  assert_true(tl_test_response_header(&r, "Allow", allow, sizeof allow));
  assert_string_equal(allow, "GET");
  assert_false(has_close(&r));
  tl_test_response_free(&r);
  expect_status(c, 200); /* the GET that followed the body */
}

static void chunked_body_is_consumed(void **state) {
  (void)state;
  static const char req[] = "POST /healthz HTTP/1.1\r\nHost: localhost\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" GET_HEALTHZ;
  tl_test_client_t c;
  open_client(&c, &main_d);
  /* In 7-byte pieces: chunk sizes and data split across reads. */
  int rc = tl_test_client_send_slowly(&c, req, strlen(req), 7, 5);
  assert_int_equal(rc, 0);
  expect_405_then_usable(&c);
  tl_test_client_close(&c);
}

static void content_length_body_is_consumed(void **state) {
  (void)state;
  static const char req[] = "POST /healthz HTTP/1.1\r\nHost: localhost\r\n"
                            "Content-Length: 11\r\n\r\nhello world" GET_HEALTHZ;
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, req, strlen(req));
  expect_405_then_usable(&c);
  tl_test_client_close(&c);
}

static void body_of_exactly_one_mib_is_accepted(void **state) {
  (void)state;
  tl_buf_t b;
  tl_buf_init(&b);
  put(&b, "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", MIB);
  put_repeat(&b, 'x', MIB);
  put(&b, GET_HEALTHZ);
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, b.data, b.len);
  expect_405_then_usable(&c);
  tl_test_client_close(&c);
  tl_buf_dispose(&b);
}

static void target_over_2kib_is_414(void **state) {
  (void)state;
  tl_buf_t b;
  tl_buf_init(&b);
  /* Exactly 2048 bytes of target is still served (404: no such path). */
  put(&b, "GET /");
  put_repeat(&b, 'a', 2047);
  put(&b, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_int_equal(status_of(&main_d, b.data, b.len), 404);
  tl_buf_reset(&b);
  put(&b, "GET /");
  put_repeat(&b, 'a', 2048);
  put(&b, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, b.data, b.len);
  expect_refusal(&c, 414, "uri_too_long");
  tl_test_client_close(&c);
  tl_buf_dispose(&b);
}

/* A GET /healthz whose headers are: Host, then n headers "X-Hn: " + value_len bytes. */
static void build_headers(tl_buf_t *b, int n, size_t value_len) {
  tl_buf_reset(b);
  put(b, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
  for (int i = 0; i < n; i++) {
    put(b, "X-H%02d: ", i);
    put_repeat(b, 'v', value_len);
    put(b, "\r\n");
  }
  put(b, "\r\n");
}

static void expect_header_refusal(tl_buf_t *b, const char *code) {
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, b->data, b->len);
  expect_refusal(&c, 431, code);
  tl_test_client_close(&c);
}

static void header_line_over_4kib_is_431(void **state) {
  (void)state;
  tl_buf_t b;
  tl_buf_init(&b);
  build_headers(&b, 1, 4000); /* "X-H00" + 4000: under 4 KiB */
  assert_int_equal(status_of(&main_d, b.data, b.len), 200);
  build_headers(&b, 1, 5000);
  expect_header_refusal(&b, "header_too_large");
  tl_buf_dispose(&b);
}

static void more_than_48_headers_is_431(void **state) {
  (void)state;
  tl_buf_t b;
  tl_buf_init(&b);
  build_headers(&b, 47, 4); /* with Host: 48 headers */
  assert_int_equal(status_of(&main_d, b.data, b.len), 200);
  build_headers(&b, 48, 4); /* 49 */
  expect_header_refusal(&b, "too_many_headers");
  tl_buf_dispose(&b);
}

static void headers_over_16kib_in_total_is_431(void **state) {
  (void)state;
  tl_buf_t b;
  tl_buf_init(&b);
  build_headers(&b, 4, 3500); /* 14 KB, each line under 4 KiB */
  assert_int_equal(status_of(&main_d, b.data, b.len), 200);
  build_headers(&b, 5, 3500); /* 17.5 KB */
  expect_header_refusal(&b, "headers_too_large");
  tl_buf_dispose(&b);
}

static void content_length_of_2mib_is_413_before_the_body(void **state) {
  (void)state;
  static const char head[] = "POST /healthz HTTP/1.1\r\nHost: localhost\r\n"
                             "Content-Length: 2097152\r\n\r\n";
  tl_test_client_t c;
  open_client(&c, &main_d);
  /* Only the head: a server that waited for the body would not answer (read times out). */
  send_all(&c, head, strlen(head));
  expect_refusal(&c, 413, "body_too_large");
  tl_test_client_close(&c);
}

static void chunked_body_over_1mib_is_413(void **state) {
  (void)state;
  static const char head[] = "POST /healthz HTTP/1.1\r\nHost: localhost\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n";
  char chunk[16384 + 16];
  int n = snprintf(chunk, sizeof chunk, "4000\r\n");
  memset(chunk + n, 'z', 16384);
  memcpy(chunk + n + 16384, "\r\n", 2);
  size_t chunk_len = (size_t)n + 16384 + 2;
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, head, strlen(head));
  /* Up to 1.5 MiB, stopping as soon as the server answers (as a real client would). */
  int sent = 0;
  while (sent < 96 && !tl_test_client_readable(&c)) {
    int rc = tl_test_client_send(&c, chunk, chunk_len);
    if (rc == TL_TEST_ECLOSED) break;
    assert_int_equal(rc, 0);
    sent++;
  }
  if (sent < 64) fail_msg("the server answered after only %d KiB of a chunked body", sent * 16);
  expect_refusal(&c, 413, "body_too_large");
  tl_test_client_close(&c);
}

typedef struct {
  const char *what;
  const char *bytes;
} bad_request_t;

static const bad_request_t bad_requests[] = {
    {"unknown method", "FOO /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"},
    {"Content-Length with Transfer-Encoding",
     "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
    {"duplicate Content-Length",
     "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
     "Content-Length: 5\r\n\r\nhello"},
    {"bare CR in a header value", "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n"},
};

static void malformed_request_is_400_and_only_its_connection_closes(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
    print_message("malformed: %s\n", bad_requests[i].what);
    tl_test_client_t other, bad;
    open_client(&other, &main_d);
    expect_usable(&other);
    open_client(&bad, &main_d);
    send_all(&bad, bad_requests[i].bytes, strlen(bad_requests[i].bytes));
    expect_refusal(&bad, 400, "bad_request");
    tl_test_client_close(&bad);
    expect_usable(&other); /* the connection opened before is untouched */
    tl_test_client_close(&other);
  }
}

/* Reads /metrics into a malloc'd string. */
static char *metrics_text(const tl_test_daemon_t *d) {
  tl_test_response_t r;
  int rc = tl_test_daemon_get(d, "/metrics", &r);
  if (rc != 0 || r.status != 200) fail_msg("GET /metrics: %s %d", tl_test_strerror(rc), r.status);
  char *text = r.body;
  r.body = NULL;
  tl_test_response_free(&r);
  return text;
}

static double status_count(const char *text, const char *status) {
  char label[32];
  snprintf(label, sizeof label, "status=\"%s\"", status);
  return tl_test_metric_sum(text, "tubeloop_http_requests_total", label);
}

static void metrics_count_routes_and_statuses(void **state) {
  (void)state;
  static const char *const statuses[] = {"200", "400", "404", "405", "414"};
  char *before = metrics_text(&main_d);
  tl_buf_t b;
  tl_buf_init(&b);
  put(&b, GET_HEALTHZ "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n"
          "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
  tl_test_client_t c;
  open_client(&c, &main_d);
  send_all(&c, b.data, b.len);
  expect_status(&c, 200);
  expect_status(&c, 404);
  expect_status(&c, 405);
  tl_test_client_close(&c);
  tl_buf_reset(&b);
  put(&b, "GET /");
  put_repeat(&b, 'a', 3000);
  put(&b, " HTTP/1.1\r\n\r\n");
  assert_int_equal(status_of(&main_d, b.data, b.len), 414);
  assert_int_equal(status_of(&main_d, bad_requests[0].bytes, strlen(bad_requests[0].bytes)), 400);
  char *after = metrics_text(&main_d);
  static const char healthz[] = "tubeloop_http_requests_total{route=\"/healthz\",status=\"200\"}";
  assert_true(tl_test_metric(after, healthz) - tl_test_metric(before, healthz) == 1);
  /* Each status once more; 200 twice (/healthz and the first /metrics). */
  for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
    double delta = status_count(after, statuses[i]) - status_count(before, statuses[i]);
    double want = strcmp(statuses[i], "200") == 0 ? 2 : 1;
    if (delta != want)
      fail_msg("status %s counted %g more times, expected %g", statuses[i], delta, want);
  }
  static const char count[] = "tubeloop_http_request_duration_seconds_count";
  assert_true(tl_test_metric(after, count) - tl_test_metric(before, count) == 6);
  assert_true(tl_test_metric(after, "tubeloop_http_connections_open") >= 1);
  assert_true(tl_test_metric(after, "tubeloop_db_pool_connected") >= 1);
  tl_buf_dispose(&b);
  free(before);
  free(after);
}

static void connect_with_version(tl_test_client_t *c, int version, int *rc) {
  tl_test_client_opts_t o = tl_test_daemon_client_opts(&main_d);
  o.min_version = o.max_version = version;
  *rc = tl_test_client_connect(c, main_d.port, &o);
}

static void expect_version_refused(int version) {
  tl_test_client_t c;
  int rc;
  connect_with_version(&c, version, &rc);
  assert_int_equal(rc, TL_TEST_ETLS);
  /* The server's protocol_version alert, not a client that could not offer the version. */
  if (ERR_GET_REASON(c.tls_error) != SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
    fail_msg("expected the server's protocol_version alert, got: %s",
             ERR_reason_error_string(c.tls_error));
}

static void expect_version_accepted(int version, const char *name) {
  tl_test_client_t c;
  int rc;
  connect_with_version(&c, version, &rc);
  if (rc != 0) fail_msg("%s handshake: %s", name, tl_test_strerror(rc));
  assert_string_equal(tl_test_client_version(&c), name);
  expect_usable(&c);
  tl_test_client_close(&c);
}

static void tls_1_0_and_1_1_are_refused(void **state) {
  (void)state;
  expect_version_refused(TLS1_VERSION);
  expect_version_refused(TLS1_1_VERSION);
}

static void tls_1_2_and_1_3_are_accepted(void **state) {
  (void)state;
  expect_version_accepted(TLS1_2_VERSION, "TLSv1.2");
  expect_version_accepted(TLS1_3_VERSION, "TLSv1.3");
}

static void untrusted_certificate_is_rejected_by_the_client(void **state) {
  (void)state;
  /* The client really verifies: against another daemon's certificate it refuses. */
  assert_int_equal(tl_test_daemon_prepare(&own_d, "e2e-othercert"), 0);
  tl_test_client_opts_t o = {.cafile = own_d.cert};
  tl_test_client_t c;
  assert_int_equal(tl_test_client_connect(&c, main_d.port, &o), TL_TEST_ETLS);
  assert_int_equal(ERR_GET_REASON(c.tls_error), SSL_R_CERTIFICATE_VERIFY_FAILED);
}

static void daemon_stops_cleanly(void **state) {
  (void)state;
  assert_int_equal(tl_test_daemon_stop(&main_d, 15000), 0);
  assert_true(tl_test_daemon_log_has(&main_d, "msg=stopped"));
}

/* ---------- group "timeouts": 1 s each ---------- */

static int timeouts_setup(void **state) {
  (void)state;
  static const char *const flags[] = {"--header-timeout", "1", "--body-timeout", "1",
                                      "--idle-timeout",   "1", NULL};
  tl_test_daemon_opts_t o = {.extra = flags};
  return tl_test_daemon_start(&short_d, "e2e-timeouts", &o);
}

static int timeouts_teardown(void **state) {
  (void)state;
  tl_test_daemon_cleanup(&short_d);
  return 0;
}

/* Sends one byte every delay_ms until the server has something to say. Returns the bytes
 * sent. */
static size_t drip_until_answer(tl_test_client_t *c, const char *data, size_t len, int delay_ms) {
  size_t i = 0;
  while (i < len && !tl_test_client_readable(c)) {
    if (tl_test_client_send(c, data + i, 1) != 0) break;
    i++;
    tl_test_sleep_ms(delay_ms);
  }
  return i;
}

static void expect_408_within(tl_test_client_t *c, long long since, int min_ms, int max_ms) {
  tl_test_response_t r;
  read_response(c, &r);
  long long took = tl_test_now_ms() - since;
  if (r.status != 408) fail_msg("expected 408, got %d: %s", r.status, r.body);
  assert_non_null(strstr(r.body, "\"code\":\"request_timeout\""));
  assert_true(has_close(&r));
  tl_test_response_free(&r);
  if (took < min_ms || took > max_ms)
    fail_msg("408 after %lld ms, expected %d-%d", took, min_ms, max_ms);
  assert_int_equal(tl_test_client_wait_closed(c, 3000), 0);
}

static void slow_first_head_is_408(void **state) {
  (void)state;
  tl_test_client_t c;
  long long start = tl_test_now_ms();
  open_client(&c, &short_d);
  /* Bytes keep coming, but the whole head takes longer than the header timeout. */
  size_t sent = drip_until_answer(&c, GET_HEALTHZ, strlen(GET_HEALTHZ), 100);
  assert_true(sent < strlen(GET_HEALTHZ));
  expect_408_within(&c, start, 800, 3000);
  tl_test_client_close(&c);
}

static void slow_head_on_a_kept_alive_connection_is_408(void **state) {
  (void)state;
  tl_test_client_t c;
  open_client(&c, &short_d);
  expect_usable(&c);
  long long start = tl_test_now_ms();
  size_t sent = drip_until_answer(&c, GET_HEALTHZ, strlen(GET_HEALTHZ), 100);
  assert_true(sent < strlen(GET_HEALTHZ));
  expect_408_within(&c, start, 800, 3000);
  tl_test_client_close(&c);
}

static void stalled_body_is_408(void **state) {
  (void)state;
  static const char req[] = "POST /healthz HTTP/1.1\r\nHost: localhost\r\n"
                            "Content-Length: 10\r\n\r\nabc";
  tl_test_client_t c;
  open_client(&c, &short_d);
  long long start = tl_test_now_ms();
  send_all(&c, req, strlen(req));
  expect_408_within(&c, start, 800, 3000);
  tl_test_client_close(&c);
}

static void idle_connection_is_closed_without_an_answer(void **state) {
  (void)state;
  tl_test_client_t c;
  open_client(&c, &short_d);
  expect_usable(&c);
  assert_int_equal(tl_test_client_wait_closed(&c, 400), TL_TEST_ETIMEOUT); /* not at once */
  assert_int_equal(tl_test_client_wait_closed(&c, 3000), 0);               /* quietly */
  tl_test_client_close(&c);
  /* A connection that never asked anything is closed the same way. */
  open_client(&c, &short_d);
  assert_int_equal(tl_test_client_wait_closed(&c, 3000), 0);
  tl_test_client_close(&c);
}

/* ---------- a client that never reads ---------- */

/* 40000 pipelined GET /metrics: about 1.7 MB asked, about 100 MB of answers. */
#define SLOW_REQUESTS 40000

/* The highest VmRSS seen over ms milliseconds. */
static long peak_rss_kib(const tl_test_daemon_t *d, int ms) {
  long peak = tl_test_daemon_rss_kib(d);
  for (int waited = 0; waited < ms; waited += 100) {
    tl_test_sleep_ms(100);
    long now = tl_test_daemon_rss_kib(d);
    if (now > peak) peak = now;
  }
  return peak;
}

static void slow_reader_cannot_grow_memory(void **state) {
  (void)state;
  /* ASan keeps freed memory in quarantine (256 MiB by default), which would count as growth;
   * a small quarantine keeps the measurement about what the daemon holds on to. */
  tl_test_daemon_opts_t o = {.asan_options = "quarantine_size_mb=16"};
  tl_test_daemon_t *d = &own_d;
  assert_int_equal(tl_test_daemon_start(d, "e2e-slowreader", &o), 0);
  tl_buf_t b;
  tl_buf_init(&b);
  for (int i = 0; i < SLOW_REQUESTS; i++)
    put(&b, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  tl_test_client_t slow;
  open_client(&slow, d);
  long before = tl_test_daemon_rss_kib(d);
  slow.timeout_ms = 2000;
  int rc = tl_test_client_send(&slow, b.data, b.len); /* may stall: the server stops reading */
  assert_true(rc == 0 || rc == TL_TEST_ETIMEOUT);
  long peak = peak_rss_kib(d, 1000);
  /* Another client is served meanwhile. */
  tl_test_response_t r;
  assert_int_equal(tl_test_daemon_get(d, "/healthz", &r), 0);
  assert_int_equal(r.status, 200);
  tl_test_response_free(&r);
  print_message("slow reader: sent %zu of %zu bytes; daemon RSS %ld KiB before, %ld KiB peak\n",
                slow.bytes_sent, b.len, before, peak);
  if (peak - before >= 64 * 1024)
    fail_msg("the daemon grew by %ld KiB for a client that does not read", peak - before);
  /* The slow connection was paused, not dropped: its answers are there, in order. */
  slow.timeout_ms = 5000;
  for (int i = 0; i < 3; i++) {
    read_response(&slow, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "tubeloop_http_requests_total"));
    tl_test_response_free(&r);
  }
  tl_test_client_close(&slow);
  tl_buf_dispose(&b);
  assert_int_equal(tl_test_daemon_stop(d, 15000), 0);
}

/* ---------- --no-tls ---------- */

static void no_tls_is_refused_on_a_public_address(void **state) {
  (void)state;
  assert_int_equal(tl_test_daemon_prepare(&own_d, "e2e-notls"), 0);
  const char *argv[] = {tl_test_env("TUBELOOPD"), "serve", "--db", tl_test_env("TUBELOOP_TEST_DB"),
                        "--listen", "0.0.0.0:0", "--no-tls", "--keys", own_d.keys, NULL};
  char out[4096];
  int status = tl_test_run(argv, 10000, out, sizeof out, NULL);
  print_message("serve --no-tls on 0.0.0.0 exited %d: %s", status, out);
  assert_true(status > 0 && status < 128); /* exited by itself, with an error */
  assert_non_null(strstr(out, "--no-tls"));
  assert_non_null(strstr(out, "loopback"));
}

static void no_tls_serves_plain_http_on_loopback(void **state) {
  (void)state;
  tl_test_daemon_opts_t o = {.no_tls = 1};
  assert_int_equal(tl_test_daemon_start(&own_d, "e2e-notls-lo", &o), 0);
  tl_test_client_t c;
  open_client(&c, &own_d);
  assert_string_equal(tl_test_client_version(&c), "plain");
  expect_usable(&c);
  tl_test_client_close(&c);
  assert_int_equal(tl_test_daemon_stop(&own_d, 15000), 0);
}

int main(void) {
  const struct CMUnitTest http[] = {
      cmocka_unit_test(keep_alive_serves_three_requests_on_one_connection),
      cmocka_unit_test(pipelined_requests_are_answered_in_order),
      cmocka_unit_test(chunked_body_is_consumed),
      cmocka_unit_test(content_length_body_is_consumed),
      cmocka_unit_test(body_of_exactly_one_mib_is_accepted),
      cmocka_unit_test(target_over_2kib_is_414),
      cmocka_unit_test(header_line_over_4kib_is_431),
      cmocka_unit_test(more_than_48_headers_is_431),
      cmocka_unit_test(headers_over_16kib_in_total_is_431),
      cmocka_unit_test(content_length_of_2mib_is_413_before_the_body),
      cmocka_unit_test(chunked_body_over_1mib_is_413),
      cmocka_unit_test(malformed_request_is_400_and_only_its_connection_closes),
      cmocka_unit_test(metrics_count_routes_and_statuses),
      cmocka_unit_test(tls_1_0_and_1_1_are_refused),
      cmocka_unit_test(tls_1_2_and_1_3_are_accepted),
      cmocka_unit_test_teardown(untrusted_certificate_is_rejected_by_the_client, own_teardown),
      cmocka_unit_test(daemon_stops_cleanly),
  };
  const struct CMUnitTest timeouts[] = {
      cmocka_unit_test(slow_first_head_is_408),
      cmocka_unit_test(slow_head_on_a_kept_alive_connection_is_408),
      cmocka_unit_test(stalled_body_is_408),
      cmocka_unit_test(idle_connection_is_closed_without_an_answer),
  };
  const struct CMUnitTest own[] = {
      cmocka_unit_test_teardown(slow_reader_cannot_grow_memory, own_teardown),
      cmocka_unit_test_teardown(no_tls_is_refused_on_a_public_address, own_teardown),
      cmocka_unit_test_teardown(no_tls_serves_plain_http_on_loopback, own_teardown),
  };
  int failed = cmocka_run_group_tests_name("http", http, http_setup, http_teardown);
  failed += cmocka_run_group_tests_name("timeouts", timeouts, timeouts_setup, timeouts_teardown);
  failed += cmocka_run_group_tests_name("own daemons", own, NULL, NULL);
  return failed ? 1 : 0;
}
