/* Keyed digests of content: HMAC-SHA256 with the deployment's hmac key, as hex.
 *
 * Used for the idempotency check of events (the same id with other content is an
 * id_conflict): a keyed digest, unlike a plain hash, cannot be brute-forced back to the ID
 * numbers inside a sample.add by someone who reads the database. */
#ifndef TL_CRYPTO_DIGEST_H
#define TL_CRYPTO_DIGEST_H

#include "crypto/keys.h"

#include <stddef.h>

void tl_digest_hmac(const tl_keys_t *k, const void *data, size_t len, char out[65]);

#endif
