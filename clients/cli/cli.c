/* The CLI core of cli.h: flags, libcurl, JSON answers, tables. */
#include "cli.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

int tl_cli_fail(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "tubeloop: %s\n", line);
  return 1;
}

static const char *flag_value(int *i, int argc, char **argv, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
  if (strcmp(argv[*i], name) == 0 && *i + 1 < argc) return argv[++*i];
  return NULL;
}

int tl_cli_init(tl_cli_t *c, int *argc, char **argv) {
  memset(c, 0, sizeof *c);
  c->url = getenv("TUBELOOP_URL");
  c->token = getenv("TUBELOOP_TOKEN");
  c->cacert = getenv("TUBELOOP_CACERT");
  c->cert = getenv("TUBELOOP_CERT");
  c->key = getenv("TUBELOOP_KEY");
  const char *lang = getenv("TUBELOOP_LANG");
  c->en = lang && strncmp(lang, "en", 2) == 0;
  c->timeout_ms = 30000;
  int out = 1;
  for (int i = 1; i < *argc; i++) {
    const char *v;
    int keep = 0;
    if ((v = flag_value(&i, *argc, argv, "--url")) != NULL) c->url = v;
    else if ((v = flag_value(&i, *argc, argv, "--token")) != NULL) c->token = v;
    else if ((v = flag_value(&i, *argc, argv, "--cacert")) != NULL) c->cacert = v;
    else if ((v = flag_value(&i, *argc, argv, "--cert")) != NULL) c->cert = v;
    else if ((v = flag_value(&i, *argc, argv, "--key")) != NULL) c->key = v;
    else if ((v = flag_value(&i, *argc, argv, "--lang")) != NULL) c->en = strncmp(v, "en", 2) == 0;
    else if (strcmp(argv[i], "--json") == 0) c->json = 1;
    else keep = 1;
    if (keep) argv[out++] = argv[i];
  }
  *argc = out;
  argv[out] = NULL;
  if (c->url) {
    /* keep the base without a trailing slash: paths start with one */
    static char base[1024];
    snprintf(base, sizeof base, "%s", c->url);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') base[--n] = '\0';
    c->url = base;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return tl_cli_fail("libcurl failed to start");
  return 0;
}

void tl_cli_dispose(tl_cli_t *c) {
  if (c->curl) curl_easy_cleanup(c->curl);
  c->curl = NULL;
  curl_global_cleanup();
}

int tl_cli_need_server(tl_cli_t *c) {
  if (c->url == NULL || c->url[0] == '\0')
    return tl_cli_fail("%s", TL_MSG(c, "未设置服务器地址：请设置 TUBELOOP_URL 或使用 --url",
                                    "no server: set TUBELOOP_URL or pass --url"));
  if (c->token == NULL || c->token[0] == '\0')
    return tl_cli_fail("%s", TL_MSG(c, "未设置令牌：请设置 TUBELOOP_TOKEN 或使用 --token",
                                    "no token: set TUBELOOP_TOKEN or pass --token"));
  return 0;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *arg) {
  tl_buf_t *b = arg;
  return tl_buf_append(b, ptr, size * n) == 0 ? size * n : 0;
}

void tl_cli_tls_setopt(const tl_cli_t *c, void *curl) {
  if (c->cacert) curl_easy_setopt(curl, CURLOPT_CAINFO, c->cacert);
  /* A device's client certificate (mTLS, --device-certs on the server). */
  if (c->cert) curl_easy_setopt(curl, CURLOPT_SSLCERT, c->cert);
  if (c->key) curl_easy_setopt(curl, CURLOPT_SSLKEY, c->key);
}

int tl_cli_call(tl_cli_t *c, const char *method, const char *path, const char *body,
                tl_cli_resp_t *r, char *err, size_t errlen) {
  r->status = 0;
  tl_buf_init(&r->body);
  if (c->curl == NULL && (c->curl = curl_easy_init()) == NULL) {
    snprintf(err, errlen, "libcurl: out of memory");
    return -1;
  }
  CURL *h = c->curl;
  curl_easy_reset(h);
  char url[2048], auth[256];
  snprintf(url, sizeof url, "%s%s", c->url ? c->url : "", path);
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token ? c->token : "");
  struct curl_slist *hdrs = NULL;
  hdrs = curl_slist_append(hdrs, auth);
  if (body) hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
  tl_cli_tls_setopt(c, h);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  if (rc != CURLE_OK) {
    snprintf(err, errlen, "%s (%s)", TL_MSG(c, "无法连接服务器", "cannot reach the server"),
             curl_easy_strerror(rc));
    tl_buf_dispose(&r->body);
    return -1;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  return 0;
}

void tl_cli_resp_dispose(tl_cli_resp_t *r) { tl_buf_dispose(&r->body); }

cJSON *tl_cli_resp_json(const tl_cli_resp_t *r) {
  return r->body.len ? cJSON_ParseWithLength(r->body.data, r->body.len) : NULL;
}

void tl_cli_resp_error(const tl_cli_resp_t *r, char *out, size_t outlen) {
  cJSON *j = tl_cli_resp_json(r);
  const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
  if (e)
    snprintf(out, outlen, "%ld %s: %s", r->status, tl_js(e, "code"), tl_js(e, "message"));
  else
    snprintf(out, outlen, "HTTP %ld", r->status);
  cJSON_Delete(j);
}

cJSON *tl_cli_call_json(tl_cli_t *c, const char *method, const char *path, const char *body) {
  tl_cli_resp_t r;
  char err[512];
  if (tl_cli_call(c, method, path, body, &r, err, sizeof err) != 0) {
    tl_cli_fail("%s", err);
    return NULL;
  }
  if (r.status < 200 || r.status > 299) {
    tl_cli_resp_error(&r, err, sizeof err);
    tl_cli_fail("%s", err);
    tl_cli_resp_dispose(&r);
    return NULL;
  }
  cJSON *j = tl_cli_resp_json(&r);
  if (j == NULL) tl_cli_fail("%s", TL_MSG(c, "服务器的回答不是 JSON", "the server's answer is not JSON"));
  tl_cli_resp_dispose(&r);
  return j;
}

int tl_cli_urlenc(tl_buf_t *b, const char *v) {
  static const char hex[] = "0123456789ABCDEF";
  int rc = 0;
  for (const unsigned char *p = (const unsigned char *)v; *p && rc == 0; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.' || *p == '~')
      rc = tl_buf_append(b, p, 1);
    else
      rc = tl_buf_appendf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
  }
  return rc;
}

const char *tl_js(const cJSON *o, const char *key) {
  const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
  return cJSON_IsString(v) ? v->valuestring : "";
}

const char *tl_jn(const cJSON *o, const char *key, char *buf, size_t buflen) {
  const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
  if (cJSON_IsNumber(v)) {
    if (v->valuedouble == (double)(long long)v->valuedouble)
      snprintf(buf, buflen, "%lld", (long long)v->valuedouble);
    else
      snprintf(buf, buflen, "%.4g", v->valuedouble);
  } else if (cJSON_IsString(v)) {
    snprintf(buf, buflen, "%s", v->valuestring);
  } else {
    snprintf(buf, buflen, "-");
  }
  return buf;
}

int tl_text_width(const char *s) {
  mbstate_t st;
  memset(&st, 0, sizeof st);
  int w = 0;
  size_t len = strlen(s);
  while (len > 0) {
    wchar_t wc;
    size_t n = mbrtowc(&wc, s, len, &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
      w++;
      s++;
      len--;
      memset(&st, 0, sizeof st);
      continue;
    }
    int cw = wcwidth(wc);
    w += cw < 0 ? 1 : cw;
    s += n;
    len -= n;
  }
  return w;
}

void tl_table_init(tl_table_t *t, int ncols) {
  memset(t, 0, sizeof *t);
  t->ncols = ncols;
}

void tl_table_row(tl_table_t *t, ...) {
  if (t->nrows == t->cap) {
    int cap = t->cap ? t->cap * 2 : 16;
    char **p = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof *p);
    if (p == NULL) return;
    t->cells = p;
    t->cap = cap;
  }
  va_list ap;
  va_start(ap, t);
  for (int i = 0; i < t->ncols; i++) {
    const char *v = va_arg(ap, const char *);
    t->cells[t->nrows * t->ncols + i] = strdup(v && v[0] ? v : "-");
  }
  va_end(ap);
  t->nrows++;
}

