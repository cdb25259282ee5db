/* GET /v1/stream?region=CODE[&day=|&round=]: Server-Sent Events with a region's stats as they
 * change (DESIGN §5), for live dashboards.
 *
 * Every write re-counts the roll-ups and NOTIFYs "tl_stats" with the counties it touched (at
 * commit, so every daemon on the database hears it). The hub LISTENs on a connection of its
 * own, marks the streams of those counties dirty, and a 300 ms timer sends each dirty stream a
 * fresh snapshot (one query per distinct region, however many officials watch it): updates are
 * coalesced to at most ~3 a second. An event's id is the version of the figures (the newest
 * roll-up change, epoch ms): a reconnecting browser sends it back as Last-Event-ID and gets no
 * repeat of what it has. A comment line every 15 s keeps proxies from closing idle streams.
 * The same connection LISTENs to tl_principals for the token cache (authcache.h). */
#ifndef TL_API_LIVE_H
#define TL_API_LIVE_H

#include "api/api.h"

typedef struct tl_live_s tl_live_t;

/* Creates the hub and its LISTEN connection. api must outlive it. */
TL_WUR int tl_live_start(tl_live_t **out, uv_loop_t *loop, tl_api_t *api, const char *conninfo,
                         const char *tz);
/* Ends every stream (so a graceful shutdown is not held up), closes timers and the LISTEN
 * connection; done(arg) when everything is closed, then the hub is freed. */
void tl_live_stop(tl_live_t *l, void (*done)(void *), void *arg);
/* The route handler (ctx: the hub). */
void tl_live_handler(tl_http_exchange_t *x, void *ctx);
size_t tl_live_clients(const tl_live_t *l);
/* Whether the listening connection is up, after reading the notifications that have arrived
 * on it (so a change already announced is applied before this returns): the token cache may
 * be used only then (authcache.h). */
int tl_live_listening(tl_live_t *l);

#endif
