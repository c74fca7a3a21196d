#!/usr/bin/env bash
# v2 per-stage overhead, ours vs osbuild HEAD, in the same run (not a test). As root:
#   bench/v2-head.sh OSBUILD_HEAD_CHECKOUT
# A v2 manifest of one pipeline with 20 stages of HEAD's protocol (a shell stage that reads
# nothing and exits 0, with a schema_2 meta file), exported, built 3 times by each engine,
# interleaved; prints the medians and the ratio per stage. Each engine uses its own libdir and
# runner (ours: target/libdir; HEAD: its checkout). HEAD needs python3-jsonschema and
# /etc/containers; never commit the checkout.
# Two rounds: on a fresh store each time (a first build ever), and on a warm store (one that
# has built before, as a service's has; each build has its own options, so none of its stages
# is cached: what a warm store saves is the build root's kept set-up, which HEAD does not keep).
# `--fresh` runs only the first round.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="fresh warm"
[ "${1:-}" = --fresh ] && { rounds=fresh; shift; }
head_dir=${1:?usage: bench/v2-head.sh [--fresh] OSBUILD_HEAD_CHECKOUT}
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

manifest() { # manifest NONCE: the 20-stage manifest, its options made unique by NONCE
    python3 - "$work/m.json" "$1" <<'PY'
import json, sys
stages = [{"type": "org.osbuild.bench.head-noop", "options": {"i": i, "run": sys.argv[2]}}
          for i in range(20)]
with open(sys.argv[1], "w") as f:
    json.dump({"version": "2", "pipelines": [{"name": "os", "stages": stages}]}, f)
PY
}

now() { date +%s.%N; }
build() { # build ENGINE STORE: one build of m.json, output discarded
    local out="$work/out"
    rm -rf "$out"
    case $1 in
        ours) target/release/osbuild --libdir "$work/ours" --store "$2" \
                  --output-directory "$out" --export os --json "$work/m.json" >/dev/null ;;
        head) (cd "$work/head" && python3 -m osbuild --libdir . --store "$2" \
                  --output-directory "$out" --export os --json "$work/m.json" >/dev/null) ;;
    esac
}
run() { # run ENGINE ROUND N: seconds for one build, on a fresh store or on the engine's warm one
    local store="$work/store-$1-$2" t0
    [ "$2" = fresh ] && rm -rf "$store"
    manifest "$2-$3"
    t0=$(now)
    build "$1" "$store"
    echo "$(now) - $t0" | bc -l
}
median() { sort -g | sed -n 2p; }
for round in $rounds; do
    if [ "$round" = warm ]; then
        for engine in ours head; do manifest "warm-up"; build "$engine" "$work/store-$engine-warm"; done
    fi
    ours=() head=()
    for n in 1 2 3; do
        ours+=("$(run ours "$round" "$n")")
        head+=("$(run head "$round" "$n")")
    done
    o=$(printf '%s\n' "${ours[@]}" | median)
    h=$(printf '%s\n' "${head[@]}" | median)
    printf '%-5s store: ours %.3f s (%.1f ms per stage)   HEAD %.3f s (%.1f ms per stage)   ratio %.3f\n' \
        "$round" "$o" "$(echo "$o * 50" | bc -l)" "$h" "$(echo "$h * 50" | bc -l)" "$(echo "$o / $h" | bc -l)"
done
