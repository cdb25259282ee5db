/* Unit tests of the pure domain validators and maskers (domain/validate.h, domain/mask.h):
 * barcodes, codes, regions, UUIDs, RFC 3339 times, resident and other ID numbers, phones,
 * names, UTF-8 and the masked forms shown in answers. Every resident ID number here is
 * synthetic: the check character is computed by the test itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "domain/mask.h"
#include "domain/validate.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The MOD 11-2 check character of a 17-digit prefix, computed independently of the library
 * (so a wrong table in validate.c cannot agree with itself). */
static char check_char(const char *p17) {
  static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (int i = 0; i < 17; i++) sum += (p17[i] - '0') * w[i];
  return "10X98765432"[sum % 11];
}

/* A synthetic resident ID: 6-digit region, 8-digit birth date, 3-digit sequence, check. */
static void make_rid(char out[19], const char *region, const char *birth, const char *seq) {
  snprintf(out, 19, "%s%s%s", region, birth, seq);
  out[17] = check_char(out);
  out[18] = '\0';
}

/* A check character that is certainly wrong. */
static char other_check(char c) { return c == '0' ? '1' : '0'; }

/* ---- codes -------------------------------------------------------------------------------- */

static void test_barcodes_and_codes(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int barcode, code;
  } cases[] = {
      {"T0000001", 1, 1},
      {"abc-12", 1, 1},
      {"ABCDE", 0, 1}, /* 5: too short for a barcode, fine for a code */
      {"A", 0, 1},
      {"", 0, 0},
      {"12345678901234567890123456789012", 1, 1},  /* 32 */
      {"123456789012345678901234567890123", 0, 0}, /* 33 */
      {"TUBE 0001", 0, 0},
      {"TUBE_0001", 0, 0},
      {"TUBE/0001", 0, 0},
      {"管-000001", 0, 0},
      {"TUBE0001\n", 0, 0},
  };
  for (size_t i = 0; i < N(cases); i++) {
    size_t len = strlen(cases[i].s);
    assert_int_equal(tl_valid_barcode(cases[i].s, len), cases[i].barcode);
    assert_int_equal(tl_valid_code(cases[i].s, len), cases[i].code);
  }
  /* Lengths, not NUL terminators, bound the input. */
  assert_false(tl_valid_barcode("T000000\0X", 9));
  assert_true(tl_valid_barcode("T0000001-and-more", 8));
}

static void test_regions(void **state) {
  (void)state;
  static const struct {
    const char *s;
    tl_region_level_t level;
    const char *name;
  } cases[] = {
      {"23", TL_REGION_PROVINCE, "province"},        {"2301", TL_REGION_CITY, "city"},
      {"230126", TL_REGION_COUNTY, "county"},        {"110101", TL_REGION_COUNTY, "county"},
      {"230126101", TL_REGION_TOWNSHIP, "township"}, {"2", TL_REGION_INVALID, "invalid"},
      {"230", TL_REGION_INVALID, "invalid"},         {"23012", TL_REGION_INVALID, "invalid"},
      {"2301261", TL_REGION_INVALID, "invalid"},     {"23012610", TL_REGION_INVALID, "invalid"},
      {"2301261011", TL_REGION_INVALID, "invalid"},  {"23012a", TL_REGION_INVALID, "invalid"},
      {"-23012", TL_REGION_INVALID, "invalid"},      {"", TL_REGION_INVALID, "invalid"},
  };
  for (size_t i = 0; i < N(cases); i++) {
    size_t len = strlen(cases[i].s);
    tl_region_level_t lv = tl_region_level(cases[i].s, len);
    assert_int_equal(lv, cases[i].level);
    assert_int_equal(tl_valid_region(cases[i].s, len), cases[i].level != TL_REGION_INVALID);
    assert_string_equal(tl_region_level_name(lv), cases[i].name);
  }
}

static void test_uuids(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int ok;
    const char *lower;
  } cases[] = {
      {"0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a90", 1, "0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a90"},
      {"0B0E8F4C-5D3A-4F7E-9A51-2C6D1E7F8A90", 1, "0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a90"},
      {"0B0e8F4c-5d3A-4f7E-9a51-2C6d1E7f8A90", 1, "0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a90"},
      {"0b0e8f4c5d3a4f7e9a512c6d1e7f8a90", 0, NULL},
      {"{0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a90}", 0, NULL},
      {"0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a9", 0, NULL},
      {"0b0e8f4c-5d3a-4f7e-9a51-2c6d1e7f8a900", 0, NULL},
      {"0b0e8f4g-5d3a-4f7e-9a51-2c6d1e7f8a90", 0, NULL},
      {"0b0e8f4c-5d3a-4f7e-9a512-c6d1e7f8a90", 0, NULL},
      {"", 0, NULL},
  };
  for (size_t i = 0; i < N(cases); i++) {
    assert_int_equal(tl_valid_uuid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
    if (cases[i].ok) {
      char out[37];
      tl_uuid_lower(out, cases[i].s);
      assert_string_equal(out, cases[i].lower);
    }
  }
}

