/* Token buckets (limit.h). */
#include "api/limit.h"

#include "base/hash.h"

#include <math.h>
#include <string.h>

void tl_limit_init(tl_limit_t *l, double rate, double burst) {
  memset(l, 0, sizeof *l);
  l->rate = rate;
  l->burst = burst < 1 ? 1 : burst;
}

static uint64_t hash(const void *key, size_t len) {
  uint64_t h = tl_fnv1a(TL_FNV1A_START, key, len);
  return h ? h : 1; /* 0 marks a free slot */
}

int tl_limit_take(tl_limit_t *l, const void *key, size_t keylen, uint64_t now_ms) {
  if (l->rate <= 0) return 0;
  uint64_t k = hash(key, keylen);
  size_t start = (size_t)(k % TL_LIMIT_SLOTS), pick = start;
  uint64_t oldest = UINT64_MAX;
  /* a short probe: the key's slot, a free one, or the least recently used of 8 */
  for (size_t i = 0; i < 8; i++) {
    tl_limit_slot_t *s = &l->slots[(start + i) % TL_LIMIT_SLOTS];
    if (s->key == k || s->key == 0) {
      pick = (start + i) % TL_LIMIT_SLOTS;
      break;
    }
    if (s->last < oldest) {
      oldest = s->last;
      pick = (start + i) % TL_LIMIT_SLOTS;
    }
  }
  tl_limit_slot_t *s = &l->slots[pick];
  if (s->key != k) {
    s->key = k;
    s->tokens = l->burst;
    s->last = now_ms;
  }
  double refill = (double)(now_ms - s->last) / 1000.0 * l->rate;
  s->tokens = s->tokens + refill > l->burst ? l->burst : s->tokens + refill;
  s->last = now_ms;
  if (s->tokens >= 1.0) {
    s->tokens -= 1.0;
    return 0;
  }
  int wait = (int)ceil((1.0 - s->tokens) / l->rate);
  return wait < 1 ? 1 : wait;
}
