/* Device certificates: optional mTLS for device tokens (issue 7), the rule as a pure function.
 *
 * Devices are the collector, courier and lab tokens (DESIGN §6). With --device-certs optional
 * or required, a device's request is checked against the client certificate of its TLS
 * connection: the certificate must chain to --tls-client-ca and its subject CN must name the
 * token's scope as KIND:CODE — "site:S1", "courier:C1", "lab:L1" (the kinds of the export URNs
 * urn:tubeloop:site:…), so one certificate serves one device, and a site and a courier that
 * share a code are still told apart. Viewer, supervisor and admin tokens are never checked:
 * officials sign in from browsers without certificates. No I/O here: auth.c asks the
 * connection (tl_http_exchange_client_cert) and answers the verdict with 403. */
#ifndef TL_API_DEVCERT_H
#define TL_API_DEVCERT_H

#include "conf/config.h"
#include "domain/custody.h"
#include "net/tls.h"

#include <stddef.h>

typedef enum {
  TL_DEVCERT_OK = 0,   /* go on */
  TL_DEVCERT_MISSING,  /* required mode, no certificate: client_certificate_required */
  TL_DEVCERT_INVALID,  /* a certificate that does not verify: client_certificate_invalid */
  TL_DEVCERT_MISMATCH  /* a verified certificate of another device: client_certificate_mismatch */
} tl_devcert_verdict_t;

/* The CN a certificate of this device carries, into out ("site:S1"). Returns 0, or -1 when
 * the role is no device or out is too small. */
int tl_devcert_name(tl_role_t role, const char *scope, char *out, size_t outlen);

/* The verdict for a token of role/scope on a connection whose client certificate is
 * peer with subject CN cn ("" when none). */
tl_devcert_verdict_t tl_devcert_check(tl_device_certs_t mode, tl_role_t role, const char *scope,
                                      tl_tls_peer_t peer, const char *cn);

/* The error code and message of a refusing verdict (NULL for TL_DEVCERT_OK). */
const char *tl_devcert_code(tl_devcert_verdict_t v);
const char *tl_devcert_message(tl_devcert_verdict_t v);

#endif
