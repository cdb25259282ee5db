/* The route table of routes.h. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

int tl_daemon_routes(tl_router_t *r, tl_api_t *api, tl_live_t *live, tl_web_t *web) {
  if (tl_api_routes(r, api) != 0 ||
      tl_router_add(r, "GET", "/v1/stream", tl_live_handler, live) < 0 ||
      tl_web_routes(web, r) != 0)
    return TL_ENOMEM;
  return 0;
}

int tl_daemon_print_routes(void) {
  /* Listing only registers handlers and contexts; nothing is started or called. */
  static tl_router_t router;
  tl_api_t api;
  memset(&api, 0, sizeof api);
  tl_router_init(&router);
  if (tl_daemon_routes(&router, &api, NULL, NULL) != 0) {
    fprintf(stderr, "tubeloopd routes: the route table is full\n");
    return 1;
  }
  for (int i = 0; i < router.nroutes; i++)
    printf("%s %s\n", router.routes[i].method, router.routes[i].pattern);
  return fflush(stdout) == 0 ? 0 : 1;
}
