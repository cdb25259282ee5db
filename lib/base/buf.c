/* The byte buffer of buf.h. */
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tl_buf_init(tl_buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void tl_buf_dispose(tl_buf_t *b) {
  free(b->data);
  tl_buf_init(b);
}

void tl_buf_reset(tl_buf_t *b) { b->len = 0; }

int tl_buf_reserve(tl_buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) {
    if (cap > ((size_t)-1) / 2) return TL_ENOMEM;
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (p == NULL) return TL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int tl_buf_append(tl_buf_t *b, const void *data, size_t len) {
  if (len == 0) return 0;
  int rc = tl_buf_reserve(b, len);
  if (rc != 0) return rc;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

int tl_buf_vappendf(tl_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return TL_EINVAL;
  int rc = tl_buf_reserve(b, (size_t)n);
  if (rc != 0) return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int tl_buf_appendf(tl_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = tl_buf_vappendf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int tl_buf_array_add(tl_buf_t *b, const char *item) {
  return tl_buf_appendf(b, "%s%s", b->len > 1 ? "," : "", item);
}

void tl_buf_consume(tl_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

const char *tl_buf_cstr(tl_buf_t *b) {
  if (b->data == NULL) return "";
  b->data[b->len] = '\0'; /* reserve() always leaves room for it */
  return b->data;
}

char *tl_buf_steal(tl_buf_t *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  tl_buf_init(b);
  return p;
}
