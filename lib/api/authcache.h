/* The principals of recently seen tokens, so that a request with a known token needs no
 * query (auth.c). A cached principal is the lookup's answer, kept until something that could
 * change it happens:
 *   - a statement on tokens, sites, couriers or labs (sql/038: a trigger NOTIFYs
 *     tl_principals; live.c LISTENs on its own connection and flushes the cache);
 *   - this daemon revoking a token or writing the registry (admin.c flushes before answering);
 *   - the listening connection being down or new (notifications may have been missed);
 *   - TL_AUTHCACHE_TTL_MS passing (a bound, should a notification ever go astray).
 * A lookup that was in the database while the cache was flushed is not cached (its answer may
 * predate the change): each lookup carries the generation it started in. Unknown and revoked
 * tokens are never cached, so random tokens cannot fill it. Nothing is cached until the
 * database is known to announce changes (tl_authcache_check_due). */
#ifndef TL_API_AUTHCACHE_H
#define TL_API_AUTHCACHE_H

#include "api/auth.h"

#include <stdint.h>

#define TL_AUTHCACHE_TTL_MS 60000
#define TL_AUTHCACHE_MAX 65536 /* principals; a full cache starts again empty */

typedef struct tl_authcache_s tl_authcache_t;

TL_WUR int tl_authcache_new(tl_authcache_t **out);
void tl_authcache_free(tl_authcache_t *c);
/* 1 and *out when hash (64 hex digits) has a live principal, else 0. */
int tl_authcache_get(tl_authcache_t *c, const char *hash, tl_principal_t *out);
/* The generation a lookup starts in. */
uint64_t tl_authcache_generation(const tl_authcache_t *c);
/* Keeps p for hash if nothing was flushed since generation gen and the cache is on. */
void tl_authcache_put(tl_authcache_t *c, uint64_t gen, const char *hash, const tl_principal_t *p);
/* Forgets everything (a new generation). */
void tl_authcache_flush(tl_authcache_t *c);
/* on = 0: flush and stop keeping principals (the listening connection is down); 1: keep them
 * again (it is up and listening). Starts off. */
void tl_authcache_set_on(tl_authcache_t *c, int on);
/* The cache is used only where the database announces changes (sql/038's triggers exist): a
 * daemon started before `tubeloopd migrate` looks every token up. 1 when the caller should
 * ask now (once, and again after a failed ask); tl_authcache_checked gives the answer
 * (status 0 and announced 1 or 0; another status: ask again later). */
int tl_authcache_check_due(tl_authcache_t *c);
void tl_authcache_checked(tl_authcache_t *c, int status, int announced);
/* Principals answered from the cache so far (/metrics). */
unsigned long long tl_authcache_hits(const tl_authcache_t *c);

#endif