/* tl_uuid_format: version and variant bits set over whatever bytes the caller made, canonical
 * lower-case text; the bytes themselves stay in place. */
static void test_uuid_format(void **state) {
  (void)state;
  static const struct {
    unsigned char b[16];
    int version;
    const char *text;
  } cases[] = {
      {{0}, 4, "00000000-0000-4000-8000-000000000000"},
      {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff},
       8, "ffffffff-ffff-8fff-bfff-ffffffffffff"},
      /* a version 7 id of 1796630400123 ms (0x01a24f844c7b) in its first 48 bits */
      {{0x01, 0xa2, 0x4f, 0x84, 0x4c, 0x7b, 0x0a, 0xbc, 0x4d, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89,
        0xab},
       7, "01a24f84-4c7b-7abc-8def-0123456789ab"},
  };
  for (size_t i = 0; i < N(cases); i++) {
    unsigned char b[16];
    char out[37];
    memcpy(b, cases[i].b, sizeof b);
    tl_uuid_format(b, cases[i].version, out);
    assert_string_equal(out, cases[i].text);
    assert_true(tl_valid_uuid(out, strlen(out)));
  }
}

/* ---- times -------------------------------------------------------------------------------- */

#define T_2021_10_08_011203Z INT64_C(1633655523000)

