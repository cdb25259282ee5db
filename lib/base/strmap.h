/* tl_strmap_t: an index from strings to ints (open addressing, FNV-1a), for finding an event
 * by id or a person by HMAC among the thousand of a group commit in O(1) rather than by a scan
 * of all before it. Keys are borrowed: each must stay valid and unchanged while the map is
 * used. Zeroed memory (or tl_strmap_init) is an empty map. */
#ifndef TL_BASE_STRMAP_H
#define TL_BASE_STRMAP_H

#include "base/err.h"

#include <stddef.h>

typedef struct {
  const char **keys; /* NULL: a free slot */
  int *vals;
  size_t cap;        /* slots, a power of two (0 before the first put) */
  size_t n;          /* keys in use */
} tl_strmap_t;

void tl_strmap_init(tl_strmap_t *m);
void tl_strmap_dispose(tl_strmap_t *m);
/* The value of key, or -1. */
int tl_strmap_get(const tl_strmap_t *m, const char *key);
/* Sets key's value (replacing one there). 0 or TL_ENOMEM (the map unchanged). */
TL_WUR int tl_strmap_put(tl_strmap_t *m, const char *key, int val);

#endif
