/* Canonical encoding, links and signed checkpoints of the custody chain (chain.h). */
#include "crypto/chain.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Where encoded bytes go: a running digest, or a bounded buffer (length counted past it). */
typedef struct {
  EVP_MD_CTX *md;
  unsigned char *out;
  size_t outlen, len;
  int failed;
} sink_t;

static void put(sink_t *s, const void *p, size_t n) {
  if (s->md) {
    if (EVP_DigestUpdate(s->md, p, n) != 1) s->failed = 1;
  } else if (s->out) {
    if (s->len < s->outlen) {
      size_t k = s->outlen - s->len < n ? s->outlen - s->len : n;
      memcpy(s->out + s->len, p, k);
    }
  }
  s->len += n;
}

static void field(sink_t *s, const void *p, size_t n, int is_null) {
  uint32_t len = is_null ? UINT32_MAX : (uint32_t)n;
  unsigned char be[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                         (unsigned char)(len >> 8), (unsigned char)len};
  put(s, be, 4);
  if (!is_null) put(s, p, n);
}

static void text(sink_t *s, const char *t) { field(s, t, t ? strlen(t) : 0, t == NULL); }

static void number(sink_t *s, long long v) {
  char d[24];
  int n = snprintf(d, sizeof d, "%lld", v);
  field(s, d, (size_t)n, 0);
}

static void encode(sink_t *s, const char *partition, long long seq,
                   const char *const fields[TL_CHAIN_NFIELDS]) {
  text(s, TL_CHAIN_TAG);
  text(s, partition);
  number(s, seq);
  for (int i = 0; i < TL_CHAIN_NFIELDS; i++) text(s, fields[i]);
}

size_t tl_chain_canonical(const char *partition, long long seq,
                          const char *const fields[TL_CHAIN_NFIELDS], unsigned char *out,
                          size_t outlen) {
  sink_t s = {.out = out, .outlen = outlen};
  encode(&s, partition, seq, fields);
  return s.len;
}

int tl_chain_link(const unsigned char prev[32], const char *partition, long long seq,
                  const char *const fields[TL_CHAIN_NFIELDS], unsigned char out[32]) {
  sink_t s = {.md = EVP_MD_CTX_new()};
  if (s.md == NULL) return TL_ENOMEM;
  unsigned char p[32];
  memcpy(p, prev, 32); /* out may alias prev */
  unsigned int n = 0;
  if (EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) s.failed = 1;
  put(&s, p, 32);
  encode(&s, partition, seq, fields);
  if (!s.failed && EVP_DigestFinal_ex(s.md, out, &n) != 1) s.failed = 1;
  EVP_MD_CTX_free(s.md);
  return s.failed || n != 32 ? TL_ENOMEM : 0;
}

/* The checkpoint message (chain.h) into msg; its length, or 0 if it does not fit. */
static size_t checkpoint_message(const char *partition, long long seq, const unsigned char link[32],
                                 long long signed_us, unsigned char *msg, size_t cap) {
  sink_t s = {.out = msg, .outlen = cap};
  text(&s, TL_CHAIN_CHECKPOINT_TAG);
  text(&s, partition);
  number(&s, seq);
  field(&s, link, 32, 0);
  number(&s, signed_us);
  return s.len <= cap ? s.len : 0;
}

int tl_chain_public_key(const unsigned char seed[32], unsigned char pub[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
  size_t n = 32;
  int ok = k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32;
  EVP_PKEY_free(k);
  return ok ? 0 : TL_EINVAL;
}

void tl_chain_key_id(const unsigned char pub[32], char out[17]) {
  unsigned char md[32];
  unsigned int n = 0;
  if (EVP_Digest(pub, 32, md, &n, EVP_sha256(), NULL) != 1) memset(md, 0, sizeof md);
  tl_chain_hex(md, 8, out);
}

int tl_chain_sign(const unsigned char seed[32], const char *partition, long long seq,
                  const unsigned char link[32], long long signed_us, unsigned char sig[64]) {
  unsigned char msg[512];
  size_t len = checkpoint_message(partition, seq, link, signed_us, msg, sizeof msg);
  if (len == 0) return TL_EINVAL;
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t siglen = 64;
  int ok = k != NULL && md != NULL && EVP_DigestSignInit(md, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestSign(md, sig, &siglen, msg, len) == 1 && siglen == 64;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(k);
  return ok ? 0 : TL_EINVAL;
}

int tl_chain_verify(const unsigned char pub[32], const char *partition, long long seq,
                    const unsigned char link[32], long long signed_us, const unsigned char sig[64]) {
  unsigned char msg[512];
  size_t len = checkpoint_message(partition, seq, link, signed_us, msg, sizeof msg);
  if (len == 0) return 0;
  EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = k != NULL && md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestVerify(md, sig, 64, msg, len) == 1;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(k);
  return ok;
}

void tl_chain_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int tl_chain_unhex(const char *in, unsigned char *out, size_t n) {
  if (in == NULL || strlen(in) != 2 * n) return TL_EINVAL;
  for (size_t i = 0; i < n; i++) {
    int hi = nibble(in[2 * i]), lo = nibble(in[2 * i + 1]);
    if (hi < 0 || lo < 0) return TL_EINVAL;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return 0;
}
