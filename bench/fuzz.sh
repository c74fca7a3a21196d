#!/bin/bash
# Fuzzing (not a test): every parser that reads a client's, a manifest's or a sandbox's input,
# 100,000 inputs per target by default. Prints per target: inputs, time, inputs/s, panics,
# hangs, crashes and the worker's RSS after warm-up and at the end; exits non-zero on any
# failure. Failing inputs land in target/fuzz-failures/ with the command that replays them.
#
#   bench/fuzz.sh                           all targets, 100,000 inputs each, seed 1
#   ITERATIONS=1000000 SEED=7 bench/fuzz.sh
#   TARGET=json bench/fuzz.sh               one target (bench/fuzz.sh --list names them)
#
# Needs nothing but cargo; no root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --release -q -p osbuild-fuzz
BIN=$CARGO_TARGET_DIR/release/osbuild-fuzz
if [ "${1:-}" = --list ]; then exec "$BIN" --list; fi
exec "$BIN" --target "${TARGET:-all}" --iterations "${ITERATIONS:-100000}" --seed "${SEED:-1}" \
    --out "$CARGO_TARGET_DIR/fuzz-failures"
