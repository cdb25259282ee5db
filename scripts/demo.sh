#!/usr/bin/env bash
# demo.sh — the live demo: one command from a fresh clone to a running tubeloopd over TLS.
#
# `scripts/demo.sh` installs what is missing, builds build/release, starts a private
# PostgreSQL 15 in var/pg (tests/harness/pg.sh), applies the migrations, makes a self-signed
# certificate (var/tls) and a PII keys file (var/keys), (re)starts the daemon in the background
# (log var/tubeloopd.log, pid var/tubeloopd.pid), waits for /healthz, creates an admin token
# and prints how to reach it. Running it again rebuilds and restarts the daemon and keeps the
# data. `scripts/demo.sh stop` stops the daemon and the cluster.
#
# Environment: TUBELOOP_DEMO_PG_PORT (default 54329), TUBELOOP_DEMO_LISTEN (default
# 127.0.0.1:8443).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$TL_TOP"

VAR=var
PG=$VAR/pg
PG_PORT=${TUBELOOP_DEMO_PG_PORT:-54329}
LISTEN=${TUBELOOP_DEMO_LISTEN:-127.0.0.1:8443}
PORT=${LISTEN##*:}
BIN=build/release/tubeloopd
PIDFILE=$VAR/tubeloopd.pid
LOG=$VAR/tubeloopd.log
PGSH=tests/harness/pg.sh

[[ $PORT =~ ^[0-9]+$ && $LISTEN == *:* ]] || tl_die "TUBELOOP_DEMO_LISTEN must be HOST:PORT, got '$LISTEN'"

# The pid in var/tubeloopd.pid, if that process is alive and is a tubeloopd (a stale pid file
# must not make us signal an unrelated process that reused the number).
daemon_pid() {
  local pid
  [[ -s $PIDFILE ]] || return 1
  pid=$(head -n1 "$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q tubeloopd || return 1
  printf '%s\n' "$pid"
}

stop_daemon() {
  local pid i
  if ! pid=$(daemon_pid); then
    rm -f "$PIDFILE"
    tl_say "daemon: not running"
    return 0
  fi
  tl_say "daemon: stopping pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf 'demo.sh: daemon pid %s did not stop within 10 s; sending SIGKILL\n' "$pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$PIDFILE"
}

log_tail() {
  printf 'demo.sh: last lines of %s:\n' "$LOG" >&2
  tail -n 30 "$LOG" 2>/dev/null | sed 's/^/    /' >&2 || true
}

if [[ ${1:-} == stop ]]; then
  stop_daemon
  if [[ -d $PG ]]; then "$PGSH" stop "$PG"; fi
  tl_say "demo stopped (data kept in $VAR/; remove it for a fresh start)"
  exit 0
elif [[ $# -gt 0 ]]; then
  tl_die "usage: scripts/demo.sh [stop]"
fi

tl_deps
tl_build release
[[ -x $BIN ]] || tl_die "$BIN was not built"

mkdir -p "$VAR"
"$PGSH" init "$PG" "$PG_PORT"
"$PGSH" start "$PG"
DB=$("$PGSH" conninfo "$PG")

tl_say "migrate"
"$BIN" migrate --db "$DB" || tl_die "'tubeloopd migrate' failed"
tl_cert "$VAR/tls"
tl_keys "$BIN" "$VAR/keys"

stop_daemon
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  tl_die "port $PORT is already in use by another process; set TUBELOOP_DEMO_LISTEN=127.0.0.1:OTHERPORT"
fi
tl_say "daemon: starting on $LISTEN"
# setsid + nohup: the daemon outlives this script and the terminal it ran in. The background
# child is not a process-group leader, so setsid does not fork and $! is the daemon's pid.
setsid nohup "$BIN" serve --db "$DB" --listen "$LISTEN" \
  --tls-cert "$VAR/tls/tls.crt" --tls-key "$VAR/tls/tls.key" --keys "$VAR/keys" \
  >"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

URL=https://localhost:$PORT/
ready=0
deadline=$((SECONDS + 15))
while ((SECONDS < deadline)); do
  if ! daemon_pid >/dev/null; then
    log_tail
    tl_die "tubeloopd exited during start-up (see $LOG)"
  fi
  if curl -sf --max-time 2 --cacert "$VAR/tls/tls.crt" "${URL}healthz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  log_tail
  tl_die "tubeloopd did not answer ${URL}healthz within 15 s (see $LOG)"
fi

TOKEN=$("$BIN" admin-token --db "$DB" --label demo) || tl_die "'tubeloopd admin-token' failed"
[[ -n $TOKEN ]] || tl_die "'tubeloopd admin-token' printed no token"

cat <<EOF

tubeloop is running.

  URL          $URL
  admin token  $TOKEN
  CA to trust  $TL_TOP/$VAR/tls/tls.crt   (self-signed, for localhost and 127.0.0.1)
  try          curl --cacert $VAR/tls/tls.crt -H "Authorization: Bearer $TOKEN" ${URL}readyz
  daemon log   $TL_TOP/$LOG
  database     $DB
  stop         scripts/demo.sh stop   (stops the daemon and the database; data stays in $VAR/)

EOF
