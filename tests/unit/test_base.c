/* Unit tests of the small pure pieces: JSON string escaping and the error body shape, metrics
 * text, tokens and the keys file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/hash.h"
#include "base/strmap.h"
#include "crypto/keys.h"
#include "crypto/token.h"
#include "http/server.h"
#include "metrics/metrics.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static void test_json_string_roundtrip(void **state) {
  (void)state;
  const char *inputs[] = {"plain", "quote \" and \\ backslash", "ctl \x01\n\t", "中文 ✓", ""};
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
    tl_buf_t b;
    tl_buf_init(&b);
    assert_int_equal(tl_http_json_string(&b, inputs[i]), 0);
    cJSON *j = cJSON_Parse(tl_buf_cstr(&b));
    assert_non_null(j);
    assert_true(cJSON_IsString(j));
    assert_string_equal(j->valuestring, inputs[i]);
    cJSON_Delete(j);
    tl_buf_dispose(&b);
  }
}

static void test_status_texts(void **state) {
  (void)state;
  assert_string_equal(tl_http_status_text(413), "Content Too Large");
  assert_string_equal(tl_http_status_text(431), "Request Header Fields Too Large");
  assert_string_equal(tl_http_status_text(503), "Service Unavailable");
}

static void test_metrics_render(void **state) {
  (void)state;
  const char *names[] = {"/healthz", "/readyz"};
  tl_metrics_t m;
  tl_metrics_init(&m, 2, names);
  tl_metrics_observe(&m, 0, 200, 0.0002);
  tl_metrics_observe(&m, 0, 200, 0.003);
  tl_metrics_observe(&m, 1, 503, 0.2);
  tl_metrics_observe(&m, -1, 404, 20.0);
  assert_int_equal(tl_metrics_count(&m, 0, 200), 2);
  assert_int_equal(tl_metrics_count(&m, -1, 404), 1);
  tl_buf_t b;
  tl_buf_init(&b);
  assert_int_equal(tl_metrics_render(&m, &b), 0);
  const char *t = tl_buf_cstr(&b);
  assert_non_null(strstr(t, "tubeloop_http_requests_total{route=\"/healthz\",status=\"200\"} 2\n"));
  assert_non_null(strstr(t, "tubeloop_http_requests_total{route=\"/readyz\",status=\"503\"} 1\n"));
  assert_non_null(strstr(t, "tubeloop_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
  assert_non_null(strstr(t, "tubeloop_http_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
  assert_non_null(strstr(t, "tubeloop_http_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
  assert_non_null(strstr(t, "tubeloop_http_request_duration_seconds_bucket{le=\"10\"} 3\n"));
  assert_non_null(strstr(t, "tubeloop_http_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
  assert_non_null(strstr(t, "tubeloop_http_request_duration_seconds_count 4\n"));
  tl_buf_dispose(&b);
}

/* A histogram with labels: the label goes before le, and on _sum and _count. */
static void test_histogram_labels(void **state) {
  (void)state;
  tl_histogram_t h;
  memset(&h, 0, sizeof h);
  tl_histogram_observe(&h, 0.0007);
  tl_histogram_observe(&h, 0.03);
  tl_buf_t b;
  tl_buf_init(&b);
  assert_int_equal(tl_histogram_render(&h, "x_seconds", "step=\"load\"", &b), 0);
  const char *t = tl_buf_cstr(&b);
  assert_non_null(strstr(t, "x_seconds_bucket{step=\"load\",le=\"0.0005\"} 0\n"));
  assert_non_null(strstr(t, "x_seconds_bucket{step=\"load\",le=\"0.001\"} 1\n"));
  assert_non_null(strstr(t, "x_seconds_bucket{step=\"load\",le=\"0.025\"} 1\n"));
  assert_non_null(strstr(t, "x_seconds_bucket{step=\"load\",le=\"0.05\"} 2\n"));
  assert_non_null(strstr(t, "x_seconds_bucket{step=\"load\",le=\"+Inf\"} 2\n"));
  assert_non_null(strstr(t, "x_seconds_sum{step=\"load\"} 0.030700\n"));
  assert_non_null(strstr(t, "x_seconds_count{step=\"load\"} 2\n"));
  tl_buf_dispose(&b);
}

