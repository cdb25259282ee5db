#!/usr/bin/env bash
# Runs schema_test.sql on a fresh database in the test cluster, migrated by the real
# `tubeloopd migrate`. Needs the ctest environment (TUBELOOP_TEST_DB, TUBELOOPD, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
db="schema_test_$$"
"$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
conninfo=${TUBELOOP_TEST_DB/dbname=tubeloop/dbname=$db}
"$TUBELOOPD" migrate --db "$conninfo" 2>/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo" -f "$here/schema_test.sql"

# A migration edited after it was applied is refused, not skipped.
edited=$(mktemp -d)
trap 'rm -rf "$edited"; "$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
cp "$TUBELOOP_SOURCE_DIR"/sql/*.sql "$edited/"
"$TUBELOOPD" migrate --db "$conninfo" --sql-dir "$edited" 2>/dev/null   # unchanged: fine
echo "-- edited" >> "$edited/001_tokens.sql"
if out=$("$TUBELOOPD" migrate --db "$conninfo" --sql-dir "$edited" 2>&1); then
  echo "migrate accepted an edited migration" >&2
  exit 1
fi
grep -q "001_tokens changed after it was applied" <<<"$out" || { echo "unclear refusal: $out" >&2; exit 1; }
echo "edited migration refused"
