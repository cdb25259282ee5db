/* Bearer-token authentication and role checks for API handlers (DESIGN §6).
 *
 * tl_api_auth() reads "Authorization: Bearer TOKEN", looks the token's SHA-256 up (revoked
 * tokens never match), compares the stored hash in constant time, checks the role against the
 * call's allowed set and then continues with the principal. Failures are answered here:
 * 401 unauthorized (no, malformed, unknown or revoked token), 403 forbidden (a role that may
 * not make this call), 400 token_in_url (a token in the query string, which would end up in
 * access logs), 403 client_certificate_required / _invalid / _mismatch (a device token without
 * the client certificate that --device-certs asks for: devcert.h). */
#ifndef TL_API_AUTH_H
#define TL_API_AUTH_H

#include "api/api.h"
#include "domain/custody.h"

typedef struct {
  tl_role_t role;
  tl_code_t scope;     /* site, courier or lab code, or region code; "" for admin */
  tl_region_t region;  /* the region prefix the role may see; "" = everything (admin) */
  tl_code_t site;      /* a viewer or supervisor scoped to one site: that site, else "" */
  char token_id[37];
} tl_principal_t;

#define TL_ROLE_BIT(r) (1u << (r))
#define TL_ROLES_ALL 0x3fu
#define TL_ROLES_READERS (TL_ROLE_BIT(TL_ROLE_VIEWER) | TL_ROLE_BIT(TL_ROLE_SUPERVISOR) | TL_ROLE_BIT(TL_ROLE_ADMIN))

typedef void (*tl_api_authed_fn)(tl_http_exchange_t *x, tl_api_t *api, const tl_principal_t *p);

/* Authenticates x; calls next(x, api, principal) when the role is in roles. */
void tl_api_auth(tl_api_t *api, tl_http_exchange_t *x, unsigned roles, tl_api_authed_fn next);

/* May p see region code as a whole? (admin: all; a site's reader: none; others: a region
 * inside theirs, by prefix). */
int tl_principal_sees(const tl_principal_t *p, const char *region_code);

#endif
