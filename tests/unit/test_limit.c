/* Unit tests of lib/api/limit: token buckets per key, refill over time, bounded table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "api/limit.h"

#include <stdio.h>
#include <string.h>

static tl_limit_t l;

static void test_burst_then_refill(void **state) {
  (void)state;
  tl_limit_init(&l, 10, 20);
  for (int i = 0; i < 20; i++) assert_int_equal(tl_limit_take(&l, "tok-a", 5, 1000), 0);
  int wait = tl_limit_take(&l, "tok-a", 5, 1000);
  assert_true(wait >= 1);
  /* another key is not affected */
  assert_int_equal(tl_limit_take(&l, "tok-b", 5, 1000), 0);
  /* 100 ms later one request came back (10 per second) */
  assert_int_equal(tl_limit_take(&l, "tok-a", 5, 1100), 0);
  assert_true(tl_limit_take(&l, "tok-a", 5, 1100) >= 1);
  /* a long pause refills to the burst, not beyond */
  for (int i = 0; i < 20; i++) assert_int_equal(tl_limit_take(&l, "tok-a", 5, 60000), 0);
  assert_true(tl_limit_take(&l, "tok-a", 5, 60000) >= 1);
}

static void test_off_and_many_keys(void **state) {
  (void)state;
  tl_limit_init(&l, 0, 0);
  for (int i = 0; i < 1000; i++) assert_int_equal(tl_limit_take(&l, "k", 1, 1), 0);
  tl_limit_init(&l, 1, 1);
  char key[32];
  /* far more keys than slots: the table stays bounded and each new key gets its burst */
  for (int i = 0; i < 3 * TL_LIMIT_SLOTS; i++) {
    snprintf(key, sizeof key, "addr-%d", i);
    assert_int_equal(tl_limit_take(&l, key, strlen(key), 5000), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_burst_then_refill),
                                     cmocka_unit_test(test_off_and_many_keys)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
