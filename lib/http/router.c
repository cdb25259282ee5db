/* The segment-wise router of router.h. Tables are small (tens of routes): a linear scan is
 * faster than anything cleverer and obviously correct. */
#include "http/router.h"

#include <string.h>

void tl_router_init(tl_router_t *r) { memset(r, 0, sizeof *r); }

int tl_router_add(tl_router_t *r, const char *method, const char *pattern,
                  tl_http_handler_fn handler, void *ctx) {
  if (r->nroutes == TL_ROUTER_MAX_ROUTES || pattern[0] != '/') return -1;
  int nparams = 0;
  for (const char *p = pattern; *p; p++)
    if (*p == '{') nparams++;
  if (nparams > TL_ROUTER_MAX_PARAMS) return -1;
  r->routes[r->nroutes] = (tl_route_t){method, pattern, handler, ctx};
  return r->nroutes++;
}

/* Matches one pattern against the path; captures parameters into m. */
static int pattern_match(const char *pat, const char *path, size_t pathlen, tl_route_match_t *m) {
  const char *p = path, *end = path + pathlen;
  m->nparams = 0;
  while (*pat) {
    if (p >= end || *p != '/' || *pat != '/') return 0;
    pat++;
    p++;
    const char *seg_end = memchr(p, '/', (size_t)(end - p));
    if (seg_end == NULL) seg_end = end;
    size_t seglen = (size_t)(seg_end - p);
    if (*pat == '{') {
      const char *close = strchr(pat, '}');
      if (close == NULL || seglen == 0) return 0;
      m->params[m->nparams].at = p;
      m->params[m->nparams].len = seglen;
      m->nparams++;
      pat = close + 1;
    } else {
      const char *pat_end = strchr(pat, '/');
      size_t patlen = pat_end ? (size_t)(pat_end - pat) : strlen(pat);
      if (patlen != seglen || memcmp(pat, p, seglen) != 0) return 0;
      pat += patlen;
    }
    p = seg_end;
  }
  return p == end;
}

int tl_router_match(const tl_router_t *r, const char *method, const char *path, size_t pathlen,
                    tl_route_match_t *m) {
  memset(m, 0, sizeof *m);
  m->route = -1;
  m->status = 404;
  for (int i = 0; i < r->nroutes; i++) {
    tl_route_match_t tmp;
    memset(&tmp, 0, sizeof tmp);
    if (!pattern_match(r->routes[i].pattern, path, pathlen, &tmp)) continue;
    if (strcmp(r->routes[i].method, method) == 0) {
      *m = tmp;
      m->route = i;
      m->status = 0;
      return 0;
    }
    m->status = 405;
    m->allow = r->routes[i].method;
    m->route = i; /* for logs and metrics: which resource refused the method */
  }
  return m->status;
}
