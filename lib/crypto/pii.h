/* Protection of personal data at rest (DESIGN.md §7): AES-256-GCM encryption of ID numbers,
 * names and phones with a key id kept beside each value for rotation, and the keyed
 * HMAC-SHA256 by which a person is looked up without decrypting anything.
 *
 * Sits in the crypto layer on OpenSSL EVP, above domain (validate.h names the id types).
 * Keys come from the keys file (keys.h) and are borrowed for the duration of each call.
 * Stored form of an encrypted value: base64 (standard alphabet, '=' padding, no newlines) of
 * nonce(12) || ciphertext || tag(16), with the key id as the GCM associated data, so a value
 * cannot be moved under another key id, and the key id stored next to it. Random 96-bit
 * nonces keep GCM safe for about 2^32 values per key: at city scale (tens of millions of
 * values a day) rotate, i.e. append a new aes line, well before that. Every function is safe
 * to call from several threads at once with the same keys. */
#ifndef TL_CRYPTO_PII_H
#define TL_CRYPTO_PII_H

#include "base/buf.h"
#include "base/err.h"
#include "crypto/keys.h"

#include <stddef.h>

#define TL_PII_NONCE_LEN 12
#define TL_PII_TAG_LEN 16
#define TL_PII_MAX (1u << 20) /* largest plaintext accepted: 1 MiB */
#define TL_PII_HMAC_HEX_LEN 64

/* Encrypts plain[0..len) (len may be 0) with the LAST aes key of k under a fresh random nonce,
 * APPENDS the base64 text to out_b64 and sets *key_id to the id of the key used.
 * Returns 0; TL_EINVAL when k has no aes key or len > TL_PII_MAX; TL_ENOMEM; TL_EIO when the
 * random source or the cipher fails. On error out_b64 and *key_id are unchanged. */
TL_WUR int tl_pii_encrypt(const tl_keys_t *k, const char *plain, size_t len, tl_buf_t *out_b64,
                          unsigned *key_id);

/* Decrypts b64[0..len) made by tl_pii_encrypt with the aes key `key_id` and APPENDS the
 * plaintext to plain (which the caller then owns and should wipe when done). Only canonical
 * base64 is accepted (no white space, padding only at the end, unused bits zero), so any
 * change to the stored text is refused. Returns 0; TL_EINVAL for an unknown key id, malformed
 * base64, a too short value, or a tag that does not verify (tampered value, wrong key id);
 * TL_ENOMEM. On error plain is unchanged. */
TL_WUR int tl_pii_decrypt(const tl_keys_t *k, unsigned key_id, const char *b64, size_t len,
                          tl_buf_t *plain);

/* Lower-case hex HMAC-SHA256, under k's hmac key, of "<id type name>:<normalized id>"
 * (e.g. "resident_id:11010519491231002X"), where normalized_id is the NUL-terminated output of
 * tl_id_normalize() and id_type a TL_ID_* value (validate.h). Deterministic for one hmac key;
 * the id type is part of the message so a passport and a resident ID that happen to share the
 * same characters are different persons. Writes 64 chars + NUL into out; writes "" (which can
 * match no stored lookup key) when id_type is not a TL_ID_* value or OpenSSL fails, so callers
 * must refuse an empty result. */
void tl_pii_lookup_hmac(const tl_keys_t *k, int id_type, const char *normalized_id,
                        char out[TL_PII_HMAC_HEX_LEN + 1]);

#endif
