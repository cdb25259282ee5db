/* Test certificates: a throw-away self-signed ECDSA P-256 certificate for the daemon under
 * test, made in memory with OpenSSL's EVP and X509 calls (no openssl(1) needed).
 *
 * The certificate names 127.0.0.1 and localhost (subjectAltName), is valid from an hour ago
 * for a day, and is its own trust anchor: clients load the same file as their CA list. */
#ifndef TL_TEST_CERT_H
#define TL_TEST_CERT_H

/* Writes a new key to key_path (PEM, mode 0600) and its certificate to cert_path (PEM).
 * Returns 0, or -1 with a reason on stderr. */
int tl_test_cert_write(const char *cert_path, const char *key_path);

#endif
