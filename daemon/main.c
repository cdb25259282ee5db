/* tubeloopd: the command line (DESIGN §9). Each subcommand parses its flags with lib/conf and
 * hands over to the library; this file stays thin. */
#include "base/log.h"
#include "conf/config.h"
#include "crypto/keys.h"
#include "db/chainverify.h"
#include "db/migrate.h"
#include "routes.h"
#include "serve.h"
#include "workers.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The source tree's folders, compiled in by CMake so that a binary in its build tree finds them. */
#ifndef TL_SQL_DIR
#define TL_SQL_DIR "/usr/local/share/tubeloop/sql"
#endif
#ifndef TL_WEB_DIR
#define TL_WEB_DIR "/usr/local/share/tubeloop/web"
#endif

extern char **environ;

static const char usage[] =
    "usage: tubeloopd COMMAND [flags]\n"
    "  serve        --db CONNINFO --listen HOST:PORT --tls-cert F --tls-key F --keys F\n"
    "               (--no-tls instead of the TLS flags, on a loopback address only)\n"
    "  migrate      --db CONNINFO        apply sql/ migrations (idempotent)\n"
    "  admin-token  --db CONNINFO [--label L]   print a new admin token\n"
    "  gen-keys                          print a new PII keys file\n"
    "  routes                            print every route served: METHOD PATTERN\n"
    "  verify       --db CONNINFO --keys F [--partition P]   recompute the custody chains;\n"
    "                                    exit 1 on any finding\n"
    "flags (each also read from its environment variable):\n";

/* The default of --sql-dir / --web-dir. An installed tubeloopd (`cmake --install`, the image,
 * a package) lives in PREFIX/bin beside PREFIX/share/tubeloop/{sql,web}; it finds them from its
 * own path (/proc/self/exe), so an install under any prefix needs no flag. A binary that has no
 * such folder beside it (one in its build tree) uses the source tree's, compiled in. The result
 * is in buf or is the compiled-in string; valid as long as buf. */
static const char *data_dir(const char *name, const char *built_in, char *buf, size_t len) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/'); /* PREFIX/bin/tubeloopd -> PREFIX/bin */
    if (slash != NULL) *slash = '\0';
    slash = strrchr(exe, '/'); /* -> PREFIX */
    if (slash != NULL) {
      *slash = '\0';
      struct stat st;
      int w = snprintf(buf, len, "%s/share/tubeloop/%s", exe, name);
      if (w > 0 && (size_t)w < len && stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
    }
  }
  return built_in;
}

static const char *sql_dir(const tl_config_t *c, char *buf, size_t len) {
  return c->sql_dir ? c->sql_dir : data_dir("sql", TL_SQL_DIR, buf, len);
}

static const char *web_dir(const tl_config_t *c, char *buf, size_t len) {
  return c->web_dir ? c->web_dir : data_dir("web", TL_WEB_DIR, buf, len);
}

static int parse(tl_config_t *c, int need, int argc, char **argv) {
  char err[256];
  tl_config_defaults(c);
  if (tl_config_parse(c, need, argc, argv, 2, environ, err, sizeof err) != 0) {
    fprintf(stderr, "tubeloopd %s: %s\n", argv[1], err);
    return -1;
  }
  tl_log_level_t level;
  if (tl_log_level_parse(c->log_level, &level) != 0) {
    fprintf(stderr, "tubeloopd: --log-level must be debug, info, warn or error\n");
    return -1;
  }
  tl_log_threshold = level;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fprintf(argc < 2 ? stderr : stdout, "%s%s", usage, tl_config_usage());
    return argc < 2 ? 2 : 0;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("%s%s", usage, tl_config_usage());
      return 0;
    }
  }
  const char *cmd = argv[1];
  tl_config_t c;
  char err[512];
  if (strcmp(cmd, "serve") == 0) {
    if (parse(&c, TL_CONFIG_NEED_DB | TL_CONFIG_NEED_LISTEN | TL_CONFIG_NEED_TLS |
                      TL_CONFIG_NEED_KEYS, argc, argv) != 0)
      return 2;
    char web[4096];
    c.web_dir = web_dir(&c, web, sizeof web);
    return c.workers > 1 ? tl_workers_run(&c) : tl_serve(&c);
  }
  if (strcmp(cmd, "migrate") == 0) {
    if (parse(&c, TL_CONFIG_NEED_DB, argc, argv) != 0) return 2;
    int applied = 0;
    char sql[4096];
    if (tl_db_migrate(c.db, sql_dir(&c, sql, sizeof sql), &applied, err, sizeof err) != 0) {
      fprintf(stderr, "tubeloopd migrate: %s\n", err);
      return 1;
    }
    fprintf(stderr, "tubeloopd migrate: %d migration(s) applied, schema up to date\n", applied);
    return 0;
  }
  if (strcmp(cmd, "admin-token") == 0) {
    if (parse(&c, TL_CONFIG_NEED_DB, argc, argv) != 0) return 2;
    char token[128];
    if (tl_db_admin_token(c.db, c.label, token, sizeof token, err, sizeof err) != 0) {
      fprintf(stderr, "tubeloopd admin-token: %s\n", err);
      return 1;
    }
    printf("%s\n", token);
    return 0;
  }
  if (strcmp(cmd, "verify") == 0) {
    if (parse(&c, TL_CONFIG_NEED_DB | TL_CONFIG_NEED_KEYS, argc, argv) != 0) return 2;
    tl_keys_t keys;
    if (tl_keys_load(&keys, c.keys, err, sizeof err) != 0) {
      fprintf(stderr, "tubeloopd verify: %s\n", err);
      return 2;
    }
    tl_chain_report_t rep;
    int rc = tl_db_chain_verify(c.db, &keys, c.partition, stdout, &rep, err, sizeof err);
    tl_keys_dispose(&keys);
    if (fflush(stdout) != 0) return 2;
    if (rc != 0) {
      fprintf(stderr, "tubeloopd verify: %s\n", err);
      return 2;
    }
    return rep.findings ? 1 : 0;
  }
  if (strcmp(cmd, "gen-keys") == 0) {
    if (argc > 2) {
      fprintf(stderr, "tubeloopd gen-keys: takes no flags; redirect its output to a file\n");
      return 2;
    }
    char text[1024];
    if (tl_keys_generate(text, sizeof text) != 0) {
      fprintf(stderr, "tubeloopd gen-keys: no randomness available\n");
      return 1;
    }
    fputs(text, stdout);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  if (strcmp(cmd, "routes") == 0) {
    if (argc > 2) {
      fprintf(stderr, "tubeloopd routes: takes no flags\n");
      return 2;
    }
    return tl_daemon_print_routes();
  }
  fprintf(stderr, "tubeloopd: unknown command '%.64s'\n%s", cmd, usage);
  return 2;
}
