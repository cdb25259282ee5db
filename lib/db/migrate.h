/* Schema migrations and first set-up tasks, with blocking libpq (command-line use only, never
 * on the event loop).
 *
 * Migrations are the files sql/NNN_name.sql, applied in order of NNN, each in its own
 * transaction together with its row in schema_migrations, under an advisory lock so that
 * several daemons starting at once apply each file exactly once. */
#ifndef TL_DB_MIGRATE_H
#define TL_DB_MIGRATE_H

#include "base/err.h"

#include <stddef.h>

/* Applies what is missing. *applied gets how many files ran. err: one line on failure. */
TL_WUR int tl_db_migrate(const char *conninfo, const char *sql_dir, int *applied, char *err,
                         size_t errlen);

/* Stores the hash of a new admin token and writes the token (shown once) into out. */
TL_WUR int tl_db_admin_token(const char *conninfo, const char *label, char *out, size_t outlen,
                             char *err, size_t errlen);

#endif
