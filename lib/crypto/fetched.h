/* The OpenSSL 3 algorithms of the per-event path, fetched once per process, and random GCM
 * nonces drawn from a buffer. Fetching by name (what EVP_aes_256_gcm() in an init, HMAC() and
 * EVP_MAC_fetch do on every call) walks the provider tables with string compares and locks; a
 * profile of a burst of uploads had it, with a 12-byte RAND_bytes per encrypted field, at a
 * fifth of the daemon's CPU. Safe from any thread: the fetches happen once (pthread_once), the
 * nonce buffer is per thread and emptied in a forked child (pthread_atfork). */
#ifndef TL_CRYPTO_FETCHED_H
#define TL_CRYPTO_FETCHED_H

#include "base/err.h"

#include <openssl/evp.h>

#include <stddef.h>

/* HMAC and AES-256-GCM, or NULL when OpenSSL cannot provide them. Not to be freed. */
EVP_MAC *tl_fetched_hmac(void);
EVP_CIPHER *tl_fetched_aes_256_gcm(void);

/* HMAC-SHA256 of the concatenation of n pieces under key, into md[32]. 0 or TL_EIO. */
TL_WUR int tl_fetched_hmac_sha256(const unsigned char *key, size_t keylen, const void *const *pieces,
                                  const size_t *lens, int n, unsigned char md[32]);

/* n (≤ 64) fresh random bytes for a nonce. 0 or TL_EIO. */
TL_WUR int tl_fetched_nonce(unsigned char *out, size_t n);

#endif
