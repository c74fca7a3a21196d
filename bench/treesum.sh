#!/bin/bash
# Benchmark (not a test): treesum throughput vs openssl, the commit of a 2 GiB sparse raw image
# vs openssl hashing it, and object initialisation vs cp -a. Needs root (mounts). Each figure is
# the median of interleaved runs (ours, then the peer's); the load average is printed beside it
# (the machine may be shared), and so is our CPU time (user+sys), which load does not change.
#   bench/treesum.sh           builds a ~1 GiB tree once under /var/tmp (cached), then reports
#   bench/treesum.sh --smoke   CI: debug build, a small tree and image in a temporary directory,
#                              one run each; checks that it all works, asserts no timing
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
[ "$(id -u)" = 0 ] || { echo "bench/treesum.sh: needs root" >&2; exit 1; }
if [ "${1:-}" = --smoke ]; then
    CACHE=$(mktemp -d /var/tmp/osbuild-bench-smoke.XXXXXX)
    trap 'rm -rf "$CACHE"' EXIT
    want_mib=16 sparse_mib=32 runs=1
    cargo build --example store_bench -q
    BIN=$CARGO_TARGET_DIR/debug/examples/store_bench
    share=src   # this checkout's sources: small files, always there
else
    CACHE=${BENCH_CACHE:-/var/tmp/osbuild-bench}
    want_mib=1024 sparse_mib=2048 runs=3
    cargo build --release --example store_bench -q
    BIN=$CARGO_TARGET_DIR/release/examples/store_bench
    share=/usr/share
fi
TREE=$CACHE/tree
STORE=$CACHE/store

if [ ! -e "$CACHE/.tree-done" ]; then
    rm -rf "$TREE"; mkdir -p "$TREE/big"
    cp -a "$share" "$TREE/share"
    have=$(du -sb "$TREE" | cut -f1)
    want=$((want_mib * 1024 * 1024))
    i=0
    while [ "$have" -lt "$want" ]; do
        n=$(( (want - have) / 1048576 )); [ "$n" -gt 128 ] && n=128; [ "$n" -lt 1 ] && n=1
        head -c "${n}M" /dev/urandom > "$TREE/big/file$i"
        have=$((have + n * 1048576)); i=$((i + 1))
    done
    touch "$CACHE/.tree-done"
fi

bytes=$(find "$TREE" -type f -print0 | du -cb --files0-from=- | tail -1 | cut -f1)
files=$(find "$TREE" -type f | wc -l)
echo "tree: $TREE, $files files, $((bytes / 1048576)) MiB of file data"
# Warm the page cache so both sides read from memory.
find "$TREE" -type f -print0 | xargs -0 cat > /dev/null

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
# `secs CMD...`: runs CMD, prints its wall seconds; its CPU seconds (user+sys) go to $CACHE/cpu.
secs() {
    local TIMEFORMAT='%R %U %S' t
    t=$( { time "$@" > /dev/null; } 2>&1 )
    echo "$t" | awk '{print $2 + $3}' >> "$CACHE/cpu"
    echo "$t" | awk '{print $1}'
}
openssl_tree() { (cd "$TREE" && find . -type f -print0 | xargs -0 cat | openssl dgst -sha256); }
: > "$CACHE/ours.times"; : > "$CACHE/openssl.times"; : > "$CACHE/cpu"
echo "load before: $(load)"
for _ in $(seq "$runs"); do
    secs "$BIN" treesum "$TREE" >> "$CACHE/ours.times"
    s=$(now); openssl_tree > /dev/null; e=$(now); echo "$e - $s" | bc >> "$CACHE/openssl.times"
done
t_ours=$(median < "$CACHE/ours.times")
t_openssl=$(median < "$CACHE/openssl.times")
cpu_ours=$(median < "$CACHE/cpu")
mbs() { echo "scale=1; $bytes / 1048576 / $1" | bc; }
echo "treesum:        $(mbs "$t_ours") MiB/s (${t_ours}s, cpu ${cpu_ours}s; load $(load))"
echo "openssl sha256: $(mbs "$t_openssl") MiB/s (${t_openssl}s)"
echo "ratio:          $(echo "scale=2; $t_openssl / $t_ours" | bc)"

# A raw disk image as an assembler leaves it: mostly holes. Its commit hashes every byte, but
# reads only the data (a fresh store each run); the peer hashes the same image with openssl.
"$BIN" write-sparse "$CACHE/sparse.raw" "$sparse_mib"
: > "$CACHE/commit.times"; : > "$CACHE/openssl-sparse.times"
for _ in $(seq "$runs"); do
    s=$(mktemp -d "$CACHE/sparse-store.XXXX")
    "$BIN" commit-sparse "$s" "$sparse_mib" | awk '{print $2}' >> "$CACHE/commit.times"
    rm -rf "$s"
    s=$(now); openssl dgst -sha256 "$CACHE/sparse.raw" > /dev/null; e=$(now)
    echo "$e - $s" | bc >> "$CACHE/openssl-sparse.times"
done
rm -f "$CACHE/sparse.raw"
t_commit=$(median < "$CACHE/commit.times")
t_openssl_sparse=$(median < "$CACHE/openssl-sparse.times")
echo "commit of a ${sparse_mib} MiB sparse raw image: ${t_commit}s (load $(load))"
echo "openssl sha256 of the same image:          ${t_openssl_sparse}s"
echo "ratio:                                      $(echo "scale=2; $t_openssl_sparse / $t_commit" | bc)"

if [ ! -e "$CACHE/.store-done" ]; then
    rm -rf "$STORE"
    "$BIN" import "$TREE" "$STORE"
    touch "$CACHE/.store-done"
fi
obj=$(readlink -f "$STORE/refs/$(printf 'be%.0s' $(seq 32))")
# Alternate the two so that both see the same machine load; the median of each.
: > "$CACHE/cp.times"; : > "$CACHE/init.times"
for _ in $(seq "$runs"); do
    sync; "$BIN" init "$STORE" | awk '{print $2}' >> "$CACHE/init.times"
    dst=$(mktemp -d "$STORE/tmp/cp-bench.XXXX")
    sync; s=$(date +%s.%N); cp -a --reflink=auto "$obj/." "$dst"; e=$(date +%s.%N)
    rm -rf "$dst"; echo "$e - $s" | bc >> "$CACHE/cp.times"
done
t_cp=$(median < "$CACHE/cp.times")
t_init=$(median < "$CACHE/init.times")
echo "object init (new_object+write): ${t_init}s"
echo "cp -a --reflink=auto:           ${t_cp}s"
