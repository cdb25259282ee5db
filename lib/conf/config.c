/* Flag and environment parsing for tubeloopd (see config.h). Options are one table, so a new
 * setting is one line here and one field in tl_config_t. */
#include "conf/config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  OPT_STRING, /* const char * field */
  OPT_INT,    /* int field, a count */
  OPT_MS,     /* int field in milliseconds, given in seconds (may be fractional) */
  OPT_FLAG    /* int field set to 1, takes no value */
} opt_kind_t;

typedef struct {
  const char *flag;
  const char *env;
  opt_kind_t kind;
  size_t offset;
  int min, max; /* bounds for OPT_INT / OPT_MS (in the given unit) */
  const char *help;
} opt_t;

#define F(field) offsetof(tl_config_t, field)
static const opt_t options[] = {
    {"--db", "TUBELOOP_DB", OPT_STRING, F(db), 0, 0, "PostgreSQL conninfo"},
    {"--listen", "TUBELOOP_LISTEN", OPT_STRING, F(listen), 0, 0, "HOST:PORT to listen on"},
    {"--tls-cert", "TUBELOOP_TLS_CERT", OPT_STRING, F(tls_cert), 0, 0, "PEM certificate chain"},
    {"--tls-key", "TUBELOOP_TLS_KEY", OPT_STRING, F(tls_key), 0, 0, "PEM private key"},
    {"--no-tls", "TUBELOOP_NO_TLS", OPT_FLAG, F(no_tls), 0, 0, "plain HTTP (loopback only)"},
    {"--tls-client-ca", "TUBELOOP_TLS_CLIENT_CA", OPT_STRING, F(tls_client_ca), 0, 0,
     "PEM CAs of device client certificates"},
    {"--device-certs", "TUBELOOP_DEVICE_CERTS", OPT_STRING, F(device_certs_text), 0, 0,
     "off, optional or required (needs --tls-client-ca)"},
    {"--keys", "TUBELOOP_KEYS", OPT_STRING, F(keys), 0, 0, "PII keys file (gen-keys)"},
    {"--tz", "TUBELOOP_TZ", OPT_STRING, F(tz), 0, 0, "time zone of day boundaries"},
    {"--label", "TUBELOOP_LABEL", OPT_STRING, F(label), 0, 0, "label of a new token"},
    {"--sql-dir", "TUBELOOP_SQL_DIR", OPT_STRING, F(sql_dir), 0, 0, "migrations folder"},
    {"--web-dir", "TUBELOOP_WEB_DIR", OPT_STRING, F(web_dir), 0, 0, "dashboard files folder"},
    {"--log-level", "TUBELOOP_LOG_LEVEL", OPT_STRING, F(log_level), 0, 0,
     "debug, info, warn or error"},
    {"--workers", "TUBELOOP_WORKERS", OPT_INT, F(workers), 1, 64,
     "daemon processes sharing the port (SO_REUSEPORT), each with its own pool"},
    {"--pool-size", "TUBELOOP_POOL_SIZE", OPT_INT, F(pool_size), 1, 64, "database connections"},
    {"--pool-queue", "TUBELOOP_POOL_QUEUE", OPT_INT, F(pool_queue), 0, 100000,
     "requests waiting for a connection before 503"},
    {"--header-timeout", "TUBELOOP_HEADER_TIMEOUT", OPT_MS, F(header_timeout_ms), 0, 3600,
     "seconds for a request head"},
    {"--body-timeout", "TUBELOOP_BODY_TIMEOUT", OPT_MS, F(body_timeout_ms), 0, 3600,
     "seconds for a request body"},
    {"--idle-timeout", "TUBELOOP_IDLE_TIMEOUT", OPT_MS, F(idle_timeout_ms), 0, 3600,
     "seconds an idle keep-alive connection stays open"},
    {"--shutdown-timeout", "TUBELOOP_SHUTDOWN_TIMEOUT", OPT_MS, F(shutdown_timeout_ms), 0, 3600,
     "seconds in-flight work gets at SIGTERM"},
    {"--max-connections", "TUBELOOP_MAX_CONNECTIONS", OPT_INT, F(max_connections), 1, 1000000,
     "client connections at once"},
    {"--overdue-transport", "TUBELOOP_OVERDUE_TRANSPORT", OPT_INT, F(overdue_transport_min), 1,
     100000, "minutes from seal to receipt before overdue_transport"},
    {"--overdue-test", "TUBELOOP_OVERDUE_TEST", OPT_INT, F(overdue_test_min), 1, 100000,
     "minutes from receipt to result before overdue_test"},
    {"--overdue-followup", "TUBELOOP_OVERDUE_FOLLOWUP", OPT_INT, F(overdue_followup_min), 1,
     100000, "minutes a follow-up may stay open before overdue_followup"},
    {"--sweep-interval", "TUBELOOP_SWEEP_INTERVAL", OPT_MS, F(sweep_interval_ms), 1, 3600,
     "seconds between overdue sweeps"},
    {"--rate-limit", "TUBELOOP_RATE_LIMIT", OPT_INT, F(rate_token), 0, 1000000,
     "requests per second per token, bursts of twice that (0: off)"},
    {"--rate-limit-address", "TUBELOOP_RATE_LIMIT_ADDRESS", OPT_INT, F(rate_address), 0, 1000000,
     "requests per second per client address (0: off)"},
    {"--transit-default", "TUBELOOP_TRANSIT_DEFAULT", OPT_INT, F(transit_default_min), 1, 10000,
     "minutes of transit assumed for a route without history"},
    {"--ingest-queue", "TUBELOOP_INGEST_QUEUE", OPT_INT, F(ingest_queue), 1, 1000000,
     "events waiting for group commit before new batches get 503"},
    {"--ingest-max-wait", "TUBELOOP_INGEST_MAX_WAIT", OPT_MS, F(ingest_max_wait_ms), 0, 3600,
     "seconds the oldest batch may have waited for group commit before new ones get 503 (0: off)"},
    {"--ingest-second-group", "TUBELOOP_INGEST_SECOND_GROUP", OPT_INT, F(ingest_second_group), 1,
     1000000, "events waiting before a second group joins the one in the database (1: any)"},
    {"--seal-interval", "TUBELOOP_SEAL_INTERVAL", OPT_MS, F(seal_interval_ms), 1, 3600,
     "seconds between custody chain seals"},
    {"--checkpoint-interval", "TUBELOOP_CHECKPOINT_INTERVAL", OPT_MS, F(checkpoint_interval_ms), 1,
     86400, "seconds before a moved chain head is signed"},
    {"--partition", "TUBELOOP_PARTITION", OPT_STRING, F(partition), 0, 0,
     "verify: one chain partition (COUNTY/YYYY-MM-DD)"},
};
#undef F

