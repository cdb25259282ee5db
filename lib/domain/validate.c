/* Validation and normalisation of identifiers and times (validate.h): hand-written scanners
 * over (pointer, length), because the inputs come straight from JSON bodies and must never be
 * assumed NUL-terminated, and because ctype.h and timegm() depend on the process locale and
 * TZ, which a stateless daemon must not let change what an event means. */
#include "domain/validate.h"

#include <string.h>

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_alnum_dash(char c) {
  return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-';
}

static int charset_ok(const char *s, size_t len, size_t min, size_t max) {
  if (s == NULL || len < min || len > max) return 0;
  for (size_t i = 0; i < len; i++)
    if (!is_alnum_dash(s[i])) return 0;
  return 1;
}

int tl_valid_barcode(const char *s, size_t len) { return charset_ok(s, len, 6, 32); }

int tl_valid_code(const char *s, size_t len) { return charset_ok(s, len, 1, 32); }

static int all_digits(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!is_digit(s[i])) return 0;
  return 1;
}

tl_region_level_t tl_region_level(const char *s, size_t len) {
  if (s == NULL || !all_digits(s, len)) return TL_REGION_INVALID;
  switch (len) {
  case 2: return TL_REGION_PROVINCE;
  case 4: return TL_REGION_CITY;
  case 6: return TL_REGION_COUNTY;
  case 9: return TL_REGION_TOWNSHIP;
  default: return TL_REGION_INVALID;
  }
}

int tl_valid_region(const char *s, size_t len) {
  return tl_region_level(s, len) != TL_REGION_INVALID;
}

const char *tl_region_level_name(tl_region_level_t level) {
  switch (level) {
  case TL_REGION_PROVINCE: return "province";
  case TL_REGION_CITY: return "city";
  case TL_REGION_COUNTY: return "county";
  case TL_REGION_TOWNSHIP: return "township";
  case TL_REGION_INVALID: return "invalid";
  }
  return "invalid";
}

static int hex_digit(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int tl_valid_uuid(const char *s, size_t len) {
  if (s == NULL || len != 36) return 0;
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!hex_digit(s[i])) {
      return 0;
    }
  }
  return 1;
}

void tl_uuid_lower(char out[37], const char *in) {
  for (size_t i = 0; i < 36; i++) {
    char c = in[i];
    out[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
  }
  out[36] = '\0';
}

void tl_uuid_format(unsigned char b[16], int version, char out[37]) {
  static const char hex[] = "0123456789abcdef";
  b[6] = (unsigned char)((b[6] & 0x0f) | ((version & 0x0f) << 4));
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
  int k = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[k++] = '-';
    out[k++] = hex[b[i] >> 4];
    out[k++] = hex[b[i] & 15];
  }
  out[k] = '\0';
}

