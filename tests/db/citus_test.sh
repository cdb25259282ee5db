#!/usr/bin/env bash
# ctest db_citus — the schema is ready for Citus (sql/011_citus.sql, docs/SCALING.md): on a
# fresh database migrated by the real `tubeloopd migrate`, schema_test.sql writes real rows
# through tl_write, then citus_test.sql checks Citus's rules against the catalog with the map
# in citus_distribution. Last, every row of that map is a row of the table in docs/SCALING.md,
# so the document and the map cannot drift apart. Needs the ctest environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
db="citus_test_$$"
"$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
conninfo=${TUBELOOP_TEST_DB/dbname=tubeloop/dbname=$db}
"$TUBELOOPD" migrate --db "$conninfo" 2>/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo" -f "$here/schema_test.sql" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo" -f "$here/citus_test.sql"

doc=$TUBELOOP_SOURCE_DIR/docs/SCALING.md
missing=0
while IFS= read -r row; do
  grep -qF -- "$row" "$doc" || { echo "docs/SCALING.md lacks the map's row: $row" >&2; missing=$((missing + 1)); }
done < <(psql -X -At -d "$conninfo" -c "SELECT format('| %s | %s | %s | %s |', tbl, kind,
           coalesce(dist_column, '—'), coalesce(colocation, '—')) FROM citus_distribution ORDER BY tbl")
[[ $missing -eq 0 ]] || exit 1
echo "docs/SCALING.md matches citus_distribution"
