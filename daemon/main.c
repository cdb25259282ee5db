/* tubeloopd: the command line (DESIGN §9). Each subcommand parses its flags with lib/conf and
 * hands over to the library; this file stays thin. */
#include "base/log.h"
#include "conf/config.h"
#include "crypto/keys.h"
#include "db/migrate.h"
#include "serve.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    "flags (each also read from its environment variable):\n";

static const char *sql_dir(const tl_config_t *c) {
  if (c->sql_dir) return c->sql_dir;
  struct stat st;
  if (stat(TL_SQL_DIR, &st) == 0) return TL_SQL_DIR;
  return "/usr/local/share/tubeloop/sql";
}

static const char *web_dir(const tl_config_t *c) {
  if (c->web_dir) return c->web_dir;
  struct stat st;
  if (stat(TL_WEB_DIR, &st) == 0) return TL_WEB_DIR;
  return "/usr/local/share/tubeloop/web";
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
    c.web_dir = web_dir(&c);
    return tl_serve(&c);
  }
  if (strcmp(cmd, "migrate") == 0) {
    if (parse(&c, TL_CONFIG_NEED_DB, argc, argv) != 0) return 2;
    int applied = 0;
    if (tl_db_migrate(c.db, sql_dir(&c), &applied, err, sizeof err) != 0) {
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
  fprintf(stderr, "tubeloopd: unknown command '%.64s'\n%s", cmd, usage);
  return 2;
}
