/* The PII keys file (`tubeloopd gen-keys`, `--keys`).
 *
 * Text, one key a line, '#' comments:
 *   hmac <64 hex>          HMAC-SHA256 key for looking persons up by ID number
 *   aes <id> <64 hex>      AES-256-GCM key with its id (1..65535); the LAST one encrypts new
 *                          values, every listed one still decrypts (rotation = append a line)
 *   sign <64 hex>          Ed25519 private key (seed) of the custody chain's checkpoints; the
 *                          LAST one signs, every listed one still verifies. Optional: a file
 *                          without one (made before the chain existed) gets one derived from
 *                          the hmac key, HMAC-SHA256(hmac, "tubeloop chain signing key v1").
 * The file must not be readable by group or others. */
#ifndef TL_CRYPTO_KEYS_H
#define TL_CRYPTO_KEYS_H

#include "base/err.h"

#include <stddef.h>

#define TL_KEYS_MAX 16

typedef struct {
  unsigned char hmac[32];
  int naes;
  struct {
    unsigned id;
    unsigned char key[32];
  } aes[TL_KEYS_MAX];
  int nsign;                           /* >= 1 after parsing */
  int sign_derived;                    /* no sign line: sign[0] derived from hmac */
  unsigned char sign[TL_KEYS_MAX][32]; /* Ed25519 seeds; the last signs */
} tl_keys_t;

/* Writes a new keys file's text into out (NUL-terminated). Returns 0, TL_EIO or TL_EINVAL. */
TL_WUR int tl_keys_generate(char *out, size_t outlen);

/* Parses the text of a keys file. err gets a one-line reason (never key material). */
TL_WUR int tl_keys_parse(tl_keys_t *k, const char *text, char *err, size_t errlen);

/* Reads and parses FILE, refusing one readable by group/others. */
TL_WUR int tl_keys_load(tl_keys_t *k, const char *path, char *err, size_t errlen);

/* Wipes the key material. */
void tl_keys_dispose(tl_keys_t *k);

#endif
