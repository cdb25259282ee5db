/* Token generation and hashing (token.h) on OpenSSL's RAND_bytes and EVP digests. */
#include "crypto/token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

static const char hex[] = "0123456789abcdef";

static void to_hex(const unsigned char *in, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 15];
  }
  out[2 * n] = '\0';
}

int tl_token_new(char out[TL_TOKEN_LEN + 1]) {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return TL_EIO;
  memcpy(out, "tl_", 3);
  to_hex(raw, sizeof raw, out + 3);
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

void tl_token_hash(const char *token, size_t len, char out[TL_TOKEN_HASH_LEN + 1]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL);
  to_hex(md, 32, out);
}

int tl_token_well_formed(const char *token, size_t len) {
  if (len != TL_TOKEN_LEN || memcmp(token, "tl_", 3) != 0) return 0;
  for (size_t i = 3; i < len; i++)
    if (strchr(hex, token[i]) == NULL || token[i] == '\0') return 0;
  return 1;
}

int tl_token_equal(const char *a, const char *b, size_t len) {
  return CRYPTO_memcmp(a, b, len) == 0;
}