static void test_time_parse(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int ok;
    int64_t ms;
    int offset;
  } cases[] = {
      {"2021-10-08T09:12:03+08:00", 1, T_2021_10_08_011203Z, 480},
      {"2021-10-08T01:12:03Z", 1, T_2021_10_08_011203Z, 0},
      {"2021-10-08t01:12:03z", 1, T_2021_10_08_011203Z, 0},
      {"2021-10-08T01:12:03+00:00", 1, T_2021_10_08_011203Z, 0},
      {"2021-10-08T01:12:03-00:00", 1, T_2021_10_08_011203Z, 0},
      {"2021-10-08T09:12:03-05:30", 1, INT64_C(1633704123000), -330},
      {"2021-10-09T01:11:03+23:59", 1, T_2021_10_08_011203Z, 1439},
      {"2021-10-07T01:13:03-23:59", 1, T_2021_10_08_011203Z, -1439},
      {"2021-10-08T01:12:03.5Z", 1, T_2021_10_08_011203Z + 500, 0},
      {"2021-10-08T01:12:03.05Z", 1, T_2021_10_08_011203Z + 50, 0},
      {"2021-10-08T01:12:03.123Z", 1, T_2021_10_08_011203Z + 123, 0},
      {"2021-10-08T09:12:03.123456789+08:00", 1, T_2021_10_08_011203Z + 123, 480},
      {"1970-01-01T00:00:00Z", 1, 0, 0},
      {"1970-01-01T08:00:00+08:00", 1, 0, 480},
      {"1969-12-31T23:59:59.999Z", 1, -1, 0},
      {"0000-01-01T00:00:00Z", 1, INT64_C(-62167219200000), 0},
      {"9999-12-31T23:59:59.999Z", 1, INT64_C(253402300799999), 0},
      {"2020-02-29T12:00:00+08:00", 1, INT64_C(1582948800000), 480},
      {"2000-02-29T00:00:00Z", 1, INT64_C(951782400000), 0},
      {"2020-12-31T23:59:59Z", 1, INT64_C(1609459199000), 0},
      /* calendar */
      {"2021-02-29T12:00:00+08:00", 0, 0, 0},
      {"1900-02-29T12:00:00Z", 0, 0, 0},
      {"2021-04-31T12:00:00Z", 0, 0, 0},
      {"2021-13-01T12:00:00Z", 0, 0, 0},
      {"2021-00-10T12:00:00Z", 0, 0, 0},
      {"2021-10-00T12:00:00Z", 0, 0, 0},
      {"2021-10-32T12:00:00Z", 0, 0, 0},
      {"2021-10-08T24:00:00Z", 0, 0, 0},
      {"2021-10-08T23:60:00Z", 0, 0, 0},
      {"2016-12-31T23:59:60Z", 0, 0, 0},
      /* offsets */
      {"2021-10-08T09:12:03+24:00", 0, 0, 0},
      {"2021-10-08T09:12:03+08:60", 0, 0, 0},
      {"2021-10-08T09:12:03+0800", 0, 0, 0},
      {"2021-10-08T09:12:03+08", 0, 0, 0},
      {"2021-10-08T09:12:03+8:00", 0, 0, 0},
      {"2021-10-08T09:12:03", 0, 0, 0},
      {"2021-10-08T09:12:03 +08:00", 0, 0, 0},
      {"2021-10-08T09:12:03+08:00 ", 0, 0, 0},
      {"2021-10-08T09:12:03+08:00Z", 0, 0, 0},
      /* fractions */
      {"2021-10-08T01:12:03.Z", 0, 0, 0},
      {"2021-10-08T01:12:03.1234567891Z", 0, 0, 0},
      {"2021-10-08T01:12:03,5Z", 0, 0, 0},
      {"2021-10-08T01:12:03.5a+08:00", 0, 0, 0},
      /* shapes */
      {"2021-10-08 09:12:03+08:00", 0, 0, 0},
      {"2021-10-08X09:12:03+08:00", 0, 0, 0},
      {"2021-10-08T09:12+08:00", 0, 0, 0},
      {"2021-1-08T09:12:03+08:00", 0, 0, 0},
      {"21-10-08T09:12:03+08:00", 0, 0, 0},
      {"2021/10/08T09:12:03+08:00", 0, 0, 0},
      {"+2021-10-08T09:12:03+08:00", 0, 0, 0},
      {"2021-10-08", 0, 0, 0},
      {"", 0, 0, 0},
      {"garbage", 0, 0, 0},
      {"2021-10-08T0a:12:03Z", 0, 0, 0},
      {"1633655523", 0, 0, 0},
  };
  for (size_t i = 0; i < N(cases); i++) {
    int64_t ms = 42;
    int off = 7;
    int rc = tl_time_parse_offset(cases[i].s, strlen(cases[i].s), &ms, &off);
    if (cases[i].ok) {
      if (rc != 0) fail_msg("refused: %s", cases[i].s);
      if (ms != cases[i].ms) fail_msg("%s → %lld", cases[i].s, (long long)ms);
      assert_int_equal(off, cases[i].offset);
      int64_t ms2 = 0;
      assert_int_equal(tl_time_parse(cases[i].s, strlen(cases[i].s), &ms2), 0);
      assert_true(ms2 == ms);
    } else {
      if (rc != TL_EINVAL) fail_msg("accepted: %s", cases[i].s);
      assert_true(ms == 42); /* untouched */
    }
  }
  /* The length bounds the input: an embedded NUL or a cut-off offset is refused. */
  int64_t ms;
  assert_int_equal(tl_time_parse("2021-10-08T01:12:03Z\0", 21, &ms), TL_EINVAL);
  assert_int_equal(tl_time_parse("2021-10-08T09:12:03+08:00", 24, &ms), TL_EINVAL);
  assert_int_equal(tl_time_parse("2021-10-08T01:12:03Z+08:00", 20, &ms), 0);
  assert_true(ms == T_2021_10_08_011203Z);
}

static void test_time_format(void **state) {
  (void)state;
  static const struct {
    int64_t ms;
    int offset;
    const char *text;
  } cases[] = {
      {T_2021_10_08_011203Z, 480, "2021-10-08T09:12:03.000+08:00"},
      {T_2021_10_08_011203Z, 0, "2021-10-08T01:12:03.000+00:00"},
      {T_2021_10_08_011203Z + 7, -330, "2021-10-07T19:42:03.007-05:30"},
      {0, 0, "1970-01-01T00:00:00.000+00:00"},
      {-1, 0, "1969-12-31T23:59:59.999+00:00"},
      {-1, 480, "1970-01-01T07:59:59.999+08:00"},
      {INT64_C(1582948800000), 480, "2020-02-29T12:00:00.000+08:00"},
      {INT64_C(-62167219200000), 0, "0000-01-01T00:00:00.000+00:00"},
      {INT64_C(253402300799999), 0, "9999-12-31T23:59:59.999+00:00"},
  };
  for (size_t i = 0; i < N(cases); i++) {
    char out[TL_TIME_TEXT_MAX];
    assert_int_equal(tl_time_format(cases[i].ms, cases[i].offset, out), 0);
    assert_string_equal(out, cases[i].text);
    /* and back */
    int64_t ms;
    int off;
    assert_int_equal(tl_time_parse_offset(out, strlen(out), &ms, &off), 0);
    assert_true(ms == cases[i].ms);
    assert_int_equal(off, cases[i].offset);
  }
  char out[TL_TIME_TEXT_MAX];
  assert_int_equal(tl_time_format(0, 1440, out), TL_EINVAL);
  assert_string_equal(out, "");
  assert_int_equal(tl_time_format(0, -1440, out), TL_EINVAL);
  assert_int_equal(tl_time_format(INT64_C(253402300800000), 0, out), TL_EINVAL); /* year 10000 */
  assert_int_equal(tl_time_format(INT64_C(-62167219200001), 0, out), TL_EINVAL); /* year -1 */
  assert_int_equal(tl_time_format(INT64_MAX, 0, out), TL_EINVAL);
  assert_int_equal(tl_time_format(INT64_MIN, 0, out), TL_EINVAL);

  /* Round trip over many instants, before and after the epoch, at several offsets. */
  static const int offsets[] = {0, 480, -330, 1439, -1439, 345};
  for (int64_t t = INT64_C(-2208988800000); t < INT64_C(4102444800000);
       t += INT64_C(86399999) * 7 + 13) {
    for (size_t j = 0; j < N(offsets); j++) {
      int64_t back;
      int off;
      assert_int_equal(tl_time_format(t, offsets[j], out), 0);
      assert_int_equal(tl_time_parse_offset(out, strlen(out), &back, &off), 0);
      if (back != t) fail_msg("%lld → %s → %lld", (long long)t, out, (long long)back);
      assert_int_equal(off, offsets[j]);
    }
  }
}

