/* Generation, parsing and loading of the PII keys file (keys.h). */
#include "crypto/keys.h"

#include "crypto/chain.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse_key(const char *s, size_t n, unsigned char out[32]) {
  return n == 64 ? tl_chain_unhex(s, out, 32) : TL_EINVAL;
}

int tl_keys_generate(char *out, size_t outlen) {
  unsigned char h[32], a[32], g[32];
  if (RAND_bytes(h, 32) != 1 || RAND_bytes(a, 32) != 1 || RAND_bytes(g, 32) != 1) return TL_EIO;
  char hh[65], ah[65], gh[65];
  tl_chain_hex(h, 32, hh);
  tl_chain_hex(a, 32, ah);
  tl_chain_hex(g, 32, gh);
  int n = snprintf(out, outlen,
                   "# tubeloop PII keys: keep secret (mode 0600), back them up, never commit.\n"
                   "# hmac: looks persons up by ID number. aes ID KEY: the last line encrypts,\n"
                   "# every line decrypts; rotate by appending a new aes line with a new id.\n"
                   "# sign: Ed25519 key of the custody chain's checkpoints (the last signs).\n"
                   "hmac %s\naes 1 %s\nsign %s\n",
                   hh, ah, gh);
  OPENSSL_cleanse(h, 32);
  OPENSSL_cleanse(a, 32);
  OPENSSL_cleanse(g, 32);
  OPENSSL_cleanse(hh, sizeof hh);
  OPENSSL_cleanse(ah, sizeof ah);
  OPENSSL_cleanse(gh, sizeof gh);
  return n > 0 && (size_t)n < outlen ? 0 : TL_EINVAL;
}

int tl_keys_parse(tl_keys_t *k, const char *text, char *err, size_t errlen) {
  memset(k, 0, sizeof *k);
  int have_hmac = 0, lineno = 0;
  const char *p = text;
  while (*p) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    lineno++;
    char line[256];
    if (len >= sizeof line) goto bad;
    memcpy(line, p, len);
    line[len] = '\0';
    char *save = NULL, *w1 = strtok_r(line, " \t\r", &save);
    if (w1 != NULL && w1[0] != '#') {
      char *w2 = strtok_r(NULL, " \t\r", &save);
      char *w3 = strtok_r(NULL, " \t\r", &save);
      if (strcmp(w1, "hmac") == 0 && w2 && !w3) {
        if (parse_key(w2, strlen(w2), k->hmac) != 0) goto bad;
        have_hmac = 1;
      } else if (strcmp(w1, "aes") == 0 && w2 && w3 && !strtok_r(NULL, " \t\r", &save)) {
        char *end;
        long id = strtol(w2, &end, 10);
        if (*end || id < 1 || id > 65535 || k->naes == TL_KEYS_MAX) goto bad;
        for (int i = 0; i < k->naes; i++)
          if (k->aes[i].id == (unsigned)id) goto bad;
        if (parse_key(w3, strlen(w3), k->aes[k->naes].key) != 0) goto bad;
        k->aes[k->naes++].id = (unsigned)id;
      } else if (strcmp(w1, "sign") == 0 && w2 && !w3) {
        if (k->nsign == TL_KEYS_MAX || parse_key(w2, strlen(w2), k->sign[k->nsign]) != 0)
          goto bad;
        k->nsign++;
      } else {
        goto bad;
      }
    }
    OPENSSL_cleanse(line, sizeof line);
    p += len + (eol ? 1 : 0);
  }
  if (!have_hmac || k->naes == 0) {
    snprintf(err, errlen, "keys file needs one hmac line and at least one aes line");
    tl_keys_dispose(k);
    return TL_EINVAL;
  }
  if (k->nsign == 0) {
    /* a keys file from before the custody chain: derive its signing key (keys.h) */
    static const char info[] = "tubeloop chain signing key v1";
    unsigned int n = 0;
    if (HMAC(EVP_sha256(), k->hmac, sizeof k->hmac, (const unsigned char *)info,
             sizeof info - 1, k->sign[0], &n) == NULL || n != 32) {
      snprintf(err, errlen, "cannot derive the signing key");
      tl_keys_dispose(k);
      return TL_EINVAL;
    }
    k->nsign = 1;
    k->sign_derived = 1;
  }
  return 0;
bad:
  snprintf(err, errlen, "keys file line %d is malformed", lineno);
  tl_keys_dispose(k);
  return TL_EINVAL;
}

int tl_keys_load(tl_keys_t *k, const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open keys file: %s", strerror(errno));
    return TL_EIO;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
    close(fd);
    snprintf(err, errlen, "keys file must not be readable by group or others (chmod 600)");
    return TL_EINVAL;
  }
  char text[8192];
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n < 0 || (size_t)n == sizeof text - 1) {
    snprintf(err, errlen, "cannot read keys file");
    return TL_EIO;
  }
  text[n] = '\0';
  int rc = tl_keys_parse(k, text, err, errlen);
  OPENSSL_cleanse(text, sizeof text);
  return rc;
}

void tl_keys_dispose(tl_keys_t *k) { OPENSSL_cleanse(k, sizeof *k); }
