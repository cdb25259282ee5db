/* The web dashboard's static files, served by the daemon (GET / and GET /static/...).
 *
 * The files of one folder (and its vendor/ subfolder, filled by the set-up from npm) are read
 * once at start into memory: answering never touches the disk, so a slow disk never blocks the
 * loop. Only files with a known type are served; names are matched exactly, so no path can
 * climb out of the folder. */
#ifndef TL_API_WEB_H
#define TL_API_WEB_H

#include "base/err.h"
#include "http/router.h"
#include "http/server.h"

#include <stddef.h>

typedef struct tl_web_s tl_web_t;

/* Loads dir (missing dir: an empty site whose / says so). */
TL_WUR int tl_web_load(tl_web_t **out, const char *dir);
void tl_web_free(tl_web_t *w);
size_t tl_web_count(const tl_web_t *w);
/* Adds GET /, /static/{name} and /static/vendor/{name}. */
TL_WUR int tl_web_routes(tl_web_t *w, tl_router_t *r);

#endif
