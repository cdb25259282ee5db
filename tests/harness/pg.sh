#!/usr/bin/env bash
# pg.sh — private PostgreSQL 15 clusters for the demo and the tests.
#
# Each cluster lives in a folder DIR that this script owns: DIR/data (the cluster), DIR/log
# (the server's log), DIR/pgpass (the superuser's password, libpq passfile format) and
# DIR/conninfo (one line of libpq conninfo that reaches the database `tubeloop` over TCP on
# 127.0.0.1; Unix sockets are off because build-tree paths can be too long for them).
# PostgreSQL refuses to run as root, so as root the server runs as the system user `tubeloop`
# (created on first use) while psql and the files the caller reads stay the caller's.
# ctest uses `fixture-up` / `fixture-down` as FIXTURES_SETUP / FIXTURES_CLEANUP.
#
#   pg.sh init DIR PORT        create the cluster (idempotent; rewrites the port if it changed)
#   pg.sh start DIR            start if not running, wait until a query works
#   pg.sh stop DIR [MODE]      pg_ctl stop -m MODE (smart|fast|immediate, default fast)
#   pg.sh restart DIR          stop fast, then start
#   pg.sh conninfo DIR         print the conninfo line
#   pg.sh psql DIR [ARGS...]   psql -X -v ON_ERROR_STOP=1 on the cluster's database
#   pg.sh destroy DIR          stop immediate and remove DIR
#   pg.sh fixture-up DIR PORT  destroy, init, start
#   pg.sh fixture-down DIR     destroy
set -euo pipefail

