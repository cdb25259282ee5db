/* tubeloopd's configuration: flags and their environment variables (DESIGN §9).
 *
 * Pure code, no I/O: tl_config_parse() takes argv and an environment array ("KEY=VALUE"
 * strings, like environ), so the unit tests drive it with tables. A flag beats its variable,
 * a variable beats the default. Strings in the result borrow from argv/env (valid as long as
 * they are). */
#ifndef TL_CONF_CONFIG_H
#define TL_CONF_CONFIG_H

#include "base/err.h"

#include <stddef.h>

/* --device-certs: what a device token (collector, courier, lab) needs besides itself. */
typedef enum {
  TL_DEVICE_CERTS_OFF = 0,  /* client certificates are not looked at */
  TL_DEVICE_CERTS_OPTIONAL, /* a device may come without one; one it shows must verify, name it */
  TL_DEVICE_CERTS_REQUIRED  /* every device request needs a verified certificate naming it */
} tl_device_certs_t;

typedef struct {
  const char *db;          /* libpq conninfo */
  const char *listen;      /* "HOST:PORT" or "[v6]:PORT" as given */
  char listen_host[64];    /* parsed host, brackets removed */
  int listen_port;         /* parsed port */
  const char *tls_cert;    /* PEM certificate chain */
  const char *tls_key;     /* PEM private key */
  int no_tls;              /* plain HTTP: allowed on loopback only */
  const char *tls_client_ca; /* PEM CA bundle that signs device certificates, or NULL */
  const char *device_certs_text; /* --device-certs as given: off, optional or required */
  tl_device_certs_t device_certs; /* parsed from device_certs_text */
  const char *keys;        /* PII keys file */
  const char *tz;          /* deployment time zone for day boundaries */
  const char *label;       /* admin-token label */
  const char *sql_dir;     /* migrations folder (NULL: the built-in default) */
  const char *web_dir;     /* dashboard files (NULL: the built-in default) */
  const char *log_level;   /* debug|info|warn|error */
  int workers;             /* serve: processes sharing the listening port */
  int reuseport;           /* serve: listen with SO_REUSEPORT (set by the supervisor) */
  int pool_size;           /* database connections (per worker) */
  int pool_queue;          /* requests allowed to wait for a connection */
  int header_timeout_ms;   /* whole request head must arrive within this */
  int body_timeout_ms;     /* whole body must arrive within this after the head */
  int idle_timeout_ms;     /* keep-alive connection with no request is closed after this */
  int shutdown_timeout_ms; /* SIGTERM: in-flight work gets this long */
  int max_connections;     /* connections accepted at once; more are closed at accept */
  int overdue_transport_min; /* sealed → received limit */
  int overdue_test_min;      /* received → resulted limit */
  int overdue_followup_min;  /* follow-up limit */
  int sweep_interval_ms;     /* how often the overdue sweep runs */
  int transit_default_min;   /* arrival estimate without route history */
  int ingest_queue;          /* events waiting for group commit before 503 */
  int ingest_max_wait_ms;    /* the oldest waiting batch's wait before new batches get 503 */
  int ingest_second_group;   /* events waiting before a second group joins the one in flight */
  int rate_token;            /* requests per second per token (0: no limit) */
  int rate_address;          /* requests per second per client address (0: no limit) */
  int seal_interval_ms;      /* how often the custody chain's sealer runs */
  int checkpoint_interval_ms; /* a moved chain head is signed at least this often */
  const char *partition;     /* verify: only this chain partition */
} tl_config_t;

/* Which flags a subcommand needs (bit set). */
enum {
  TL_CONFIG_NEED_DB = 1,
  TL_CONFIG_NEED_LISTEN = 2,
  TL_CONFIG_NEED_TLS = 4, /* cert and key, unless --no-tls */
  TL_CONFIG_NEED_KEYS = 8
};

void tl_config_defaults(tl_config_t *c);

/* Parses argv[first..argc) and env (NULL-terminated). On error returns TL_EINVAL and writes a
 * one-line reason into err. */
TL_WUR int tl_config_parse(tl_config_t *c, int need, int argc, char **argv, int first,
                           char *const *env, char *err, size_t errlen);

/* Splits "HOST:PORT" / "[V6]:PORT". Returns 0 or TL_EINVAL. */
TL_WUR int tl_config_split_listen(const char *listen, char *host, size_t hostlen, int *port);

/* True when host is a loopback address (127.0.0.0/8, ::1, localhost). */
int tl_config_is_loopback(const char *host);

/* The usage text of every flag, for --help. */
const char *tl_config_usage(void);

#endif
