#!/bin/bash
# Benchmark (not a test): treesum throughput vs openssl, the commit of a 2 GiB sparse raw image,
# and object initialisation vs cp -a. Needs root (mounts).
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

best() { sort -n | head -1; }
t_openssl=$(for _ in $(seq "$runs"); do
    s=$(date +%s.%N); (cd "$TREE" && find . -type f -print0 | xargs -0 cat | openssl dgst -sha256 >/dev/null)
    e=$(date +%s.%N); echo "$e - $s" | bc; done | best)
t_ours=$(for _ in $(seq "$runs"); do "$BIN" treesum "$TREE" | awk '{print $3}'; done | best)
mbs() { echo "scale=1; $bytes / 1048576 / $1" | bc; }
echo "treesum:        $(mbs "$t_ours") MB/s (${t_ours}s)"
echo "openssl sha256: $(mbs "$t_openssl") MB/s (${t_openssl}s)"
echo "ratio:          $(echo "scale=2; $t_openssl / $t_ours" | bc)"

# A raw disk image as an assembler leaves it: mostly holes. Its commit hashes every byte, but
# reads only the data (a fresh store each run).
t_sparse=$(for _ in $(seq "$runs"); do
    s=$(mktemp -d "$CACHE/sparse-store.XXXX")
    "$BIN" commit-sparse "$s" "$sparse_mib" | awk '{print $2}'
    rm -rf "$s"; done | best)
echo "commit of a ${sparse_mib} MiB sparse raw image: ${t_sparse}s"

if [ ! -e "$CACHE/.store-done" ]; then
    rm -rf "$STORE"
    "$BIN" import "$TREE" "$STORE"
    touch "$CACHE/.store-done"
fi
obj=$(readlink -f "$STORE/refs/$(printf 'be%.0s' $(seq 32))")
# Alternate the two so that both see the same machine load; keep the best of three each.
: > "$CACHE/cp.times"; : > "$CACHE/init.times"
for _ in $(seq "$runs"); do
    sync; "$BIN" init "$STORE" | awk '{print $2}' >> "$CACHE/init.times"
    dst=$(mktemp -d "$STORE/tmp/cp-bench.XXXX")
    sync; s=$(date +%s.%N); cp -a --reflink=auto "$obj/." "$dst"; e=$(date +%s.%N)
    rm -rf "$dst"; echo "$e - $s" | bc >> "$CACHE/cp.times"
done
t_cp=$(best < "$CACHE/cp.times")
t_init=$(best < "$CACHE/init.times")
echo "object init (new_object+write): ${t_init}s"
echo "cp -a --reflink=auto:           ${t_cp}s"
