/* Unit tests of lib/api/devcert: which device request goes on, by mode, role, certificate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "api/devcert.h"

#include <string.h>

typedef struct {
  tl_device_certs_t mode;
  tl_role_t role;
  const char *scope;
  tl_tls_peer_t peer;
  const char *cn;
  tl_devcert_verdict_t want;
} case_t;

#define OFF TL_DEVICE_CERTS_OFF
#define OPT TL_DEVICE_CERTS_OPTIONAL
#define REQ TL_DEVICE_CERTS_REQUIRED
#define NONE TL_TLS_PEER_NONE
#define GOOD TL_TLS_PEER_VERIFIED
#define BAD TL_TLS_PEER_UNVERIFIED

static const case_t cases[] = {
    /* off: nothing is looked at, not even a bad certificate */
    {OFF, TL_ROLE_COLLECTOR, "S1", NONE, "", TL_DEVCERT_OK},
    {OFF, TL_ROLE_LAB, "L1", BAD, "lab:L1", TL_DEVCERT_OK},
    {OFF, TL_ROLE_COURIER, "C1", GOOD, "courier:C2", TL_DEVCERT_OK},
    /* required: each device kind needs its own verified certificate */
    {REQ, TL_ROLE_COLLECTOR, "S1", GOOD, "site:S1", TL_DEVCERT_OK},
    {REQ, TL_ROLE_COURIER, "C1", GOOD, "courier:C1", TL_DEVCERT_OK},
    {REQ, TL_ROLE_LAB, "L1", GOOD, "lab:L1", TL_DEVCERT_OK},
    {REQ, TL_ROLE_COLLECTOR, "S1", NONE, "", TL_DEVCERT_MISSING},
    {REQ, TL_ROLE_LAB, "L1", BAD, "lab:L1", TL_DEVCERT_INVALID},
    {REQ, TL_ROLE_COLLECTOR, "S1", GOOD, "site:S2", TL_DEVCERT_MISMATCH},
    /* the same code of another kind */
    {REQ, TL_ROLE_COLLECTOR, "S1", GOOD, "courier:S1", TL_DEVCERT_MISMATCH},
    {REQ, TL_ROLE_COURIER, "C1", GOOD, "C1", TL_DEVCERT_MISMATCH},          /* bare code */
    {REQ, TL_ROLE_LAB, "L1", GOOD, "lab:L1 ", TL_DEVCERT_MISMATCH},
    {REQ, TL_ROLE_LAB, "L1", GOOD, "lab:l1", TL_DEVCERT_MISMATCH},          /* codes are exact */
    {REQ, TL_ROLE_LAB, "L1", GOOD, "", TL_DEVCERT_MISMATCH},                /* no (single) CN */
    {REQ, TL_ROLE_LAB, "", GOOD, "lab:", TL_DEVCERT_MISMATCH},              /* no scope */
    {REQ, TL_ROLE_LAB, "L1", GOOD, NULL, TL_DEVCERT_MISMATCH},
    /* officials and admins never need one, whatever they show */
    {REQ, TL_ROLE_VIEWER, "230126", NONE, "", TL_DEVCERT_OK},
    {REQ, TL_ROLE_SUPERVISOR, "230126", BAD, "x", TL_DEVCERT_OK},
    {REQ, TL_ROLE_ADMIN, "", GOOD, "site:S1", TL_DEVCERT_OK},
    /* optional: none is fine; one shown must verify and name the device */
    {OPT, TL_ROLE_COLLECTOR, "S1", NONE, "", TL_DEVCERT_OK},
    {OPT, TL_ROLE_COLLECTOR, "S1", GOOD, "site:S1", TL_DEVCERT_OK},
    {OPT, TL_ROLE_COLLECTOR, "S1", GOOD, "site:S3", TL_DEVCERT_MISMATCH},
    {OPT, TL_ROLE_COURIER, "C1", BAD, "courier:C1", TL_DEVCERT_INVALID},
    {OPT, TL_ROLE_VIEWER, "230126", BAD, "", TL_DEVCERT_OK},
};

static void test_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const case_t *t = &cases[i];
    tl_devcert_verdict_t v = tl_devcert_check(t->mode, t->role, t->scope, t->peer, t->cn);
    if (v != t->want) fail_msg("case %zu: verdict %d, want %d", i, (int)v, (int)t->want);
  }
}

static void test_names_and_codes(void **state) {
  (void)state;
  char out[64];
  assert_int_equal(tl_devcert_name(TL_ROLE_COLLECTOR, "S-01", out, sizeof out), 0);
  assert_string_equal(out, "site:S-01");
  assert_int_equal(tl_devcert_name(TL_ROLE_COURIER, "C1", out, sizeof out), 0);
  assert_string_equal(out, "courier:C1");
  assert_int_equal(tl_devcert_name(TL_ROLE_LAB, "L1", out, sizeof out), 0);
  assert_string_equal(out, "lab:L1");
  assert_int_equal(tl_devcert_name(TL_ROLE_VIEWER, "230126", out, sizeof out), -1);
  assert_int_equal(tl_devcert_name(TL_ROLE_LAB, "L1", out, 6), -1); /* "lab:L1" needs 7 */
  assert_null(tl_devcert_code(TL_DEVCERT_OK));
  assert_string_equal(tl_devcert_code(TL_DEVCERT_MISSING), "client_certificate_required");
  assert_string_equal(tl_devcert_code(TL_DEVCERT_INVALID), "client_certificate_invalid");
  assert_string_equal(tl_devcert_code(TL_DEVCERT_MISMATCH), "client_certificate_mismatch");
  assert_non_null(tl_devcert_message(TL_DEVCERT_MISMATCH));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_names_and_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
