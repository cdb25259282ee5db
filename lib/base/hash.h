/* The one string hash of the project: the group commit's advisory lock keys (so its values must
 * never change: daemons of two versions lock the same keys), the rate limits' buckets and the
 * string indexes. FNV-1a's 64-bit prime and step, but started from 1469598103934665603, which is
 * FNV's offset basis (14695981039346656037) a digit short: the first lock keys were made so,
 * and they stay. Not for anything an attacker should not be able to collide. */
#ifndef TL_BASE_HASH_H
#define TL_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TL_FNV1A_START 1469598103934665603ULL

/* h extended by len bytes of data (start with TL_FNV1A_START). */
static inline uint64_t tl_fnv1a(uint64_t h, const void *data, size_t len) {
  for (size_t i = 0; i < len; i++) h = (h ^ ((const unsigned char *)data)[i]) * 1099511628211ULL;
  return h;
}

/* h extended by the bytes of a NUL-terminated string. */
static inline uint64_t tl_fnv1a_str(uint64_t h, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) h = (h ^ *p) * 1099511628211ULL;
  return h;
}

#endif
