#!/usr/bin/env bash
# ctest ops_install — `cmake --install` (through scripts/lib.sh tl_install, as scripts/install.sh
# and the image run it) into a temp prefix, and what a server would then run:
#   - the files land: both binaries, every migration byte for byte, the dashboard with its
#     uPlot and without its npm files, the systemd unit naming this prefix, the example settings;
#   - the installed tubeloopd finds PREFIX/share/tubeloop/{sql,web} by itself: a probe
#     migration added to the installed sql/ is applied by `migrate` without --sql-dir, and a
#     marker added to the installed index.html is what `serve` answers at /;
#   - every TUBELOOP_* variable of the unit and the example is one `tubeloopd --help` knows;
#   - `systemd-analyze verify` has nothing to say about the unit, and `systemd-analyze security
#     --offline` rates its exposure at most 2.0 (of 10).
# Needs the ctest environment and the test cluster (fixtures pg, db).
set -euo pipefail
top=${TUBELOOP_SOURCE_DIR:?}
build=$(dirname "${TUBELOOPD:?}")
mkdir -p "${TUBELOOP_TEST_TMP:?}"
work=$(mktemp -d "$TUBELOOP_TEST_TMP/ops-install.XXXXXX")
prefix=$work/prefix
db="ops_install_$$"
pid=
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  "$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail=0 passed=0
ok() { passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$*" >&2; fail=$((fail + 1)); }

# shellcheck source=scripts/lib.sh
(source "$top/scripts/lib.sh" && tl_install "$prefix" "$build") || { echo "tl_install failed" >&2; exit 1; }

# ---- the files ----------------------------------------------------------------------------------
for f in bin/tubeloopd bin/tubeloop; do [[ -x $prefix/$f ]] && ok || bad "$f is not installed"; done
n=0
for f in "$top"/sql/*.sql; do
  n=$((n + 1))
  cmp -s "$f" "$prefix/share/tubeloop/sql/${f##*/}" && ok || bad "sql/${f##*/} is not installed as it is"
done
[[ $n -gt 0 ]] && ok || bad "no migration in the source tree"
for f in index.html app.js style.css vendor/uPlot.iife.min.js vendor/uPlot.min.css; do
  [[ -s $prefix/share/tubeloop/web/$f ]] && ok || bad "web/$f is not installed"
done
for f in package.json package-lock.json node_modules README.md; do
  [[ ! -e $prefix/share/tubeloop/web/$f ]] && ok || bad "web/$f is installed (the daemon would serve it)"
done
unit=$prefix/lib/systemd/system/tubeloopd.service
env_example=$prefix/share/tubeloop/tubeloopd.env.example
[[ -s $env_example ]] && ok || bad "the example settings are not installed"
grep -qxF "ExecStart=$prefix/bin/tubeloopd serve" "$unit" && ok || bad "the unit does not start $prefix/bin/tubeloopd serve"
grep -qxF "ExecStartPre=$prefix/bin/tubeloopd migrate" "$unit" && ok || bad "the unit does not migrate first"
grep -qE '@[A-Z_]+@' "$unit" && bad "the unit has an unconfigured @VARIABLE@" || ok

# ---- the installed binary -------------------------------------------------------------------------
help=$("$prefix/bin/tubeloopd" --help) && ok || bad "installed tubeloopd --help failed"
"$prefix/bin/tubeloop" --help >/dev/null 2>&1 && ok || bad "installed tubeloop --help failed"
for var in $(grep -ohE '\bTUBELOOP_[A-Z_]+' "$unit" "$env_example" | sort -u); do
  grep -qw -- "$var" <<<"$help" && ok || bad "$var (unit or example settings) is unknown to tubeloopd --help"
done

# migrate with no --sql-dir applies the installed folder (a probe migration only it holds)
"$TUBELOOP_TEST_PG_SH" psql "$TUBELOOP_TEST_PG_DIR" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
conninfo=${TUBELOOP_TEST_DB/dbname=tubeloop/dbname=$db}
echo 'CREATE TABLE ops_install_probe (id int);' >"$prefix/share/tubeloop/sql/999_ops_install_probe.sql"
(cd / && env -u TUBELOOP_SQL_DIR "$prefix/bin/tubeloopd" migrate --db "$conninfo") 2>"$work/migrate.log" && ok ||
  bad "installed tubeloopd migrate failed: $(cat "$work/migrate.log")"
[[ $(psql -X -At -d "$conninfo" -c "SELECT to_regclass('ops_install_probe') IS NOT NULL") == t ]] && ok ||
  bad "installed tubeloopd migrate did not read $prefix/share/tubeloop/sql"

# serve with no --web-dir answers the installed dashboard
marker="<!-- ops_install $$ -->"
echo "$marker" >>"$prefix/share/tubeloop/web/index.html"
"$prefix/bin/tubeloopd" gen-keys >"$work/keys"
chmod 600 "$work/keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd / && exec env -u TUBELOOP_WEB_DIR "$prefix/bin/tubeloopd" serve --db "$conninfo" --listen "127.0.0.1:$port" \
  --no-tls --keys "$work/keys") 2>"$work/serve.log" &
pid=$!
page=
for _ in $(seq 100); do
  page=$(curl -sf --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null) && break
  sleep 0.1
done
grep -qF "$marker" <<<"$page" && ok || bad "installed tubeloopd serve did not answer the installed index.html: $(tail -n5 "$work/serve.log")"
curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port/readyz" && ok || bad "installed tubeloopd is not ready"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[[ $status -eq 0 ]] && ok || bad "installed tubeloopd exited $status after SIGTERM"

# ---- the unit ---------------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify "$unit" 2>&1) && [[ -z $out ]] && ok || bad "systemd-analyze verify: $out"
  exposure=$(systemd-analyze security --offline=yes "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }' && ok || bad "systemd-analyze security: exposure ${exposure:-unknown} above 2.0"
  # Negative control: verify must notice a broken unit.
  sed 's/^Type=exec$/Type=bogus/' "$unit" >"$work/tubeloopd.service"
  out=$(systemd-analyze verify "$work/tubeloopd.service" 2>&1) || true
  [[ $out == *bogus* ]] && ok || bad "systemd-analyze verify did not notice Type=bogus"
else
  bad "systemd-analyze is not installed (scripts/lib.sh tl_ops_deps)"
fi

printf 'ops_install: %d passed, %d failed\n' "$passed" "$fail"
[[ $fail -eq 0 ]]
