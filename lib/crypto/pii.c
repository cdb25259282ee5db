/* AES-256-GCM encryption and HMAC lookup keys for personal data (pii.h), on OpenSSL 3 EVP.
 *
 * The base64 codec is written here rather than taken from EVP_EncodeBlock/EVP_DecodeBlock
 * because OpenSSL's decoder is lenient (it skips white space and ignores the unused low bits
 * of the last group), and a stored value must have exactly one accepted spelling. */
#include "crypto/pii.h"

#include "crypto/fetched.h"
#include "domain/validate.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

static void b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64_alphabet[v >> 18 & 63];
    out[o++] = b64_alphabet[v >> 12 & 63];
    out[o++] = b64_alphabet[v >> 6 & 63];
    out[o++] = b64_alphabet[v & 63];
  }
  if (n - i == 1) {
    unsigned v = (unsigned)in[i] << 16;
    out[o++] = b64_alphabet[v >> 18 & 63];
    out[o++] = b64_alphabet[v >> 12 & 63];
    out[o++] = '=';
    out[o++] = '=';
  } else if (n - i == 2) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
    out[o++] = b64_alphabet[v >> 18 & 63];
    out[o++] = b64_alphabet[v >> 12 & 63];
    out[o++] = b64_alphabet[v >> 6 & 63];
    out[o++] = '=';
  }
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Canonical base64 → bytes; out needs len / 4 * 3 bytes. Returns the decoded length or -1. */
static long b64_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 != 0) return -1;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    int last = i + 4 == len;
    int pad = last && in[i + 3] == '=' ? (in[i + 2] == '=' ? 2 : 1) : 0;
    int v[4] = {0, 0, 0, 0};
    for (int j = 0; j < 4 - pad; j++)
      if ((v[j] = b64_value(in[i + (size_t)j])) < 0) return -1;
    unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
    /* The bits below the last whole byte must be zero, or two texts would decode alike. */
    if ((pad == 1 && (w & 0xFF) != 0) || (pad == 2 && (w & 0xFFFF) != 0)) return -1;
    out[o++] = (unsigned char)(w >> 16);
    if (pad < 2) out[o++] = (unsigned char)(w >> 8 & 0xFF);
    if (pad < 1) out[o++] = (unsigned char)(w & 0xFF);
  }
  return (long)o;
}

/* The associated data: the key id as decimal text, binding each value to its key id. */
static int key_id_aad(unsigned id, char aad[16]) { return snprintf(aad, 16, "%u", id); }

int tl_pii_encrypt(const tl_keys_t *k, const char *plain, size_t len, tl_buf_t *out_b64,
                   unsigned *key_id) {
  if (k == NULL || k->naes <= 0 || k->naes > TL_KEYS_MAX || out_b64 == NULL || key_id == NULL ||
      (plain == NULL && len > 0) || len > TL_PII_MAX)
    return TL_EINVAL;
  unsigned id = k->aes[k->naes - 1].id;
  const unsigned char *key = k->aes[k->naes - 1].key;
  char aad[16];
  int aadlen = key_id_aad(id, aad);
  size_t rawlen = TL_PII_NONCE_LEN + len + TL_PII_TAG_LEN, enclen = b64_encoded_len(rawlen);
  unsigned char *raw = malloc(rawlen);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int rc = TL_ENOMEM, n = 0;
  if (raw == NULL || ctx == NULL) goto done;
  rc = TL_EIO;
  /* 96-bit random nonces: GCM stays safe for up to 2^32 values per key, which is why rotation
   * (a new aes line) is part of operating the keys file. */
  if (tl_fetched_nonce(raw, TL_PII_NONCE_LEN) != 0 || tl_fetched_aes_256_gcm() == NULL) goto done;
  if (EVP_EncryptInit_ex(ctx, tl_fetched_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TL_PII_NONCE_LEN, NULL) != 1 ||
      EVP_EncryptInit_ex(ctx, NULL, NULL, key, raw) != 1 ||
      EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, aadlen) != 1)
    goto done;
  size_t ctlen = 0;
  if (len > 0) {
    if (EVP_EncryptUpdate(ctx, raw + TL_PII_NONCE_LEN, &n, (const unsigned char *)plain,
                          (int)len) != 1)
      goto done;
    ctlen = (size_t)n;
  }
  if (EVP_EncryptFinal_ex(ctx, raw + TL_PII_NONCE_LEN + ctlen, &n) != 1) goto done;
  ctlen += (size_t)n;
  if (ctlen != len || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TL_PII_TAG_LEN,
                                          raw + TL_PII_NONCE_LEN + len) != 1)
    goto done;
  rc = tl_buf_reserve(out_b64, enclen);
  if (rc != 0) goto done;
  b64_encode(raw, rawlen, out_b64->data + out_b64->len);
  out_b64->len += enclen;
  *key_id = id;
  rc = 0;