/* ---- Calendar --------------------------------------------------------------------------- */

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int64_t y, int m) {
  static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static int date_valid(int64_t y, int m, int d) {
  return m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil):
 * exact integer arithmetic, no table, no time zone. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* The inverse (civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

/* Reads n ASCII digits at s as a number, or -1. */
static int num(const char *s, size_t n) {
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* YYYY-MM-DD at s (10 bytes available). */
static int parse_ymd(const char *s, int *y, int *m, int *d) {
  if (s[4] != '-' || s[7] != '-') return TL_EINVAL;
  *y = num(s, 4);
  *m = num(s + 5, 2);
  *d = num(s + 8, 2);
  if (*y < 0 || *m < 0 || *d < 0 || !date_valid(*y, *m, *d)) return TL_EINVAL;
  return 0;
}

int tl_date_parse(const char *s, size_t len, int64_t *days) {
  int y, m, d;
  if (s == NULL || len != 10 || parse_ymd(s, &y, &m, &d) != 0) return TL_EINVAL;
  *days = days_from_civil(y, m, d);
  return 0;
}

int tl_time_parse_offset(const char *s, size_t len, int64_t *unix_ms, int *offset_minutes) {
  int y, mo, d;
  /* The shortest form is YYYY-MM-DDTHH:MM:SSZ. */
  if (s == NULL || len < 20 || parse_ymd(s, &y, &mo, &d) != 0) return TL_EINVAL;
  if (s[10] != 'T' && s[10] != 't') return TL_EINVAL;
  if (s[13] != ':' || s[16] != ':') return TL_EINVAL;
  int h = num(s + 11, 2), mi = num(s + 14, 2), sec = num(s + 17, 2);
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return TL_EINVAL;
  size_t i = 19;
  int ms = 0;
  if (s[i] == '.') {
    size_t start = ++i;
    while (i < len && is_digit(s[i])) {
      /* Keep the first three digits; later ones are below the millisecond. */
      if (i - start < 3) ms = ms * 10 + (s[i] - '0');
      i++;
    }
    size_t nd = i - start;
    if (nd == 0 || nd > 9) return TL_EINVAL;
    for (size_t k = nd; k < 3; k++) ms *= 10;
  }
  if (i >= len) return TL_EINVAL;
  int off;
  if (s[i] == 'Z' || s[i] == 'z') {
    off = 0;
    i++;
  } else if (s[i] == '+' || s[i] == '-') {
    if (len - i < 6 || s[i + 3] != ':') return TL_EINVAL;
    int oh = num(s + i + 1, 2), om = num(s + i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return TL_EINVAL;
    off = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return TL_EINVAL;
  }
  if (i != len) return TL_EINVAL;
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
  *unix_ms = secs * 1000 + ms;
  if (offset_minutes) *offset_minutes = off;
  return 0;
}

int tl_time_parse(const char *s, size_t len, int64_t *unix_ms) {
  return tl_time_parse_offset(s, len, unix_ms, NULL);
}

/* Floor division: times before 1970 are negative and must still fall into the right day. */
static int64_t floor_div(int64_t a, int64_t b) {
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Writes v as exactly `width` decimal digits (v < 10^width) and returns the end. */
static char *put_digits(char *o, unsigned v, int width) {
  for (int i = width - 1; i >= 0; i--) {
    o[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return o + width;
}

int tl_time_format(int64_t unix_ms, int offset_minutes, char out[TL_TIME_TEXT_MAX]) {
  out[0] = '\0';
  if (offset_minutes < -1439 || offset_minutes > 1439) return TL_EINVAL;
  /* Years 0000-9999 span about ±3e14 ms around the epoch; refusing far values first keeps the
   * arithmetic below from overflowing. */
  if (unix_ms < -62200000000000LL || unix_ms > 253500000000000LL) return TL_EINVAL;
  int64_t local = unix_ms + (int64_t)offset_minutes * 60000;
  int64_t days = floor_div(local, 86400000);
  int64_t ms_of_day = local - days * 86400000;
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999) return TL_EINVAL;
  unsigned ms = (unsigned)(ms_of_day % 1000), sod = (unsigned)(ms_of_day / 1000);
  unsigned aoff = (unsigned)(offset_minutes < 0 ? -offset_minutes : offset_minutes);
  /* Written digit by digit: every field's width is fixed, so there is nothing for snprintf to
   * decide, and its truncation warnings cannot see the ranges proved above. */
  char *o = out;
  o = put_digits(o, (unsigned)y, 4);
  *o++ = '-';
  o = put_digits(o, (unsigned)m, 2);
  *o++ = '-';
  o = put_digits(o, (unsigned)d, 2);
  *o++ = 'T';
  o = put_digits(o, sod / 3600, 2);
  *o++ = ':';
  o = put_digits(o, sod / 60 % 60, 2);
  *o++ = ':';
  o = put_digits(o, sod % 60, 2);
  *o++ = '.';
  o = put_digits(o, ms, 3);
  *o++ = offset_minutes < 0 ? '-' : '+';
  o = put_digits(o, aoff / 60, 2);
  *o++ = ':';
  o = put_digits(o, aoff % 60, 2);
  *o = '\0';
  return 0;
}

/* ---- Person identifiers ----------------------------------------------------------------- */

int tl_id_type_parse(const char *s, size_t len) {
  static const struct {
    const char *name;
    size_t len;
    int type;
  } names[] = {{"resident_id", 11, TL_ID_RESIDENT},
               {"passport", 8, TL_ID_PASSPORT},
               {"other", 5, TL_ID_OTHER}};
  if (s == NULL) return -1;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (len == names[i].len && memcmp(s, names[i].name, len) == 0) return names[i].type;
  return -1;
}

const char *tl_id_type_name(int id_type) {
  switch (id_type) {
  case TL_ID_RESIDENT: return "resident_id";
  case TL_ID_PASSPORT: return "passport";
  case TL_ID_OTHER: return "other";
  default: return NULL;
  }
}

/* Length of a white space at s[0..n) that trimming removes (ASCII blanks or U+3000, which
 * Chinese input methods produce in full-width mode), or 0. */
static size_t space_at(const unsigned char *s, size_t n) {
  if (n >= 1 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r' || s[0] == '\n')) return 1;
  if (n >= 3 && s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;
  return 0;
}

static size_t space_before(const unsigned char *s, size_t n) {
  if (n >= 1 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    return 1;
  if (n >= 3 && s[n - 3] == 0xE3 && s[n - 2] == 0x80 && s[n - 1] == 0x80) return 3;
  return 0;
}

static void trim(const unsigned char **s, size_t *n) {
  size_t k;
  while ((k = space_at(*s, *n)) > 0) {
    *s += k;
    *n -= k;
  }
  while ((k = space_before(*s, *n)) > 0) *n -= k;
}

/* Full-width ASCII form (U+FF01-U+FF5E, UTF-8 EF BC 81 - EF BD 9E) at s → its ASCII
 * character, or 0 when s does not start with one. */
static char fullwidth_at(const unsigned char *s, size_t n) {
  if (n < 3 || s[0] != 0xEF) return 0;
  if (s[1] == 0xBC && s[2] >= 0x81 && s[2] <= 0xBF) return (char)(0x21 + (s[2] - 0x81));
  if (s[1] == 0xBD && s[2] >= 0x80 && s[2] <= 0x9E) return (char)(0x60 + (s[2] - 0x80));
  return 0;
}

int tl_resident_id_normalize(const char *in, size_t len, char out[TL_RESIDENT_ID_LEN + 1]) {
  static const int weight[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static const char check[] = "10X98765432";
  char id[TL_RESIDENT_ID_LEN];
  size_t n = 0;
  int rc;
  out[0] = '\0';
  if (in == NULL) return TL_RID_ELENGTH;
  const unsigned char *p = (const unsigned char *)in;
  size_t left = len;
  trim(&p, &left);
  int too_long = 0;
  while (left > 0) {
    char c = (char)p[0];
    size_t step = 1;
    if (p[0] >= 0x80) {
      c = fullwidth_at(p, left);
      step = 3;
      /* Only full-width digits and X/x are mapped: other full-width letters are as wrong here
       * as their ASCII forms, and are reported as such below. */
      if (!is_digit(c) && c != 'X' && c != 'x') {
        rc = TL_RID_ECHARS;
        goto fail;
      }
    }
    if (c == 'x') c = 'X';
    if (!is_digit(c) && c != 'X') {
      rc = TL_RID_ECHARS;
      goto fail;
    }
    if (n < TL_RESIDENT_ID_LEN)
      id[n++] = c;
    else
      too_long = 1;
    p += step;
    left -= step;
  }
  /* X may only be the check character; characters are judged before the length so that a
   * letter in a short number is reported as the letter. */
  for (size_t i = 0; i < n && i < TL_RESIDENT_ID_LEN - 1; i++)
    if (id[i] == 'X') {
      rc = TL_RID_ECHARS;
      goto fail;
    }
  if (too_long || n != TL_RESIDENT_ID_LEN) {
    rc = TL_RID_ELENGTH;
    goto fail;
  }
  int y = num(id + 6, 4), m = num(id + 10, 2), d = num(id + 12, 2);
  if (y < 1900 || y > 2100 || !date_valid(y, m, d)) {
    rc = TL_RID_EBIRTH;
    goto fail;
  }
  int sum = 0;
  for (size_t i = 0; i < 17; i++) sum += (id[i] - '0') * weight[i];
  if (id[17] != check[sum % 11]) {
    rc = TL_RID_ECHECK;
    goto fail;
  }
  memcpy(out, id, TL_RESIDENT_ID_LEN);
  out[TL_RESIDENT_ID_LEN] = '\0';
  rc = 0;
fail:
  /* The stack copy is personal data; a plain memset may be elided, so write through a volatile
   * pointer (the domain layer does not link OpenSSL's cleanse). */
  for (volatile char *v = id; v < id + sizeof id; v++) *v = 0;
  return rc;
}

const char *tl_resident_id_error(int rc) {
  switch (rc) {
  case 0: return "The resident ID number is valid.";
  case TL_RID_ECHARS:
    return "A resident ID number may contain only digits, with an X allowed as the last character.";
  case TL_RID_ELENGTH: return "A resident ID number must have exactly eighteen characters.";
  case TL_RID_EBIRTH: return "The birth date inside the resident ID number is not a real date.";
  case TL_RID_ECHECK:
    return "The check character of the resident ID number does not match; the number was probably "
           "mistyped.";
  default: return "The resident ID number is not valid.";
  }
}

int tl_other_id_normalize(const char *in, size_t len, char *out, size_t outlen) {
  if (out == NULL || outlen == 0) return TL_EINVAL;
  out[0] = '\0';
  if (in == NULL) return TL_EINVAL;
  const unsigned char *p = (const unsigned char *)in;
  size_t left = len, n = 0;
  trim(&p, &left);
  while (left > 0) {
    char c = (char)p[0];
    size_t step = 1;
    if (p[0] >= 0x80) {
      c = fullwidth_at(p, left);
      step = 3;
    }
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    if (!is_alnum_dash(c) || n >= TL_OTHER_ID_MAX || n + 1 >= outlen) goto fail;
    out[n++] = c;
    p += step;
    left -= step;
  }
  if (n < TL_OTHER_ID_MIN) goto fail;
  out[n] = '\0';
  return 0;
fail:
  memset(out, 0, n < outlen ? n + 1 : outlen);
  return TL_EINVAL;
}

int tl_id_normalize(int id_type, const char *in, size_t len, char *out, size_t outlen) {
  switch (id_type) {
  case TL_ID_RESIDENT:
    if (out == NULL || outlen < TL_RESIDENT_ID_LEN + 1) return TL_EINVAL;
    return tl_resident_id_normalize(in, len, out);
  case TL_ID_PASSPORT:
  case TL_ID_OTHER: return tl_other_id_normalize(in, len, out, outlen);
  default:
    if (out != NULL && outlen > 0) out[0] = '\0';
    return TL_EINVAL;
  }
}

/* ---- Phone, name, UTF-8 ----------------------------------------------------------------- */

int tl_phone_normalize(const char *in, size_t len, char *out, size_t outlen) {
  if (out == NULL || outlen == 0) return TL_EINVAL;
  out[0] = '\0';
  if (in == NULL) return TL_EINVAL;
  const unsigned char *p = (const unsigned char *)in;
  size_t left = len, n = 0, digits = 0;
  while (left > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' || p[0] == '\n')) p++, left--;
  while (left > 0 &&
         (p[left - 1] == ' ' || p[left - 1] == '\t' || p[left - 1] == '\r' || p[left - 1] == '\n'))
    left--;
  for (size_t i = 0; i < left; i++) {
    char c = (char)p[i];
    if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') continue;
    if (c == '+' && i == 0) {
      /* '+' is kept only as the very first character. */
    } else if (is_digit(c)) {
      digits++;
    } else {
      goto fail;
    }
    if (digits > 20 || n + 1 >= outlen) goto fail;
    out[n++] = c;
  }
  if (digits < 5) goto fail;
  out[n] = '\0';
  return 0;
fail:
  memset(out, 0, n < outlen ? n + 1 : outlen);
  return TL_EINVAL;
}

/* Decodes one UTF-8 scalar at s[0..n): returns its length (1-4) and sets *cp, or 0 when the
 * bytes are not a well-formed, shortest-form, non-surrogate encoding. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t k;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF)
    k = 2, v = c & 0x1Fu, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF)
    k = 3, v = c & 0x0Fu, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4)
    k = 4, v = c & 0x07u, min = 0x10000;
  else
    return 0;
  if (n < k) return 0;
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3Fu);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return k;
}

int tl_utf8_valid(const char *s, size_t len) {
  if (s == NULL) return len == 0;
  const unsigned char *p = (const unsigned char *)s;
  uint32_t cp;
  for (size_t i = 0; i < len;) {
    size_t k = utf8_next(p + i, len - i, &cp);
    if (k == 0) return 0;
    i += k;
  }
  return 1;
}

int tl_name_valid(const char *s, size_t len) {
  if (s == NULL || len < 1 || len > 64) return 0;
  const unsigned char *p = (const unsigned char *)s;
  uint32_t cp;
  for (size_t i = 0; i < len;) {
    size_t k = utf8_next(p + i, len - i, &cp);
    if (k == 0 || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return 0;
    i += k;
  }
  return 1;
}

int tl_label_valid(const char *s, size_t len, size_t max_chars) {
  if (len == 0 || !tl_utf8_valid(s, len)) return 0;
  size_t chars = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f) return 0;
    if ((ch & 0xc0) != 0x80) chars++; /* a lead byte starts a character */
    if (ch == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] < 0xa0) return 0; /* C1 controls */
  }
  return chars <= max_chars;
}
