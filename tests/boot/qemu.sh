#!/usr/bin/env bash
# A private qemu-system-x86_64 for boot tests: `tests/boot/qemu.sh QEMU-ARGS...`.
#
# Debian 12's qemu-system-x86 (7.2) cannot be installed next to this machine's qemu-utils 10
# (qemu-utils Breaks qemu-system-common << 8, so apt would remove qemu-img). Instead its .debs
# (only those the host lacks, resolved against the host's dpkg status) are downloaded by apt and
# unpacked with dpkg-deb -x into a cache directory, reused across runs; nothing is installed.
#
#   OSBUILD_QEMU_CACHE   the cache directory (default /var/tmp/osbuild-test-qemu)
#   tests/boot/qemu.sh --prepare   only fill the cache (prints the binary's path)
#
# No KVM is assumed: pass -accel tcg.
set -euo pipefail

cache=${OSBUILD_QEMU_CACHE:-/var/tmp/osbuild-test-qemu}
root=$cache/root
bin=$root/usr/bin/qemu-system-x86_64

prepare() {
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9                      # concurrent first runs fill the cache once
    [ -x "$bin" ] && [ -e "$cache/.complete" ] && return 0
    rm -rf "$cache/debs" "$root" "$cache/.complete"
    mkdir -p "$cache/debs/partial" "$root"
    DEBIAN_FRONTEND=noninteractive apt-get install --download-only -y -qq --no-install-recommends \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
        -o Dir::Cache::archives="$cache/debs" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
        qemu-system-x86 >&2 \
        || { echo "qemu.sh: cannot download qemu-system-x86 (apt-get update? network?)" >&2; exit 2; }
    local n=0
    for f in "$cache"/debs/*.deb; do dpkg-deb -x "$f" "$root"; n=$((n + 1)); done
    [ -x "$bin" ] || { echo "qemu.sh: $bin missing after unpacking $n packages" >&2; exit 2; }
    touch "$cache/.complete"
}

prepare
exec 9>&-                        # release the lock: qemu must not hold it
if [ "${1:-}" = --prepare ]; then
    echo "$bin"
    exit 0
fi
# Absolute symlinks in the firmware directories (bios-256k.bin -> /usr/share/seabios/...) point
# outside the private root, hence the extra -L directories.
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$bin" -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" -L "$root/usr/lib/ipxe/qemu" "$@"