done:
  EVP_CIPHER_CTX_free(ctx); /* wipes the expanded key schedule */
  if (raw != NULL) OPENSSL_cleanse(raw, rawlen);
  free(raw);
  return rc;
}

int tl_pii_decrypt(const tl_keys_t *k, unsigned key_id, const char *b64, size_t len,
                   tl_buf_t *plain) {
  if (k == NULL || plain == NULL || b64 == NULL ||
      len > b64_encoded_len(TL_PII_NONCE_LEN + TL_PII_MAX + TL_PII_TAG_LEN))
    return TL_EINVAL;
  const unsigned char *key = NULL;
  for (int i = 0; i < k->naes && i < TL_KEYS_MAX; i++)
    if (k->aes[i].id == key_id) key = k->aes[i].key;
  if (key == NULL) return TL_EINVAL;
  size_t cap = len / 4 * 3;
  unsigned char *raw = malloc(cap > 0 ? cap : 1);
  if (raw == NULL) return TL_ENOMEM;
  EVP_CIPHER_CTX *ctx = NULL;
  unsigned char *dst = NULL;
  size_t ctlen = 0;
  int rc = TL_EINVAL, n = 0;
  long rawlen = b64_decode(b64, len, raw);
  if (rawlen < TL_PII_NONCE_LEN + TL_PII_TAG_LEN) goto done;
  ctlen = (size_t)rawlen - TL_PII_NONCE_LEN - TL_PII_TAG_LEN;
  rc = tl_buf_reserve(plain, ctlen);
  if (rc != 0) goto done;
  rc = TL_ENOMEM;
  if ((ctx = EVP_CIPHER_CTX_new()) == NULL) goto done;
  rc = TL_EINVAL;
  dst = (unsigned char *)plain->data + plain->len;
  char aad[16];
  int aadlen = key_id_aad(key_id, aad);
  if (tl_fetched_aes_256_gcm() == NULL ||
      EVP_DecryptInit_ex(ctx, tl_fetched_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TL_PII_NONCE_LEN, NULL) != 1 ||
      EVP_DecryptInit_ex(ctx, NULL, NULL, key, raw) != 1 ||
      EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, aadlen) != 1)
    goto done;
  size_t outlen = 0;
  if (ctlen > 0) {
    if (EVP_DecryptUpdate(ctx, dst, &n, raw + TL_PII_NONCE_LEN, (int)ctlen) != 1) goto done;
    outlen = (size_t)n;
  }
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TL_PII_TAG_LEN,
                          raw + TL_PII_NONCE_LEN + ctlen) != 1)
    goto done;
  /* Final verifies the tag; until it does, the bytes in dst are unauthenticated. */
  if (EVP_DecryptFinal_ex(ctx, dst + outlen, &n) != 1) goto done;
  outlen += (size_t)n;
  if (outlen != ctlen) goto done;
  plain->len += outlen;
  rc = 0;
done:
  if (rc != 0 && dst != NULL) OPENSSL_cleanse(dst, ctlen);
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(raw, cap > 0 ? cap : 1);
  free(raw);
  return rc;
}

void tl_pii_lookup_hmac(const tl_keys_t *k, int id_type, const char *normalized_id,
                        char out[TL_PII_HMAC_HEX_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  out[0] = '\0';
  const char *name = tl_id_type_name(id_type);
  if (k == NULL || name == NULL || normalized_id == NULL) return;
  unsigned char md[32];
  /* Fed in three pieces so the ID number is never copied into another buffer. */
  const void *pieces[] = {name, ":", normalized_id};
  const size_t lens[] = {strlen(name), 1, strlen(normalized_id)};
  int ok = tl_fetched_hmac_sha256(k->hmac, sizeof k->hmac, pieces, lens, 3, md) == 0;
  if (ok) {
    for (size_t i = 0; i < sizeof md; i++) {
      out[2 * i] = hex[md[i] >> 4];
      out[2 * i + 1] = hex[md[i] & 15];
    }
    out[TL_PII_HMAC_HEX_LEN] = '\0';
  }
  OPENSSL_cleanse(md, sizeof md);
}
