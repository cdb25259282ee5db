/* The TLS engine: OpenSSL driven through memory BIOs, no sockets.
 *
 * The event loop owns the bytes (h2o's way): ciphertext read from the socket is fed in with
 * tl_tls_feed(), which advances the handshake and yields plaintext; plaintext to send goes
 * through tl_tls_write(); ciphertext waiting for the socket is taken with tl_tls_take_output().
 * Nothing here blocks or touches a file descriptor, so it is testable in memory.
 *
 * Server settings: TLS 1.2 and 1.3 only, Mozilla "intermediate" cipher list, renegotiation and
 * compression off, session tickets on (a resumed handshake is cheap for reconnecting phones).
 *
 * Client certificates (optional mTLS, tl_tls_ctx_client_ca): the server asks for one signed by
 * the given CAs but never requires it at the TLS level, and a certificate that does not verify
 * does not fail the handshake either: the HTTP layer decides per request (tl_tls_peer), so a
 * browser without a certificate still connects and a device with a bad one gets a JSON error
 * instead of a bare alert. A resumed session keeps the certificate and the verify result of
 * its full handshake. */
#ifndef TL_NET_TLS_H
#define TL_NET_TLS_H

#include "base/buf.h"
#include "base/err.h"

#include <stddef.h>

typedef struct tl_tls_ctx_s tl_tls_ctx_t;
typedef struct ssl_st tl_ssl_t;
typedef struct bio_st tl_bio_t;

/* Loads cert chain and key (PEM). On failure writes a one-line reason to err. */
TL_WUR int tl_tls_ctx_new(tl_tls_ctx_t **out, const char *cert_file, const char *key_file,
                          char *err, size_t errlen);
void tl_tls_ctx_free(tl_tls_ctx_t *ctx);

/* Asks clients for a certificate signed by a CA of ca_file (PEM bundle), checked against
 * those CAs only. On failure writes a one-line reason to err and returns TL_ETLS. */
TL_WUR int tl_tls_ctx_client_ca(tl_tls_ctx_t *ctx, const char *ca_file, char *err, size_t errlen);

/* What the peer presented. */
typedef enum {
  TL_TLS_PEER_NONE = 0,   /* no client certificate (or the handshake is not done) */
  TL_TLS_PEER_VERIFIED,   /* a certificate that chains to a client CA */
  TL_TLS_PEER_UNVERIFIED  /* a certificate that does not verify (other CA, expired, ...) */
} tl_tls_peer_t;

typedef struct {
  tl_ssl_t *ssl;  /* owns rbio and wbio */
  tl_bio_t *rbio; /* ciphertext in (from the socket) */
  tl_bio_t *wbio; /* ciphertext out (to the socket) */
  int handshake_done;
} tl_tls_t;

TL_WUR int tl_tls_init(tl_tls_t *t, tl_tls_ctx_t *ctx);
void tl_tls_dispose(tl_tls_t *t);

/* Feeds ciphertext; appends every plaintext byte now available to plain. Returns 0, or
 * TL_ETLS when the peer broke the protocol (the caller sends what tl_tls_take_output() has,
 * e.g. an alert, then closes), or TL_ECLOSED when the peer sent close_notify. */
TL_WUR int tl_tls_feed(tl_tls_t *t, const char *cipher, size_t len, tl_buf_t *plain);

/* Encrypts plaintext into the output BIO. Returns 0, TL_ETLS or TL_ENOMEM. */
TL_WUR int tl_tls_write(tl_tls_t *t, const char *plain, size_t len);

/* Queues a close_notify alert. */
void tl_tls_shutdown(tl_tls_t *t);

/* Moves pending ciphertext into out. Returns 0 or TL_ENOMEM. */
TL_WUR int tl_tls_take_output(tl_tls_t *t, tl_buf_t *out);

/* The client's certificate, and its subject CN copied into cn ("" when absent or longer
 * than cnlen-1). */
tl_tls_peer_t tl_tls_peer(const tl_tls_t *t, char *cn, size_t cnlen);

/* The negotiated protocol, e.g. "TLSv1.3" (for logs and tests). */
const char *tl_tls_version(const tl_tls_t *t);

#endif
