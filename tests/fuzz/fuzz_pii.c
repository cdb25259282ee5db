/* Fuzz target: the PII round trip (lib/crypto/pii). Whatever the plaintext, decrypt(encrypt(x))
 * is x, and the stored text never contains x; whatever the stored text, decrypting it either
 * fails cleanly or (practically never) succeeds — it must not crash. */
#include "crypto/keys.h"
#include "crypto/pii.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tl_keys_t keys;
static int have_keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!have_keys) {
    char err[128];
    const char *text = "hmac 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
                       "aes 1 1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\n"
                       "aes 2 a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\n";
    if (tl_keys_parse(&keys, text, err, sizeof err) != 0) abort();
    have_keys = 1;
  }
  tl_buf_t enc, dec;
  tl_buf_init(&enc);
  tl_buf_init(&dec);
  unsigned id = 0;
  if (tl_pii_encrypt(&keys, (const char *)data, size, &enc, &id) != 0) abort();
  if (id != 2) abort(); /* the last key encrypts */
  if (tl_pii_decrypt(&keys, id, enc.data, enc.len, &dec) != 0) abort();
  if (dec.len != size || (size && memcmp(dec.data, data, size) != 0)) abort();
  if (size >= 8 && memmem(enc.data, enc.len, data, size) != NULL) abort();
  tl_buf_reset(&dec);
  /* hostile stored text: a forged GCM tag would be a 2^-128 event; success means a bug */
  if (size > 0 && tl_pii_decrypt(&keys, 1, (const char *)data, size, &dec) == 0) abort();
  char h[TL_PII_HMAC_HEX_LEN + 1];
  tl_pii_lookup_hmac(&keys, 0, "11010519491231002X", h);
  tl_buf_dispose(&enc);
  tl_buf_dispose(&dec);
  return 0;
}
