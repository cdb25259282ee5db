/* Reading what the user hands the CLI: files, CSV records (RFC 4180 as spreadsheets and lab
 * systems write it) and subcommand flags. Used by `lab upload` and the `admin` imports; the
 * CSV rules are the ones docs/CSV.md states.
 *
 * The CSV reader works on a file held in memory. A leading UTF-8 BOM is skipped; fields are
 * separated by commas; a field may be quoted ("" is a quote inside it, and a quoted field
 * may hold commas and line breaks); spaces and tabs around a field are dropped; records end
 * with LF or CRLF (a lone CR too); blank lines are skipped. Every record carries the number
 * of the physical line it starts on (the header is line 1), so errors can name it. */
#ifndef TL_CLI_INPUT_H
#define TL_CLI_INPUT_H

#include "base/buf.h"

#include <stddef.h>
#include <time.h>

typedef struct {
  const char *data; /* borrowed: the file's bytes, valid while the reader is used */
  size_t len, pos;
  int line;         /* physical line of data[pos], 1-based */
  tl_buf_t fields;  /* the current record's fields, each NUL-terminated, owned */
  size_t *offs;     /* start of field i in fields.data, owned */
  int nf, cap;      /* fields in the current record; room in offs */
} tl_csv_t;

/* Starts reading data[0..len) (skipping a BOM). Caller's memory; dispose when done. */
void tl_csv_init(tl_csv_t *p, const char *data, size_t len);
void tl_csv_dispose(tl_csv_t *p);

/* Reads the next non-blank record. Returns 1 (a record: *line is where it starts), 0 at the
 * end, or -1 when the record is malformed: err says why (in English or Chinese by en) and
 * the reader has moved on to the next line, so every bad line can be reported in one pass.
 * Fields are checked to be UTF-8 without control characters (tabs aside). */
int tl_csv_next(tl_csv_t *p, int en, int *line, char *err, size_t errlen);
/* Field i of the current record ("" past the end); valid until the next tl_csv_next. */
const char *tl_csv_field(const tl_csv_t *p, int i);

/* Reads a whole file into b (NUL-terminated by tl_buf_cstr). *mtime (if not NULL) gets its
 * modification time. Returns 0, or -1 after printing why (file name and reason). */
int tl_file_read(const char *path, int en, tl_buf_t *b, time_t *mtime);

/* Flag helpers for subcommands. tl_arg_value: when argv[*i] is `--name VALUE` or
 * `--name=VALUE`, stores VALUE in *out, moves *i past it and returns 1; returns 0 when argv[*i]
 * is another word, and -1 after printing a reason when the value is missing. */
int tl_arg_value(int *i, int argc, char **argv, const char *name, const char **out);
/* --help or -h */
int tl_arg_help(const char *a);

/* ASCII case-insensitive equality. */
int tl_word_eq(const char *a, const char *b);

/* Appends to b, or exits the process with "out of memory" (a CLI has nothing better to do;
 * output text is never silently cut). */
void tl_bputf(tl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a list of line numbers compactly into b: "2-5, 9, 12-13". */
int tl_lines_compact(tl_buf_t *b, const int *lines, int n);

#endif
