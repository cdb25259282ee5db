/* Masking of names, ID numbers and phones (mask.h). Lengths are preserved character for
 * character (except the fixed 8 stars of a resident ID, which is always 18 long), so a masked
 * value still shows the shape an operator expects. */
#include "domain/mask.h"

#include "domain/validate.h"

#include <string.h>

static int fail(char *out, size_t outlen) {
  if (out != NULL && outlen > 0) out[0] = '\0';
  return TL_EINVAL;
}

/* Length of the UTF-8 sequence led by byte c (the input was validated before). */
static size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

int tl_mask_name(const char *in, size_t len, char *out, size_t outlen) {
  if (in == NULL || out == NULL || len == 0 || !tl_utf8_valid(in, len)) return fail(out, outlen);
  const unsigned char *p = (const unsigned char *)in;
  size_t first = utf8_len(p[0]), chars = 0;
  for (size_t i = 0; i < len; i += utf8_len(p[i])) chars++;
  if (chars == 1) {
    if (outlen < 2) return fail(out, outlen);
    memcpy(out, "*", 2);
    return 0;
  }
  size_t need = first + (chars - 1);
  if (outlen < need + 1) return fail(out, outlen);
  memcpy(out, in, first);
  memset(out + first, '*', chars - 1);
  out[need] = '\0';
  return 0;
}

/* Copies s (n bytes) keeping `head` leading and `tail` trailing characters, stars between. */
static int keep_ends(const char *s, size_t n, size_t head, size_t tail, char *out, size_t outlen) {
  if (outlen < n + 1) return fail(out, outlen);
  memset(out, '*', n);
  memcpy(out, s, head);
  memcpy(out + n - tail, s + n - tail, tail);
  out[n] = '\0';
  return 0;
}

int tl_mask_id(int id_type, const char *normalized, char *out, size_t outlen) {
  if (normalized == NULL || out == NULL) return fail(out, outlen);
  size_t n = strlen(normalized);
  switch (id_type) {
  case TL_ID_RESIDENT:
    if (n != TL_RESIDENT_ID_LEN) return fail(out, outlen);
    return keep_ends(normalized, n, 6, 4, out, outlen);
  case TL_ID_PASSPORT:
  case TL_ID_OTHER:
    if (n == 0) return fail(out, outlen);
    /* Showing 2 + 2 of a short number would show most of it: below 8 characters, all stars. */
    return n >= 8 ? keep_ends(normalized, n, 2, 2, out, outlen)
                  : keep_ends(normalized, n, 0, 0, out, outlen);
  default: return fail(out, outlen);
  }
}

int tl_mask_phone(const char *normalized, char *out, size_t outlen) {
  if (normalized == NULL || out == NULL) return fail(out, outlen);
  size_t n = strlen(normalized), digits = 0;
  if (n == 0) return fail(out, outlen);
  for (size_t i = 0; i < n; i++) digits += normalized[i] >= '0' && normalized[i] <= '9';
  if (n == 11 && digits == 11) return keep_ends(normalized, n, 3, 4, out, outlen);
  return keep_ends(normalized, n, 0, n > 4 ? 4 : 0, out, outlen);
}
