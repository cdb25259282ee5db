/* Unit tests of personal-data protection (crypto/pii.h): AES-256-GCM round trips, refusal of
 * tampered or relabelled values, key rotation, and the HMAC lookup key. Keys are literal test
 * keys parsed with tl_keys_parse, never a deployment's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "crypto/keys.h"
#include "crypto/digest.h"
#include "crypto/fetched.h"
#include "crypto/pii.h"
#include "domain/validate.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

#define HMAC_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HMAC_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define AES_1 "1111111111111111111111111111111111111111111111111111111111111111"
#define AES_2 "2222222222222222222222222222222222222222222222222222222222222222"

static const char keys1_text[] = "# test keys\nhmac " HMAC_A "\naes 1 " AES_1 "\n";
static const char keys12_text[] = "hmac " HMAC_A "\naes 1 " AES_1 "\naes 2 " AES_2 "\n";
static const char keysb_text[] = "hmac " HMAC_B "\naes 1 " AES_1 "\n";
/* Two ids over the SAME key bytes: only the associated data tells them apart. */
static const char keys_same_text[] = "hmac " HMAC_A "\naes 1 " AES_1 "\naes 2 " AES_1 "\n";

static void load(tl_keys_t *k, const char *text) {
  char err[128];
  assert_int_equal(tl_keys_parse(k, text, err, sizeof err), 0);
}

/* Encrypts s[0..len) with k into a fresh NUL-terminated string in b. */
static unsigned enc(const tl_keys_t *k, const char *s, size_t len, tl_buf_t *b) {
  unsigned id = 0;
  tl_buf_reset(b);
  assert_int_equal(tl_pii_encrypt(k, s, len, b, &id), 0);
  (void)tl_buf_cstr(b);
  return id;
}

static int is_b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/' || c == '=';
}

static void test_round_trip(void **state) {
  (void)state;
  tl_keys_t k;
  load(&k, keys1_text);
  /* 1 KiB of UTF-8: 341 three-byte characters and one ASCII byte. */
  char kib[1025];
  size_t n = 0;
  for (int i = 0; i < 341; i++) {
    memcpy(kib + n, i % 2 ? "娜" : "✓", 3);
    n += 3;
  }
  kib[n++] = '!';
  kib[n] = '\0';
  assert_int_equal(n, 1024);
  assert_true(tl_utf8_valid(kib, n));
  const struct {
    const char *s;
    size_t len;
  } cases[] = {
      {"", 0},     {"张三", strlen("张三")}, {"11010519491231002X", 18}, {"13812345678", 11},
      {"a\0b", 3}, /* bytes, not C strings */
      {kib, 1024},
  };
  tl_buf_t b64, plain;
  tl_buf_init(&b64);
  tl_buf_init(&plain);
  for (size_t i = 0; i < N(cases); i++) {
    unsigned id = enc(&k, cases[i].s, cases[i].len, &b64);
    assert_int_equal(id, 1);
    /* nonce || ciphertext || tag, base64 with padding, one line */
    assert_int_equal(b64.len, (12 + cases[i].len + 16 + 2) / 3 * 4);
    for (size_t j = 0; j < b64.len; j++) assert_true(is_b64_char(b64.data[j]));
    tl_buf_reset(&plain);
    assert_int_equal(tl_pii_decrypt(&k, id, b64.data, b64.len, &plain), 0);
    assert_int_equal(plain.len, cases[i].len);
    if (cases[i].len > 0) assert_memory_equal(plain.data, cases[i].s, cases[i].len);
  }
  /* Decrypt appends after what the buffer holds. */
  enc(&k, "张三", strlen("张三"), &b64);
  tl_buf_reset(&plain);
  assert_int_equal(tl_buf_append(&plain, "name=", 5), 0);
  assert_int_equal(tl_pii_decrypt(&k, 1, b64.data, b64.len, &plain), 0);
  assert_string_equal(tl_buf_cstr(&plain), "name=张三");
  /* A fresh nonce each time: the same value never encrypts to the same text. */
  tl_buf_t again;
  tl_buf_init(&again);
  enc(&k, "张三", strlen("张三"), &again);
  assert_string_not_equal(tl_buf_cstr(&b64), tl_buf_cstr(&again));
  tl_buf_dispose(&again);
  tl_buf_dispose(&b64);
  tl_buf_dispose(&plain);
  tl_keys_dispose(&k);
}

