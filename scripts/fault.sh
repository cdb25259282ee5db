#!/usr/bin/env bash
# fault.sh — the long forms of the fault tests (not part of the test command).
#
#   scripts/fault.sh [KILLS] [DEVICES]      default 100 kills, 16 devices
#
# Builds build/release, starts a private PostgreSQL for the run, and runs
# tests/fault/crash_history.py: the daemon is killed with SIGKILL KILLS times under load while
# devices retry their batches with the same ids; the checker then compares every acknowledged
# event with the database (lost / duplicated must be 0). Then the negative control
# (synchronous_commit off, PostgreSQL killed too), which must report loss.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
. "$top/scripts/lib.sh"
kills=${1:-100}
devices=${2:-16}
tl_deps
tl_build release
dir=/tmp/tubeloop-fault-pg-$$
port=$((30000 + $$ % 20000))
"$top/tests/harness/pg.sh" fixture-up "$dir" "$port"
trap '"$top/tests/harness/pg.sh" fixture-down "$dir" >/dev/null 2>&1 || true' EXIT
export TUBELOOP_TEST_DB="host=127.0.0.1 port=$port dbname=tubeloop user=tubeloop passfile=$dir/pgpass"
export TUBELOOP_TEST_PG_DIR=$dir TUBELOOP_TEST_PG_SH=$top/tests/harness/pg.sh
export TUBELOOPD=$top/build/release/tubeloopd TUBELOOP_TEST_TMP=$top/build/release/test-tmp
mkdir -p "$TUBELOOP_TEST_TMP"
"$TUBELOOPD" migrate --db "$TUBELOOP_TEST_DB"
python3 "$top/tests/fault/crash_history.py" --kills "$kills" --devices "$devices" --interval 3
python3 "$top/tests/fault/crash_history.py" --kills 10 --devices "$devices" --negative-control
