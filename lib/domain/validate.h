/* Validation and normalisation of the names, identifiers and times of DESIGN.md §2.
 *
 * Part of the pure domain layer: libc only, no I/O, no allocation, no locale or TZ lookups,
 * so every function is a deterministic function of its arguments and safe from any thread.
 * Inputs are (pointer, length) pairs and need not be NUL-terminated; outputs are written to
 * caller buffers and NUL-terminated. Predicates (tl_valid_*, *_valid) return 1 or 0; functions
 * that can fail return 0 or a negative code (TL_EINVAL from base/err.h, or the TL_RID_E* codes
 * below for resident ID numbers). */
#ifndef TL_DOMAIN_VALIDATE_H
#define TL_DOMAIN_VALIDATE_H

#include "base/err.h"

#include <stddef.h>
#include <stdint.h>

/* ---- Codes, barcodes, regions, UUIDs ---------------------------------------------------- */

/* Tube and box barcodes: [A-Za-z0-9-]{6,32}. */
TL_WUR int tl_valid_barcode(const char *s, size_t len);

/* Site, lab, courier and round codes: [A-Za-z0-9-]{1,32}. */
TL_WUR int tl_valid_code(const char *s, size_t len);

/* GB/T 2260 region level, from the length of an all-digit code. */
typedef enum {
  TL_REGION_INVALID = 0,  /* not a region code */
  TL_REGION_PROVINCE = 1, /* 2 digits (省) */
  TL_REGION_CITY = 2,     /* 4 digits (市) */
  TL_REGION_COUNTY = 3,   /* 6 digits (区县) */
  TL_REGION_TOWNSHIP = 4  /* 9 digits (乡镇/街道) */
} tl_region_level_t;

/* A region code: all ASCII digits, length 2, 4, 6 or 9. */
TL_WUR int tl_valid_region(const char *s, size_t len);
TL_WUR tl_region_level_t tl_region_level(const char *s, size_t len);
/* "province", "city", "county", "township"; "invalid" for TL_REGION_INVALID or anything else. */
const char *tl_region_level_name(tl_region_level_t level);

/* Canonical UUID text: 8-4-4-4-12 hex digits, either case (36 characters). */
TL_WUR int tl_valid_uuid(const char *s, size_t len);
/* Copies a UUID that passed tl_valid_uuid() with lower-case hex into out (36 chars + NUL), so
 * one event id has one spelling. */
void tl_uuid_lower(char out[37], const char *in);
/* Sets the version (4, 7, 8, ...) and the RFC 9562 variant in b, then writes it as canonical
 * lower-case UUID text into out (36 chars + NUL). The callers fill b: random, time-ordered or
 * hashed bytes. */
void tl_uuid_format(unsigned char b[16], int version, char out[37]);

/* ---- Times (RFC 3339) ------------------------------------------------------------------- */

#define TL_TIME_TEXT_MAX 40 /* room for any tl_time_format() output */

/* Parses `YYYY-MM-DD(T|t)HH:MM:SS[.fraction](Z|z|±HH:MM)` into milliseconds since the Unix
 * epoch (UTC). The date must exist in the proleptic Gregorian calendar (leap years included),
 * hours 00-23, minutes and seconds 00-59 (a leap second 60 is refused), the fraction 1-9 digits
 * (kept to the millisecond, further digits truncated), the offset at most ±23:59 ("-00:00" is
 * read as UTC). Years 0000-9999. No space separator, no missing seconds, no missing offset:
 * an event time without an offset is ambiguous and refused. The TZ environment is never read.
 * Returns 0 or TL_EINVAL (*unix_ms untouched on error). */
TL_WUR int tl_time_parse(const char *s, size_t len, int64_t *unix_ms);
/* As tl_time_parse, also returning the written offset in minutes east of UTC (+08:00 → 480). */
TL_WUR int tl_time_parse_offset(const char *s, size_t len, int64_t *unix_ms, int *offset_minutes);

/* Writes unix_ms as local time at offset_minutes east of UTC, always with milliseconds and a
 * numeric offset ("+00:00" for UTC, never "Z"): `2021-10-08T09:12:03.000+08:00` (29 chars +
 * NUL). Returns 0, or TL_EINVAL when |offset_minutes| > 1439 or the local year falls outside
 * 0000-9999 (out is then ""). */
TL_WUR int tl_time_format(int64_t unix_ms, int offset_minutes, char out[TL_TIME_TEXT_MAX]);

/* Parses a calendar day `YYYY-MM-DD` (a real date, years 0000-9999) into days since
 * 1970-01-01. Returns 0 or TL_EINVAL. */
