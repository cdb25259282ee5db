/* Fetched algorithms and buffered nonces (fetched.h). */
#include "crypto/fetched.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <pthread.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac;
static EVP_CIPHER *aes_gcm;

static void fetch(void) {
  hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

EVP_MAC *tl_fetched_hmac(void) {
  pthread_once(&once, fetch);
  return hmac;
}

EVP_CIPHER *tl_fetched_aes_256_gcm(void) {
  pthread_once(&once, fetch);
  return aes_gcm;
}

int tl_fetched_hmac_sha256(const unsigned char *key, size_t keylen, const void *const *pieces,
                           const size_t *lens, int n, unsigned char md[32]) {
  EVP_MAC *mac = tl_fetched_hmac();
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                         OSSL_PARAM_construct_end()};
  size_t mdlen = 0;
  int ok = ctx != NULL && EVP_MAC_init(ctx, key, keylen, params) == 1;
  for (int i = 0; ok && i < n; i++) ok = EVP_MAC_update(ctx, pieces[i], lens[i]) == 1;
  ok = ok && EVP_MAC_final(ctx, md, &mdlen, 32) == 1 && mdlen == 32;
  EVP_MAC_CTX_free(ctx);
  return ok ? 0 : TL_EIO;
}

/* 4 KB of the CSPRNG's output at a time: one call instead of one per field. The bytes handed
 * out are wiped from the buffer. A child of fork() starts with an empty buffer (the handler
 * below runs in the one thread it has, whose buffer is the copied one), so it never reuses its
 * parent's bytes. */
static _Thread_local struct {
  unsigned char bytes[4096];
  size_t used;
} pool = {.used = sizeof pool.bytes};

static void pool_forget(void) {
  OPENSSL_cleanse(pool.bytes, sizeof pool.bytes);
  pool.used = sizeof pool.bytes;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, pool_forget); }

int tl_fetched_nonce(unsigned char *out, size_t n) {
  if (n > 64) return TL_EIO;
  pthread_once(&atfork_once, register_atfork); /* before the first bytes are drawn */
  if (pool.used + n > sizeof pool.bytes) {
    if (RAND_bytes(pool.bytes, (int)sizeof pool.bytes) != 1) return TL_EIO;
    pool.used = 0;
  }
  memcpy(out, pool.bytes + pool.used, n);
  OPENSSL_cleanse(pool.bytes + pool.used, n);
  pool.used += n;
  return 0;
}
