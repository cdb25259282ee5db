/* Unit tests of lib/crypto/chain (the custody chain's encoding, links and checkpoints) and of
 * the sign lines of the keys file. The vectors were computed from the specification in
 * chain.h by an independent script (Python hashlib); test_chain.py checks that the database's
 * tl_chain_canon gives the same link for the same row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "crypto/chain.h"
#include "crypto/keys.h"

#include <stdio.h>
#include <string.h>

static const char *const EVENT[TL_CHAIN_NFIELDS] = {
    "4f1c2b1e-8a8e-4c55-9d5a-0a1b2c3d4e5f",
    "tube.open",
    "1633655523000000",
    "collector",
    "S1",
    "1633655524123456",
    "abababababababababababababababababababababababababababababababab",
    "BY-T1A-0001",
    NULL,
    "{\"tube\": \"BY-T1A-0001\", \"round\": \"R1\"}",
    "{}"};
static const char PART[] = "230126/2021-10-08";
static const unsigned char ZERO[32];

static void hex_of(const unsigned char l[32], char out[65]) { tl_chain_hex(l, 32, out); }

static void test_known_links(void **state) {
  (void)state;
  unsigned char l1[32], l2[32];
  char h[65];
  assert_int_equal(tl_chain_link(ZERO, PART, 1, EVENT, l1), 0);
  hex_of(l1, h);
  assert_string_equal(h, "ac06dfe42ff96325024f934f24f263df2396710bdd5e689bee842ed089304412");
  assert_int_equal(tl_chain_link(l1, PART, 2, EVENT, l2), 0);
  hex_of(l2, h);
  assert_string_equal(h, "b3cf9e6632753076e91af00fd7d821fda863f81b492e592a3e23cf49b457c0c7");
  /* in place (out aliasing prev) gives the same */
  assert_int_equal(tl_chain_link(l1, PART, 2, EVENT, l1), 0);
  assert_memory_equal(l1, l2, 32);
}

static void test_canonical_bytes(void **state) {
  (void)state;
  unsigned char buf[512];
  size_t n = tl_chain_canonical(PART, 1, EVENT, buf, sizeof buf);
  assert_int_equal(n, 294);
  /* starts with the tag's length and bytes */
  assert_memory_equal(buf, "\0\0\0\x11tubeloop-chain-v1", 4 + 17);
  /* box is NULL: 0xFFFFFFFF and no bytes, right before the body's length */
  const unsigned char null_then_body[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 38, '{'};
  assert_non_null(memmem(buf, n, null_then_body, sizeof null_then_body));
  /* a short buffer gets a prefix and the full length */
  unsigned char small[8];
  assert_int_equal(tl_chain_canonical(PART, 1, EVENT, small, sizeof small), 294);
  assert_memory_equal(small, buf, sizeof small);
}

/* Every fact of the event, the partition and the position change the link. */
static void test_every_field_counts(void **state) {
  (void)state;
  unsigned char base[32], other[32];
  assert_int_equal(tl_chain_link(ZERO, PART, 1, EVENT, base), 0);
  for (int i = 0; i < TL_CHAIN_NFIELDS; i++) {
    const char *f[TL_CHAIN_NFIELDS];
    char changed[128];
    memcpy(f, EVENT, sizeof f);
    snprintf(changed, sizeof changed, "%sx", EVENT[i] ? EVENT[i] : "");
    f[i] = changed;
    assert_int_equal(tl_chain_link(ZERO, PART, 1, f, other), 0);
    assert_memory_not_equal(base, other, 32);
    /* one flipped bit */
    if (EVENT[i]) {
      snprintf(changed, sizeof changed, "%s", EVENT[i]);
      changed[0] ^= 1;
      assert_int_equal(tl_chain_link(ZERO, PART, 1, f, other), 0);
      assert_memory_not_equal(base, other, 32);
    }
  }
  assert_int_equal(tl_chain_link(ZERO, "230126/2021-10-09", 1, EVENT, other), 0);
  assert_memory_not_equal(base, other, 32);
  assert_int_equal(tl_chain_link(ZERO, PART, 2, EVENT, other), 0);
  assert_memory_not_equal(base, other, 32);
  unsigned char prev[32] = {1};
  assert_int_equal(tl_chain_link(prev, PART, 1, EVENT, other), 0);
  assert_memory_not_equal(base, other, 32);
}

/* Length prefixes: NULL is not "", and moving a byte across a field boundary shows. */
static void test_unambiguous(void **state) {
  (void)state;
  const char *a[TL_CHAIN_NFIELDS], *b[TL_CHAIN_NFIELDS];
  unsigned char la[32], lb[32];
  memcpy(a, EVENT, sizeof a);
  memcpy(b, EVENT, sizeof b);
  a[8] = NULL;
  b[8] = "";
  assert_int_equal(tl_chain_link(ZERO, PART, 1, a, la), 0);
  assert_int_equal(tl_chain_link(ZERO, PART, 1, b, lb), 0);
  assert_memory_not_equal(la, lb, 32);
  a[7] = "BY-T1A-000";
  a[8] = "1";
  b[7] = "BY-T1A-0001";
  b[8] = "";
  assert_int_equal(tl_chain_link(ZERO, PART, 1, a, la), 0);
  assert_int_equal(tl_chain_link(ZERO, PART, 1, b, lb), 0);
  assert_memory_not_equal(la, lb, 32);
}