static void test_ciphertext_hides_plaintext(void **state) {
  (void)state;
  tl_keys_t k;
  load(&k, keys1_text);
  static const char *values[] = {"11010519491231002X", "13812345678", "AAAAAAAAAAAAAAAAAAAAAAAA",
                                 "E12345678"};
  tl_buf_t b;
  tl_buf_init(&b);
  for (size_t i = 0; i < N(values); i++) {
    size_t len = strlen(values[i]);
    enc(&k, values[i], len, &b);
    assert_null(strstr(b.data, values[i]));
    /* Nor the value merely base64-encoded (it would sit right after the 16-char nonce). */
    unsigned char plain_b64[64];
    int m = EVP_EncodeBlock(plain_b64, (const unsigned char *)values[i], (int)len);
    plain_b64[m / 4 * 4 - 4] = '\0'; /* drop the last, padded group */
    assert_null(strstr(b.data, (const char *)plain_b64));
  }
  tl_buf_dispose(&b);
  tl_keys_dispose(&k);
}

static void test_tampering(void **state) {
  (void)state;
  tl_keys_t k;
  load(&k, keys1_text);
  tl_buf_t b, plain;
  tl_buf_init(&b);
  tl_buf_init(&plain);
  const char *values[] = {"", "张三", "11010519491231002X"};
  for (size_t v = 0; v < N(values); v++) {
    enc(&k, values[v], strlen(values[v]), &b);
    char *orig = strdup(b.data);
    size_t len = b.len;
    /* Every single character changed, to several other characters, is refused. */
    static const char repl[] = {'A', 'B', 'g', '0', '/', '=', '!', ' '};
    for (size_t pos = 0; pos < len; pos++)
      for (size_t r = 0; r < sizeof repl; r++) {
        if (orig[pos] == repl[r]) continue;
        char *t = strdup(orig);
        t[pos] = repl[r];
        tl_buf_reset(&plain);
        int rc = tl_pii_decrypt(&k, 1, t, len, &plain);
        if (rc != TL_EINVAL) fail_msg("value %zu: '%c' at %zu accepted", v, repl[r], pos);
        assert_int_equal(plain.len, 0); /* nothing unauthenticated is handed out */
        free(t);
      }
    /* Flipping one bit of the last data character: the same tag check must catch it. */
    char *t = strdup(orig);
    size_t last = len - 1;
    while (t[last] == '=') last--;
    t[last] = t[last] == 'A' ? 'Q' : 'A';
    assert_int_equal(tl_pii_decrypt(&k, 1, t, len, &plain), TL_EINVAL);
    free(t);
    /* Cut, extended, wrapped in white space, emptied. */
    assert_int_equal(tl_pii_decrypt(&k, 1, orig, len - 4, &plain), TL_EINVAL);
    char longer[256];
    snprintf(longer, sizeof longer, "%sAAAA", orig);
    assert_int_equal(tl_pii_decrypt(&k, 1, longer, strlen(longer), &plain), TL_EINVAL);
    snprintf(longer, sizeof longer, "%s\n", orig);
    assert_int_equal(tl_pii_decrypt(&k, 1, longer, strlen(longer), &plain), TL_EINVAL);
    snprintf(longer, sizeof longer, "%.8s\n%s", orig, orig + 8);
    assert_int_equal(tl_pii_decrypt(&k, 1, longer, strlen(longer), &plain), TL_EINVAL);
    assert_int_equal(tl_pii_decrypt(&k, 1, "", 0, &plain), TL_EINVAL);
    assert_int_equal(plain.len, 0);
    /* The untouched value still decrypts (the refusals above were for the changes). */
    assert_int_equal(tl_pii_decrypt(&k, 1, orig, len, &plain), 0);
    assert_int_equal(plain.len, strlen(values[v]));
    tl_buf_reset(&plain);
    free(orig);
  }
  /* A value whose unused base64 bits are set decodes to the same bytes in a lax decoder;
   * here it is refused. 28 + 1 = 29 bytes: the last group holds two bytes ("XYZ="), and the
   * lowest 2 bits of Z's 6-bit value are unused. */
  enc(&k, "x", 1, &b);
  assert_int_equal(b.data[b.len - 1], '=');
  assert_true(b.data[b.len - 2] != '=');
  char *t = strdup(b.data);
  int v = t[b.len - 2];
  /* Set the lowest (unused) bit. */
  const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  int idx = (int)(strchr(alpha, v) - alpha);
  t[b.len - 2] = alpha[idx ^ 1];
  assert_int_equal(tl_pii_decrypt(&k, 1, t, b.len, &plain), TL_EINVAL);
  free(t);
  tl_buf_dispose(&b);
  tl_buf_dispose(&plain);
  tl_keys_dispose(&k);
}

