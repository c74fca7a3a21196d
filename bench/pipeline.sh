#!/usr/bin/env bash
# Pipeline overhead benchmark (not a test). As root:
#   bench/pipeline.sh [OSBUILD_HEAD_CHECKOUT]
#   OSBUILD_BASELINE=DIR bench/pipeline.sh    # DIR holds another build's `osbuild` and `libdir`
#                                             # (e.g. of an older commit): ours vs it, same run
#   bench/pipeline.sh --smoke                 # CI: debug build, 3 stages, a 4 MiB stage, one
#                                             # run, no HEAD, no baseline; checks it all works
# Measures 20 noop stages (per-stage overhead), the same manifest fully cached, and one stage
# that writes a 500 MiB tree with a checkpoint. Each engine builds on a warm store of its own
# (it has built before, as a service's store has; every sample's options are new, so no stage
# of it is cached: what a warm store keeps is the build root's set-up). Given a checkout of
# osbuild HEAD (never commit it; it needs python3-jsonschema and /etc/containers), it runs the
# same manifests there in the same run and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=false
if [ "${1:-}" = --smoke ]; then smoke=true; shift; fi
head_dir=${1:-}
[ "$(id -u)" = 0 ] || { echo "bench/pipeline.sh: needs root" >&2; exit 1; }

