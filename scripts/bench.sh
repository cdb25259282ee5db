#!/usr/bin/env bash
# bench.sh — the benchmark suite of issue 6 (its own command, not part of scripts/test.sh).
#
#   scripts/bench.sh [--short | --full | --scale] [--profile] [--keep]
#
# Builds build/release (tl_build) plus the benchmark tools (tests/bench: tl_loadgen, tl_pgload),
# starts a private PostgreSQL 15 (tests/harness/pg.sh; fsync and synchronous_commit on) and a
# release tubeloopd over TLS, then measures, all against that one PostgreSQL in one run:
#
#   1 ingest      accepted events/s of the city model (tests/bench/model.h) through the daemon,
#                 100 events per request over CONNS keep-alive connections; p50/p99 latency
#   2 ceiling     rows/s of COPY of exactly the same event JSON into copy_ceiling, 1000 rows per
#                 committed transaction, 1 and 2 sessions (the better counts)
#   3 naive       the same events inserted one per transaction by 16 connections
#   4 ratios      ingest/ceiling and ingest/naive
#   5 single-scan 1 event per request, open loop at 1,000 requests/s over 50 connections
#                 (30 s; short mode 10 s): latency from the scheduled time, p50/p99/max; then
#                 single-event throughput, closed loop over 64 connections
#   6 idle        daemon VmRSS holding 10,000 idle TLS keep-alive connections (short: 2,000)
#   7 stats       GET /v1/stats p50/p99 for the county and a township at the data size reached
#   + overload    (full mode) open loop at 2x the single-event maximum: goodput, 503s, memory
#   + burst       256 connections x 100 events (100 sites; full: 200): goodput against the
#                 same upload over 32 connections just before, 503s with Retry-After (sent
#                 again after 100 ms), accepted requests' p99, memory; then the same burst
#                 from clients that wait as Retry-After tells them
#   + check       events in the database = events the daemon acknowledged, per workload
#   + connections (full mode) the ingest at 16, 32 and 64 connections
# Per phase: CPU seconds of the daemon, the cluster, the load generator and everything else on
# the machine, and what PostgreSQL logged. Results: docs/PERFORMANCE.md.
#
# --short (default) stays under two minutes after the build; --full is larger (about 1.3 M
# events ingested); --scale loads 1 M samples per step (400 sites x TUBELOOP_BENCH_STEP_BOXES
# boxes of 500 samples, default 5) through the same ingest path, up to TUBELOOP_BENCH_STEPS
# steps (default 5) or until TUBELOOP_BENCH_MINUTES (default 30) have passed, and measures
# ingest and stats at each step. --profile also records `perf` on the whole machine
# and pg_stat_statements (track = all) during the ingest (a separate run: it slows things).
# --keep leaves the daemon and the cluster running at the end.
#
# Environment: TUBELOOP_BENCH_DIR (default /tmp/tubeloop-bench; must be reachable by the
# `tubeloop` system user when run as root), TUBELOOP_BENCH_PG_PORT (54339),
# TUBELOOP_BENCH_PORT (18643; the next free one is taken), TUBELOOP_BENCH_SKIP_BUILD (1: build
# only tubeloopd, not the whole tree), TUBELOOP_BENCH_CONNS (ingest connections, 32),
# TUBELOOP_BENCH_POOL (--pool-size of the daemon, default: the daemon's default),
# TUBELOOP_BENCH_PG_EXTRA (more PostgreSQL settings, "name = value" separated by ';'),
# TUBELOOP_BENCH_DAEMON_ARGS (more flags for `tubeloopd serve`).
set -euo pipefail
shopt -s lastpipe # `tool | grab` keeps grab's results in this shell

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$TL_TOP"

MODE=short
PROFILE=0
KEEP=0
for a in "$@"; do
  case $a in
    --short) MODE=short ;;
    --full) MODE=full ;;
    --scale) MODE=scale ;;
    --profile) PROFILE=1 ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) tl_die "usage: scripts/bench.sh [--short|--full|--scale] [--profile] [--keep]" ;;
  esac
done

BENCH=${TUBELOOP_BENCH_DIR:-/tmp/tubeloop-bench}
PG_DIR=$BENCH/pg
# First free port from the given one up (another run, a test cluster may hold one).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
PG_PORT=$(free_port "${TUBELOOP_BENCH_PG_PORT:-54339}")
PORT=$(free_port "${TUBELOOP_BENCH_PORT:-18643}")
CONNS=${TUBELOOP_BENCH_CONNS:-32}
PGSH=$TL_TOP/tests/harness/pg.sh
BIN=build/release/tubeloopd
LOADGEN=build/release/tests/bench/tl_loadgen
PGLOAD=build/release/tests/bench/tl_pgload
URL=https://127.0.0.1:$PORT
SEED=20220404

case $MODE in
  # INGEST_SITES: how many of the sites take part in the main ingest (0: all)
  short) TOWNSHIPS=20 SITES=200 COURIERS=20 LABS=7 BOXES=1 INGEST_SITES=100 SINGLE_S=10 NAIVE_S=10 IDLE=2000 ;;
  full) TOWNSHIPS=40 SITES=400 COURIERS=40 LABS=7 BOXES=5 INGEST_SITES=0 SINGLE_S=30 NAIVE_S=30 IDLE=10000 ;;
  scale) TOWNSHIPS=40 SITES=400 COURIERS=40 LABS=7 BOXES=${TUBELOOP_BENCH_STEP_BOXES:-5} INGEST_SITES=0 IDLE=0 ;;
