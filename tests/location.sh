#!/usr/bin/env bash
# The checkout's location does not matter (issue 14): a fresh clone of this repository's HEAD
# under /var/tmp, with nothing beside it, passes a cheap subset of the tests:
# the command-line tests (they run the built binaries, stages in bubblewrap sandboxes with the
# runner from the clone's libdir when root) and the id vectors (data inside the repository).
# The clone shares this checkout's target directory, so only the workspace's own crates are
# compiled again (for the clone's paths; the registry's are reused). That replaces this
# checkout's builds of them, so tests/run runs it last.
#
#   tests/location.sh           (tests/run runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target=${CARGO_TARGET_DIR:-$repo/target}

start=$(date +%s)
scratch=$(mktemp -d /var/tmp/osbuild-location.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
git clone --quiet --no-hardlinks "$repo" "$scratch/osbuild"
cd "$scratch/osbuild"
[ "$(ls -A "$scratch")" = osbuild ] || { echo "tests/location.sh: $scratch holds more than the clone" >&2; exit 1; }
CARGO_TARGET_DIR=$target OSBUILD_TEST_LIBDIR=$target/libdir \
    timeout 600 cargo test --quiet --test cli --test ids 2>&1 | tee "$scratch/test.log"
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$scratch/test.log" | awk '{s += $1} END {print s + 0}')
echo "tests/location.sh: a clone in $scratch passed cli and ids in $(($(date +%s) - start)) s"
echo "location: ${passed:-0} passed, 0 failed"
