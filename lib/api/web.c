/* Static files of the dashboard (web.h). */
#include "api/web.h"

#include "base/buf.h"
#include "base/log.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char name[96];      /* "app.js" or "vendor/uPlot.min.css" */
  const char *type;
  char *data;
  size_t len;
} file_t;

struct tl_web_s {
  file_t *files;
  size_t n;
};

static const struct {
  const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
    {".png", "image/png"},                 {".ico", "image/x-icon"},
    {".json", "application/json"},
};

static const char *type_of(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    size_t e = strlen(types[i].ext);
    if (n > e && strcmp(name + n - e, types[i].ext) == 0) return types[i].type;
  }
  return NULL;
}

static int load_one(tl_web_t *w, const char *dir, const char *prefix, const char *fname) {
  const char *type = type_of(fname);
  char path[4096], name[96];
  if (type == NULL || fname[0] == '.') return 0;
  if (snprintf(name, sizeof name, "%s%s", prefix, fname) >= (int)sizeof name) return 0;
  snprintf(path, sizeof path, "%s/%s", dir, fname);
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  tl_buf_t b;
  tl_buf_init(&b);
  char chunk[8192];
  size_t got;
  int rc = 0;
  while (rc == 0 && (got = fread(chunk, 1, sizeof chunk, f)) > 0) rc = tl_buf_append(&b, chunk, got);
  fclose(f);
  file_t *nf = rc == 0 ? realloc(w->files, (w->n + 1) * sizeof *w->files) : NULL;
  if (nf == NULL) {
    tl_buf_dispose(&b);
    return TL_ENOMEM;
  }
  w->files = nf;
  file_t *e = &w->files[w->n++];
  snprintf(e->name, sizeof e->name, "%s", name);
  e->type = type;
  e->data = tl_buf_steal(&b, &e->len);
  return 0;
}

static int load_dir(tl_web_t *w, const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int rc = 0;
  for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) rc = load_one(w, dir, prefix, e->d_name);
  closedir(d);
  return rc;
}

int tl_web_load(tl_web_t **out, const char *dir) {
  tl_web_t *w = calloc(1, sizeof *w);
  if (w == NULL) return TL_ENOMEM;
  char vendor[4096];
  snprintf(vendor, sizeof vendor, "%s/vendor", dir);
  int rc = load_dir(w, dir, "");
  if (rc == 0) rc = load_dir(w, vendor, "vendor/");
  if (rc != 0) {
    tl_web_free(w);
    return rc;
  }
  tl_log(TL_LOG_INFO, "web_loaded", "files=%zu", w->n);
  *out = w;
  return 0;
}

void tl_web_free(tl_web_t *w) {
  if (w == NULL) return;
  for (size_t i = 0; i < w->n; i++) free(w->files[i].data);
  free(w->files);
  free(w);
}

size_t tl_web_count(const tl_web_t *w) { return w ? w->n : 0; }

/* The dashboard talks only to its own origin; nothing inline, no frames. */
static const char page_headers[] =
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; style-src 'self';"
    " script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'\r\n"
    "Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n";

static void serve(tl_http_exchange_t *x, const tl_web_t *w, const char *name, size_t len) {
  for (size_t i = 0; i < w->n; i++) {
    const file_t *f = &w->files[i];
    if (strlen(f->name) == len && memcmp(f->name, name, len) == 0) {
      tl_http_reply(x, 200, f->type, page_headers, f->data, f->len);
      return;
    }
  }
  tl_http_reply_error(x, 404, "not_found", "There is no such file.");
}

static void on_index(tl_http_exchange_t *x, void *ctx) { serve(x, ctx, "index.html", 10); }

static void on_static(tl_http_exchange_t *x, void *ctx) {
  size_t len;
  const char *name = tl_http_exchange_param(x, 0, &len);
  serve(x, ctx, name, len);
}

static void on_vendor(tl_http_exchange_t *x, void *ctx) {
  size_t len;
  const char *name = tl_http_exchange_param(x, 0, &len);
  char full[96];
  if (len > 80) {
    tl_http_reply_error(x, 404, "not_found", "There is no such file.");
    return;
  }
  snprintf(full, sizeof full, "vendor/%.*s", (int)len, name);
  serve(x, ctx, full, strlen(full));
}

int tl_web_routes(tl_web_t *w, tl_router_t *r) {
  int bad = tl_router_add(r, "GET", "/", on_index, w) < 0;
  bad |= tl_router_add(r, "GET", "/static/{name}", on_static, w) < 0;
  bad |= tl_router_add(r, "GET", "/static/vendor/{name}", on_vendor, w) < 0;
  return bad ? TL_ENOMEM : 0;
}