void tl_table_print(const tl_table_t *t) {
  int widths[32] = {0};
  for (int r = 0; r < t->nrows; r++)
    for (int i = 0; i < t->ncols && i < 32; i++) {
      int w = tl_text_width(t->cells[r * t->ncols + i]);
      if (w > widths[i]) widths[i] = w;
    }
  for (int r = 0; r < t->nrows; r++) {
    for (int i = 0; i < t->ncols && i < 32; i++) {
      const char *cell = t->cells[r * t->ncols + i];
      fputs(cell, stdout);
      if (i + 1 < t->ncols)
        for (int pad = widths[i] - tl_text_width(cell) + 2; pad > 0; pad--) putchar(' ');
    }
    putchar('\n');
  }
}

void tl_table_dispose(tl_table_t *t) {
  for (int i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
  free(t->cells);
  memset(t, 0, sizeof *t);
}

int tl_cli_read_line(tl_buf_t *b) {
  tl_buf_reset(b);
  int ch, any = 0;
  while ((ch = getchar()) != EOF) {
    any = 1;
    if (ch == '\n') break;
    char cc = (char)ch;
    if (tl_buf_append(b, &cc, 1) != 0) return -1;
  }
  if (!any) return -1;
  while (b->len > 0 && (b->data[b->len - 1] == '\r' || b->data[b->len - 1] == ' ')) b->len--;
  tl_buf_cstr(b);
  return 0;
}
