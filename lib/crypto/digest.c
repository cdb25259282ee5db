/* Keyed content digests (digest.h): HMAC-SHA256 with the algorithm fetched once. */
#include "crypto/digest.h"

#include "crypto/fetched.h"

#include <string.h>

void tl_digest_hmac(const tl_keys_t *k, const void *data, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[32];
  const void *pieces[] = {data};
  if (tl_fetched_hmac_sha256(k->hmac, sizeof k->hmac, pieces, &len, 1, md) != 0) memset(md, 0, sizeof md);
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}
