/* tl_buf_t: a growable byte buffer (caller's memory, heap storage).
 *
 * _init/_dispose own the storage. Appends keep one spare byte so tl_buf_cstr() can
 * NUL-terminate without reallocating. Capacity grows by doubling. */
#ifndef TL_BASE_BUF_H
#define TL_BASE_BUF_H

#include "base/err.h"

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct {
  char *data;  /* owned; NULL until the first append */
  size_t len;  /* bytes in use */
  size_t cap;  /* bytes allocated */
} tl_buf_t;

void tl_buf_init(tl_buf_t *b);
void tl_buf_dispose(tl_buf_t *b);
void tl_buf_reset(tl_buf_t *b); /* len = 0, storage kept */
TL_WUR int tl_buf_reserve(tl_buf_t *b, size_t extra);
TL_WUR int tl_buf_append(tl_buf_t *b, const void *data, size_t len);
/* Appends a NUL-terminated string (without the NUL); inline, so a literal's length is known
 * when compiling. */
TL_WUR static inline int tl_buf_puts(tl_buf_t *b, const char *s) {
  return tl_buf_append(b, s, strlen(s));
}
TL_WUR int tl_buf_appendf(tl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
TL_WUR int tl_buf_vappendf(tl_buf_t *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Adds item to a PostgreSQL array literal being built in b (b starts with "{", the caller
 * closes it with "}"): a comma before every item but the first. The item goes in as it is,
 * unquoted: only for values that need no quoting (codes, numbers, uuids, hex). */
TL_WUR int tl_buf_array_add(tl_buf_t *b, const char *item);
/* Drops the first n bytes (n <= len). */
void tl_buf_consume(tl_buf_t *b, size_t n);
/* NUL-terminates and returns data ("" when empty); valid until the next change. */
const char *tl_buf_cstr(tl_buf_t *b);
/* Moves the storage out: the caller owns *out and must free() it; b is left empty. */
char *tl_buf_steal(tl_buf_t *b, size_t *len);

#endif