void tl_config_defaults(tl_config_t *c) {
  memset(c, 0, sizeof *c);
  c->tz = "Asia/Shanghai";
  c->label = "admin";
  c->log_level = "info";
  c->device_certs_text = "off";
  c->workers = 1;
  c->pool_size = 4;
  c->pool_queue = 1024;
  c->header_timeout_ms = 10000;
  c->body_timeout_ms = 30000;
  c->idle_timeout_ms = 60000;
  c->shutdown_timeout_ms = 10000;
  c->max_connections = 20000;
  c->overdue_transport_min = 240;
  c->overdue_test_min = 360;
  c->overdue_followup_min = 720;
  c->sweep_interval_ms = 60000;
  c->transit_default_min = 60;
  c->ingest_queue = 10000;
  c->ingest_max_wait_ms = 1000;
  c->ingest_second_group = 32;
  c->rate_token = 500;
  c->rate_address = 1000;
  c->seal_interval_ms = 2000;
  c->checkpoint_interval_ms = 60000;
}

static int set_value(tl_config_t *c, const opt_t *o, const char *value, const char *from,
                     char *err, size_t errlen) {
  char *field = (char *)c + o->offset;
  switch (o->kind) {
  case OPT_STRING:
    if (value[0] == '\0') {
      snprintf(err, errlen, "%s: empty value", from);
      return TL_EINVAL;
    }
    *(const char **)(void *)field = value;
    return 0;
  case OPT_FLAG:
    if (strcmp(value, "1") != 0 && strcmp(value, "0") != 0 && strcmp(value, "true") != 0 &&
        strcmp(value, "false") != 0) {
      snprintf(err, errlen, "%s: expected 1/0/true/false", from);
      return TL_EINVAL;
    }
    *(int *)(void *)field = value[0] == '1' || value[0] == 't';
    return 0;
  case OPT_INT: {
    char *end;
    long v = strtol(value, &end, 10);
    if (end == value || *end != '\0' || v < o->min || v > o->max) {
      snprintf(err, errlen, "%s: expected a whole number from %d to %d", from, o->min, o->max);
      return TL_EINVAL;
    }
    *(int *)(void *)field = (int)v;
    return 0;
  }
  case OPT_MS: {
    char *end;
    double v = strtod(value, &end);
    if (end == value || *end != '\0' || !(v >= o->min && v <= o->max)) {
      snprintf(err, errlen, "%s: expected seconds from %d to %d", from, o->min, o->max);
      return TL_EINVAL;
    }
    *(int *)(void *)field = (int)(v * 1000.0);
    return 0;
  }
  }
  snprintf(err, errlen, "%s: internal error", from);
  return TL_EINVAL;
}

static const opt_t *find_flag(const char *arg, size_t len) {
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
    if (strlen(options[i].flag) == len && strncmp(options[i].flag, arg, len) == 0)
      return &options[i];
  return NULL;
}

int tl_config_split_listen(const char *listen, char *host, size_t hostlen, int *port) {
  const char *colon;
  const char *h = listen;
  size_t hl;
  if (listen[0] == '[') {
    const char *close = strchr(listen, ']');
    if (close == NULL || close[1] != ':') return TL_EINVAL;
    h = listen + 1;
    hl = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(listen, ':');
    if (colon == NULL || memchr(listen, ':', (size_t)(colon - listen)) != NULL) return TL_EINVAL;
    hl = (size_t)(colon - listen);
  }
  if (hl == 0 || hl >= hostlen) return TL_EINVAL;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (end == colon + 1 || *end != '\0' || p < 0 || p > 65535) return TL_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (int)p;
  return 0;
}

