/* Fuzz target: the event JSON decoder and its validation (lib/api/events.c) as a collector, a
 * courier and a lab would send it. Invariants: a body is either refused as a whole with a
 * 4xx code or becomes a batch whose every event is pending or refused with a code and a
 * message; nothing crashes or leaks. */
#include "api/ingest.h"
#include "crypto/keys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tl_keys_t keys;
static tl_api_t api;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (api.keys == NULL) {
    char err[128];
    const char *text = "hmac 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
                       "aes 1 1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\n";
    if (tl_keys_parse(&keys, text, err, sizeof err) != 0) abort();
    api.keys = &keys;
  }
  static const struct {
    tl_role_t role;
    const char *scope, *region;
  } senders[] = {{TL_ROLE_COLLECTOR, "S1", "230126101"}, {TL_ROLE_COURIER, "C1", "230126"},
                 {TL_ROLE_LAB, "L1", "230126"}};
  const int k = size > 0 ? data[0] % 3 : 0;
  tl_api_err_t err = {0};
  tl__batch_t *b = tl__batch_decode(&api, senders[k].role, senders[k].scope, senders[k].region,
                                    size > 0 ? (const char *)data + 1 : "", size > 0 ? size - 1 : 0,
                                    &err);
  if (b == NULL) {
    if (err.code == NULL || err.status < 400 || err.status > 599) abort();
    return 0;
  }
  for (int i = 0; i < b->n; i++) {
    const tl__slot_t *s = &b->slots[i];
    if (s->state == TL__SLOT_REJECTED && (s->code == NULL || s->message[0] == '\0')) abort();
    if (s->state != TL__SLOT_REJECTED && s->state != TL__SLOT_PENDING) abort();
  }
  tl__batch_free(b);
  return 0;
}
