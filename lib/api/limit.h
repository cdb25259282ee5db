/* Rate limits: token buckets per token and per client address (issue 7: 429 with
 * Retry-After). In memory, per daemon: several daemons each apply the limit, which is the
 * usual trade for not putting a shared counter on the hot path.
 *
 * A bucket holds up to `burst` requests and refills at `rate` per second. Buckets live in a
 * fixed table (open addressing by hash); when it is full the least recently used slot is
 * reused, so memory stays bounded whatever clients do. */
#ifndef TL_API_LIMIT_H
#define TL_API_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#define TL_LIMIT_SLOTS 8192

typedef struct {
  uint64_t key;    /* hash of the token id or address; 0 = free */
  double tokens;   /* requests available */
  uint64_t last;   /* last refill, ms */
} tl_limit_slot_t;

typedef struct {
  double rate;     /* requests per second; 0 = no limit */
  double burst;
  tl_limit_slot_t slots[TL_LIMIT_SLOTS];
} tl_limit_t;

void tl_limit_init(tl_limit_t *l, double rate, double burst);
/* Takes one request for key at now_ms. Returns 0 when allowed, else the seconds to wait
 * (≥ 1) before a request would be allowed. */
int tl_limit_take(tl_limit_t *l, const void *key, size_t keylen, uint64_t now_ms);

#endif
