#!/usr/bin/env bash
# Soak of osbuildd, as root: BUILDS builds (default 200) of varied manifests, PARALLEL (8) at
# a time, a third cancelled at random moments, the daemon SIGKILLed every 20-30 builds and
# restarted; checks for leaks (processes, mounts, loop devices, tmp/), `osbuild --verify`
# after every kill, and compares every output with the same manifest built alone.
#
#   sudo bench/soak.sh [BUILDS] [PARALLEL] [SEED]     (the figures are printed as JSON)
#
# Needs: dbus-daemon, busctl, python3; no polkitd (root is allowed without it).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --bin osbuild --bin osbuildd --bin osbuildctl
[ -e "$target/libdir/stages/org.osbuild.noop" ] || ./install.sh libdir "$target/libdir" >/dev/null

work=$(mktemp -d /var/tmp/osbuild-soak-XXXXXX)
chmod 755 "$work"
bus=
cleanup() {
    [ -n "$bus" ] && kill "$bus" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>
CONF
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile >/dev/null 2>&1 & bus=$!
for _ in $(seq 50); do [ -S "$work/bus" ] && break; sleep 0.1; done

cp -a "$target/libdir" "$work/lib"
cp tests/stages/* "$work/lib/stages/"
python3 bench/soak.py "$(realpath "$target/release")" "$work/lib" "$work" "${1:-200}" "${2:-8}" "${3:-1}"
