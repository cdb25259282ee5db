/* Keyed content digests (digest.h) on OpenSSL's one-shot HMAC. */
#include "crypto/digest.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

void tl_digest_hmac(const tl_keys_t *k, const void *data, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[32];
  unsigned int mdlen = 0;
  HMAC(EVP_sha256(), k->hmac, sizeof k->hmac, data, len, md, &mdlen);
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}