PG_BIN=${TL_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=tubeloop
ME=${0##*/}

die() { printf '%s: error: %s\n' "$ME" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$ME" "$*"; }

usage() {
  sed -n '/^#   pg.sh/s/^#   /usage: /p' "$0" >&2
  exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a server-side command (initdb, pg_ctl, postgres) as the user that owns the cluster.
# From / so that a caller's working directory the server user cannot enter does not matter.
as_owner() {
  if is_root; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    "$@"
  fi
}

# As root, make sure the system user exists. Parallel fixtures may race on useradd, so a
# failure is only an error when the user still does not exist afterwards.
ensure_user() {
  is_root || return 0
  id -u "$PG_USER" >/dev/null 2>&1 && return 0
  command -v useradd >/dev/null || die "useradd not found; cannot create the '$PG_USER' user"
  local try
  for try in 1 2 3 4 5; do
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null || true
    id -u "$PG_USER" >/dev/null 2>&1 && return 0
    sleep "$try"
  done
  die "could not create the system user '$PG_USER'"
}

need_bins() {
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/postgres ]] ||
    die "PostgreSQL 15 server not found in $PG_BIN (apt-get install postgresql-15)"
  [[ -x $PG_BIN/psql ]] || die "psql not found in $PG_BIN (apt-get install postgresql-client-15)"
}

# The DIR argument, made absolute. Characters that would need quoting inside a conninfo
# value are refused, so the conninfo file can stay one plain line.
abs_dir() {
  local d=$1
  [[ -n $d ]] || die "DIR is empty"
  [[ $d != *[[:space:]\'\"\\]* ]] || die "DIR must not contain spaces, quotes or backslashes: $d"
  [[ $d == /* ]] || d=$PWD/$d
  # Normalise without requiring existence (realpath -m), keep symlinks as given.
  d=$(realpath -m -s -- "$d")
  [[ $d != / ]] || die "DIR must not be /"
  printf '%s\n' "$d"
}

check_port() {
  if [[ ! $1 =~ ^[0-9]+$ ]] || (( $1 < 1 || $1 > 65535 )); then
    die "PORT must be a number 1-65535, got '$1'"
  fi
}

# As root, the server user must reach DIR through all its parents.
check_traversable() {
  is_root || return 0
  runuser -u "$PG_USER" -- test -x "$1" 2>/dev/null ||
    die "$1 is not reachable by the '$PG_USER' user; make it and every parent directory traversable (chmod o+x)"
}

is_cluster() { [[ -f $1/data/PG_VERSION ]]; }

running() {
  is_cluster "$1" || return 1
  as_owner "$PG_BIN/pg_ctl" status -D "$1/data" >/dev/null 2>&1
}

conf_port() {
  sed -n "s/^port = \([0-9]*\)$/\1/p" "$1/data/tubeloop.conf" 2>/dev/null | tail -n1
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Our settings live in their own file, included from postgresql.conf, so that a port change
# rewrites one small file instead of editing initdb's.
write_conf() { # DATA PORT DIR
  local tmp=$1/tubeloop.conf.tmp
  cat >"$tmp" <<EOF
# Written by tests/harness/pg.sh; rewritten by 'pg.sh init'. Do not edit.
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = ''
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = 'scram-sha-256'
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  if is_root; then chown "$PG_USER:" "$tmp"; fi
  chmod 0600 "$tmp"
  mv -f "$tmp" "$1/tubeloop.conf"
}

write_client_files() { # DIR PORT PASSWORD
  local dir=$1 port=$2 pw=$3
  (umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$port" "$PG_USER" "$pw" >"$dir/pgpass.tmp")
  chmod 0600 "$dir/pgpass.tmp"
  mv -f "$dir/pgpass.tmp" "$dir/pgpass"
  printf 'host=127.0.0.1 port=%s dbname=tubeloop user=%s passfile=%s/pgpass\n' \
    "$port" "$PG_USER" "$dir" >"$dir/conninfo.tmp"
  chmod 0644 "$dir/conninfo.tmp"
  mv -f "$dir/conninfo.tmp" "$dir/conninfo"
}

tail_log() {
  if [[ -f $1/log ]]; then
    printf '%s: last lines of %s/log:\n' "$ME" "$1" >&2
    tail -n 20 "$1/log" | sed 's/^/    /' >&2
  fi
}

pick_locale() {
  if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then echo C.UTF-8; else echo C; fi
}

cmd_init() {
  [[ $# -eq 2 ]] || usage
  local dir port
  dir=$(abs_dir "$1"); port=$2
  check_port "$port"
  need_bins
  ensure_user
  mkdir -p "$dir"
  # The folder itself only needs to be traversable by the server user; its files say who reads.
  if is_root; then chmod 0711 "$dir"; fi
  check_traversable "$dir"
  touch "$dir/.tubeloop-pg" "$dir/log"
  if is_root; then chown "$PG_USER:" "$dir/log"; fi

  if is_cluster "$dir"; then
    [[ -s $dir/pgpass ]] ||
      die "$dir/data exists but $dir/pgpass is missing; run '$ME destroy $dir' and init again"
    local pw old
    pw=$(cut -d: -f5- "$dir/pgpass" | head -n1)
    old=$(conf_port "$dir")
    if [[ $old != "$port" ]]; then
      write_conf "$dir/data" "$port"
      write_client_files "$dir" "$port" "$pw"
      say "init: $dir: port changed from ${old:-?} to $port"
      if running "$dir"; then
        say "init: $dir: restarting to apply the new port"
        cmd_stop "$dir" fast
        cmd_start "$dir"
      fi
    else
      write_client_files "$dir" "$port" "$pw"
      say "init: $dir: cluster already exists (port $port)"
    fi
    return 0
  elif [[ -e $dir/data ]]; then
    die "$dir/data exists but is not a PostgreSQL cluster; run '$ME destroy $dir' first"
  fi

  # Build the cluster in data.tmp and rename it when complete, so DIR/data existing always
  # means a finished cluster; a half-made data.tmp from an interrupted run is thrown away.
  local tmp=$dir/data.tmp pwfile=$dir/.pwfile pw loc
  rm -rf "$tmp" "$pwfile"
  mkdir -m 0700 "$tmp"
  pw=$(openssl rand -hex 24) || die "openssl rand failed"
  (umask 077 && printf '%s\n' "$pw" >"$pwfile")
  if is_root; then chown "$PG_USER:" "$tmp" "$pwfile"; fi
  trap 'rm -f "$pwfile"' EXIT
  loc=$(pick_locale)
  # Text sorts and compares by its bytes (LC_COLLATE C): for UTF-8 that is the code point order
  # C.UTF-8 gives too, without a call into the C library for every comparison of two keys
  # (~5 % of PostgreSQL's CPU under ingest, docs/PERFORMANCE.md, seventh update).
  say "init: $dir: initdb (UTF8, locale $loc, collation C, port $port)"
  if ! as_owner "$PG_BIN/initdb" -D "$tmp" -E UTF8 --locale="$loc" --lc-collate=C -U "$PG_USER" \
      --auth=scram-sha-256 --pwfile="$pwfile" >>"$dir/log" 2>&1; then
    tail_log "$dir"
    die "initdb failed for $dir"
  fi
  rm -f "$pwfile"
  trap - EXIT
  write_conf "$tmp" "$port"
  printf "\ninclude = 'tubeloop.conf'\n" >>"$tmp/postgresql.conf"
  # Create the database in single-user mode: no server, no port, no password needed yet.
  if ! printf 'CREATE DATABASE tubeloop;\n' |
      as_owner "$PG_BIN/postgres" --single -D "$tmp" -c listen_addresses= postgres >>"$dir/log" 2>&1; then
    tail_log "$dir"
    die "creating database 'tubeloop' failed for $dir"
  fi
  write_client_files "$dir" "$port" "$pw"
  mv "$tmp" "$dir/data"
  say "init: $dir: cluster created (port $port)"
}

cmd_start() {
  [[ $# -eq 1 ]] || usage
  local dir port ci i
  dir=$(abs_dir "$1")
  need_bins
  is_cluster "$dir" || die "no cluster in $dir; run '$ME init $dir PORT' first"
  [[ -s $dir/conninfo ]] || die "$dir/conninfo is missing; run '$ME init $dir PORT' again"
  ensure_user
  check_traversable "$dir"
  port=$(conf_port "$dir")
  if running "$dir"; then
    say "start: $dir: already running (port $port)"
  else
    if port_taken "$port"; then
      die "port $port on 127.0.0.1 is already in use by another process; pick another with '$ME init $dir PORT'"
    fi
    touch "$dir/log"
    if is_root; then chown "$PG_USER:" "$dir/log"; fi
    say "start: $dir: starting on port $port"
    if ! as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/log" start >/dev/null; then
      tail_log "$dir"
      die "PostgreSQL in $dir did not start"
    fi
  fi
  ci=$(cat "$dir/conninfo")
  for ((i = 0; i < 60; i++)); do
    if PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -At -d "$ci" -c 'select 1' >/dev/null 2>&1; then
      say "start: $dir: ready ($ci)"
      return 0
    fi
    sleep 0.5
  done
  PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -At -d "$ci" -c 'select 1' >/dev/null || true
  tail_log "$dir"
  die "PostgreSQL in $dir is running but does not answer queries"
}

cmd_stop() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  local dir mode=${2:-fast}
  dir=$(abs_dir "$1")
  case $mode in smart | fast | immediate) ;; *) die "stop MODE must be smart, fast or immediate, got '$mode'" ;; esac
  if ! running "$dir"; then
    say "stop: $dir: not running"
    return 0
  fi
  if ! as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 -m "$mode" stop >/dev/null; then
    tail_log "$dir"
    die "PostgreSQL in $dir did not stop (mode $mode)"
  fi
  say "stop: $dir: stopped ($mode)"
}

cmd_restart() {
  [[ $# -eq 1 ]] || usage
  cmd_stop "$1" fast
  cmd_start "$1"
}

cmd_conninfo() {
  [[ $# -eq 1 ]] || usage
  local dir
  dir=$(abs_dir "$1")
  [[ -s $dir/conninfo ]] || die "no conninfo in $dir; run '$ME init $dir PORT' first"
  cat "$dir/conninfo"
}

cmd_psql() {
  [[ $# -ge 1 ]] || usage
  local dir
  dir=$(abs_dir "$1"); shift
  [[ -x $PG_BIN/psql ]] || die "psql not found in $PG_BIN (apt-get install postgresql-client-15)"
  [[ -s $dir/conninfo ]] || die "no conninfo in $dir; run '$ME init $dir PORT' first"
  exec "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -d "$(cat "$dir/conninfo")" "$@"
}

cmd_destroy() {
  [[ $# -eq 1 ]] || usage
  local dir
  dir=$(abs_dir "$1")
  [[ -e $dir ]] || { say "destroy: $dir: nothing there"; return 0; }
  [[ -d $dir ]] || die "$dir is not a directory"
  # Refuse to delete a folder this script did not make (a typo must not remove a home).
  if [[ ! -e $dir/.tubeloop-pg ]] && [[ -n $(ls -A "$dir") ]]; then
    die "$dir was not made by $ME (no .tubeloop-pg marker); not removing it"
  fi
  if running "$dir"; then cmd_stop "$dir" immediate; fi
  rm -rf -- "$dir"
  say "destroy: $dir: removed"
}

cmd_fixture_up() {
  [[ $# -eq 2 ]] || usage
  cmd_destroy "$1"
  cmd_init "$1" "$2"
  cmd_start "$1"
}

cmd_fixture_down() {
  [[ $# -eq 1 ]] || usage
  cmd_destroy "$1"
}

[[ $# -ge 1 ]] || usage
sub=$1; shift
case $sub in
  init) cmd_init "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  restart) cmd_restart "$@" ;;
  conninfo) cmd_conninfo "$@" ;;
  psql) cmd_psql "$@" ;;
  destroy) cmd_destroy "$@" ;;
  fixture-up) cmd_fixture_up "$@" ;;
  fixture-down) cmd_fixture_down "$@" ;;
  -h | --help | help) usage ;;
  *) printf '%s: error: unknown subcommand %s\n' "$ME" "$sub" >&2; usage ;;
esac
