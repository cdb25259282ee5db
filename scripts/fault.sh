#!/usr/bin/env bash
# fault.sh — the long forms of the fault tests (not part of the test command).
#
#   scripts/fault.sh [KILLS] [DEVICES]      default 100 kills, 16 devices
#   scripts/fault.sh slow [CONNECTIONS] [SECONDS]
#                                           slowhttptest slowloris, slow body and slow read
#                                           (default 4000 connections, 120 s each) while a
#                                           control client's latency is measured
#   scripts/fault.sh pg [OUTAGE] [ROUNDS]   PostgreSQL down OUTAGE seconds under load (120),
#                                           then ROUNDS pg_terminate_backend rounds (100)
#   scripts/fault.sh tls                    testssl.sh's whole scan of the daemon (HIGH or
#                                           CRITICAL findings fail it), then its negative
#                                           control against a badly configured openssl s_server
#   scripts/fault.sh multi [KILLS] [DAEMONS]
#                                           DAEMONS tubeloopd (3) behind HAProxy, one killed at
#                                           a time KILLS times (100) under load: 0 lost, 0
#                                           duplicated, stats and SSE the same through each
#   scripts/fault.sh offline [KILLS]        offline journals of thousands of scans (real CLI),
#                                           `tubeloop sync` SIGKILLed KILLS times (300) during
#                                           upload: every scan in the database exactly once
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
mode=crash
case ${1:-} in slow | pg | tls | multi | offline) mode=$1; shift ;; esac
kills=${1:-100}
devices=${2:-16}
tl_deps
tl_fault_deps
tl_build release
dir=/tmp/tubeloop-fault-pg-$$
port=$((30000 + $$ % 20000))
"$top/tests/harness/pg.sh" fixture-up "$dir" "$port"
trap '"$top/tests/harness/pg.sh" fixture-down "$dir" >/dev/null 2>&1 || true' EXIT
export TUBELOOP_TEST_DB="host=127.0.0.1 port=$port dbname=tubeloop user=tubeloop passfile=$dir/pgpass"
export TUBELOOP_TEST_PG_DIR=$dir TUBELOOP_TEST_PG_SH=$top/tests/harness/pg.sh
export TUBELOOPD=$top/build/release/tubeloopd TUBELOOP_CLI=$top/build/release/tubeloop
export TUBELOOP_TEST_TMP=$top/build/release/test-tmp
mkdir -p "$TUBELOOP_TEST_TMP"
"$TUBELOOPD" migrate --db "$TUBELOOP_TEST_DB"
case $mode in
  slow)
    # slowhttptest holds one descriptor per connection
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    python3 "$top/tests/fault/slow_clients.py" --connections "${1:-4000}" --seconds "${2:-120}" ;;
  tls)
    python3 "$top/tests/fault/tls_scan.py" --long
    python3 "$top/tests/fault/tls_scan.py" --negative-control ;;
  pg)
    python3 "$top/tests/fault/pg_outage.py" --outage "${1:-120}" --rounds "${2:-100}" ;;
  offline)
    python3 "$top/tests/fault/offline_sync.py" --kills "${1:-300}" ;;
  multi)
    python3 "$top/tests/fault/multi_daemon.py" --kills "${1:-100}" --daemons "${2:-3}" --devices 8 --interval 2 ;;
  crash)
    python3 "$top/tests/fault/crash_history.py" --kills "$kills" --devices "$devices" --interval 3
    python3 "$top/tests/fault/crash_history.py" --kills 10 --devices "$devices" --negative-control ;;
esac