esac

# Commands are shown as run, with this run's folders abbreviated ($BENCH, paths relative to the
# project root) so that the output can go into docs/PERFORMANCE.md as it is.
show() {
  local s="$*"
  s=${s//"$BENCH"/\$BENCH}
  s=${s//"$TL_TOP/"/}
  printf '$ %s\n' "$s"
}
run() { show "$@"; "$@"; }
say() { printf '\n== %s\n' "$*"; }

DAEMON_PID=
cleanup() {
  local rc=$?
  if [[ $KEEP -eq 1 ]]; then
    printf 'bench.sh: --keep: daemon pid %s on %s, cluster in %s\n' "${DAEMON_PID:-?}" "$URL" "$PG_DIR"
    exit $rc
  fi
  [[ -n ${PERF_PID:-} ]] && kill "$PERF_PID" 2>/dev/null || true
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
  fi
  if [[ -d $PG_DIR ]]; then "$PGSH" stop "$PG_DIR" fast >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Build

tl_deps
if [[ -z ${TUBELOOP_BENCH_SKIP_BUILD:-} ]]; then
  tl_build release
else # the daemon alone (while another part of the tree does not build)
  cmake -S "$TL_TOP" -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_SANITIZE=OFF >/dev/null
  cmake --build build/release -j"$(nproc)" --target tubeloopd || tl_die "building tubeloopd failed"
fi
# The benchmark tools live with the tests: configure the same tree with them, build only them.
tl_say "build: benchmark tools (tests/bench) in build/release"
cmake -S "$TL_TOP" -B build/release -DTL_TESTS=ON >/dev/null || tl_die "cmake configure failed"
cmake --build build/release -j"$(nproc)" --target tl_loadgen tl_pgload || tl_die "building the bench tools failed"

T_START=$SECONDS

# One process may hold 10,000 connections and then some: raise the descriptor limit.
HARD=$(ulimit -Hn)
if [[ $HARD != unlimited && $HARD -lt $((IDLE + 1000)) ]]; then
  tl_say "fd hard limit $HARD: holding $((HARD - 1000)) idle connections instead of $IDLE"
  IDLE=$((HARD - 1000))
fi
ulimit -n "$([[ $HARD == unlimited ]] && echo 65536 || echo "$HARD")"

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a fresh private cluster, the same settings for every measurement.

PG_SETTINGS=(
  "shared_buffers = '1GB'"
  "wal_buffers = '64MB'"
  "max_wal_size = '8GB'"
  "checkpoint_timeout = '30min'"
  "log_min_duration_statement = '1s'" # diagnostics only: slow statements and lock waits
  "log_lock_waits = 'on'"
  "log_autovacuum_min_duration = '1s'"
  "log_checkpoints = 'on'"
)
if [[ $PROFILE -eq 1 ]]; then
  PG_SETTINGS+=("shared_preload_libraries = 'pg_stat_statements'")
fi
# More settings to try, ';'-separated: TUBELOOP_BENCH_PG_EXTRA="plan_cache_mode = 'force_custom_plan'"
if [[ -n ${TUBELOOP_BENCH_PG_EXTRA:-} ]]; then
  IFS=';' read -r -a extra_pg <<<"$TUBELOOP_BENCH_PG_EXTRA"
  PG_SETTINGS+=("${extra_pg[@]}")
fi
mkdir -p "$BENCH"
[[ $(id -u) -ne 0 ]] || chmod 0711 "$BENCH"
"$PGSH" destroy "$PG_DIR" >/dev/null
"$PGSH" init "$PG_DIR" "$PG_PORT" >/dev/null
"$PGSH" start "$PG_DIR" >/dev/null
# A module's own settings (a dotted name, e.g. auto_explain.log_min_duration) are known only
# once the module is loaded: they go in after the restart.
for s in "${PG_SETTINGS[@]}"; do
  [[ ${s%% *} == *.* ]] || "$PGSH" psql "$PG_DIR" -q -c "ALTER SYSTEM SET ${s/ = / TO }" >/dev/null
done
"$PGSH" restart "$PG_DIR" >/dev/null
for s in "${PG_SETTINGS[@]}"; do
  [[ ${s%% *} != *.* ]] || "$PGSH" psql "$PG_DIR" -q -c "ALTER SYSTEM SET ${s/ = / TO }" \
    -c "SELECT pg_reload_conf()" >/dev/null
done
DB=$("$PGSH" conninfo "$PG_DIR")
psql_q() { "$PGSH" psql "$PG_DIR" -q -At -c "$1"; }
if [[ $PROFILE -eq 1 ]]; then # statements inside tl_write's PL/pgSQL too
  "$PGSH" psql "$PG_DIR" -q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
    -c "ALTER SYSTEM SET pg_stat_statements.track TO 'all'" -c "SELECT pg_reload_conf()" >/dev/null
fi

"$BIN" migrate --db "$DB" >"$BENCH/migrate.log" 2>&1 || { cat "$BENCH/migrate.log" >&2; tl_die "migrate failed"; }
tl_cert "$BENCH/tls" >/dev/null
tl_keys "$BIN" "$BENCH/keys" >/dev/null

# ---------------------------------------------------------------------------------------------
# The machine and the settings

say "machine"
printf 'mode            %s\n' "$MODE"
printf 'cpus            %s (%s)\n' "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
printf 'memory          %s MB\n' "$(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)"
printf 'kernel          %s\n' "$(uname -r)"
printf 'os              %s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
printf 'postgresql      %s\n' "$(psql_q 'SHOW server_version')"
printf 'libuv/openssl   %s / %s\n' "$(pkg-config --modversion libuv)" "$(openssl version | cut -d' ' -f2)"
printf 'build           build/release (RelWithDebInfo: -O2 -g), commit %s%s\n' "$(git -C "$TL_TOP" rev-parse --short HEAD 2>/dev/null || echo '?')" \
  "$(git -C "$TL_TOP" diff --quiet HEAD -- lib daemon sql 2>/dev/null || echo ' with uncommitted changes in lib/, daemon/ or sql/')"
printf 'load average    %s (anything else running shares these cores)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $MODE == full ]]; then
  say "disk: pg_test_fsync (8 kB writes, 1 s each), where the cluster lives"
  "${TL_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_test_fsync" -s 1 -f "$BENCH/fsync.test" >"$BENCH/fsync.txt" 2>&1 || true
  grep -E '^[[:space:]]+(open_datasync|fdatasync) ' "$BENCH/fsync.txt" | sed -n '1,2p' || true
  rm -f "$BENCH/fsync.test"
fi
say "postgresql settings (tests/harness/pg.sh + ALTER SYSTEM; the same for every measurement)"
psql_q "SELECT name || ' = ' || setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name IN
  ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers','wal_buffers',
   'max_wal_size','checkpoint_timeout','max_connections','work_mem','wal_level','commit_delay',
   'shared_preload_libraries','plan_cache_mode') ORDER BY name"

# ---------------------------------------------------------------------------------------------
# The daemon

# Every device of the model connects from 127.0.0.1 here, unlike in the field: the per-address
# rate limit (meant for one client address) is off; the per-token limit stays at its default.
DAEMON_ARGS=(--idle-timeout 900 --rate-limit-address 0)
[[ -z ${TUBELOOP_BENCH_POOL:-} ]] || DAEMON_ARGS+=(--pool-size "$TUBELOOP_BENCH_POOL")
if [[ -n ${TUBELOOP_BENCH_DAEMON_ARGS:-} ]]; then
  read -r -a extra <<<"$TUBELOOP_BENCH_DAEMON_ARGS"
  DAEMON_ARGS+=("${extra[@]}")
fi
say "daemon"
show "$BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" --tls-cert "$BENCH/tls/tls.crt" \
  --tls-key "$BENCH/tls/tls.key" --keys "$BENCH/keys" "${DAEMON_ARGS[@]}" "2>$BENCH/tubeloopd.log &"
"$BIN" serve --db "$DB" --listen "127.0.0.1:$PORT" --tls-cert "$BENCH/tls/tls.crt" \
  --tls-key "$BENCH/tls/tls.key" --keys "$BENCH/keys" "${DAEMON_ARGS[@]}" \
  >"$BENCH/tubeloopd.log" 2>&1 </dev/null &
DAEMON_PID=$!
for _ in $(seq 1 150); do
  curl -sf --max-time 2 --cacert "$BENCH/tls/tls.crt" "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { tail -n 20 "$BENCH/tubeloopd.log" >&2; tl_die "tubeloopd exited"; }
  sleep 0.1
done
curl -sf --max-time 2 --cacert "$BENCH/tls/tls.crt" "$URL/readyz" >/dev/null || tl_die "tubeloopd is not ready"
printf 'pid %s; --idle-timeout raised for the idle-connection test, --rate-limit-address off (all the\n' "$DAEMON_PID"
printf 'load comes from one address), every other flag at its default\n'

export TUBELOOP_BENCH_ADMIN_TOKEN
TUBELOOP_BENCH_ADMIN_TOKEN=$("$BIN" admin-token --db "$DB" --label bench)
REG=$BENCH/registry
say "registry (admin API)"
run "$LOADGEN" setup --url "$URL" --cacert "$BENCH/tls/tls.crt" --registry "$REG" \
  --townships $TOWNSHIPS --sites $SITES --couriers $COURIERS --labs $LABS
TOWNSHIP=$(sed -n 's/^county //p' "$REG")101

# ---------------------------------------------------------------------------------------------
# Helpers: CPU seconds of the daemon and of the cluster's processes; results; checks.

TCK=$(getconf CLK_TCK)
cpu_of() { # PID... → CPU seconds (user + system) of those that exist
  local t=0 p f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }
    t=$((t + $(awk '{print $12 + $13}' <<<"$f")))
  done
  awk -v t="$t" -v h="$TCK" 'BEGIN {printf "%.2f", t / h}'
}
pg_pids() {
  local pm
  pm=$(head -n1 "$PG_DIR/data/postmaster.pid")
  echo "$pm" $(pgrep -P "$pm" || true)
}
PG_PIDS_AT_START=
# Busy CPU seconds of the whole machine (every process, ours or not) from /proc/stat.
# Printed with, of that, the interrupts' (irq + softirq: much of loopback networking) and the
# time the hypervisor gave our virtual cores to someone else (steal), neither of which is a
# process's: "busy irq steal", one read.
cpu_machine() {
  awk -v h="$TCK" '/^cpu / {printf "%.2f %.2f %.2f", ($2 + $3 + $4 + $7 + $8 + $9) / h, ($7 + $8) / h, $9 / h}' /proc/stat
}
cpu_mark() {
  CPU_D0=$(cpu_of "$DAEMON_PID"); PG_PIDS_AT_START=$(pg_pids); CPU_P0=$(cpu_of $PG_PIDS_AT_START)
  CPU_M0=$(cpu_machine); CPU_W0=$(date +%s.%N)
}
# Where the CPU went during a phase: the daemon, PostgreSQL (the cluster's processes: the
# daemon's pool connections, walwriter, checkpointer, autovacuum workers alive at the end; a
# backend that came and went in between is missed), the load generator (it prints its
# own), and the rest of the machine, which is not ours: anything else running shares the cores.
cpu_report() { # LABEL LOADGEN_CPU_S
  local d p m i s w
  d=$(awk -v a="$(cpu_of "$DAEMON_PID")" -v b="$CPU_D0" 'BEGIN {printf "%.1f", a - b}')
  local new=() x
  for x in $(pg_pids); do [[ " $PG_PIDS_AT_START " == *" $x "* ]] || new+=("$x"); done
  p=$(awk -v a="$(cpu_of $PG_PIDS_AT_START)" -v b="$CPU_P0" -v n="$(cpu_of "${new[@]}")" \
    'BEGIN {printf "%.1f", a - b + n}')
  read -r m i s < <(awk -v a="$(cpu_machine)" -v b="$CPU_M0" \
    'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.1f %.1f %.1f\n", x[1] - y[1], x[2] - y[2], x[3] - y[3]}')
  w=$(awk -v a="$(date +%s.%N)" -v b="$CPU_W0" 'BEGIN {printf "%.1f", a - b}')
  printf 'cpu %s: %s s wall on %s cores; tubeloopd %s s, postgresql %s s, load generator %s s,' \
    "$1" "$w" "$(nproc)" "$d" "$p" "${2:-?}"
  printf ' other processes %s s, interrupts %s s, stolen by the hypervisor %s s (machine busy %s s)\n' \
    "$(awk -v m="$m" -v d="$d" -v p="$p" -v l="${2:-0}" -v i="$i" -v s="$s" \
       'BEGIN {x = m - d - p - l - i - s; printf "%.1f", (x < 0 ? 0 : x)}')" "$i" "$s" "$m"
}
# What PostgreSQL logged during a phase (slow statements over 1 s, lock waits, checkpoints,
# autovacuum over 1 s), summarised.
pg_log_since() { # LINE
  local f=$BENCH/pg.phase.log
  tail -n +"$(($1 + 1))" "$PG_DIR/log" >"$f" || true
  printf 'postgresql log: %s statements over 1 s (longest %s ms), %s lock waits over 1 s, %s checkpoints, %s autovacuum/analyze runs over 1 s\n' \
    "$(grep -c 'duration: ' "$f" || true)" \
    "$(grep -o 'duration: [0-9.]*' "$f" | awk '{if ($2 > m) m = $2} END {printf "%d", m}')" \
    "$(grep -c 'still waiting for' "$f" || true)" "$(grep -c 'checkpoint complete' "$f" || true)" \
    "$(grep -c 'automatic \(vacuum\|analyze\)' "$f" || true)"
}
declare -A R
# result KIND key=value... lines of a tool's output → R[KIND.key]
grab() {
  local line kind kv
  while IFS= read -r line; do
    printf '%s\n' "$line"
    [[ $line == result\ * ]] || continue
    read -r _ kind kv <<<"$line"
    for kv in ${line#result "$kind" }; do R[$kind.${kv%%=*}]=${kv#*=}; done
  done
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$DAEMON_PID/status"; }
rss_watch_start() { # the daemon's peak VmRSS goes to $BENCH/rss_peak until rss_watch_stop
  RSS_BEFORE=$(rss_mb)
  echo 0 >"$BENCH/rss_peak"
  ( peak=0; while kill -0 "$DAEMON_PID" 2>/dev/null; do
      r=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0)
      ((r > peak)) && peak=$r && echo "$peak" >"$BENCH/rss_peak"; sleep 0.2; done ) &
  RSS_WATCH=$!
}
rss_watch_stop() { kill "$RSS_WATCH" 2>/dev/null || true; RSS_PEAK=$(awk '{printf "%.1f", $1 / 1024}' "$BENCH/rss_peak"); }
alive() { kill -0 "$DAEMON_PID" 2>/dev/null || tl_die "tubeloopd died; see $BENCH/tubeloopd.log"; }
# Acknowledged = stored: the events of a workload (its tube and box codes start with its tag)
# in the database against what the daemon acknowledged as accepted.
check_stored() { # TAG ACCEPTED
  local n
  n=$(psql_q "SELECT count(*) FROM events WHERE coalesce(tube, box) LIKE '$1%'")
  if [[ $n -eq $2 ]]; then
    printf 'check %s: %s events in the database = %s acknowledged as accepted\n' "$1" "$n" "$2"
  else
    printf 'check %s: FAILED: %s events in the database, %s acknowledged as accepted\n' "$1" "$n" "$2"
    CHECK_FAILED=1
  fi
}
CHECK_FAILED=0
common() { printf -- '--url %s --cacert %s --registry %s' "$URL" "$BENCH/tls/tls.crt" "$REG"; }

ingest() { # TAG BLOCK BOXES [CONNS [SITES [SITE_OFFSET [RETRY_WAIT]]]]
  local tag=$1 block=$2 boxes=$3 conns=${4:-$CONNS} sites=${5:-0} offset=${6:-0} wait=${7:-100ms} base
  base=$(($(date +%s%3N) - 150 * 60000))
  BASE[$tag]=$base
  cpu_mark
  PG_LOG_MARK=$(wc -l <"$PG_DIR/log")
  # shellcheck disable=SC2046
  run "$LOADGEN" ingest $(common) --conns "$conns" --batch 100 --seed $SEED --tag "$tag" --block "$block" \
    --boxes "$boxes" --sites "$sites" --site-offset "$offset" --base-ms "$base" --retry-wait "$wait" | grab
  cpu_report "ingest $tag" "${R[ingest.cpu_s]}"
  pg_log_since "$PG_LOG_MARK"
  alive
  check_stored "$tag" "${R[ingest.accepted]}"
}
declare -A BASE

# What autovacuum is doing now (its workers' statements), or "none".
autovacuum_now() {
  local a
  a=$(psql_q "SELECT string_agg(regexp_replace(query, '^autovacuum: ', ''), '; ')
              FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
  printf '%s' "${a:-none}"
}
# What autovacuum did beside a phase: its workers' statements, looked at once a second from
# autovacuum_watch_start to autovacuum_watch_stop. A latency phase right after a large ingest
# shares the cores with the vacuums and analyzes of what that ingest wrote, and the phase's
# "other processes" CPU (workers that come and go) does not say which.
autovacuum_watch_start() {
  : >"$BENCH/autovacuum.samples"
  ( while kill -0 "$DAEMON_PID" 2>/dev/null; do
      printf '%s\n' "$(autovacuum_now)" >>"$BENCH/autovacuum.samples"; sleep 1; done ) &
  AUTOVACUUM_WATCH=$!
}
autovacuum_watch_stop() { # LABEL
  kill "$AUTOVACUUM_WATCH" 2>/dev/null || true
  wait "$AUTOVACUUM_WATCH" 2>/dev/null || true
  printf 'autovacuum beside %s: busy in %s of %s samples a second apart%s\n' "$1" \
    "$(grep -vc '^none$' "$BENCH/autovacuum.samples" || true)" "$(wc -l <"$BENCH/autovacuum.samples")" \
    "$(grep -v '^none$' "$BENCH/autovacuum.samples" | tr ';' '\n' | sed 's/^ *//' | sort | uniq -c |
       sort -rn | head -5 | awk '{c = $1; $1 = ""; printf "%s%s (%d)", NR == 1 ? ": " : ", ", substr($0, 2), c}')"
}
# Whose CPU the "other processes" of a phase were: top's per-second view of every process,
# kernel threads and processes that come and go included, from others_watch_start to
# others_watch_stop, summed by command for all but the daemon, the load generator and the
# cluster's processes that were there at the phase's start (cpu_mark). Two slow single-scan
# phases ran beside 15.7 and 19.6 CPU-s that cpu_report could not name (docs/PERFORMANCE.md).
others_watch_start() {
  top -b -d 1 -w 512 >"$BENCH/top.samples" 2>/dev/null &
  OTHERS_WATCH=$!
}
others_watch_stop() { # LABEL
  kill "$OTHERS_WATCH" 2>/dev/null || true
  wait "$OTHERS_WATCH" 2>/dev/null || true
  printf 'other processes beside %s, by command (top, once a second): %s\n' "$1" "$(
    awk -v skip=" $PG_PIDS_AT_START $DAEMON_PID " '
      /^top - / {frame++; next}
      frame < 2 || $1 !~ /^[0-9]+$/ || index(skip, " " $1 " ") || $12 == "tl_loadgen" {next}
      {cpu[$12 == "postgres" ? "postgres (came and went)" : $12] += $9 / 100}
      END {for (c in cpu) if (cpu[c] >= 0.05) printf "%.1f %s\n", cpu[c], c}' "$BENCH/top.samples" |
      sort -rn | head -6 | awk '{c = $1; $1 = ""; printf "%s%s %s CPU-s", NR == 1 ? "" : ", ", substr($0, 2), c}')"
}
stats_at() { # LABEL
  # (what ran beside the reads: a stats phase slower than the same reads at rest is otherwise
  # unexplained, docs/PERFORMANCE.md)
  local mark
  mark=$(wc -l <"$PG_DIR/log")
  printf 'autovacuum before the reads: %s
' "$(autovacuum_now)"
  cpu_mark
  # shellcheck disable=SC2046
  run "$LOADGEN" stats $(common) --region "$(sed -n 's/^county //p' "$REG")" --n 200 --label "stats_county$1" | grab
  # shellcheck disable=SC2046
  run "$LOADGEN" stats $(common) --region "$TOWNSHIP" --n 200 --label "stats_township$1" | grab
  cpu_report "stats$1" ""
  printf 'autovacuum after the reads: %s
' "$(autovacuum_now)"
  pg_log_since "$mark"
}

# ---------------------------------------------------------------------------------------------
# 1 ingest (with the perf/pg_stat_statements profile when asked)

if [[ $MODE == scale ]]; then
  STEPS=${TUBELOOP_BENCH_STEPS:-5}
  MINUTES=${TUBELOOP_BENCH_MINUTES:-30}
  say "scale: $((SITES * BOXES * 500)) samples per step through POST /v1/events, stats after each step"
  for ((step = 1; step <= STEPS; step++)); do
    if ((SECONDS - T_START > MINUTES * 60)); then
      printf 'scale: stopping after %d steps (%d minutes)\n' $((step - 1)) "$MINUTES"
      break
    fi
    say "scale step $step"
    ingest "s$step" $((3 + step)) "$BOXES" "$CONNS" 0
    printf 'database size %s\n' "$(psql_q "SELECT pg_size_pretty(pg_database_size('tubeloop'))")"
    stats_at "_$step"
    printf 'result scale step=%d samples_total=%s eps=%s stats_county_p50_ms=%s stats_county_p99_ms=%s stats_township_p50_ms=%s stats_township_p99_ms=%s\n' \
      "$step" "${R[stats_county_$step.persons_sampled]}" "${R[ingest.eps]}" \
      "${R[stats_county_$step.p50_ms]}" "${R[stats_county_$step.p99_ms]}" \
      "${R[stats_township_$step.p50_ms]}" "${R[stats_township_$step.p99_ms]}" | tee -a "$BENCH/scale.txt"
  done
  say "scale summary"
  cat "$BENCH/scale.txt"
  rm -f "$BENCH/scale.txt"
  [[ $CHECK_FAILED -eq 0 ]] || tl_die "a stored-events check failed"
  exit 0
fi

if [[ $MODE == full ]]; then
  say "connections: the same workload shape (100 sites x 1 box, 67 k events; other sites each time) at 16, 32 and 64 connections"
  k=0
  for c in 16 32 64; do
    ingest "w$c" $((11 + c / 16)) 1 "$c" 100 $((100 * k)) | grep -E '^(result|cpu|check|postgresql)'
    k=$((k + 1))
  done
fi

say "1 ingest: the city model, 100 events per request, $CONNS connections"
if [[ $PROFILE -eq 1 ]]; then
  psql_q "SELECT pg_stat_statements_reset()" >/dev/null
  ( sleep 5; exec perf record -F 499 -a -g -o "$BENCH/perf.data" -- sleep 15 ) >/dev/null 2>&1 &
  PERF_PID=$!
fi
ingest a 0 "$BOXES" "$CONNS" "$INGEST_SITES"
INGEST_EPS=${R[ingest.eps]}
INGEST_SUST=${R[ingest.eps_sustained]}
INGEST_P50=${R[ingest.p50_ms]}
INGEST_P99=${R[ingest.p99_ms]}
INGEST_EVENTS=${R[ingest.accepted]}
if [[ $PROFILE -eq 1 ]]; then
  wait "$PERF_PID" || true
  PERF_PID=
  # (reports go through files: `head` closing a pipe must not stop the script)
  perf report -i "$BENCH/perf.data" --no-children --sort comm --stdio -g none >"$BENCH/perf.comm" 2>/dev/null || true
  # this run's daemon and cluster only (other tubeloopd or postgres processes may be running)
  perf report -i "$BENCH/perf.data" --no-children --pid "$DAEMON_PID" --sort dso,sym --stdio -g none \
    >"$BENCH/perf.daemon" 2>/dev/null || true
  perf report -i "$BENCH/perf.data" --no-children --pid "$(pg_pids | tr ' ' ',')" --sort dso,sym --stdio -g none \
    >"$BENCH/perf.postgres" 2>/dev/null || true
  say "profile: perf, CPU samples by command name (whole machine, 15 s of the ingest)"
  grep -v '^#' "$BENCH/perf.comm" | grep -v '^$' | sed -n '1,12p'
  say "profile: hottest symbols of this tubeloopd (share of all samples)"
  grep -v '^#' "$BENCH/perf.daemon" | grep -v '^$' | sed -n '1,25p'
  say "profile: hottest symbols of this cluster's postgres processes (share of all samples)"
  grep -v '^#' "$BENCH/perf.postgres" | grep -v '^$' | sed -n '1,25p'
  say "profile: pg_stat_statements (track = all), by total time"
  psql_q "SELECT round(total_exec_time)::text || ' ms  ' || calls || ' calls  ' || rows || ' rows  ' ||
      round((total_exec_time / greatest(calls, 1))::numeric, 2) || ' ms/call  ' ||
      regexp_replace(left(query, 110), '\s+', ' ', 'g')
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 30"
fi

# ---------------------------------------------------------------------------------------------
# 2 ceiling and 3 naive: the same events (same workload options and base time)

WL=(--seed $SEED --tag a --block 0 --boxes "$BOXES" --sites "$INGEST_SITES" --base-ms "${BASE[a]}")
say "2 ceiling: COPY of the same event JSON, 1000 rows per transaction"
run "$PGLOAD" ceiling --db "$DB" --registry "$REG" "${WL[@]}" --sessions 1 | grab
C1=${R[ceiling.rows_per_s]}
run "$PGLOAD" ceiling --db "$DB" --registry "$REG" "${WL[@]}" --sessions 2 | grab
C2=${R[ceiling.rows_per_s]}
CEILING=$((C1 > C2 ? C1 : C2))
say "3 naive: one event per transaction, 16 connections"
run "$PGLOAD" naive --db "$DB" --registry "$REG" "${WL[@]}" --conns 16 --seconds "$NAIVE_S" | grab
NAIVE=${R[naive.rows_per_s]}
psql_q "DROP TABLE copy_ceiling, copy_naive" >/dev/null

# ---------------------------------------------------------------------------------------------
# 5 single-scan latency and single-event throughput

# The comparison phases wrote their tables and WAL (hundreds of MB in full mode) and dropped the
# tables: flushed here, so that their writeback does not land on the latency phase's commits.
psql_q "CHECKPOINT" >/dev/null
sync
say "5 single-scan: 1 event per request, open loop at 1000 requests/s over 50 connections, $SINGLE_S s"
cpu_mark
PG_LOG_MARK=$(wc -l <"$PG_DIR/log")
autovacuum_watch_start
others_watch_start
# shellcheck disable=SC2046
run "$LOADGEN" single $(common) --seed $SEED --tag s --block 1 --boxes 1 --rate 1000 --conns 50 \
  --seconds "$SINGLE_S" | grab
autovacuum_watch_stop "the single-scan phase"
others_watch_stop "the single-scan phase"
cpu_report "single-scan" "${R[single.cpu_s]}"
pg_log_since "$PG_LOG_MARK"
alive
say "5b single-event throughput: 1 event per request, closed loop over 64 connections, 10 s"
cpu_mark
# shellcheck disable=SC2046
run "$LOADGEN" single $(common) --seed $SEED --tag c --block 2 --boxes 2 --rate 0 --conns 64 \
  --seconds 10 | grab
cpu_report "single-event closed loop" "${R[single_closed.cpu_s]}"
SINGLE_MAX=${R[single_closed.eps]}
alive

if [[ $MODE == full ]]; then
  OVER=$(awk -v m="$SINGLE_MAX" 'BEGIN {printf "%d", 2 * m}')
  say "overload: open loop at 2 x the single-event maximum ($OVER requests/s) over 256 connections, 20 s"
  rss_watch_start
  # shellcheck disable=SC2046
  run "$LOADGEN" single $(common) --seed $SEED --tag o --block 3 --boxes 2 --rate "$OVER" --conns 256 \
    --seconds 20 --label overload | grab
  rss_watch_stop
  alive
  printf 'overload: daemon alive; VmRSS %s MB before, peak %s MB during; goodput %s events/s = %s x the closed-loop maximum\n' \
    "$RSS_BEFORE" "$RSS_PEAK" "${R[overload.eps]}" \
    "$(awk -v a="${R[overload.eps]}" -v b="$SINGLE_MAX" 'BEGIN {printf "%.2f", a / b}')"
fi

# A burst of uploads: every phone of BURST_SITES sites back online at once with its journal
# (the failure mode of 2022). 256 connections of 100 events keep ~25,000 events in flight,
# seconds of work: what the daemon cannot start within --ingest-max-wait must be refused at
# once (503, Retry-After; the load generator sends it again 100 ms later), not queued.
# Its goodput is compared with the same upload over 32 connections just before it ("r"): the
# same amount of work, new persons in both (blocks no other phase uses: a block of persons
# sampled before makes every sample a repeat, with its anomaly), at the same size of the
# database. (The first ingest ran on a smaller one.)
BURST_SITES=$([[ $MODE == full ]] && echo 200 || echo 100)
say "overload: the reference for the burst, 100 events per request over 32 connections ($BURST_SITES sites x 1 box)"
ingest r 17 1 32 "$BURST_SITES" 0
REF_EPS=${R[ingest.eps]}
say "overload: a burst of uploads, 100 events per request over 256 connections ($BURST_SITES sites x 1 box)"
rss_watch_start
ingest b 16 1 256 "$BURST_SITES" 0  # (tags "r", "b": check_stored matches tags as code prefixes)
rss_watch_stop
BURST_EPS=${R[ingest.eps]} BURST_P99=${R[ingest.p99_ms]} BURST_BUSY=${R[ingest.busy]}
BURST_RA=${R[ingest.busy_retry_after]} BURST_REQ=${R[ingest.requests]}
printf 'burst: daemon alive; VmRSS %s MB before, peak %s MB; goodput %s events/s = %s x the same upload over 32 connections (%s events/s); %s of %s requests answered 503/429 (%s with Retry-After) and sent again; accepted requests p99 %s ms\n' \
  "$RSS_BEFORE" "$RSS_PEAK" "$BURST_EPS" "$(awk -v a="$BURST_EPS" -v b="$REF_EPS" 'BEGIN {printf "%.2f", a / b}')" "$REF_EPS" \
  "$BURST_BUSY" "$((BURST_REQ + BURST_BUSY))" "$BURST_RA" "$BURST_P99"
# The same burst from clients that wait as told (Retry-After, times 0.5-1.5) instead of 100 ms:
# what a city of well-behaved phones gets; the one above is the worst case for the server.
say "overload: the same burst from clients that wait as Retry-After tells them"
ingest t 14 1 256 "$BURST_SITES" 0 told
TOLD_EPS=${R[ingest.eps]} TOLD_P99=${R[ingest.p99_ms]} TOLD_BUSY=${R[ingest.busy]}
printf 'burst (told): goodput %s events/s = %s x the same upload over 32 connections; %s requests answered 503/429 and sent again as told; accepted requests p99 %s ms\n' \
  "$TOLD_EPS" "$(awk -v a="$TOLD_EPS" -v b="$REF_EPS" 'BEGIN {printf "%.2f", a / b}')" "$TOLD_BUSY" "$TOLD_P99"

# ---------------------------------------------------------------------------------------------
# 6 idle connections

say "6 idle: $IDLE idle TLS keep-alive connections"
# shellcheck disable=SC2046
run "$LOADGEN" idle $(common) --conns "$IDLE" --pid "$DAEMON_PID" --hold 3 | grab
alive

# ---------------------------------------------------------------------------------------------
# 7 stats at the data size reached

say "7 stats: GET /v1/stats, round $(sed -n 's/^round //p' "$REG")"
printf 'samples in the database: %s, events: %s\n' "$(psql_q 'SELECT count(*) FROM samples')" \
  "$(psql_q 'SELECT count(*) FROM events')"
stats_at ""

say "checks"
check_stored s "${R[single.accepted]}"
check_stored c "${R[single_closed.accepted]}"
[[ $MODE != full ]] || check_stored o "${R[overload.accepted]}"
ERRS=$(grep -c 'level=error' "$BENCH/tubeloopd.log" || true)
printf 'daemon log: %s error lines\n' "$ERRS"
kill -TERM "$DAEMON_PID"
DRC=0
wait "$DAEMON_PID" || DRC=$?
printf 'daemon stopped on SIGTERM with status %s\n' "$DRC"
DAEMON_PID=

# ---------------------------------------------------------------------------------------------
# Summary

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }
say "summary ($MODE mode, $(($SECONDS - T_START)) s after the build)"
printf '(1) ingest        %s events/s accepted (%s/s sustained between 10%% and 90%%), %s events,\n' \
  "$INGEST_EPS" "$INGEST_SUST" "$INGEST_EVENTS"