static void test_dates(void **state) {
  (void)state;
  int64_t days = 0;
  assert_int_equal(tl_date_parse("1970-01-01", 10, &days), 0);
  assert_true(days == 0);
  assert_int_equal(tl_date_parse("2021-10-08", 10, &days), 0);
  assert_true(days == 18908);
  assert_int_equal(tl_date_parse("2020-02-29", 10, &days), 0);
  assert_true(days == 18321);
  assert_int_equal(tl_date_parse("1969-12-31", 10, &days), 0);
  assert_true(days == -1);
  static const char *bad[] = {"2021-02-29", "2021-10-8", "2021-10-08T",
                              "20211008",   "",          "2100-02-29"};
  for (size_t i = 0; i < N(bad); i++)
    assert_int_equal(tl_date_parse(bad[i], strlen(bad[i]), &days), TL_EINVAL);
  /* Every real day from 1600 to 2400 is accepted and follows the one before it; every day 0,
   * 29-31 that does not exist is refused. This pins the leap-year rule (1700, 1800, 1900,
   * 2100, 2200, 2300 are common years; 1600, 2000, 2400 are leap years). */
  int64_t prev = 0;
  int first = 1;
  long accepted = 0;
  for (int y = 1600; y <= 2400; y++)
    for (int m = 1; m <= 12; m++)
      for (int d = 0; d <= 31; d++) {
        char s[16];
        snprintf(s, sizeof s, "%04d-%02d-%02d", y, m, d);
        int rc = tl_date_parse(s, 10, &days);
        if (rc != 0) continue;
        if (!first && days != prev + 1)
          fail_msg("%s is day %lld after %lld", s, (long long)days, (long long)prev);
        prev = days;
        first = 0;
        accepted++;
      }
  /* 801 years of which 195 are leap years (every 4th, less 1700-1900 and 2100-2300). */
  assert_int_equal(accepted, 801L * 365 + 195);
}

/* ---- resident IDs ------------------------------------------------------------------------- */

/* Builds the full-width (U+FF10-U+FF19, U+FF38) form of an ASCII ID. */
static void to_fullwidth(const char *in, char *out) {
  size_t o = 0;
  for (size_t i = 0; in[i]; i++) {
    out[o++] = (char)0xEF;
    out[o++] = (char)0xBC;
    out[o++] = in[i] == 'X' ? (char)0xB8 : (char)(0x90 + (in[i] - '0'));
  }
  out[o] = '\0';
}