./install.sh libdir target/libdir >/dev/null
work=$(mktemp -d /var/tmp/osbuild-bench-pipeline.XXXXXX)
trap 'rm -rf "$work"' EXIT
lib="$work/lib"
cp -a target/libdir "$lib"
cp bench/stages/* "$lib/stages/"
if $smoke; then
    stages=3 big_mib=4
    cargo build --quiet --bin osbuild
    osbuild="target/debug/osbuild"
    sed -i 's/OSBUILD_BENCH_MIB:-500/OSBUILD_BENCH_MIB:-4/' "$lib/stages/org.osbuild.bench.write"
    head_dir= OSBUILD_BASELINE=
else
    stages=20 big_mib=500
    cargo build --quiet --release --bin osbuild
    osbuild="target/release/osbuild"
fi

write_manifests() { # write_manifests NONCE: noop20.json and big.json, made new by NONCE
    python3 - "$work" "$stages" "$1" <<'PY'
import json, sys
w, n, nonce = sys.argv[1], int(sys.argv[2]), sys.argv[3]
noop = {"pipeline": {"stages": [{"name": "org.osbuild.noop", "options": {"i": i, "run": nonce}}
                                for i in range(n)]}}
big = {"pipeline": {"stages": [{"name": "org.osbuild.bench.write", "options": {"run": nonce}}]}}
for name, m in (("noop20", noop), ("big", big)):
    with open(f"{w}/{name}.json", "w") as f:
        json.dump(m, f)
PY
}
write_manifests first
now() { date +%s.%N; }
# elapsed CMD...: seconds the command took (its output discarded).
elapsed() { local t0; t0=$(now); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; echo "$(now) - $t0" | bc -l; }
last_id() { "$osbuild" --libdir "$lib" --inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pipeline"]["stages"][-1]["id"])'; }

ours() { # ours MANIFEST STORE CHECKPOINT
    "$osbuild" --store "$2" --libdir "$lib" --checkpoint "$3" "$1"
}
theirs() { # theirs MANIFEST STORE
    (cd "$head_dir" && python3 -m osbuild --libdir "$hlib" --store "$2" --cache-max-size unlimited \
        --checkpoint '*' --export tree --output-directory "$2.out" "$1")
}

median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
# measure NAME RUNNER: cold and cached times of both manifests with RUNNER (ours or base)
# into t[NAME_cold_M] / t[NAME_cached_M], appending one sample per call.
declare -A t
samples=0
measure() {
    local m id
    samples=$((samples + 1))
    write_manifests "$1-$samples"
    for m in noop20 big; do
        id=$(last_id "$work/$m.json")
        t[$1_cold_$m]+=" $(elapsed "$2" "$work/$m.json" "$work/s-$1" "$id")"
        t[$1_cached_$m]+=" $(elapsed "$2" "$work/$m.json" "$work/s-$1" "$id")"
    done
}
report() { # report NAME: medians of NAME's samples into m[NAME_*], printed
    local k
    for k in cold_noop20 cached_noop20 cold_big; do
        # shellcheck disable=SC2086
        m[$1_$k]=$(median ${t[$1_$k]})
    done
    printf '%-9s %d noop stages %.3f s (%.1f ms/stage), cached rebuild %.1f ms, %d MiB stage %.2f s\n' \
        "$1:" "$stages" "${m[$1_cold_noop20]}" "$(echo "${m[$1_cold_noop20]} * 1000 / $stages" | bc -l)" \
        "$(echo "${m[$1_cached_noop20]} * 1000" | bc -l)" "$big_mib" "${m[$1_cold_big]}"
}
declare -A m

if [ -n "${OSBUILD_BASELINE:-}" ]; then
    blib="$work/base-lib"
    cp -a "$OSBUILD_BASELINE/libdir" "$blib"
    cp bench/stages/* "$blib/stages/"
    base() { "$OSBUILD_BASELINE/osbuild" --store "$2" --libdir "$blib" --checkpoint "$3" "$1"; }
    measure ours ours; measure base base; unset 't[ours_cold_noop20]' 't[ours_cached_noop20]' \
        't[ours_cold_big]' 't[base_cold_noop20]' 't[base_cached_noop20]' 't[base_cold_big]' # warm-up
    for _ in 1 2 3 4 5; do measure ours ours; measure base base; done   # interleaved
    report ours
    report base
    printf 'ratio (ours/baseline, medians of 5 interleaved): per stage %.2f, cached rebuild %.2f, 500 MiB stage %.2f\n' \
        "$(echo "${m[ours_cold_noop20]} / ${m[base_cold_noop20]}" | bc -l)" \
        "$(echo "${m[ours_cached_noop20]} / ${m[base_cached_noop20]}" | bc -l)" \
        "$(echo "${m[ours_cold_big]} / ${m[base_cold_big]}" | bc -l)"
else
    $smoke || { measure ours ours; unset 't[ours_cold_noop20]' 't[ours_cached_noop20]' 't[ours_cold_big]'; }
    measure ours ours
    report ours
fi
t[ours_cold_noop20]=${m[ours_cold_noop20]}
t[ours_cached_noop20]=${m[ours_cached_noop20]}
t[ours_cold_big]=${m[ours_cold_big]}

if [ -n "$head_dir" ]; then
    mkdir -p /etc/containers
    hlib="$work/head-lib"
    cp -a "$head_dir" "$hlib"
    cp bench/stages/* "$hlib/stages/"
    for m in noop20 big; do
        rm -rf "$work/s-head" "$work/s-head.out"
        t[head_cold_$m]=$(elapsed theirs "$work/$m.json" "$work/s-head")
        t[head_cached_$m]=$(elapsed theirs "$work/$m.json" "$work/s-head")
    done
    printf 'HEAD:  20 noop stages %.3f s (%.1f ms/stage), cached rebuild %.1f ms, 500 MiB stage %.2f s\n' \
        "${t[head_cold_noop20]}" "$(echo "${t[head_cold_noop20]} * 1000 / 20" | bc -l)" \
        "$(echo "${t[head_cached_noop20]} * 1000" | bc -l)" "${t[head_cold_big]}"
    printf 'ratio (ours/HEAD): per stage 1/%.1f, cached rebuild 1/%.1f, 500 MiB stage %.2f\n' \
        "$(echo "${t[head_cold_noop20]} / ${t[ours_cold_noop20]}" | bc -l)" \
        "$(echo "${t[head_cached_noop20]} / ${t[ours_cached_noop20]}" | bc -l)" \
        "$(echo "${t[ours_cold_big]} / ${t[head_cold_big]}" | bc -l)"
fi
