/* The token principals cache of authcache.h: entries allocated one by one (the index borrows
 * their hash as its key), an index from hash to entry, a generation count. */
#include "api/authcache.h"

#include "base/strmap.h"
#include "crypto/token.h"

#include <uv.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
  char hash[TL_TOKEN_HASH_LEN + 1];
  tl_principal_t p;
  uint64_t until_ms; /* uv_hrtime() in ms after which it is not used */
} entry_t;

struct tl_authcache_s {
  tl_strmap_t index; /* hash -> entries[i] */
  entry_t **entries;
  int n, cap;
  uint64_t generation;
  int on;
  int announced; /* 0 unknown, 1 checking, 2 yes, 3 no */
  unsigned long long hits;
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

int tl_authcache_new(tl_authcache_t **out) {
  *out = calloc(1, sizeof **out);
  return *out ? 0 : TL_ENOMEM;
}

static void clear(tl_authcache_t *c) {
  for (int i = 0; i < c->n; i++) free(c->entries[i]);
  c->n = 0;
  tl_strmap_dispose(&c->index);
  tl_strmap_init(&c->index);
}

void tl_authcache_flush(tl_authcache_t *c) {
  if (c == NULL) return;
  clear(c);
  c->generation++;
}

void tl_authcache_free(tl_authcache_t *c) {
  if (c == NULL) return;
  tl_authcache_flush(c);
  free(c->entries);
  free(c);
}

void tl_authcache_set_on(tl_authcache_t *c, int on) {
  if (c == NULL) return;
  tl_authcache_flush(c);
  c->on = on != 0;
}

uint64_t tl_authcache_generation(const tl_authcache_t *c) { return c ? c->generation : 0; }

unsigned long long tl_authcache_hits(const tl_authcache_t *c) { return c ? c->hits : 0; }

int tl_authcache_check_due(tl_authcache_t *c) {
  if (c == NULL || c->announced != 0) return 0;
  c->announced = 1;
  return 1;
}

void tl_authcache_checked(tl_authcache_t *c, int status, int announced) {
  if (c == NULL) return;
  c->announced = status != 0 ? 0 : announced ? 2 : 3;
}

int tl_authcache_get(tl_authcache_t *c, const char *hash, tl_principal_t *out) {
  if (c == NULL || !c->on || c->announced != 2) return 0;
  int i = tl_strmap_get(&c->index, hash);
  if (i < 0 || c->entries[i]->until_ms < now_ms()) return 0;
  *out = c->entries[i]->p;
  c->hits++;
  return 1;
}

void tl_authcache_put(tl_authcache_t *c, uint64_t gen, const char *hash, const tl_principal_t *p) {
  if (c == NULL || !c->on || c->announced != 2 || gen != c->generation ||
      strlen(hash) != TL_TOKEN_HASH_LEN)
    return;
  int i = tl_strmap_get(&c->index, hash);
  if (i >= 0) { /* (an expired one, looked up again) */
    c->entries[i]->p = *p;
    c->entries[i]->until_ms = now_ms() + TL_AUTHCACHE_TTL_MS;
    return;
  }
  if (c->n == TL_AUTHCACHE_MAX) clear(c); /* (not a change: lookups under way may be kept) */
  if (c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 64;
    entry_t **e = realloc(c->entries, (size_t)cap * sizeof *e);
    if (e == NULL) return;
    c->entries = e;
    c->cap = cap;
  }
  entry_t *e = malloc(sizeof *e);
  if (e == NULL) return;
  memcpy(e->hash, hash, TL_TOKEN_HASH_LEN + 1);
  e->p = *p;
  e->until_ms = now_ms() + TL_AUTHCACHE_TTL_MS;
  if (tl_strmap_put(&c->index, e->hash, c->n) != 0) {
    free(e);
    return;
  }
  c->entries[c->n++] = e;
}
