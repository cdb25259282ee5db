/* The self-signed test certificate of cert.h. */
#include "support/cert.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <unistd.h>

static void report(const char *what) {
  char detail[256];
  unsigned long e = ERR_get_error();
  ERR_error_string_n(e, detail, sizeof detail);
  fprintf(stderr, "test cert: %s: %s\n", what, e ? detail : "failed");
  ERR_clear_error();
}

static int add_ext(X509 *cert, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (ext == NULL) return -1;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

/* The certificate body: serial, validity, names and extensions, signed by key. */
static X509 *make_cert(EVP_PKEY *key) {
  X509 *cert = X509_new();
  if (cert == NULL) return NULL;
  X509_NAME *name = X509_get_subject_name(cert);
  int ok = X509_set_version(cert, 2) &&
           ASN1_INTEGER_set(X509_get_serialNumber(cert), (long)getpid()) &&
           X509_gmtime_adj(X509_getm_notBefore(cert), -3600) &&
           X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600) &&
           X509_set_pubkey(cert, key) &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                      (const unsigned char *)"localhost", -1, -1, 0) &&
           X509_set_issuer_name(cert, name);
  /* CA:TRUE because the certificate is also the clients' trust anchor (as `openssl req
   * -x509` makes it). */
  ok = ok && add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
       add_ext(cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost") == 0 &&
       add_ext(cert, NID_subject_key_identifier, "hash") == 0 &&
       X509_sign(cert, key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(cert);
    return NULL;
  }
  return cert;
}

static int write_key(const char *path, EVP_PKEY *key) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    close(fd);
    return -1;
  }
  int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_cert(const char *path, X509 *cert) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  int ok = PEM_write_X509(f, cert);
  return fclose(f) == 0 && ok ? 0 : -1;
}

int tl_test_cert_write(const char *cert_path, const char *key_path) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  if (key == NULL) {
    report("EC key");
    return -1;
  }
  X509 *cert = make_cert(key);
  int rc = -1;
  if (cert == NULL)
    report("certificate");
  else if (write_key(key_path, key) != 0 || write_cert(cert_path, cert) != 0)
    report("writing PEM files");
  else
    rc = 0;
  X509_free(cert);
  EVP_PKEY_free(key);
  return rc;
}