static void test_resident_ids(void **state) {
  (void)state;
  char a[19], b[19], leap[19], lo[19], hi[19];
  make_rid(a, "230126", "19900101", "123");
  make_rid(b, "110101", "20001231", "456");
  make_rid(leap, "230126", "20000229", "321");
  make_rid(lo, "230126", "19000101", "001");
  make_rid(hi, "230126", "21001231", "999");
  char wrong[19];
  memcpy(wrong, a, 19);
  wrong[17] = other_check(a[17]);
  /* Bad birth dates with a correct check character, so that only the date can fail. */
  char feb29[19], month13[19], y1899[19], y2101[19], day0[19], y1900leap[19];
  make_rid(feb29, "230126", "19900229", "123");
  make_rid(month13, "230126", "19901301", "123");
  make_rid(y1899, "230126", "18991231", "123");
  make_rid(y2101, "230126", "21010101", "123");
  make_rid(day0, "230126", "19900100", "123");
  make_rid(y1900leap, "230126", "19000229", "123");
  char fw[19 * 3 + 1], fw_lower_x[64], spaced[64], x_lower[19], fw_b[19 * 3 + 1];
  to_fullwidth("11010519491231002X", fw);
  to_fullwidth(b, fw_b);
  /* full-width digits with a full-width lower-case x (U+FF58) */
  memcpy(fw_lower_x, fw, 17 * 3);
  memcpy(fw_lower_x + 17 * 3, "\xEF\xBD\x98", 4);
  snprintf(spaced, sizeof spaced, "\xE3\x80\x80 %s\t\r\n\xE3\x80\x80", a);
  snprintf(x_lower, sizeof x_lower, "11010519491231002x");
  char mixed[64]; /* ASCII and full-width digits mixed */
  snprintf(mixed, sizeof mixed, "230126\xEF\xBC\x91\xEF\xBC\x99%s", a + 8);
  char long19[20], short17[18], old15[16], inner_space[20], letter[19], x_middle[19];
  snprintf(long19, sizeof long19, "%s0", a);
  memcpy(short17, a, 17);
  short17[17] = '\0';
  memcpy(old15, a, 15);
  old15[15] = '\0';
  snprintf(inner_space, sizeof inner_space, "%.6s %s", a, a + 6);
  memcpy(letter, a, 19);
  letter[15] = 'A';
  memcpy(x_middle, a, 19);
  x_middle[3] = 'X';

  const struct {
    const char *in;
    int rc;
    const char *out;
  } cases[] = {
      {"11010519491231002X", 0, "11010519491231002X"}, /* the standard's worked example */
      {"110105194912310021", TL_RID_ECHECK, NULL},
      {a, 0, a},
      {b, 0, b},
      {leap, 0, leap},
      {lo, 0, lo},
      {hi, 0, hi},
      {wrong, TL_RID_ECHECK, NULL},
      {x_lower, 0, "11010519491231002X"},
      {fw, 0, "11010519491231002X"},
      {fw_lower_x, 0, "11010519491231002X"},
      {fw_b, 0, b},
      {mixed, 0, a},
      {spaced, 0, a},
      {feb29, TL_RID_EBIRTH, NULL},
      {month13, TL_RID_EBIRTH, NULL},
      {y1899, TL_RID_EBIRTH, NULL},
      {y2101, TL_RID_EBIRTH, NULL},
      {day0, TL_RID_EBIRTH, NULL},
      {y1900leap, TL_RID_EBIRTH, NULL},
      {long19, TL_RID_ELENGTH, NULL},
      {short17, TL_RID_ELENGTH, NULL},
      {old15, TL_RID_ELENGTH, NULL},
      {"", TL_RID_ELENGTH, NULL},
      {"   ", TL_RID_ELENGTH, NULL},
      {inner_space, TL_RID_ECHARS, NULL},
      {letter, TL_RID_ECHARS, NULL},
      {x_middle, TL_RID_ECHARS, NULL},
      {"11010519491231002Y", TL_RID_ECHARS, NULL},
      {"１１０１０５１９４９１２３１００２Ｙ", TL_RID_ECHARS,
       NULL},                                             /* full-width Y is not mapped */
      {"11010519491231002\xEF\xBC", TL_RID_ECHARS, NULL}, /* cut UTF-8 sequence */
      {"110105-19491231-002X", TL_RID_ECHARS, NULL},
  };
  for (size_t i = 0; i < N(cases); i++) {
    char out[19];
    memset(out, 'Z', sizeof out);
    int rc = tl_resident_id_normalize(cases[i].in, strlen(cases[i].in), out);
    if (rc != cases[i].rc) fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].rc);
    if (rc == 0) {
      assert_string_equal(out, cases[i].out);
    } else {
      assert_string_equal(out, ""); /* nothing half-normalised is left behind */
    }
    /* The message is one sentence, and neither the number nor any digit shows up in it. */
    const char *msg = tl_resident_id_error(rc);
    assert_non_null(msg);
    assert_true(strlen(msg) > 10);
    assert_int_equal(msg[strlen(msg) - 1], '.');
    assert_null(strpbrk(msg, "0123456789"));
    if (strpbrk(cases[i].in, "0123456789") != NULL) assert_null(strstr(msg, cases[i].in));
  }
  /* Distinct reasons have distinct codes and distinct messages. */
  const int codes[] = {TL_RID_ECHARS, TL_RID_ELENGTH, TL_RID_EBIRTH, TL_RID_ECHECK, 0};
  for (size_t i = 0; i < N(codes); i++)
    for (size_t j = i + 1; j < N(codes); j++) {
      assert_int_not_equal(codes[i], codes[j]);
      assert_string_not_equal(tl_resident_id_error(codes[i]), tl_resident_id_error(codes[j]));
    }
  for (size_t i = 0; i < 4; i++) assert_true(codes[i] < 0 && codes[i] != TL_EINVAL);

  /* Every single-digit change of a valid number is caught (MOD 11-2 detects all of them). */
  for (size_t pos = 0; pos < 18; pos++)
    for (char c = '0'; c <= '9'; c++) {
      if (c == a[pos]) continue;
      char t[19], out[19];
      memcpy(t, a, 19);
      t[pos] = c;
      assert_int_not_equal(tl_resident_id_normalize(t, 18, out), 0);
    }
  /* The length bounds the input. */
  char out[19];
  assert_int_equal(tl_resident_id_normalize("11010519491231002X99", 18, out), 0);
  assert_string_equal(out, "11010519491231002X");
}

