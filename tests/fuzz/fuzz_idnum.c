/* Fuzz target: ID number, phone and name normalisation and masking (lib/domain). Invariants:
 * a normalised ID is accepted again unchanged (idempotent), masks are shorter-or-equal and
 * never contain the unmasked middle, nothing reads or writes out of bounds. */
#include "domain/mask.h"
#include "domain/validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  char out[128], again[128], masked[256];
  for (int type = 0; type < 3; type++) {
    if (tl_id_normalize(type, s, size, out, sizeof out) != 0) continue;
    if (tl_id_normalize(type, out, strlen(out), again, sizeof again) != 0 || strcmp(out, again) != 0)
      abort();
    if (tl_mask_id(type, out, masked, sizeof masked) != 0) abort();
    if (type == TL_ID_RESIDENT && (strlen(masked) != 18 || memcmp(masked + 6, "********", 8) != 0))
      abort();
  }
  if (tl_resident_id_normalize(s, size, out) != 0 && tl_resident_id_error(TL_RID_ECHECK) == NULL)
    abort();
  if (tl_phone_normalize(s, size, out, sizeof out) == 0 && tl_mask_phone(out, masked, sizeof masked) != 0)
    abort(); /* a normalised phone always masks */
  if (tl_name_valid(s, size)) {
    if (!tl_utf8_valid(s, size)) abort();
    if (tl_mask_name(s, size, masked, sizeof masked) != 0) abort();
  }
  int64_t ms;
  if (tl_time_parse(s, size, &ms) == 0) {
    char text[TL_TIME_TEXT_MAX];
    int64_t back;
    if (tl_time_format(ms, 0, text) == 0 && (tl_time_parse(text, strlen(text), &back) != 0 || back != ms))
      abort();
  }
  /* a valid barcode or UUID is plain ASCII of the right length */
  if (tl_valid_barcode(s, size) && (size < 6 || size > 32)) abort();
  if (tl_valid_uuid(s, size) && size != 36) abort();
  if (tl_region_level(s, size) != TL_REGION_INVALID && size != 2 && size != 4 && size != 6 && size != 9)
    abort();
  return 0;
}
