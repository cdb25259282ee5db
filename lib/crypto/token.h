/* Bearer tokens: 256 random bits shown once, stored only as their SHA-256.
 *
 * A token reads "tl_" followed by 64 lower-case hex digits. The database keeps the SHA-256 of
 * the whole string (hex); lookups hash the presented token and compare the hashes in constant
 * time, so neither the token nor its timing leaks. */
#ifndef TL_CRYPTO_TOKEN_H
#define TL_CRYPTO_TOKEN_H

#include "base/err.h"

#include <stddef.h>

#define TL_TOKEN_LEN 67      /* "tl_" + 64 hex */
#define TL_TOKEN_HASH_LEN 64 /* hex SHA-256 */

/* Writes a new token (TL_TOKEN_LEN chars + NUL) into out. Returns 0 or TL_EIO. */
TL_WUR int tl_token_new(char out[TL_TOKEN_LEN + 1]);

/* Hex SHA-256 of token[0..len) into out (TL_TOKEN_HASH_LEN chars + NUL). */
void tl_token_hash(const char *token, size_t len, char out[TL_TOKEN_HASH_LEN + 1]);

/* True when token[0..len) has the shape of a token (so garbage is refused before hashing). */
int tl_token_well_formed(const char *token, size_t len);

/* Constant-time equality of two equal-length strings. */
int tl_token_equal(const char *a, const char *b, size_t len);

#endif