static void test_id_types_and_other_ids(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int type;
  } types[] = {
      {"resident_id", TL_ID_RESIDENT},
      {"passport", TL_ID_PASSPORT},
      {"other", TL_ID_OTHER},
      {"Passport", -1},
      {"resident", -1},
      {"resident_id ", -1},
      {"", -1},
      {"OTHER", -1},
      {"others", -1},
  };
  for (size_t i = 0; i < N(types); i++) {
    int t = tl_id_type_parse(types[i].s, strlen(types[i].s));
    assert_int_equal(t, types[i].type);
    if (t >= 0) assert_string_equal(tl_id_type_name(t), types[i].s);
  }
  assert_null(tl_id_type_name(-1));
  assert_null(tl_id_type_name(3));

  static const struct {
    const char *in;
    int ok;
    const char *out;
  } cases[] = {
      {"E12345678", 1, "E12345678"},
      {" e12345678 ", 1, "E12345678"},
      {"\xE3\x80\x80g1234567\xE3\x80\x80", 1, "G1234567"},
      {"ab-12", 1, "AB-12"},
      {"abcd", 1, "ABCD"},
      {"\xEF\xBC\xA5\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93\xEF\xBD\x85", 1, "E123E"}, /* Ｅ１２３ｅ */
      {"12345678901234567890123456789012", 1, "12345678901234567890123456789012"},
      {"123456789012345678901234567890123", 0, NULL},
      {"abc", 0, NULL},
      {"", 0, NULL},
      {"AB 1234", 0, NULL},
      {"AB_1234", 0, NULL},
      {"护照12345", 0, NULL},
      {"E1234\xEF\xBC", 0, NULL},
      {"E1234\n5", 0, NULL},
  };
  for (size_t i = 0; i < N(cases); i++) {
    char out[33];
    int rc = tl_other_id_normalize(cases[i].in, strlen(cases[i].in), out, sizeof out);
    if (cases[i].ok) {
      if (rc != 0) fail_msg("refused: %s", cases[i].in);
      assert_string_equal(out, cases[i].out);
    } else {
      if (rc != TL_EINVAL) fail_msg("accepted: %s", cases[i].in);
      assert_string_equal(out, "");
    }
  }
  char small[5];
  assert_int_equal(tl_other_id_normalize("E12345678", 9, small, sizeof small), TL_EINVAL);
  assert_string_equal(small, "");
  assert_int_equal(tl_other_id_normalize("E123", 4, small, sizeof small), 0);
  assert_string_equal(small, "E123");

  /* The dispatcher. */
  char out[33];
  assert_int_equal(tl_id_normalize(TL_ID_RESIDENT, "11010519491231002x", 18, out, sizeof out), 0);
  assert_string_equal(out, "11010519491231002X");
  assert_int_equal(tl_id_normalize(TL_ID_RESIDENT, "110105194912310021", 18, out, sizeof out),
                   TL_RID_ECHECK);
  assert_int_equal(tl_id_normalize(TL_ID_RESIDENT, "11010519491231002X", 18, out, 18), TL_EINVAL);
  assert_int_equal(tl_id_normalize(TL_ID_PASSPORT, " e1234567", 9, out, sizeof out), 0);
  assert_string_equal(out, "E1234567");
  assert_int_equal(tl_id_normalize(TL_ID_OTHER, "x-99", 4, out, sizeof out), 0);
  assert_string_equal(out, "X-99");
  assert_int_equal(tl_id_normalize(7, "E1234567", 8, out, sizeof out), TL_EINVAL);
  assert_string_equal(out, "");
}

