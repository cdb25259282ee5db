/* Strict JSON input helpers (json.h). cJSON keeps duplicate keys as separate children, so the
 * check walks every object once and compares names pairwise (objects here are small). */
#include "api/json.h"

#include "http/server.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int tl_api_fail(tl_api_err_t *err, int status, const char *code, const char *fmt, ...) {
  err->status = status;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return -1;
}

/* 0: fine; 1: an object repeats a key; 2: nested deeper than any call needs (hostile). */
static int has_duplicates(const cJSON *node, int depth) {
  if (depth > 32) return 2;
  for (const cJSON *c = node ? node->child : NULL; c; c = c->next) {
    if (cJSON_IsObject(node))
      for (const cJSON *d = c->next; d; d = d->next)
        if (c->string && d->string && strcmp(c->string, d->string) == 0) return 1;
    if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
      int rc = has_duplicates(c, depth + 1);
      if (rc) return rc;
    }
  }
  return 0;
}

/* The deepest nesting of [ and { in text, strings skipped; checked before parsing so that a
 * hostile body never makes the parser recurse thousands of levels. */
static int nesting(const char *p, size_t len) {
  int depth = 0, max = 0, in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = p[i];
    if (in_string) {
      if (ch == '\\') i++;
      else if (ch == '"') in_string = 0;
    } else if (ch == '"') {
      in_string = 1;
    } else if (ch == '[' || ch == '{') {
      if (++depth > max) max = depth;
    } else if (ch == ']' || ch == '}') {
      depth--;
    }
  }
  return max;
}

cJSON *tl_json_parse_body(const char *body, size_t len, tl_api_err_t *err) {
  if (len == 0) {
    tl_api_fail(err, 400, "invalid_json", "The request needs a JSON body.");
    return NULL;
  }
  if (memchr(body, '\0', len) != NULL) {
    tl_api_fail(err, 400, "invalid_json", "The body contains a NUL byte.");
    return NULL;
  }
  if (nesting(body, len) > 32) {
    tl_api_fail(err, 400, "too_deep", "The JSON nests deeper than 32 levels.");
    return NULL;
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
  if (root == NULL) {
    tl_api_fail(err, 400, "invalid_json", "The body is not valid JSON (near byte %ld).",
                end ? (long)(end - body) : 0L);
    return NULL;
  }
  while (end && (size_t)(end - body) < len && strchr(" \t\r\n", *end)) end++;
  if (end && (size_t)(end - body) < len) {
    cJSON_Delete(root);
    tl_api_fail(err, 400, "invalid_json", "Extra bytes after the JSON value.");
    return NULL;
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    tl_api_fail(err, 400, "invalid_json", "The body must be a JSON object.");
    return NULL;
  }
  int dup = has_duplicates(root, 0);
  if (dup) {
    cJSON_Delete(root);
    if (dup == 2)
      tl_api_fail(err, 400, "too_deep", "The JSON nests deeper than 32 levels.");
    else
      tl_api_fail(err, 400, "duplicate_key", "A JSON object repeats a key.");
    return NULL;
  }
  return root;
}

int tl_json_only(const cJSON *obj, const char *const *allowed, const char *where,
                 tl_api_err_t *err) {
  if (!cJSON_IsObject(obj)) return tl_api_fail(err, 400, "invalid_field", "%s must be an object.", where);
  for (const cJSON *c = obj->child; c; c = c->next) {
    int ok = 0;
    for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, c->string) == 0;
    if (!ok) {
      /* The unknown name is the client's own text but not personal data; keep it short. */
      return tl_api_fail(err, 400, "unknown_field", "%s has an unknown field \"%.40s\".", where,
                         c->string);
    }
  }
  return 0;
}

const char *tl_json_str(const cJSON *obj, const char *key, int required, const char *where,
                        tl_api_err_t *err, int *absent) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (absent) *absent = v == NULL;
  if (v == NULL) {
    if (required) tl_api_fail(err, 400, "missing_field", "%s needs \"%s\".", where, key);
    return NULL;
  }
  if (!cJSON_IsString(v)) {
    tl_api_fail(err, 400, "invalid_field", "%s: \"%s\" must be a string.", where, key);
    return NULL;
  }
  return v->valuestring;
}

int tl_json_int(const cJSON *obj, const char *key, int required, const char *where,
                tl_api_err_t *err, long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL) {
    if (required) return tl_api_fail(err, 400, "missing_field", "%s needs \"%s\".", where, key);
    return 1;
  }
  double d = cJSON_IsNumber(v) ? v->valuedouble : 0.5;
  if (!cJSON_IsNumber(v) || d != (double)(long)d || d < -1e9 || d > 1e9)
    return tl_api_fail(err, 400, "invalid_field", "%s: \"%s\" must be a whole number.", where, key);
  *out = (long)d;
  return 0;
}

