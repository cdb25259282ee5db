/* One-line key=value logging on stderr.
 *
 * Every line is `ts=... level=... msg=... key=value ...`. The level is checked before any
 * formatting (tl_log is a macro). Callers must never pass a token, an ID number, a name or a
 * phone number: the log is not a place for personal data. */
#ifndef TL_BASE_LOG_H
#define TL_BASE_LOG_H

typedef enum {
  TL_LOG_DEBUG = 0, /* developer detail */
  TL_LOG_INFO = 1,  /* normal operation: start, stop, access lines */
  TL_LOG_WARN = 2,  /* something went wrong and was handled */
  TL_LOG_ERROR = 3  /* something went wrong and was not */
} tl_log_level_t;

extern tl_log_level_t tl_log_threshold;

/* Parses "debug", "info", "warn" or "error". Returns 0 or TL_EINVAL. */
int tl_log_level_parse(const char *name, tl_log_level_t *out);

/* msg is a short constant word; fmt continues the line with key=value pairs (may be ""). */
void tl_log_write(tl_log_level_t level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tl_log(level, msg, ...)                                                            \
  do {                                                                                     \
    if ((level) >= tl_log_threshold) tl_log_write((level), (msg), __VA_ARGS__);            \
  } while (0)

#endif
