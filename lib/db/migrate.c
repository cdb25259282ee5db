/* Migrations and admin-token creation (migrate.h). */
#include "db/migrate.h"

#include "base/buf.h"
#include "base/log.h"
#include "crypto/token.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any constant works; it only has to be the same for every tubeloopd. */
#define MIGRATION_LOCK 7420261

static PGconn *connect_db(const char *conninfo, char *err, size_t errlen) {
  const char *const keys[] = {"dbname", "fallback_application_name", NULL};
  const char *const values[] = {conninfo, "tubeloopd-migrate", NULL};
  PGconn *pg = PQconnectdbParams(keys, values, 1);
  if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
    /* PQerrorMessage may name host and user but never the password; it is what an operator
     * needs to fix a wrong --db. */
    snprintf(err, errlen, "cannot connect to the database: %s",
             pg ? strtok(PQerrorMessage(pg), "\n") : "out of memory");
    PQfinish(pg);
    return NULL;
  }
  return pg;
}

static int exec_ok(PGconn *pg, const char *sql, int nparams, const char *const *params,
                   char *err, size_t errlen, const char *what) {
  PGresult *r = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (!ok) {
    const char *msg = PQresultErrorMessage(r);
    snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
  }
  PQclear(r);
  return ok ? 0 : TL_EDB;
}

static int is_migration(const struct dirent *d) {
  const char *n = d->d_name;
  size_t len = strlen(n);
  if (len < 6 || strcmp(n + len - 4, ".sql") != 0) return 0;
  size_t digits = strspn(n, "0123456789");
  return digits >= 1 && n[digits] == '_';
}

static int read_file(const char *path, tl_buf_t *out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return TL_EIO;
  char chunk[8192];
  size_t n;
  int rc = 0;
  while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = tl_buf_append(out, chunk, n);
  if (ferror(f)) rc = TL_EIO;
  fclose(f);
  return rc;
}

int tl_db_migrate(const char *conninfo, const char *sql_dir, int *applied, char *err,
                  size_t errlen) {
  *applied = 0;
  struct dirent **names = NULL;
  int n = scandir(sql_dir, &names, is_migration, versionsort);
  if (n < 0) {
    snprintf(err, errlen, "cannot read migrations in %s: %s", sql_dir, strerror(errno));
    return TL_EIO;
  }
  PGconn *pg = connect_db(conninfo, err, errlen);
  int rc = pg ? 0 : TL_EDB;
  char lock[32];
  snprintf(lock, sizeof lock, "%d", MIGRATION_LOCK);
  const char *lockp[] = {lock};
  if (rc == 0) rc = exec_ok(pg, "SELECT pg_advisory_lock($1)", 1, lockp, err, errlen, "lock");
  if (rc == 0)
    rc = exec_ok(pg, "SET client_min_messages = warning", 0, NULL, err, errlen, "set");
  if (rc == 0)
    rc = exec_ok(pg,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(),"
                 " checksum text)",
                 0, NULL, err, errlen, "schema_migrations");
  if (rc == 0)
    rc = exec_ok(pg, "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text", 0,
                 NULL, err, errlen, "schema_migrations");
  for (int i = 0; i < n && rc == 0; i++) {
    char version[256];
    snprintf(version, sizeof version, "%.*s", (int)(strlen(names[i]->d_name) - 4),
             names[i]->d_name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", sql_dir, names[i]->d_name);
    tl_buf_t sql;
    tl_buf_init(&sql);
    if (read_file(path, &sql) != 0) {
      snprintf(err, errlen, "cannot read %s", path);
      tl_buf_dispose(&sql);
      rc = TL_EIO;
      break;
    }
    /* An applied migration must not change afterwards: its checksum is kept and compared, so a
     * database built from other files is refused instead of half matching the code. */
    char sum[TL_TOKEN_HASH_LEN + 1];
    tl_token_hash(sql.data ? sql.data : "", sql.len, sum);
    const char *vp[] = {version, sum};
    PGresult *r = PQexecParams(pg, "SELECT checksum FROM schema_migrations WHERE version = $1", 1,
                               NULL, vp, NULL, NULL, 0);
    int done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    int drift = done && !PQgetisnull(r, 0, 0) && strcmp(PQgetvalue(r, 0, 0), sum) != 0;
    PQclear(r);
    if (drift) {
      snprintf(err, errlen,
               "migration %s changed after it was applied to this database; rebuild the database"
               " or restore the file", version);
      tl_buf_dispose(&sql);
      rc = TL_EINVAL;
      break;
    }
    if (done) {
      tl_buf_dispose(&sql);
      continue;
    }
    if (rc == 0) rc = exec_ok(pg, "BEGIN", 0, NULL, err, errlen, "begin");
    if (rc == 0) {
      PGresult *m = PQexec(pg, tl_buf_cstr(&sql)); /* several statements: simple protocol */
      if (PQresultStatus(m) != PGRES_COMMAND_OK && PQresultStatus(m) != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(m);
        snprintf(err, errlen, "migration %s failed: %.*s", version, (int)strcspn(msg, "\n"), msg);
        rc = TL_EDB;
      }
      PQclear(m);
    }
    if (rc == 0)
      rc = exec_ok(pg, "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", 2, vp,
                   err, errlen, "record migration");
    if (rc == 0) rc = exec_ok(pg, "COMMIT", 0, NULL, err, errlen, "commit");
    if (rc != 0) {
      PQclear(PQexec(pg, "ROLLBACK"));
    } else {
      (*applied)++;
      tl_log(TL_LOG_INFO, "migration_applied", "version=%s", version);
    }
    tl_buf_dispose(&sql);
  }
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  PQfinish(pg);
  return rc;
}

int tl_db_admin_token(const char *conninfo, const char *label, char *out, size_t outlen,
                      char *err, size_t errlen) {
  char token[TL_TOKEN_LEN + 1], hash[TL_TOKEN_HASH_LEN + 1];
  if (outlen < sizeof token) return TL_EINVAL;
  if (tl_token_new(token) != 0) {
    snprintf(err, errlen, "no randomness for a token");
    return TL_EIO;
  }
  tl_token_hash(token, TL_TOKEN_LEN, hash);
  PGconn *pg = connect_db(conninfo, err, errlen);
  if (pg == NULL) return TL_EDB;
  const char *params[] = {hash, label};
  int rc = exec_ok(pg, "INSERT INTO tokens (hash, role, label) VALUES ($1, 'admin', $2)", 2,
                   params, err, errlen, "cannot store the token (was `tubeloopd migrate` run?)");
  PQfinish(pg);
  if (rc == 0) memcpy(out, token, sizeof token);
  return rc;
}
