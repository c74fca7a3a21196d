#!/usr/bin/env bash
# v2 per-stage overhead, ours vs osbuild HEAD, in the same run (not a test). As root:
#   bench/v2-head.sh OSBUILD_HEAD_CHECKOUT
# A v2 manifest of one pipeline with 20 stages of HEAD's protocol (a shell stage that reads
# nothing and exits 0, with a schema_2 meta file), exported, built on a fresh store 3 times by
# each engine, interleaved; prints the medians and the ratio per stage. Each engine uses its
# own libdir and runner (ours: target/libdir; HEAD: its checkout). HEAD needs
# python3-jsonschema and /etc/containers; never commit the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
head_dir=${1:?usage: bench/v2-head.sh OSBUILD_HEAD_CHECKOUT}
[ "$(id -u)" = 0 ] || { echo "bench/v2-head.sh: needs root" >&2; exit 1; }

./install.sh libdir target/libdir >/dev/null
cargo build --quiet --release --bin osbuild
work=$(mktemp -d /var/tmp/osbuild-bench-v2.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a target/libdir "$work/ours"
mkdir -p "$work/head"
cp -a "$head_dir"/{osbuild,stages,inputs,devices,mounts,sources,runners,schemas} "$work/head/"
for lib in "$work/ours" "$work/head"; do
    cp bench/stages/org.osbuild.bench.head-noop{,.meta.json} "$lib/stages/"
done
mkdir -p /etc/containers

python3 - "$work" <<'PY'
import json, sys
stages = [{"type": "org.osbuild.bench.head-noop", "options": {"i": i}} for i in range(20)]
with open(f"{sys.argv[1]}/m.json", "w") as f:
    json.dump({"version": "2", "pipelines": [{"name": "os", "stages": stages}]}, f)
PY

now() { date +%s.%N; }
run() { # run ENGINE: seconds for one build on a fresh store
    local store="$work/store" out="$work/out" t0
    rm -rf "$store" "$out"
    t0=$(now)
    case $1 in
        ours) target/release/osbuild --libdir "$work/ours" --store "$store" \
                  --output-directory "$out" --export os --json "$work/m.json" >/dev/null ;;
        head) (cd "$work/head" && python3 -m osbuild --libdir . --store "$store" \
                  --output-directory "$out" --export os --json "$work/m.json" >/dev/null) ;;
    esac
    echo "$(now) - $t0" | bc -l
}
median() { sort -g | sed -n 2p; }
ours=() head=()
for _ in 1 2 3; do
    ours+=("$(run ours)")
    head+=("$(run head)")
done
o=$(printf '%s\n' "${ours[@]}" | median)
h=$(printf '%s\n' "${head[@]}" | median)
printf 'ours: %.3f s (%.1f ms per stage)   HEAD: %.3f s (%.1f ms per stage)   ratio %.3f\n' \
    "$o" "$(echo "$o * 50" | bc -l)" "$h" "$(echo "$h * 50" | bc -l)" "$(echo "$o / $h" | bc -l)"
