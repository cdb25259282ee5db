/* Unit tests of lib/api/json's writers, and of the event digest they feed. tl_json_write must
 * give cJSON_PrintUnformatted's bytes exactly: the canonical encoding of an event (and so every
 * stored digest, which decides whether a retried event is the same event) is built from it.
 * The digests of test_event_digest were computed apart from this code (Python's hmac over the
 * canonical bytes written out by hand): a change to decoding that moved a digest would make
 * every event sent again after an upgrade an id_conflict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "api/ingest.h"
#include "api/json.h"
#include "crypto/keys.h"

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

/* The digest of an event as tl__batch_decode computes it: HMAC-SHA256 (the keys file's hmac
 * key) of the event as sent, in canonical form, personal data included. Keys in any order. */
static void test_event_digest(void **state) {
  (void)state;
  static const char keys_text[] =
      "hmac 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
      "aes 1 1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\n";
  static const struct {
    tl_role_t role;
    const char *scope, *region, *body, *digest;
  } cases[] = {
      {TL_ROLE_COLLECTOR, "S1", "230126101",
       "{\"events\": [{\"type\": \"sample.add\", \"id\": \"4f1c2b1e-8a8e-4c55-9d5a-0a1b2c3d4e5f\","
       " \"at\": \"2021-10-08T08:00:00+08:00\", \"tube\": \"BY-T1A-0001\", \"person\": {\"name\":"
       " \"\xe7\x8e\x8b\xe5\xb0\x8f\xe6\x98\x8e\", \"id_type\": \"resident_id\", \"phone\": \"13800138000\","
       " \"id_number\": \"230126199001011231\"}}]}",
       "1a330385bda9bd46b9aa5eb96218f13fe074e383a2eb1f0e739a3ada190766f5"},
      {TL_ROLE_LAB, "L1", "230126",
       "{\"events\": [{\"id\": \"0b0e8c1a-3d2f-4e5a-8b7c-6d5e4f3a2b1c\", \"type\": \"tube.result\","
       " \"tube\": \"BY-T1A-0001\", \"result\": \"positive\", \"at\": \"2021-10-08T10:30:00Z\","
       " \"ct\": {\"ORF1ab\": 28, \"N\": 31.25}}]}",
       "f6670b2d8803dbde3fffae1dd4754cf641e48446b4474605672d66c1c1bc559a"},
  };
  tl_keys_t keys;
  char err[128];
  assert_int_equal(tl_keys_parse(&keys, keys_text, err, sizeof err), 0);
  tl_api_t api;
  memset(&api, 0, sizeof api);
  api.keys = &keys;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tl_api_err_t e = {0};
    tl__batch_t *b = tl__batch_decode(&api, cases[i].role, cases[i].scope, cases[i].region,
                                      cases[i].body, strlen(cases[i].body), &e);
    assert_non_null(b);
    assert_int_equal(b->n, 1);
    assert_int_equal(b->slots[0].state, TL__SLOT_PENDING);
    assert_string_equal(b->slots[0].digest, cases[i].digest);
    tl__batch_free(b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_is_cjson_print),
      cmocka_unit_test(test_canonical),
      cmocka_unit_test(test_event_digest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
