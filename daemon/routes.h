/* The daemon's whole route table, in one place: the API's calls (lib/api/api.c), the live
 * stream and the dashboard's files. `tubeloopd serve` answers with it and `tubeloopd routes`
 * prints it, so what the route listing (and the test that compares it with the OpenAPI
 * description) sees is what the server serves. */
#ifndef TL_DAEMON_ROUTES_H
#define TL_DAEMON_ROUTES_H

#include "api/api.h"
#include "api/live.h"
#include "api/web.h"
#include "http/router.h"

/* Adds every route to r, in the order the metrics number them. api, live and web are the
 * handlers' contexts (borrowed; NULL live or web when the table is only listed, never
 * served). Returns 0 or TL_ENOMEM (the router is full). */
TL_WUR int tl_daemon_routes(tl_router_t *r, tl_api_t *api, tl_live_t *live, tl_web_t *web);

/* `tubeloopd routes`: prints "METHOD PATTERN" per route to stdout; returns the exit status. */
int tl_daemon_print_routes(void);

#endif
