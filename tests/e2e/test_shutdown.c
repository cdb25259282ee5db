/* End-to-end tests of a graceful stop (DESIGN §9: SIGTERM stops accepting, finishes
 * in-flight work, exits 0).
 *
 * What an operator and a client would notice: a request caught half-sent by SIGTERM is
 * still answered once the client sends the rest, marked "Connection: close"; a kept-alive
 * connection with nothing in flight is closed without an answer; nobody new gets in after the
 * signal; the daemon exits 0 and says "stopped". A client that never finishes its request
 * does not hold the daemon up past --shutdown-timeout. Each test runs its own daemon. */
#include "support/daemon.h"
#include "support/tlsclient.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define HEAD "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n"
#define GET_HEALTHZ "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"

static tl_test_daemon_t d;

static int start(const char *const *flags) {
  tl_test_daemon_opts_t o = {.extra = flags};
  return tl_test_daemon_start(&d, "e2e-shutdown", &o);
}

static int teardown(void **state) {
  (void)state;
  tl_test_daemon_cleanup(&d);
  return 0;
}

static void open_client(tl_test_client_t *c) {
  tl_test_client_opts_t o = tl_test_daemon_client_opts(&d);
  int rc = tl_test_client_connect(c, d.port, &o);
  if (rc != 0) fail_msg("connect: %s", tl_test_strerror(rc));
}

static void send_str(tl_test_client_t *c, const char *s) {
  int rc = tl_test_client_send_str(c, s);
  if (rc != 0) fail_msg("send: %s", tl_test_strerror(rc));
}

/* SIGTERM, then wait until the daemon logged that it is stopping. */
static void sigterm(void) {
  assert_int_equal(kill(d.pid, SIGTERM), 0);
  assert_true(tl_test_daemon_log_wait(&d, "msg=stopping", 5000));
}

static void half_sent_request_is_finished_after_sigterm(void **state) {
  (void)state;
  assert_int_equal(start(NULL), 0);
  tl_test_client_t idle, half;
  open_client(&idle);
  send_str(&idle, GET_HEALTHZ);
  tl_test_response_t r;
  assert_int_equal(tl_test_client_read_response(&idle, &r), 0);
  assert_int_equal(r.status, 200);
  tl_test_response_free(&r);
  open_client(&half);
  send_str(&half, HEAD "hello"); /* 5 of 10 body bytes */
  tl_test_sleep_ms(300);          /* let the daemon read them */
  sigterm();

  /* Nobody new gets in. */
  tl_test_client_t late;
  tl_test_client_opts_t o = tl_test_daemon_client_opts(&d);
  int rc = tl_test_client_connect(&late, d.port, &o);
  if (rc != TL_TEST_EREFUSED) fail_msg("a new connection after SIGTERM: %s", tl_test_strerror(rc));
  /* The idle keep-alive connection is closed without an answer. */
  assert_int_equal(tl_test_client_wait_closed(&idle, 3000), 0);
  tl_test_client_close(&idle);
  /* The daemon waits for the half-sent request instead of exiting. */
  assert_int_equal(tl_test_daemon_wait(&d, 500), -1);

  send_str(&half, "world");
  assert_int_equal(tl_test_client_read_response(&half, &r), 0);
  assert_int_equal(r.status, 405); /* /healthz is GET only: the request was handled */
  char conn[32];
  assert_true(tl_test_response_header(&r, "Connection", conn, sizeof conn));
  assert_string_equal(conn, "close");
  tl_test_response_free(&r);
  assert_int_equal(tl_test_client_wait_closed(&half, 3000), 0);
  tl_test_client_close(&half);

  assert_int_equal(tl_test_daemon_wait(&d, 10000), 0);
  assert_true(tl_test_daemon_log_has(&d, "msg=stopped"));
}

static void unfinished_request_does_not_hold_the_daemon_past_the_deadline(void **state) {
  (void)state;
  static const char *const flags[] = {"--shutdown-timeout", "1", NULL};
  assert_int_equal(start(flags), 0);
  tl_test_client_t half;
  open_client(&half);
  send_str(&half, HEAD "hel");
  tl_test_sleep_ms(300);
  long long t0 = tl_test_now_ms();
  sigterm();
  int status = tl_test_daemon_wait(&d, 5000);
  long long took = tl_test_now_ms() - t0;
  assert_int_equal(status, 0);
  if (took < 800 || took > 4000) fail_msg("exited %lld ms after SIGTERM, expected about 1 s", took);
  assert_true(tl_test_daemon_log_has(&d, "msg=shutdown_deadline"));
  assert_true(tl_test_daemon_log_has(&d, "msg=stopped"));
  tl_test_client_close(&half);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(half_sent_request_is_finished_after_sigterm, teardown),
      cmocka_unit_test_teardown(unfinished_request_does_not_hold_the_daemon_past_the_deadline,
                                teardown),
  };
  return cmocka_run_group_tests_name("shutdown", tests, NULL, NULL);
}
