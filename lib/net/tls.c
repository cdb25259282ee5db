/* The memory-BIO TLS engine of tls.h. */
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tl_tls_ctx_s {
  SSL_CTX *ctx;
};

/* Mozilla "intermediate" (v5.7) TLS 1.2 suites; TLS 1.3 keeps OpenSSL's default suites,
 * which are exactly Mozilla's list. */
static const char intermediate_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

static void last_error(char *err, size_t errlen, const char *what) {
  char detail[256];
  unsigned long e = ERR_get_error();
  ERR_error_string_n(e, detail, sizeof detail);
  snprintf(err, errlen, "%s: %s", what, e ? detail : "unknown error");
  ERR_clear_error();
}

int tl_tls_ctx_new(tl_tls_ctx_t **out, const char *cert_file, const char *key_file, char *err,
                   size_t errlen) {
  tl_tls_ctx_t *c = calloc(1, sizeof *c);
  if (c == NULL) return TL_ENOMEM;
  c->ctx = SSL_CTX_new(TLS_server_method());
  if (c->ctx == NULL) {
    last_error(err, errlen, "SSL_CTX_new");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  /* OpenSSL 3 refuses client-initiated renegotiation unless ALLOW_CLIENT_RENEGOTIATION is
   * set; NO_RENEGOTIATION also stops server-initiated ones. */
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  /* Partial writes let one SSL_write() produce records as the BIO takes them. */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(c->ctx, intermediate_ciphers) != 1) {
    last_error(err, errlen, "cipher list");
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(c->ctx, cert_file) != 1) {
    last_error(err, errlen, "cannot load --tls-cert");
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(c->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
    last_error(err, errlen, "cannot load --tls-key");
    goto fail;
  }
  if (SSL_CTX_check_private_key(c->ctx) != 1) {
    last_error(err, errlen, "--tls-key does not match --tls-cert");
    goto fail;
  }
  SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_SERVER);
  /* Without a session id context OpenSSL refuses (fails the handshake of) a client resuming
   * a session once peer verification is on; with it, resumption works either way. */
  static const unsigned char sid_ctx[] = "tubeloopd";
  if (SSL_CTX_set_session_id_context(c->ctx, sid_ctx, sizeof sid_ctx - 1) != 1) {
    last_error(err, errlen, "session id context");
    goto fail;
  }
  *out = c;
  return 0;
fail:
  tl_tls_ctx_free(c);
  return TL_ETLS;
}

void tl_tls_ctx_free(tl_tls_ctx_t *ctx) {
  if (ctx == NULL) return;
  SSL_CTX_free(ctx->ctx);
  free(ctx);
}

/* Every chain passes the handshake: its verdict stays in the session (SSL_get_verify_result)
 * and the HTTP layer answers a device with a bad certificate in JSON. Refusing here would
 * also lock out a browser that offers some unrelated certificate. */
static int keep_handshake(int ok, X509_STORE_CTX *store) {
  (void)ok;
  (void)store;
  return 1;
}

int tl_tls_ctx_client_ca(tl_tls_ctx_t *c, const char *ca_file, char *err, size_t errlen) {
  if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1) {
    last_error(err, errlen, "cannot load --tls-client-ca");
    return TL_ETLS;
  }
  STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
  if (names == NULL) {
    last_error(err, errlen, "--tls-client-ca holds no CA certificate");
    return TL_ETLS;
  }
  SSL_CTX_set_client_CA_list(c->ctx, names); /* takes names */
  /* PEER without FAIL_IF_NO_PEER_CERT: ask for a certificate, never require one. */
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, keep_handshake);
  return 0;
}

/* The subject's one CN as UTF-8, or "" (none, several, an embedded NUL, too long). */
static void copy_cn(X509 *cert, char *cn, size_t cnlen) {
  X509_NAME *name = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0) return;
  ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char *utf8 = NULL;
  int n = ASN1_STRING_to_UTF8(&utf8, v);
  if (n > 0 && (size_t)n < cnlen && memchr(utf8, '\0', (size_t)n) == NULL) {
    memcpy(cn, utf8, (size_t)n);
    cn[n] = '\0';
  }
  OPENSSL_free(utf8);
}

tl_tls_peer_t tl_tls_peer(const tl_tls_t *t, char *cn, size_t cnlen) {
  if (cnlen > 0) cn[0] = '\0';
  if (t->ssl == NULL || !t->handshake_done) return TL_TLS_PEER_NONE;
  X509 *cert = SSL_get0_peer_certificate(t->ssl);
  if (cert == NULL) return TL_TLS_PEER_NONE;
  if (cnlen > 0) copy_cn(cert, cn, cnlen);
  return SSL_get_verify_result(t->ssl) == X509_V_OK ? TL_TLS_PEER_VERIFIED
                                                     : TL_TLS_PEER_UNVERIFIED;
}

int tl_tls_init(tl_tls_t *t, tl_tls_ctx_t *ctx) {
  t->handshake_done = 0;
  t->ssl = SSL_new(ctx->ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    t->ssl = NULL;
    return TL_ENOMEM;
  }
  /* An empty memory BIO reports "retry" instead of EOF. */
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_accept_state(t->ssl);
  return 0;
}

void tl_tls_dispose(tl_tls_t *t) {
  if (t->ssl) SSL_free(t->ssl);
  t->ssl = NULL;
}

int tl_tls_feed(tl_tls_t *t, const char *cipher, size_t len, tl_buf_t *plain) {
  while (len > 0) {
    int n = BIO_write(t->rbio, cipher, len > INT_MAX ? INT_MAX : (int)len);
    if (n <= 0) return TL_ENOMEM;
    cipher += n;
    len -= (size_t)n;
  }
  if (!t->handshake_done) {
    int rc = SSL_do_handshake(t->ssl);
    if (rc != 1) {
      int e = SSL_get_error(t->ssl, rc);
      ERR_clear_error();
      return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : TL_ETLS;
    }
    t->handshake_done = 1;
  }
  for (;;) {
    if (tl_buf_reserve(plain, 16384) != 0) return TL_ENOMEM;
    int n = SSL_read(t->ssl, plain->data + plain->len, 16384);
    if (n > 0) {
      plain->len += (size_t)n;
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return TL_ECLOSED;
    return TL_ETLS;
  }
}

int tl_tls_write(tl_tls_t *t, const char *plain, size_t len) {
  while (len > 0) {
    int n = SSL_write(t->ssl, plain, len > INT_MAX ? INT_MAX : (int)len);
    if (n <= 0) {
      ERR_clear_error();
      return TL_ETLS;
    }
    plain += n;
    len -= (size_t)n;
  }
  return 0;
}

void tl_tls_shutdown(tl_tls_t *t) {
  if (t->handshake_done) {
    SSL_shutdown(t->ssl);
    ERR_clear_error();
  }
}

int tl_tls_take_output(tl_tls_t *t, tl_buf_t *out) {
  size_t pending = BIO_ctrl_pending(t->wbio);
  if (pending == 0) return 0;
  if (tl_buf_reserve(out, pending) != 0) return TL_ENOMEM;
  int n = BIO_read(t->wbio, out->data + out->len, (int)pending);
  if (n > 0) out->len += (size_t)n;
  return 0;
}

const char *tl_tls_version(const tl_tls_t *t) { return SSL_get_version(t->ssl); }