static void test_tokens(void **state) {
  (void)state;
  char a[TL_TOKEN_LEN + 1], b[TL_TOKEN_LEN + 1];
  assert_int_equal(tl_token_new(a), 0);
  assert_int_equal(tl_token_new(b), 0);
  assert_int_equal(strlen(a), TL_TOKEN_LEN);
  assert_true(tl_token_well_formed(a, strlen(a)));
  assert_string_not_equal(a, b);
  assert_false(tl_token_well_formed("tl_short", 8));
  a[10] = 'G';
  assert_false(tl_token_well_formed(a, strlen(a)));
  char h[TL_TOKEN_HASH_LEN + 1];
  tl_token_hash("abc", 3, h); /* the SHA-256 test vector */
  assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_true(tl_token_equal("abcd", "abcd", 4));
  assert_false(tl_token_equal("abcd", "abce", 4));
}

/* The index finds every key it was given, with the last value put, across growth; others
 * and an empty map answer -1. */
static void test_strmap(void **state) {
  (void)state;
  static char keys[3000][40];
  tl_strmap_t m;
  tl_strmap_init(&m);
  assert_int_equal(tl_strmap_get(&m, "absent"), -1);
  for (int i = 0; i < 3000; i++) {
    snprintf(keys[i], sizeof keys[i], "3f2c9a1e-0000-4000-8000-%012d", i);
    assert_int_equal(tl_strmap_put(&m, keys[i], i), 0);
  }
  assert_int_equal(tl_strmap_put(&m, keys[7], 70000), 0); /* replaces */
  assert_int_equal((int)m.n, 3000);
  for (int i = 0; i < 3000; i++) assert_int_equal(tl_strmap_get(&m, keys[i]), i == 7 ? 70000 : i);
  assert_int_equal(tl_strmap_get(&m, "3f2c9a1e-0000-4000-8000-000000003000"), -1);
  assert_int_equal(tl_strmap_get(&m, ""), -1);
  tl_strmap_dispose(&m);
  assert_int_equal(tl_strmap_get(&m, keys[0]), -1);
}

/* The hash's values, computed independently (Python): the advisory lock keys of the group
 * commit are made with it, so they must never change. "t:TUBE0001" is a tube's lock key. */
static void test_fnv1a(void **state) {
  (void)state;
  assert_true(tl_fnv1a_str(TL_FNV1A_START, "") == 0x14650fb0739d0383ULL);
  assert_true(tl_fnv1a_str(TL_FNV1A_START, "a") == 0x44bd8ad473cd9906ULL);
  assert_true(tl_fnv1a_str(TL_FNV1A_START, "foobar") == 0x88fad7c0a8ff07f2ULL);
  assert_true(tl_fnv1a(tl_fnv1a(TL_FNV1A_START, "foo", 3), "bar", 3) == 0x88fad7c0a8ff07f2ULL);
  assert_true(tl_fnv1a_str(tl_fnv1a(TL_FNV1A_START, "t:", 2), "TUBE0001") == 0x2311f6f60d0191f4ULL);
}

static void test_keys(void **state) {
  (void)state;
  char text[1024], err[128];
  assert_int_equal(tl_keys_generate(text, sizeof text), 0);
  tl_keys_t k;
  assert_int_equal(tl_keys_parse(&k, text, err, sizeof err), 0);
  assert_int_equal(k.naes, 1);
  assert_int_equal(k.aes[0].id, 1);
  /* Rotation: a second aes line is accepted, a repeated id is not. */
  char rotated[1200];
  snprintf(rotated, sizeof rotated, "%saes 2 %s\n", text,
           "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  assert_int_equal(tl_keys_parse(&k, rotated, err, sizeof err), 0);
  assert_int_equal(k.naes, 2);
  assert_int_equal(k.aes[1].id, 2);
  assert_int_equal(k.aes[1].key[1], 0x11);
  snprintf(rotated, sizeof rotated, "%saes 1 %s\n", text,
           "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  assert_int_equal(tl_keys_parse(&k, rotated, err, sizeof err), TL_EINVAL);
  assert_non_null(strstr(err, "line"));
  assert_int_equal(tl_keys_parse(&k, "hmac 00\n", err, sizeof err), TL_EINVAL);
  assert_int_equal(tl_keys_parse(&k, "# only a comment\n", err, sizeof err), TL_EINVAL);
  assert_non_null(strstr(err, "hmac"));
  tl_keys_dispose(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_string_roundtrip), cmocka_unit_test(test_status_texts),
      cmocka_unit_test(test_metrics_render),        cmocka_unit_test(test_histogram_labels),
      cmocka_unit_test(test_tokens),
      cmocka_unit_test(test_keys),          cmocka_unit_test(test_strmap), cmocka_unit_test(test_fnv1a),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
