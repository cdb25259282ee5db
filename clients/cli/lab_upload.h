/* `tubeloop lab upload`: the check of a lab's results file (docs/CSV.md), apart from the
 * sending, so that it can be tested and fuzzed without a server (tests/fuzz/fuzz_csv.c).
 *
 * tl_lab_file_check reads a whole CSV file held in memory: the header (tube, result,
 * ct_<gene> up to 16, amend, at; any other column is a problem), then every line; each bad
 * line becomes a problem with its physical line number and a message in Chinese or English,
 * each good line a row. A tube named on two lines is a problem on the later one. Problems come
 * sorted by line. tl_lab_event turns a row into its tube.result event, whose id is derived
 * from the namespace and the event's content (docs/CSV.md), so the same line always gives the
 * same event. */
#ifndef TL_CLI_LAB_UPLOAD_H
#define TL_CLI_LAB_UPLOAD_H

#include "cli.h"
#include "input.h"

#include "domain/validate.h"

#include <cjson/cJSON.h>
#include <stddef.h>

#define TL_LAB_MAX_GENES 16   /* the server's limit on ct entries */

typedef struct {
  int tube, result, amend, at;   /* column index, or -1 when the file has none */
  int ngenes;
  int gene_col[TL_LAB_MAX_GENES];
  char gene[TL_LAB_MAX_GENES][33];
  int gene_order[TL_LAB_MAX_GENES];     /* genes sorted by name: the ct object's key order */
  int ncols;
} tl_lab_header_t;

typedef struct {
  int line;
  char tube[33];
  int result;                    /* 0 negative, 1 positive, 2 invalid (tl_lab_result_name) */
  int amend;
  char at[TL_TIME_TEXT_MAX];     /* "" = the file's time */
  double ct[TL_LAB_MAX_GENES];
  unsigned char has_ct[TL_LAB_MAX_GENES];
} tl_lab_row_t;

typedef struct {
  int line;
  char *msg;                     /* owned */
} tl_lab_problem_t;

typedef struct {
  tl_lab_problem_t *v;
  int n, cap;
} tl_lab_problems_t;

typedef struct {
  tl_lab_header_t header;
  tl_lab_row_t *rows;            /* the good lines, in file order; owned */
  int nrows;
  tl_lab_problems_t problems;    /* sorted by line; owned */
} tl_lab_file_t;

/* Checks data[0..len) (not NUL-terminated; NULL with len 0 is an empty file). en: English
 * messages. Returns 0 with *f filled (caller's memory; tl_lab_file_dispose it), or -1 when out
 * of memory (*f then holds nothing). The file is good when f->problems.n == 0 and f->nrows > 0. */
int tl_lab_file_check(tl_lab_file_t *f, const char *data, size_t len, int en);
void tl_lab_file_dispose(tl_lab_file_t *f);

/* Row r of a file with header h as a tube.result event {"type","at","tube","result","ct"?,
 * "amend"?,"id"}: at is the row's or file_at; the id an RFC 9562 UUIDv8 from SHA-256 over ns
 * and the rest of the event. Caller frees with cJSON_Delete; NULL when out of memory. */
cJSON *tl_lab_event(const tl_lab_header_t *h, const tl_lab_row_t *r, const char *file_at, const char *ns);

/* "negative", "positive", "invalid" for 0, 1, 2; NULL otherwise. */
const char *tl_lab_result_name(int result);

#endif
