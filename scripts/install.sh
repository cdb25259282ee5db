#!/usr/bin/env bash
# install.sh — tubeloop on a server: `scripts/install.sh [PREFIX]` (default /usr/local), as root.
#
# The same set-up as scripts/demo.sh and the image (docker/Dockerfile): tl_deps, tl_web,
# tl_build release, then tl_install PREFIX (`cmake --install`): PREFIX/bin/tubeloopd and
# tubeloop, PREFIX/share/tubeloop/{sql,web}, PREFIX/lib/systemd/system/tubeloopd.service and
# PREFIX/share/tubeloop/tubeloopd.env.example. Then, only where nothing is there yet, the
# settings in /etc/tubeloop (TUBELOOP_ETC): tubeloopd.env from the example and a new PII keys
# file, both root-only. It never overwrites a file, starts nothing and touches no database:
# README "Installing on a server" says what to do next (database, certificate, systemctl).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$TL_TOP"

prefix=${1:-/usr/local}
etc=${TUBELOOP_ETC:-/etc/tubeloop}
[[ $prefix == /* ]] || tl_die "PREFIX must be an absolute path, got '$prefix'"

tl_deps
tl_web
tl_build release
tl_install "$prefix"

mkdir -p "$etc"
chmod 0755 "$etc"
if [[ ! -e $etc/tubeloopd.env ]]; then
  (umask 077 && cp "$prefix/share/tubeloop/tubeloopd.env.example" "$etc/tubeloopd.env")
  tl_say "settings: $etc/tubeloopd.env (edit TUBELOOP_DB and TUBELOOP_LISTEN)"
fi
tl_keys "$prefix/bin/tubeloopd" "$etc/keys"
if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload || tl_die "systemctl daemon-reload failed"
fi

cat <<EOF

tubeloop is installed under $prefix.
  next   put the TLS certificate chain and key in $etc/tls.crt and $etc/tls.key (root-only),
         set TUBELOOP_DB in $etc/tubeloopd.env, then: systemctl enable --now tubeloopd
  keys   $etc/keys — keep a copy somewhere safe: without it no stored ID number can be read
EOF
