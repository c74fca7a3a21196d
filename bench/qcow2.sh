#!/bin/bash
# Benchmark (not a test): our compressed qcow2 writer (crates/qcow2) against its peer,
# `qemu-img convert -c -W -m 16` (qemu-img's fastest compressed qcow2, parallel but in no fixed
# order), on a raw ext4 image. Interleaved runs (ours, then the peer's), medians; prints both,
# the ratio, the sizes, and checks that `qemu-img compare` finds the raw disk in both.
#   bench/qcow2.sh            a 2 GiB sparse raw with /usr/share in it (built once under
#                             /var/tmp/osbuild-bench/qcow2), release build, RUNS=3 runs
#   bench/qcow2.sh --smoke    CI: debug build, a small image of this checkout's sources in a
#                             temporary directory, one run; checks it all works, times nothing
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
for tool in mkfs.ext4 qemu-img; do
    command -v "$tool" > /dev/null || { echo "bench/qcow2.sh: needs $tool" >&2; exit 1; }
done
if [ "${1:-}" = --smoke ]; then
    CACHE=$(mktemp -d /var/tmp/osbuild-bench-qcow2-smoke.XXXXXX)
    trap 'rm -rf "$CACHE"' EXIT
    tree=crates size=64M runs=1
    cargo build -q -p osbuild-qcow2 --example qcow2_convert
    BIN=$CARGO_TARGET_DIR/debug/examples/qcow2_convert
else
    CACHE=${BENCH_CACHE:-/var/tmp/osbuild-bench}/qcow2
    tree=/usr/share size=2G runs=${RUNS:-3}
    cargo build -q --release -p osbuild-qcow2 --example qcow2_convert
    BIN=$CARGO_TARGET_DIR/release/examples/qcow2_convert
fi
mkdir -p "$CACHE"
RAW=$CACHE/disk.raw
if [ ! -e "$CACHE/.raw-done" ]; then
    rm -f "$RAW"
    truncate -s "$size" "$RAW"
    mkfs.ext4 -q -F -E root_owner=0:0 -d "$tree" "$RAW"
    touch "$CACHE/.raw-done"
fi
cat "$RAW" > /dev/null   # page cache warm for both sides
data=$(du -B1 "$RAW" | cut -f1)
echo "raw: $RAW, $(($(stat -c %s "$RAW") >> 20)) MiB virtual, $((data >> 20)) MiB of data ($tree)"

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# `secs SIDE CMD...`: runs CMD; its wall seconds go to $CACHE/SIDE.times, its CPU seconds
# (user+sys, which the load of a shared machine does not change) to $CACHE/SIDE.cpu.
secs() {
    local side=$1 TIMEFORMAT='%R %U %S' t
    shift
    t=$( { time "$@" > /dev/null; } 2>&1 )
    echo "$t" | awk '{print $1}' >> "$CACHE/$side.times"
    echo "$t" | awk '{print $2 + $3}' >> "$CACHE/$side.cpu"
}
: > "$CACHE/ours.times"; : > "$CACHE/peer.times"; : > "$CACHE/ours.cpu"; : > "$CACHE/peer.cpu"
echo "load before: $(load); threads: $(nproc)"
for _ in $(seq "$runs"); do
    rm -f "$CACHE/ours.qcow2" "$CACHE/peer.qcow2"
    secs ours "$BIN" "$RAW" "$CACHE/ours.qcow2"
    secs peer qemu-img convert -f raw -O qcow2 -c -W -m 16 "$RAW" "$CACHE/peer.qcow2"
done
for q in ours peer; do
    qemu-img compare -q -f raw -F qcow2 "$RAW" "$CACHE/$q.qcow2" \
        || { echo "bench/qcow2.sh: $q.qcow2 is not the raw disk" >&2; exit 1; }
    qemu-img check -q -f qcow2 "$CACHE/$q.qcow2" \
        || { echo "bench/qcow2.sh: qemu-img check finds errors in $q.qcow2" >&2; exit 1; }
done
t_ours=$(median < "$CACHE/ours.times")
t_peer=$(median < "$CACHE/peer.times")
c_ours=$(median < "$CACHE/ours.cpu")
c_peer=$(median < "$CACHE/peer.cpu")
mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "ours (osbuild-qcow2):        ${t_ours}s (cpu ${c_ours}s), $(mib "$CACHE/ours.qcow2") MiB (load $(load))"
echo "peer (qemu-img -c -W -m 16): ${t_peer}s (cpu ${c_peer}s), $(mib "$CACHE/peer.qcow2") MiB"
echo "ratio ours/peer:             $(echo "scale=2; $t_ours / $t_peer" | bc) wall, $(echo "scale=2; $c_ours / $c_peer" | bc) cpu"
rm -f "$CACHE/ours.qcow2" "$CACHE/peer.qcow2"