int tl_json_bool(const cJSON *obj, const char *key, const char *where, tl_api_err_t *err,
                 int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL) return 1;
  if (!cJSON_IsBool(v))
    return tl_api_fail(err, 400, "invalid_field", "%s: \"%s\" must be true or false.", where, key);
  *out = cJSON_IsTrue(v);
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

int tl_json_canonical(const cJSON *v, tl_buf_t *out) {
  if (cJSON_IsObject(v)) {
    int n = cJSON_GetArraySize(v), rc = tl_buf_append(out, "{", 1);
    const cJSON **kids = n ? malloc((size_t)n * sizeof *kids) : NULL;
    if (n && kids == NULL) return TL_ENOMEM;
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next) kids[i++] = c;
    qsort(kids, (size_t)n, sizeof *kids, cmp_names);
    for (i = 0; i < n && rc == 0; i++) {
      if (i) rc = tl_buf_append(out, ",", 1);
      if (rc == 0) rc = tl_http_json_string(out, kids[i]->string);
      if (rc == 0) rc = tl_buf_append(out, ":", 1);
      if (rc == 0) rc = tl_json_canonical(kids[i], out);
    }
    free(kids);
    return rc ? rc : tl_buf_append(out, "}", 1);
  }
  if (cJSON_IsArray(v)) {
    int rc = tl_buf_append(out, "[", 1);
    for (const cJSON *c = v->child; c && rc == 0; c = c->next) {
      if (c != v->child) rc = tl_buf_append(out, ",", 1);
      if (rc == 0) rc = tl_json_canonical(c, out);
    }
    return rc ? rc : tl_buf_append(out, "]", 1);
  }
  return tl_json_write(v, out);
}

/* A string literal as cJSON prints one (print_string_ptr): the canonical encoding, and so every
 * stored digest, depends on these bytes. Runs of plain bytes go in at once. */
static int write_string(tl_buf_t *out, const char *s) {
  int rc = tl_buf_append(out, "\"", 1);
  const char *run = s ? s : "";
  for (const char *p = run; rc == 0; p++) {
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    rc = tl_buf_append(out, run, (size_t)(p - run));
    if (c == 0 || rc != 0) break;
    char esc[8];
    switch (c) {
    case '"': memcpy(esc, "\\\"", 3); break;
    case '\\': memcpy(esc, "\\\\", 3); break;
    case '\b': memcpy(esc, "\\b", 3); break;
    case '\f': memcpy(esc, "\\f", 3); break;
    case '\n': memcpy(esc, "\\n", 3); break;
    case '\r': memcpy(esc, "\\r", 3); break;
    case '\t': memcpy(esc, "\\t", 3); break;
    default: snprintf(esc, sizeof esc, "\\u%04x", c); break;
    }
    rc = tl_buf_append(out, esc, strlen(esc));
    run = p + 1;
  }
  return rc ? rc : tl_buf_append(out, "\"", 1);
}

int tl_json_write(const cJSON *v, tl_buf_t *out) {
  int rc = 0;
  if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
    int object = cJSON_IsObject(v);
    rc = tl_buf_append(out, object ? "{" : "[", 1);
    for (const cJSON *c = v->child; c && rc == 0; c = c->next) {
      if (c != v->child) rc = tl_buf_append(out, ",", 1);
      if (rc == 0 && object) rc = write_string(out, c->string);
      if (rc == 0 && object) rc = tl_buf_append(out, ":", 1);
      if (rc == 0) rc = tl_json_write(c, out);
    }
    return rc ? rc : tl_buf_append(out, object ? "}" : "]", 1);
  }
  if (cJSON_IsString(v)) return write_string(out, v->valuestring);
  if (cJSON_IsTrue(v)) return tl_buf_append(out, "true", 4);
  if (cJSON_IsFalse(v)) return tl_buf_append(out, "false", 5);
  if (cJSON_IsNull(v)) return tl_buf_append(out, "null", 4);
  /* a whole number within int as cJSON's "%1.15g" prints it (but -0 stays -0) */
  if (cJSON_IsNumber(v) && v->valuedouble == (double)v->valueint && !signbit(v->valuedouble))
    return tl_buf_appendf(out, "%d", v->valueint);
  /* other numbers (cJSON's %1.15g, or %1.17g when that does not read back), raw text */
  char *text = cJSON_PrintUnformatted(v);
  if (text == NULL) return TL_ENOMEM;
  rc = tl_buf_append(out, text, strlen(text));
  free(text);
  return rc;
}