/* ---- phone, name, UTF-8 ------------------------------------------------------------------- */

static void test_phones(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out; /* NULL: refused */
  } cases[] = {
      {"13812345678", "13812345678"},
      {"+86 138-1234-5678", "+8613812345678"},
      {" (010) 6512.3456 ", "01065123456"},
      {"12345", "12345"},
      {"+12345", "+12345"},
      {"12345678901234567890", "12345678901234567890"},
      {"+12345678901234567890", "+12345678901234567890"},
      {"123456789012345678901", NULL},
      {"1234", NULL},
      {"+1234", NULL},
      {"", NULL},
      {"+", NULL},
      {"   ", NULL},
      {"138a1234567", NULL},
      {"86+13812345678", NULL},
      {"++8613812345678", NULL},
      {"138/1234/5678", NULL},
      {"\xEF\xBC\x91\xEF\xBC\x93\xEF\xBC\x98\xEF\xBC\x91\xEF\xBC\x92", NULL}, /* full-width */
  };
  for (size_t i = 0; i < N(cases); i++) {
    char out[TL_PHONE_MAX + 1];
    int rc = tl_phone_normalize(cases[i].in, strlen(cases[i].in), out, sizeof out);
    if (cases[i].out) {
      if (rc != 0) fail_msg("refused: %s", cases[i].in);
      assert_string_equal(out, cases[i].out);
    } else {
      if (rc != TL_EINVAL) fail_msg("accepted: %s", cases[i].in);
      assert_string_equal(out, "");
    }
  }
  char small[6];
  assert_int_equal(tl_phone_normalize("13812345678", 11, small, sizeof small), TL_EINVAL);
  assert_int_equal(tl_phone_normalize("12345", 5, small, sizeof small), 0);
}

static void test_names_and_utf8(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t len; /* 0: strlen */
    int utf8, name;
  } cases[] = {
      {"张三", 0, 1, 1},
      {"欧阳娜娜", 0, 1, 1},
      {"A", 0, 1, 1},
      {"O'Brien-Smith Jr.", 0, 1, 1},
      {"Zoë Ağaoğlu", 0, 1, 1},
      {"😀", 0, 1, 1},
      {"", 0, 1, 0},
      {"a\tb", 0, 1, 0},
      {"a\nb", 0, 1, 0},
      {"a\x7f", 0, 1, 0},
      {"a\xC2\x85", 0, 1, 0}, /* U+0085, a C1 control */
      {"a\0b", 3, 1, 0},
      {"\xC2\xA0x", 0, 1, 1}, /* U+00A0 is not a control */
      {"\xEF\xBF\xBF", 0, 1, 1},
      {"\xF4\x8F\xBF\xBF", 0, 1, 1}, /* U+10FFFF */
      {"\xFF", 0, 0, 0},
      {"\x80", 0, 0, 0},
      {"\xC0\xAF", 0, 0, 0}, /* overlong '/' */
      {"\xC1\xBF", 0, 0, 0},
      {"\xE0\x80\xAF", 0, 0, 0},     /* overlong */
      {"\xF0\x80\x80\xAF", 0, 0, 0}, /* overlong */
      {"\xED\xA0\x80", 0, 0, 0},     /* surrogate U+D800 */
      {"\xED\xBF\xBF", 0, 0, 0},     /* surrogate U+DFFF */
      {"\xF4\x90\x80\x80", 0, 0, 0}, /* above U+10FFFF */
      {"\xF5\x80\x80\x80", 0, 0, 0},
      {"\xE5\xBC", 0, 0, 0}, /* cut short */
      {"\xE5\xBC\xA0\xE4", 0, 0, 0},
      {"\xE5\x41\xA0", 0, 0, 0},
  };
  for (size_t i = 0; i < N(cases); i++) {
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
    if (tl_utf8_valid(cases[i].s, len) != cases[i].utf8) fail_msg("utf8 case %zu", i);
    if (tl_name_valid(cases[i].s, len) != cases[i].name) fail_msg("name case %zu", i);
  }
  char n64[65], n65[66];
  memset(n64, 'a', 64);
  n64[64] = '\0';
  memset(n65, 'a', 65);
  n65[65] = '\0';
  assert_true(tl_name_valid(n64, 64));
  assert_false(tl_name_valid(n65, 65));
  /* 21 three-byte characters = 63 bytes; one more is 66. */
  char cjk[70] = "";
  for (int i = 0; i < 21; i++) strcat(cjk, "张");
  assert_true(tl_name_valid(cjk, strlen(cjk)));
  strcat(cjk, "张");
  assert_false(tl_name_valid(cjk, strlen(cjk)));
  /* A name cut inside a character is not valid. */
  assert_false(tl_name_valid("张三", 5));
}

