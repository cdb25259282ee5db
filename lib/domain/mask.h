/* Masking of personal data for every answer that shows a person (DESIGN.md §7).
 *
 * Part of the pure domain layer (libc only). Inputs are the normalised forms that
 * validate.h produces; the masked text keeps just enough for an operator to recognise a
 * person they have in front of them, and never the whole of any identifier:
 *   name        first character, then one '*' per further character:  张三 → 张*,
 *               欧阳娜娜 → 欧***. A one-character name becomes "*" (keeping it would show
 *               the whole name).
 *   resident ID first 6 and last 4, 8 stars between:  230126********123X.
 *   passport /  first 2 and last 2, one star per hidden character (E12345678 → E1*****78),
 *   other ID    when at least 8 characters long, so at least half stays hidden; shorter
 *               numbers become all stars of the same length.
 *   phone       11 digits (a mainland number): first 3, "****", last 4 (138****5678);
 *               any other form: every character but the last 4 becomes '*'
 *               (+8613812345678 → **********5678).
 * Every function writes a NUL-terminated result into out and returns 0, or TL_EINVAL when
 * the input is not of the expected form or out is too small (out is then "" if outlen > 0).
 * The masked form is never longer than the input, so outlen = input length + 1 suffices. */
#ifndef TL_DOMAIN_MASK_H
#define TL_DOMAIN_MASK_H

#include "base/err.h"

#include <stddef.h>

/* in[0..len): a valid UTF-8 name of at least one character. */
TL_WUR int tl_mask_name(const char *in, size_t len, char *out, size_t outlen);

/* id_type: TL_ID_* (validate.h); normalized: NUL-terminated output of tl_id_normalize()
 * (a resident ID must be 18 characters). */
TL_WUR int tl_mask_id(int id_type, const char *normalized, char *out, size_t outlen);

/* normalized: NUL-terminated output of tl_phone_normalize() (at least one character). */
TL_WUR int tl_mask_phone(const char *normalized, char *out, size_t outlen);

#endif