static void test_key_ids_and_rotation(void **state) {
  (void)state;
  tl_keys_t k1, k12, same;
  load(&k1, keys1_text);
  load(&k12, keys12_text);
  load(&same, keys_same_text);
  tl_buf_t old_v, new_v, plain;
  tl_buf_init(&old_v);
  tl_buf_init(&new_v);
  tl_buf_init(&plain);

  /* Before rotation: key 1 encrypts. */
  assert_int_equal(enc(&k1, "张三", strlen("张三"), &old_v), 1);
  /* Wrong or unknown key id. */
  assert_int_equal(tl_pii_decrypt(&k1, 2, old_v.data, old_v.len, &plain), TL_EINVAL);
  assert_int_equal(tl_pii_decrypt(&k1, 0, old_v.data, old_v.len, &plain), TL_EINVAL);
  assert_int_equal(tl_pii_decrypt(&k12, 2, old_v.data, old_v.len, &plain), TL_EINVAL);
  assert_int_equal(plain.len, 0);

  /* After rotation (aes 2 appended): new values use key 2, old ones still decrypt. */
  assert_int_equal(enc(&k12, "李四", strlen("李四"), &new_v), 2);
  assert_int_equal(tl_pii_decrypt(&k12, 1, old_v.data, old_v.len, &plain), 0);
  assert_string_equal(tl_buf_cstr(&plain), "张三");
  tl_buf_reset(&plain);
  assert_int_equal(tl_pii_decrypt(&k12, 2, new_v.data, new_v.len, &plain), 0);
  assert_string_equal(tl_buf_cstr(&plain), "李四");
  tl_buf_reset(&plain);
  assert_int_equal(tl_pii_decrypt(&k12, 1, new_v.data, new_v.len, &plain), TL_EINVAL);
  /* A daemon still on the old keys file cannot read the new value. */
  assert_int_equal(tl_pii_decrypt(&k1, 2, new_v.data, new_v.len, &plain), TL_EINVAL);
  assert_int_equal(plain.len, 0);

  /* Relabelling: ids 1 and 2 share the key bytes, so only the associated data (the key id)
   * makes a value stored under id 1 fail under id 2. */
  assert_int_equal(tl_pii_decrypt(&same, 1, old_v.data, old_v.len, &plain), 0);
  tl_buf_reset(&plain);
  assert_int_equal(tl_pii_decrypt(&same, 2, old_v.data, old_v.len, &plain), TL_EINVAL);
  assert_int_equal(plain.len, 0);

  /* No aes key, an oversized value: refused, the output untouched. */
  tl_keys_t none;
  memset(&none, 0, sizeof none);
  unsigned id = 77;
  tl_buf_reset(&new_v);
  assert_int_equal(tl_pii_encrypt(&none, "x", 1, &new_v, &id), TL_EINVAL);
  assert_int_equal(id, 77);
  assert_int_equal(new_v.len, 0);
  assert_int_equal(tl_pii_encrypt(&k1, "x", TL_PII_MAX + 1, &new_v, &id), TL_EINVAL);
  assert_int_equal(new_v.len, 0);

  tl_buf_dispose(&old_v);
  tl_buf_dispose(&new_v);
  tl_buf_dispose(&plain);
  tl_keys_dispose(&k1);
  tl_keys_dispose(&k12);
  tl_keys_dispose(&same);
}

/* Known answer of the content digest (the idempotency check compares stored digests with new
 * ones, so its bytes must never change): HMAC-SHA256(key 00..1f, {"a":1}) by `openssl dgst`. */