int tl_config_is_loopback(const char *host) {
  if (strcmp(host, "localhost") == 0) return 1;
  struct in_addr a4;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  struct in6_addr a6;
  if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return 0;
}

/* --device-certs and --tls-client-ca: refuses the combinations that cannot mean what the
 * operator wants (a mode without CAs to check against, CAs that nothing would look at). */
static int check_device_certs(tl_config_t *c, int need, char *err, size_t errlen) {
  static const char *const names[] = {"off", "optional", "required"};
  int mode = -1;
  for (int i = 0; i < 3; i++)
    if (strcmp(c->device_certs_text, names[i]) == 0) mode = i;
  if (mode < 0) {
    snprintf(err, errlen, "--device-certs: expected off, optional or required");
    return TL_EINVAL;
  }
  c->device_certs = (tl_device_certs_t)mode;
  if (!(need & TL_CONFIG_NEED_TLS)) return 0;
  if (c->tls_client_ca && c->no_tls) {
    snprintf(err, errlen, "--tls-client-ca needs TLS: it cannot go with --no-tls");
    return TL_EINVAL;
  }
  if (c->device_certs != TL_DEVICE_CERTS_OFF && c->tls_client_ca == NULL) {
    snprintf(err, errlen,
             "--device-certs %s needs --tls-client-ca (the CAs of device certificates)",
             c->device_certs_text);
    return TL_EINVAL;
  }
  if (c->device_certs == TL_DEVICE_CERTS_OFF && c->tls_client_ca) {
    snprintf(err, errlen, "--tls-client-ca has no effect with --device-certs off: "
                          "set --device-certs optional or required");
    return TL_EINVAL;
  }
  return 0;
}

int tl_config_parse(tl_config_t *c, int need, int argc, char **argv, int first,
                    char *const *env, char *err, size_t errlen) {
  size_t nopt = sizeof options / sizeof options[0];
  /* Environment first, so flags override it. */
  for (char *const *e = env; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL) continue;
    for (size_t i = 0; i < nopt; i++) {
      size_t n = strlen(options[i].env);
      if ((size_t)(eq - *e) == n && strncmp(*e, options[i].env, n) == 0) {
        if (set_value(c, &options[i], eq + 1, options[i].env, err, errlen) != 0) return TL_EINVAL;
      }
    }
  }
  for (int i = first; i < argc; i++) {
    const char *arg = argv[i];
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const opt_t *o = find_flag(arg, len);
    if (o == NULL) {
      snprintf(err, errlen, "unknown option %.*s", (int)(len > 64 ? 64 : len), arg);
      return TL_EINVAL;
    }
    const char *value;
    if (o->kind == OPT_FLAG) {
      value = eq ? eq + 1 : "1";
    } else if (eq) {
      value = eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      snprintf(err, errlen, "%s needs a value", o->flag);
      return TL_EINVAL;
    }
    if (set_value(c, o, value, o->flag, err, errlen) != 0) return TL_EINVAL;
  }
  if ((need & TL_CONFIG_NEED_DB) && c->db == NULL) {
    snprintf(err, errlen, "--db (or TUBELOOP_DB) is required");
    return TL_EINVAL;
  }
  if ((need & TL_CONFIG_NEED_KEYS) && c->keys == NULL) {
    snprintf(err, errlen, "--keys (or TUBELOOP_KEYS) is required");
    return TL_EINVAL;
  }
  if (need & TL_CONFIG_NEED_LISTEN) {
    if (c->listen == NULL) {
      snprintf(err, errlen, "--listen (or TUBELOOP_LISTEN) is required");
      return TL_EINVAL;
    }
    if (tl_config_split_listen(c->listen, c->listen_host, sizeof c->listen_host,
                               &c->listen_port) != 0) {
      snprintf(err, errlen, "--listen: expected HOST:PORT");
      return TL_EINVAL;
    }
  }
  if (need & TL_CONFIG_NEED_TLS) {
    if (c->no_tls) {
      if (!(need & TL_CONFIG_NEED_LISTEN) || !tl_config_is_loopback(c->listen_host)) {
        snprintf(err, errlen, "--no-tls is allowed only on a loopback listen address");
        return TL_EINVAL;
      }
    } else if (c->tls_cert == NULL || c->tls_key == NULL) {
      snprintf(err, errlen, "--tls-cert and --tls-key are required (or --no-tls on loopback)");
      return TL_EINVAL;
    }
  }
  return check_device_certs(c, need, err, errlen);
}

const char *tl_config_usage(void) {
  static char text[8192];
  if (text[0] != '\0') return text;
  size_t n = 0;
  for (size_t i = 0; i < sizeof options / sizeof options[0] && n < sizeof text; i++) {
    int w = snprintf(text + n, sizeof text - n, "  %-20s %-26s %s\n", options[i].flag,
                     options[i].env, options[i].help);
    if (w < 0) break;
    n += (size_t)w;
  }
  return text;
}
