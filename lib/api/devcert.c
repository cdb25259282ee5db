/* The device-certificate rule of devcert.h. */
#include "api/devcert.h"

#include <stdio.h>
#include <string.h>

int tl_devcert_name(tl_role_t role, const char *scope, char *out, size_t outlen) {
  const char *kind = role == TL_ROLE_COLLECTOR ? "site"
                     : role == TL_ROLE_COURIER ? "courier"
                     : role == TL_ROLE_LAB     ? "lab"
                                               : NULL;
  if (kind == NULL || scope == NULL || scope[0] == '\0') return -1;
  int n = snprintf(out, outlen, "%s:%s", kind, scope);
  return n > 0 && (size_t)n < outlen ? 0 : -1;
}

tl_devcert_verdict_t tl_devcert_check(tl_device_certs_t mode, tl_role_t role, const char *scope,
                                      tl_tls_peer_t peer, const char *cn) {
  char want[64];
  if (mode == TL_DEVICE_CERTS_OFF) return TL_DEVCERT_OK;
  if (role != TL_ROLE_COLLECTOR && role != TL_ROLE_COURIER && role != TL_ROLE_LAB)
    return TL_DEVCERT_OK;
  switch (peer) {
  case TL_TLS_PEER_NONE:
    return mode == TL_DEVICE_CERTS_REQUIRED ? TL_DEVCERT_MISSING : TL_DEVCERT_OK;
  case TL_TLS_PEER_UNVERIFIED:
    /* Even where a certificate is optional, one that does not verify is refused: showing a
     * bad one is a misconfigured or a forged device, never a browser without one. */
    return TL_DEVCERT_INVALID;
  case TL_TLS_PEER_VERIFIED:
    /* A device token with a scope that has no name (cannot happen: devices always have a
     * scope) matches no certificate. */
    if (tl_devcert_name(role, scope, want, sizeof want) != 0) return TL_DEVCERT_MISMATCH;
    return cn != NULL && strcmp(cn, want) == 0 ? TL_DEVCERT_OK : TL_DEVCERT_MISMATCH;
  }
  return TL_DEVCERT_INVALID; /* an unknown peer state is never trusted */
}

const char *tl_devcert_code(tl_devcert_verdict_t v) {
  switch (v) {
  case TL_DEVCERT_OK: return NULL;
  case TL_DEVCERT_MISSING: return "client_certificate_required";
  case TL_DEVCERT_INVALID: return "client_certificate_invalid";
  case TL_DEVCERT_MISMATCH: return "client_certificate_mismatch";
  }
  return "client_certificate_invalid";
}

const char *tl_devcert_message(tl_devcert_verdict_t v) {
  switch (v) {
  case TL_DEVCERT_OK: return NULL;
  case TL_DEVCERT_MISSING:
    return "This device's token must be used with the device's client certificate.";
  case TL_DEVCERT_INVALID:
    return "The client certificate is not signed by a CA this server trusts, or is expired.";
  case TL_DEVCERT_MISMATCH:
    return "The client certificate belongs to another device than this token.";
  }
  return "The client certificate is not valid.";
}