static void test_digest_known_answer(void **state) {
  (void)state;
  tl_keys_t k1;
  load(&k1, keys1_text);
  char d[65];
  tl_digest_hmac(&k1, "{\"a\":1}", 7, d);
  assert_string_equal(d, "b4cebde30982443ec36c18fa99ad10a70e705bba779f57c37e84decb64ae50fb");
  tl_keys_dispose(&k1);
}

/* GCM nonces come from a buffer: a forked child must not hand out the bytes its parent will
 * (a nonce used twice under one key breaks GCM). Parent and child each draw the nonce after
 * the fork; they must differ. */
static void test_nonce_after_fork(void **state) {
  (void)state;
  unsigned char first[12], mine[12], theirs[12];
  assert_int_equal(tl_fetched_nonce(first, sizeof first), 0); /* the buffer is full now */
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    unsigned char n[12];
    int ok = tl_fetched_nonce(n, sizeof n) == 0 && write(fds[1], n, sizeof n) == (ssize_t)sizeof n;
    _exit(ok ? 0 : 1);
  }
  assert_int_equal(tl_fetched_nonce(mine, sizeof mine), 0);
  assert_int_equal(read(fds[0], theirs, sizeof theirs), (ssize_t)sizeof theirs);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_memory_not_equal(mine, theirs, sizeof mine);
  assert_memory_not_equal(first, mine, sizeof mine);
  close(fds[0]);
  close(fds[1]);
}

static void test_lookup_hmac(void **state) {
  (void)state;
  tl_keys_t k1, k12, kb;
  load(&k1, keys1_text);
  load(&k12, keys12_text);
  load(&kb, keysb_text);
  char a[65], b[65];

  /* Known answer: HMAC-SHA256(key 00..1f, "resident_id:11010519491231002X"). */
  tl_pii_lookup_hmac(&k1, TL_ID_RESIDENT, "11010519491231002X", a);
  assert_string_equal(a, "f181c6ae51717d38c4ef10716c75110632dbe05c57d2a6372569b186bed3e8da");

  /* Deterministic, and unchanged by aes rotation (same hmac line). */
  tl_pii_lookup_hmac(&k1, TL_ID_RESIDENT, "11010519491231002X", b);
  assert_string_equal(a, b);
  tl_pii_lookup_hmac(&k12, TL_ID_RESIDENT, "11010519491231002X", b);
  assert_string_equal(a, b);

  /* Another hmac key gives another lookup key. */
  tl_pii_lookup_hmac(&kb, TL_ID_RESIDENT, "11010519491231002X", b);
  assert_int_equal(strlen(b), 64);
  assert_string_not_equal(a, b);

  /* The id type is part of the message: the same characters under different types differ. */
  char t[3][65];
  tl_pii_lookup_hmac(&k1, TL_ID_RESIDENT, "E12345678", t[0]);
  tl_pii_lookup_hmac(&k1, TL_ID_PASSPORT, "E12345678", t[1]);
  tl_pii_lookup_hmac(&k1, TL_ID_OTHER, "E12345678", t[2]);
  assert_string_not_equal(t[0], t[1]);
  assert_string_not_equal(t[1], t[2]);
  assert_string_not_equal(t[0], t[2]);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(strlen(t[i]), 64);
    assert_int_equal(strspn(t[i], "0123456789abcdef"), 64);
  }
  /* Different numbers differ. */
  tl_pii_lookup_hmac(&k1, TL_ID_PASSPORT, "E12345679", b);
  assert_string_not_equal(t[1], b);

  /* An unknown id type yields "", which can match no stored 64-char key. */
  memset(b, 'z', sizeof b);
  tl_pii_lookup_hmac(&k1, 9, "E12345678", b);
  assert_string_equal(b, "");
  tl_pii_lookup_hmac(&k1, -1, "E12345678", b);
  assert_string_equal(b, "");

  tl_keys_dispose(&k1);
  tl_keys_dispose(&k12);
  tl_keys_dispose(&kb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_ciphertext_hides_plaintext),
      cmocka_unit_test(test_tampering),   cmocka_unit_test(test_key_ids_and_rotation),
      cmocka_unit_test(test_lookup_hmac),
      cmocka_unit_test(test_digest_known_answer),
      cmocka_unit_test(test_nonce_after_fork),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
