/* The tubeloop CLI's shared core: global flags, the HTTPS client (libcurl), output helpers
 * (aligned tables, JSON), messages in Chinese or English.
 *
 * Every subcommand gets a tl_cli_t after the global flags were parsed and returns the process
 * exit status: 0 on success, non-zero with a one-line reason on stderr otherwise. */
#ifndef TL_CLI_H
#define TL_CLI_H

#include "base/buf.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
  const char *url;     /* base URL, no trailing slash (TUBELOOP_URL / --url) */
  const char *token;   /* bearer token (TUBELOOP_TOKEN / --token) */
  const char *cacert;  /* CA file to trust (--cacert / TUBELOOP_CACERT) */
  const char *cert;    /* PEM client certificate of this device (--cert / TUBELOOP_CERT) */
  const char *key;     /* its PEM private key (--key / TUBELOOP_KEY; default: in cert) */
  int json;            /* --json: print the server's JSON instead of tables */
  int en;              /* --lang en: English messages (default: Chinese) */
  long timeout_ms;     /* per request */
  void *curl;          /* one CURL easy handle, reused: keep-alive */
} tl_cli_t;

typedef struct {
  long status;         /* HTTP status */
  tl_buf_t body;       /* the answer's body */
} tl_cli_resp_t;

/* Pick the message for the chosen language. */
#define TL_MSG(c, zh, en_) ((c)->en ? (en_) : (zh))

/* Parses the global flags out of argv (removing them) and the environment. Returns 0, or
 * non-zero after printing why. */
int tl_cli_init(tl_cli_t *c, int *argc, char **argv);
void tl_cli_dispose(tl_cli_t *c);
/* Needs url and token; prints the reason and returns 1 when missing. */
int tl_cli_need_server(tl_cli_t *c);

/* Sets the CA to trust and the client certificate on a CURL easy handle. */
void tl_cli_tls_setopt(const tl_cli_t *c, void *curl);

/* One request: body is JSON text or NULL. Returns 0 when an HTTP answer arrived (any status;
 * r is filled), or -1 on a transport failure (err says what, in the chosen language). */
int tl_cli_call(tl_cli_t *c, const char *method, const char *path, const char *body,
                tl_cli_resp_t *r, char *err, size_t errlen);
void tl_cli_resp_dispose(tl_cli_resp_t *r);
/* Parses r's body as JSON (NULL if it is not). Caller frees with cJSON_Delete. */
cJSON *tl_cli_resp_json(const tl_cli_resp_t *r);
/* "code: message" of an error answer, into out. */
void tl_cli_resp_error(const tl_cli_resp_t *r, char *out, size_t outlen);
/* Calls and, on a non-2xx status or a transport failure, prints the reason and returns NULL;
 * otherwise returns the parsed JSON answer (caller frees). */
cJSON *tl_cli_call_json(tl_cli_t *c, const char *method, const char *path, const char *body);

/* Prints "tubeloop: " + message + newline on stderr; returns 1 (for `return tl_cli_fail(...)`). */
int tl_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Query-string escaping of a value (percent-encoding), appended to b. */
int tl_cli_urlenc(tl_buf_t *b, const char *v);

/* A table printed with columns aligned by display width (CJK characters count two). */
typedef struct {
  int ncols;
  char **cells;      /* rows × ncols, owned */
  int nrows, cap;
} tl_table_t;

void tl_table_init(tl_table_t *t, int ncols);
/* Adds a row of ncols strings (copied; NULL prints as "-"). */
void tl_table_row(tl_table_t *t, ...);
void tl_table_print(const tl_table_t *t);
void tl_table_dispose(tl_table_t *t);
/* Display width of UTF-8 text. */
int tl_text_width(const char *s);

/* The string value of a JSON field ("" when absent or not a string), and a number as text. */
const char *tl_js(const cJSON *o, const char *key);
const char *tl_jn(const cJSON *o, const char *key, char *buf, size_t buflen);

/* A line from stdin (or a terminal) without its newline, into b; returns 0, or -1 at EOF. */
int tl_cli_read_line(tl_buf_t *b);

/* Subcommands (each in its own file). argv[0] is the subcommand's name. */
int tl_cmd_scan(tl_cli_t *c, int argc, char **argv);
int tl_cmd_courier(tl_cli_t *c, int argc, char **argv);
int tl_cmd_lab(tl_cli_t *c, int argc, char **argv);
int tl_cmd_sync(tl_cli_t *c, int argc, char **argv);
int tl_cmd_trace(tl_cli_t *c, int argc, char **argv);
int tl_cmd_person(tl_cli_t *c, int argc, char **argv);
int tl_cmd_stats(tl_cli_t *c, int argc, char **argv);
int tl_cmd_anomalies(tl_cli_t *c, int argc, char **argv);
int tl_cmd_ack(tl_cli_t *c, int argc, char **argv);
int tl_cmd_resolve(tl_cli_t *c, int argc, char **argv);
int tl_cmd_admin(tl_cli_t *c, int argc, char **argv);
int tl_cmd_simulate(tl_cli_t *c, int argc, char **argv);

#endif