static void test_checkpoint_signatures(void **state) {
  (void)state;
  unsigned char seed[32], pub[32], link[32], sig[64];
  for (int i = 0; i < 32; i++) seed[i] = (unsigned char)(i * 7 + 1);
  assert_int_equal(tl_chain_link(ZERO, PART, 1, EVENT, link), 0);
  assert_int_equal(tl_chain_public_key(seed, pub), 0);
  char kid[17];
  tl_chain_key_id(pub, kid);
  assert_int_equal(strlen(kid), 16);
  assert_int_equal(strspn(kid, "0123456789abcdef"), 16);
  assert_int_equal(tl_chain_sign(seed, PART, 312, link, 1633655524123456LL, sig), 0);
  assert_true(tl_chain_verify(pub, PART, 312, link, 1633655524123456LL, sig));
  /* anything else signed is refused */
  assert_false(tl_chain_verify(pub, "230126/2021-10-09", 312, link, 1633655524123456LL, sig));
  assert_false(tl_chain_verify(pub, PART, 311, link, 1633655524123456LL, sig));
  assert_false(tl_chain_verify(pub, PART, 312, link, 1633655524123457LL, sig));
  link[31] ^= 1;
  assert_false(tl_chain_verify(pub, PART, 312, link, 1633655524123456LL, sig));
  link[31] ^= 1;
  sig[0] ^= 1;
  assert_false(tl_chain_verify(pub, PART, 312, link, 1633655524123456LL, sig));
  sig[0] ^= 1;
  /* another key does not verify it */
  unsigned char seed2[32], pub2[32];
  memcpy(seed2, seed, 32);
  seed2[0] ^= 0x80;
  assert_int_equal(tl_chain_public_key(seed2, pub2), 0);
  assert_false(tl_chain_verify(pub2, PART, 312, link, 1633655524123456LL, sig));
}

static void test_hex(void **state) {
  (void)state;
  unsigned char b[4];
  assert_int_equal(tl_chain_unhex("00fFa1", b, 3), 0);
  assert_int_equal(b[1], 0xff);
  assert_int_equal(tl_chain_unhex("00ff", b, 3), TL_EINVAL);
  assert_int_equal(tl_chain_unhex("00fg11", b, 3), TL_EINVAL);
  assert_int_equal(tl_chain_unhex(NULL, b, 1), TL_EINVAL);
}

#define HMAC_LINE "hmac 0101010101010101010101010101010101010101010101010101010101010101\n"
#define AES_LINE "aes 1 0202020202020202020202020202020202020202020202020202020202020202\n"
#define SIGN_A "sign 0303030303030303030303030303030303030303030303030303030303030303\n"
#define SIGN_B "sign 0404040404040404040404040404040404040404040404040404040404040404\n"

static void test_keys_sign_lines(void **state) {
  (void)state;
  tl_keys_t k, k2;
  char err[128];
  /* an old file (no sign line) keeps working: a key derived from hmac, the same every time */
  assert_int_equal(tl_keys_parse(&k, HMAC_LINE AES_LINE, err, sizeof err), 0);
  assert_int_equal(k.nsign, 1);
  assert_true(k.sign_derived);
  assert_int_equal(tl_keys_parse(&k2, HMAC_LINE AES_LINE, err, sizeof err), 0);
  assert_memory_equal(k.sign[0], k2.sign[0], 32);
  assert_memory_not_equal(k.sign[0], k.hmac, 32);
  /* sign lines: in order, the last signs */
  assert_int_equal(tl_keys_parse(&k, HMAC_LINE AES_LINE SIGN_A SIGN_B, err, sizeof err), 0);
  assert_int_equal(k.nsign, 2);
  assert_false(k.sign_derived);
  assert_int_equal(k.sign[0][0], 3);
  assert_int_equal(k.sign[1][0], 4);
  /* malformed sign lines are refused */
  assert_int_equal(tl_keys_parse(&k, HMAC_LINE AES_LINE "sign 0303\n", err, sizeof err), TL_EINVAL);
  assert_int_equal(tl_keys_parse(&k, HMAC_LINE AES_LINE "sign\n", err, sizeof err), TL_EINVAL);
  assert_int_equal(
      tl_keys_parse(&k, HMAC_LINE AES_LINE "sign 03 03\n", err, sizeof err), TL_EINVAL);
  /* a generated file has one, and it parses */
  char text[1024];
  assert_int_equal(tl_keys_generate(text, sizeof text), 0);
  assert_non_null(strstr(text, "\nsign "));
  assert_int_equal(tl_keys_parse(&k, text, err, sizeof err), 0);
  assert_int_equal(k.nsign, 1);
  assert_false(k.sign_derived);
  tl_keys_dispose(&k);
  tl_keys_dispose(&k2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_links),       cmocka_unit_test(test_canonical_bytes),
      cmocka_unit_test(test_every_field_counts), cmocka_unit_test(test_unambiguous),
      cmocka_unit_test(test_checkpoint_signatures), cmocka_unit_test(test_hex),
      cmocka_unit_test(test_keys_sign_lines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