TL_WUR int tl_date_parse(const char *s, size_t len, int64_t *days);

/* ---- Person identifiers ----------------------------------------------------------------- */

/* id_type of a person (DESIGN §2). The values are stable: they are stored. */
enum {
  TL_ID_RESIDENT = 0, /* "resident_id": GB 11643-1999 居民身份证号码 */
  TL_ID_PASSPORT = 1, /* "passport" */
  TL_ID_OTHER = 2     /* "other" */
};

/* Exact, case-sensitive "resident_id" / "passport" / "other" → TL_ID_*; -1 for anything else. */
TL_WUR int tl_id_type_parse(const char *s, size_t len);
/* The name of a TL_ID_* value; NULL for anything else. */
const char *tl_id_type_name(int id_type);

/* Why a resident ID number was refused (negative, distinct from every other code). */
enum {
  TL_RID_ECHARS = -10101,  /* a character other than a digit, or X anywhere but last */
  TL_RID_ELENGTH = -10102, /* not 18 characters */
  TL_RID_EBIRTH = -10103,  /* characters 7-14 are not a date from 1900-01-01 to 2100-12-31 */
  TL_RID_ECHECK = -10104   /* the ISO 7064 MOD 11-2 check character does not match */
};

#define TL_RESIDENT_ID_LEN 18

/* Normalises and checks a resident ID number (GB 11643-1999) into out (18 chars + NUL):
 *  - trims surrounding ASCII white space (space, tab, CR, LF) and U+3000 ideographic spaces;
 *  - maps full-width digits U+FF10-U+FF19 and full-width X/x (U+FF38, U+FF58) to ASCII, and
 *    x to X; nothing else is mapped, inner spaces are refused;
 *  - then requires 17 digits and a digit or X, a birth date (characters 7-14, YYYYMMDD) that
 *    is a real date from 1900-01-01 to 2100-12-31, and the MOD 11-2 check character
 *    (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 → "10X98765432"[sum % 11]).
 * Checks run in the order ECHARS, ELENGTH, EBIRTH, ECHECK. Returns 0 or a TL_RID_E* code; on
 * error out is "" (never a half-normalised number). */
TL_WUR int tl_resident_id_normalize(const char *in, size_t len, char out[TL_RESIDENT_ID_LEN + 1]);

/* A one-sentence English reason for a tl_resident_id_normalize() result, fit to show to the
 * operator. It never contains the number (nor any digit). Static storage. */
const char *tl_resident_id_error(int rc);

#define TL_OTHER_ID_MIN 4
#define TL_OTHER_ID_MAX 32

/* Passport and other ID numbers: trims the surrounding spaces as above, maps full-width ASCII
 * forms (U+FF01-U+FF5E) to ASCII, upper-cases ASCII letters, then requires [A-Z0-9-] and
 * 4-32 characters. Writes the result into out (needs outlen > result length; 33 always
 * suffices). Returns 0 or TL_EINVAL (out is "" when outlen > 0). */
TL_WUR int tl_other_id_normalize(const char *in, size_t len, char *out, size_t outlen);

/* Dispatches on id_type: tl_resident_id_normalize (outlen must be >= 19) or
 * tl_other_id_normalize. Returns 0, a TL_RID_E* code, or TL_EINVAL (unknown id_type too).
 * The result is the form that is encrypted, HMAC'ed for lookup and masked. */
TL_WUR int tl_id_normalize(int id_type, const char *in, size_t len, char *out, size_t outlen);

/* ---- Phone, name, UTF-8 ----------------------------------------------------------------- */

#define TL_PHONE_MAX 21 /* '+' and 20 digits */

/* Phone numbers: trims surrounding ASCII white space, drops the separators space, '-', '.',
 * '(' and ')', keeps a '+' only as the first character, and requires 5-20 digits; any other
 * character is refused. `+86 138-1234-5678` → `+8613812345678`. Writes into out (22 bytes
 * always suffice). Returns 0 or TL_EINVAL (out is "" when outlen > 0). */
TL_WUR int tl_phone_normalize(const char *in, size_t len, char *out, size_t outlen);

/* A person's name: valid UTF-8, 1-64 bytes, no control characters (U+0000-U+001F, U+007F,
 * U+0080-U+009F). */
TL_WUR int tl_name_valid(const char *s, size_t len);
/* A registry name or label: valid UTF-8, no control characters, 1 to max_chars characters
 * (code points; the schema counts characters too). */
TL_WUR int tl_label_valid(const char *s, size_t len, size_t max_chars);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
 * An empty string is valid. */
TL_WUR int tl_utf8_valid(const char *s, size_t len);

#endif
