/* Strict JSON input for the API: objects with only the fields a call allows (no mass
 * assignment), no duplicate keys, case-sensitive names, typed getters with clear errors.
 * Error messages name fields and positions, never values (values can be personal data). */
#ifndef TL_API_JSON_H
#define TL_API_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
  int status;        /* HTTP status to answer with */
  const char *code;  /* machine code */
  char message[200]; /* one sentence for a person */
} tl_api_err_t;

/* Sets err and returns -1 (for `return tl_api_fail(...)`). */
int tl_api_fail(tl_api_err_t *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses a request body; refuses non-JSON, a non-object root and duplicate keys anywhere. */
cJSON *tl_json_parse_body(const char *body, size_t len, tl_api_err_t *err);

/* 0 when obj is an object whose keys are all in allowed (NULL-terminated), else -1 with
 * unknown_field. where names the object in messages ("event 3"). */
int tl_json_only(const cJSON *obj, const char *const *allowed, const char *where,
                 tl_api_err_t *err);

/* String field: returns it, or NULL. Missing and required → missing_field; wrong type →
 * invalid_field. *absent is set when missing (if absent is not NULL). */
const char *tl_json_str(const cJSON *obj, const char *key, int required, const char *where,
                        tl_api_err_t *err, int *absent);
/* Integer field (a JSON number without fraction) into *out; returns 0, 1 when absent and not
 * required, or -1 on error. */
int tl_json_int(const cJSON *obj, const char *key, int required, const char *where,
                tl_api_err_t *err, long *out);
/* Boolean field; returns 0, 1 when absent, -1 on error. */
int tl_json_bool(const cJSON *obj, const char *key, const char *where, tl_api_err_t *err,
                 int *out);

/* Appends v as canonical JSON: compact, object keys sorted (bytewise), so two encodings of the
 * same content give the same bytes. Returns 0 or TL_ENOMEM. */
#include "base/buf.h"
int tl_json_canonical(const cJSON *v, tl_buf_t *out);
/* Appends v as cJSON_PrintUnformatted would print it, byte for byte, without building the
 * text apart (no allocation for objects, arrays, strings and whole numbers). 0 or TL_ENOMEM. */
int tl_json_write(const cJSON *v, tl_buf_t *out);

#endif
