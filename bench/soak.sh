#!/usr/bin/env bash
# Soak of osbuildd, as root: BUILDS builds (default 200) of varied manifests, PARALLEL (8) at
# a time, a third cancelled at random moments, the daemon SIGKILLed every 20-30 builds and
# restarted; checks for leaks (processes, mounts, loop devices, tmp/), `osbuild --verify`
# after every kill, and compares every output with the same manifest built alone.
#
#   sudo bench/soak.sh [BUILDS] [PARALLEL] [SEED]     (the figures are printed as JSON)
#   SOAK_BIN=DIR sudo bench/soak.sh ...   uses osbuild, osbuildd and osbuildctl from DIR (say,
#                                         copies of another build, to compare two) unbuilt
#
# Needs: dbus-daemon, busctl, python3; no polkitd (root is allowed without it).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
bin=${SOAK_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet --release --bin osbuild --bin osbuildd --bin osbuildctl
    bin=$target/release
fi
[ -e "$target/libdir/stages/org.osbuild.noop" ] || ./install.sh libdir "$target/libdir" >/dev/null

work=$(mktemp -d /var/tmp/osbuild-soak-XXXXXX)
chmod 755 "$work"
bus_pid=
cleanup() {
    [ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

. bench/private-bus.sh
start_private_bus "$work"

cp -a "$target/libdir" "$work/lib"
cp tests/stages/* "$work/lib/stages/"
python3 bench/soak.py "$(realpath "$bin")" "$work/lib" "$work" "${1:-200}" "${2:-8}" "${3:-1}"
