/* Unit tests of lib/api/json's writers. tl_json_write must give cJSON_PrintUnformatted's bytes
 * exactly: the canonical encoding of an event (and so every stored digest, which decides
 * whether a retried event is the same event) is built from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "api/json.h"

#include <stdlib.h>
#include <string.h>

/* Values whose printing differs by path in cJSON: escapes, non-ASCII, every kind of number,
 * nesting, empty containers, keys that need escaping. */
static const char *const CASES[] = {
    "\"plain\"",
    "\"\"",
    "\"quote \\\" backslash \\\\ slash /\"",
    "\"\\b\\f\\n\\r\\t \\u0001 \\u001f \\u007f\"",
    "\"王小明 ＢＹ — é\"",
    "0",
    "-0",
    "7",
    "-2147483648",
    "2147483647",
    "2147483648",
    "1e300",
    "-1.5",
    "0.1",
    "3.141592653589793",
    "1.0000000000000002",
    "123456789012345678",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[1,\"a\",null,[true,{}],{\"k\":[]}]",
    "{\"tube\":\"BY-T1A-0001\",\"ct\":{\"N\":31.25,\"ORF1ab\":28},\"count\":10}",
    "{\"a\\\"b\":1,\"c\\nd\":\"\\u0002\",\"\":\"\"}",
    "{\"person\":{\"id_type\":\"resident_id\",\"hmac\":\"ab12\",\"name_masked\":\"王*\"}}",
};

static void test_write_is_cjson_print(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    cJSON *v = cJSON_Parse(CASES[i]);
    assert_non_null(v);
    char *want = cJSON_PrintUnformatted(v);
    tl_buf_t got;
    tl_buf_init(&got);
    assert_int_equal(tl_json_write(v, &got), 0);
    if (strcmp(tl_buf_cstr(&got), want) != 0)
      fail_msg("case %zu %s: wrote %s, cJSON prints %s", i, CASES[i], tl_buf_cstr(&got), want);
    tl_buf_dispose(&got);
    free(want);
    cJSON_Delete(v);
  }
}

/* Keys sorted bytewise at every depth, array order kept, leaves as cJSON prints them; the
 * bytes are fixed (a digest stored before this code must be found again). */
static void test_canonical(void **state) {
  (void)state;
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"{\"type\":\"tube.open\",\"at\":\"2026-12-07T08:00:00Z\",\"id\":\"x\"}",
       "{\"at\":\"2026-12-07T08:00:00Z\",\"id\":\"x\",\"type\":\"tube.open\"}"},
      {"{\"b\":[{\"z\":1,\"a\":2.5}],\"a\":{\"y\":\"\\n\",\"x\":null}}",
       "{\"a\":{\"x\":null,\"y\":\"\\n\"},\"b\":[{\"a\":2.5,\"z\":1}]}"},
      {"{\"B\":1,\"a\":2,\"\\u00e9\":3}", "{\"B\":1,\"a\":2,\"\xc3\xa9\":3}"},
      {"[3,1,2]", "[3,1,2]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cJSON *v = cJSON_Parse(cases[i].in);
    assert_non_null(v);
    tl_buf_t got;
    tl_buf_init(&got);
    assert_int_equal(tl_json_canonical(v, &got), 0);
    assert_string_equal(tl_buf_cstr(&got), cases[i].want);
    tl_buf_dispose(&got);
    cJSON_Delete(v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_is_cjson_print),
      cmocka_unit_test(test_canonical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
