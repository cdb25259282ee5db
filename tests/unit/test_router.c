/* Unit tests of lib/http/router: literal and {param} segments, 404 versus 405. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/router.h"

#include <string.h>

static void h(struct tl_http_exchange_s *x, void *ctx) {
  (void)x;
  (void)ctx;
}

static tl_router_t r;

static int setup(void **state) {
  (void)state;
  tl_router_init(&r);
  tl_router_add(&r, "GET", "/healthz", h, NULL);
  tl_router_add(&r, "GET", "/v1/tubes/{code}", h, NULL);
  tl_router_add(&r, "POST", "/v1/admin/rounds/{code}/close", h, NULL);
  tl_router_add(&r, "POST", "/v1/admin/rounds", h, NULL);
  tl_router_add(&r, "DELETE", "/v1/admin/tokens/{id}", h, NULL);
  return 0;
}

static int match(const char *method, const char *path, tl_route_match_t *m) {
  return tl_router_match(&r, method, path, strlen(path), m);
}

static void test_matches(void **state) {
  (void)state;
  tl_route_match_t m;
  assert_int_equal(match("GET", "/healthz", &m), 0);
  assert_int_equal(m.route, 0);
  assert_int_equal(match("GET", "/v1/tubes/T-0001", &m), 0);
  assert_int_equal(m.route, 1);
  assert_int_equal(m.nparams, 1);
  assert_int_equal(m.params[0].len, 6);
  assert_memory_equal(m.params[0].at, "T-0001", 6);
  assert_int_equal(match("POST", "/v1/admin/rounds/R1/close", &m), 0);
  assert_int_equal(m.route, 2);
  assert_memory_equal(m.params[0].at, "R1", 2);
  assert_int_equal(match("POST", "/v1/admin/rounds", &m), 0);
  assert_int_equal(m.route, 3);
}

static void test_not_found(void **state) {
  (void)state;
  tl_route_match_t m;
  const char *paths[] = {"/", "/healthz/", "/healthzz", "/v1/tubes", "/v1/tubes/",
                         "/v1/tubes/a/b", "/v1/admin/rounds/R1", "//healthz", ""};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    if (match("GET", paths[i], &m) != 404) fail_msg("path '%s' should be 404", paths[i]);
    assert_int_equal(m.route, -1);
  }
}

static void test_wrong_method(void **state) {
  (void)state;
  tl_route_match_t m;
  assert_int_equal(match("POST", "/healthz", &m), 405);
  assert_string_equal(m.allow, "GET");
  assert_int_equal(match("GET", "/v1/admin/tokens/abc", &m), 405);
  assert_string_equal(m.allow, "DELETE");
}

static void test_table_full(void **state) {
  (void)state;
  tl_router_t full;
  tl_router_init(&full);
  for (int i = 0; i < TL_ROUTER_MAX_ROUTES; i++)
    assert_int_equal(tl_router_add(&full, "GET", "/x", h, NULL), i);
  assert_int_equal(tl_router_add(&full, "GET", "/y", h, NULL), -1);
  assert_int_equal(tl_router_add(&r, "GET", "no-slash", h, NULL), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches),
      cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_wrong_method),
      cmocka_unit_test(test_table_full),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
