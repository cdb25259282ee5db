/* The router: (method, path) → route. Pure, no I/O.
 *
 * Patterns are literal segments and `{name}` segments that match one non-empty segment, e.g.
 * "/v1/tubes/{code}". A path that matches a pattern under another method is 405; no pattern
 * at all is 404. Each route has a stable index, used by the metrics. */
#ifndef TL_HTTP_ROUTER_H
#define TL_HTTP_ROUTER_H

#include <stddef.h>

#define TL_ROUTER_MAX_ROUTES 64
#define TL_ROUTER_MAX_PARAMS 4

struct tl_http_exchange_s;
typedef void (*tl_http_handler_fn)(struct tl_http_exchange_s *x, void *ctx);

typedef struct {
  const char *method;  /* "GET", "POST", ... */
  const char *pattern; /* also the route's name in logs and metrics */
  tl_http_handler_fn handler;
  void *ctx;           /* borrowed: the handler's context */
} tl_route_t;

typedef struct {
  tl_route_t routes[TL_ROUTER_MAX_ROUTES];
  int nroutes;
} tl_router_t;

typedef struct {
  int route;            /* index into routes, or -1 */
  int status;           /* 0 when matched, else 404 or 405 */
  const char *allow;    /* for 405: a method that would match (for the Allow header) */
  struct {
    const char *at;     /* into the path given to match */
    size_t len;
  } params[TL_ROUTER_MAX_PARAMS];
  int nparams;
} tl_route_match_t;

void tl_router_init(tl_router_t *r);
/* Returns the route's index, or -1 when the table is full or the pattern is malformed. */
int tl_router_add(tl_router_t *r, const char *method, const char *pattern,
                  tl_http_handler_fn handler, void *ctx);
/* Matches path[0..pathlen) (no query string). Fills m; returns m->status. */
int tl_router_match(const tl_router_t *r, const char *method, const char *path, size_t pathlen,
                    tl_route_match_t *m);

#endif