printf '                  request latency p50 %s ms, p99 %s ms (100 events per request, %s connections)\n' \
  "$INGEST_P50" "$INGEST_P99" "$CONNS"
printf '(2) ceiling       %s rows/s (COPY, 1000 rows/transaction; 1 session %s, 2 sessions %s)\n' "$CEILING" "$C1" "$C2"
printf '(3) naive         %s rows/s (one insert per transaction, 16 connections)\n' "$NAIVE"
printf '(4) ratios        ingest/ceiling %s (required >= 0.3, goal 0.5); ingest/naive %s (target >= 5)\n' \
  "$(ratio "$INGEST_EPS" "$CEILING")" "$(ratio "$INGEST_EPS" "$NAIVE")"
printf '(5) single-scan   open loop 1000/s over 50 connections: p50 %s ms, p99 %s ms, max %s ms (target p99 <= 10 ms)%s\n' \
  "${R[single.p50_ms]}" "${R[single.p99_ms]}" "${R[single.max_ms]}" \
  "$([[ ${R[single.unsent]:-0} -eq 0 ]] || echo "; ${R[single.unsent]} requests never sent, the schedule fell behind")"
printf '                  %s of %s seconds had over 1%% of their requests over 10 ms; the hypervisor took %s%% of the cores in those%s\n' \
  "${R[single_seconds.slow]}" "${R[single_seconds.of]}" "${R[single_seconds.steal_slow_pct]}" \
  "$([[ ${R[single_seconds.slow]} == "${R[single_seconds.of]}" ]] || echo ", ${R[single_seconds.steal_other_pct]}% in the others")"
