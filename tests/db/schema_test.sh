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
