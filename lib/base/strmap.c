/* String index (strmap.h). Kept at most half full; linear probing. */
#include "base/strmap.h"

#include "base/hash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void tl_strmap_init(tl_strmap_t *m) { memset(m, 0, sizeof *m); }

void tl_strmap_dispose(tl_strmap_t *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

static size_t hash(const char *key) {
  uint64_t h = tl_fnv1a_str(TL_FNV1A_START, key);
  return (size_t)(h ^ (h >> 32));
}

/* The slot of key, or the free slot where it would go. cap > 0. */
static size_t slot(const tl_strmap_t *m, const char *key) {
  size_t i = hash(key) & (m->cap - 1);
  while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
  return i;
}

int tl_strmap_get(const tl_strmap_t *m, const char *key) {
  if (m->cap == 0) return -1;
  size_t i = slot(m, key);
  return m->keys[i] ? m->vals[i] : -1;
}

static int grow(tl_strmap_t *m) {
  tl_strmap_t big = {0};
  big.cap = m->cap ? m->cap * 2 : 64;
  big.keys = calloc(big.cap, sizeof *big.keys);
  big.vals = calloc(big.cap, sizeof *big.vals);
  if (big.keys == NULL || big.vals == NULL) {
    free(big.keys);
    free(big.vals);
    return TL_ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == NULL) continue;
    size_t j = slot(&big, m->keys[i]);
    big.keys[j] = m->keys[i];
    big.vals[j] = m->vals[i];
  }
  big.n = m->n;
  free(m->keys);
  free(m->vals);
  *m = big;
  return 0;
}

int tl_strmap_put(tl_strmap_t *m, const char *key, int val) {
  if ((m->n + 1) * 2 > m->cap && grow(m) != 0) return TL_ENOMEM;
  size_t i = slot(m, key);
  if (m->keys[i] == NULL) {
    m->keys[i] = key;
    m->n++;
  }
  m->vals[i] = val;
  return 0;
}