/* ---- masking ------------------------------------------------------------------------------ */

static void test_mask_names(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out; /* NULL: refused */
  } cases[] = {
      {"张三", "张*"},
      {"欧阳娜娜", "欧***"},
      {"张", "*"},
      {"A", "*"},
      {"John Smith", "J*********"},
      {"Zoë", "Z**"},
      {"😀😀", "😀*"},
      {"", NULL},
      {"\xE5\xBC", NULL},
  };
  for (size_t i = 0; i < N(cases); i++) {
    char out[64];
    int rc = tl_mask_name(cases[i].in, strlen(cases[i].in), out, sizeof out);
    if (cases[i].out) {
      assert_int_equal(rc, 0);
      assert_string_equal(out, cases[i].out);
      assert_true(strlen(out) <= strlen(cases[i].in)); /* len + 1 always suffices */
    } else {
      assert_int_equal(rc, TL_EINVAL);
      assert_string_equal(out, "");
    }
  }
  char small[4];
  assert_int_equal(tl_mask_name("欧阳娜娜", strlen("欧阳娜娜"), small, sizeof small), TL_EINVAL);
  assert_string_equal(small, "");
  char fit[7]; /* 欧 (3 bytes) + *** + NUL */
  assert_int_equal(tl_mask_name("欧阳娜娜", strlen("欧阳娜娜"), fit, sizeof fit), 0);
  assert_string_equal(fit, "欧***");
}

static void test_mask_ids_and_phones(void **state) {
  (void)state;
  char rid[19], want[19];
  make_rid(rid, "230126", "19900101", "123");
  snprintf(want, sizeof want, "230126********%s", rid + 14);
  const struct {
    int type;
    const char *in;
    const char *out;
  } ids[] = {
      {TL_ID_RESIDENT, "11010519491231002X", "110105********002X"},
      {TL_ID_RESIDENT, rid, want},
      {TL_ID_RESIDENT, "1101051949123100", NULL},
      {TL_ID_RESIDENT, "", NULL},
      {TL_ID_PASSPORT, "E12345678", "E1*****78"},
      {TL_ID_OTHER, "ABCDEFGH", "AB****GH"},
      {TL_ID_OTHER, "ABCDEFG", "*******"},
      {TL_ID_OTHER, "AB-1", "****"},
      {TL_ID_PASSPORT, "", NULL},
      {9, "E12345678", NULL},
  };
  for (size_t i = 0; i < N(ids); i++) {
    char out[40];
    int rc = tl_mask_id(ids[i].type, ids[i].in, out, sizeof out);
    if (ids[i].out) {
      assert_int_equal(rc, 0);
      assert_string_equal(out, ids[i].out);
    } else {
      assert_int_equal(rc, TL_EINVAL);
      assert_string_equal(out, "");
    }
  }
  /* The birth date never shows in a masked resident ID. */
  char out[19];
  assert_int_equal(tl_mask_id(TL_ID_RESIDENT, rid, out, sizeof out), 0);
  assert_null(strstr(out, "19900101"));
  assert_int_equal(tl_mask_id(TL_ID_RESIDENT, rid, out, 18), TL_EINVAL);

  static const struct {
    const char *in;
    const char *out;
  } phones[] = {
      {"13812345678", "138****5678"},
      {"01065123456", "010****3456"},
      {"+8613812345678", "**********5678"},
      {"65123456", "****3456"},
      {"12345", "*2345"},
      {"1234", "****"},
      {"", NULL},
  };
  for (size_t i = 0; i < N(phones); i++) {
    char po[32];
    int rc = tl_mask_phone(phones[i].in, po, sizeof po);
    if (phones[i].out) {
      assert_int_equal(rc, 0);
      assert_string_equal(po, phones[i].out);
    } else {
      assert_int_equal(rc, TL_EINVAL);
    }
  }
  char po[11];
  assert_int_equal(tl_mask_phone("13812345678", po, sizeof po), TL_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_barcodes_and_codes),
      cmocka_unit_test(test_regions),
      cmocka_unit_test(test_uuids),
      cmocka_unit_test(test_uuid_format),
      cmocka_unit_test(test_time_parse),
      cmocka_unit_test(test_time_format),
      cmocka_unit_test(test_dates),
      cmocka_unit_test(test_resident_ids),
      cmocka_unit_test(test_id_types_and_other_ids),
      cmocka_unit_test(test_phones),
      cmocka_unit_test(test_names_and_utf8),
      cmocka_unit_test(test_mask_names),
      cmocka_unit_test(test_mask_ids_and_phones),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