printf '                  single-event closed loop, 64 connections: %s events/s = %s x naive (target >= 3)\n' \
  "$SINGLE_MAX" "$(ratio "$SINGLE_MAX" "$NAIVE")"
if [[ $MODE == full ]]; then
  printf '    overload      %s/s offered: goodput %s events/s (%s x max), %s answered 503/429 or failed\n' \
    "$OVER" "${R[overload.eps]}" "$(ratio "${R[overload.eps]}" "$SINGLE_MAX")" "${R[overload.errors]}"
fi
printf '    burst         256 connections x 100 events: goodput %s events/s (%s x the same upload over 32 connections, %s/s), %s requests answered 503/429 (%s with Retry-After), accepted p99 %s ms, peak VmRSS %s MB\n' \
  "$BURST_EPS" "$(ratio "$BURST_EPS" "$REF_EPS")" "$REF_EPS" "$BURST_BUSY" "$BURST_RA" "$BURST_P99" "$RSS_PEAK"
printf '    burst (told)  the same, clients waiting as Retry-After tells them: goodput %s events/s (%s x), %s requests answered 503/429, accepted p99 %s ms\n' \
  "$TOLD_EPS" "$(ratio "$TOLD_EPS" "$REF_EPS")" "$TOLD_BUSY" "$TOLD_P99"
printf '(6) idle          %s TLS connections: daemon VmRSS %s MB (%s KB each above the %s MB idle daemon; target <= 300 MB)\n' \
  "${R[idle.conns]}" "$(awk -v k="${R[idle.rss_kb]}" 'BEGIN {printf "%.1f", k / 1024}')" "${R[idle.per_conn_kb]}" \
  "$(awk -v k="${R[idle.rss0_kb]}" 'BEGIN {printf "%.1f", k / 1024}')"
printf '(7) stats         county (%s children): p50 %s ms, p99 %s ms; township: p50 %s ms, p99 %s ms; at %s persons sampled\n' \
  "${R[stats_county.children]}" "${R[stats_county.p50_ms]}" "${R[stats_county.p99_ms]}" \
  "${R[stats_township.p50_ms]}" "${R[stats_township.p99_ms]}" "${R[stats_county.persons_sampled]}"
printf '    stored        %s\n' "$([[ $CHECK_FAILED -eq 0 ]] && echo 'every acknowledged event of the ingest is in the database, once' || echo 'CHECK FAILED')"
[[ $CHECK_FAILED -eq 0 && $DRC -eq 0 ]] || exit 1
