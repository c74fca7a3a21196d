#!/usr/bin/env bash
# Benchmark of osbuildd (as root): the Build -> JobFinished round trip of a fully cached
# manifest (measured as a whole `osbuildctl build` run, so it includes the client's start-up and
# bus connection), and the daemon's RSS when idle and while a build runs.
#
#   bench/service.sh [LIBDIR]      (LIBDIR defaults to target/libdir; ./install.sh libdir makes it)
#
# Needs: dbus-daemon; no polkitd (root is allowed without it). Targets: round trip <= 30 ms,
# idle RSS <= 15 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
libdir=$(realpath "${1:-target/libdir}")
target=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release --bin osbuildd --bin osbuildctl
bin="$target/release"

work=$(mktemp -d /var/tmp/osbuild-bench-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "bench: $*" >&2; cat "$work/osbuildd.log" >&2 2>/dev/null; exit 1; }

. bench/private-bus.sh
start_private_bus "$work"
pids+=("$bus_pid")

cp -a "$libdir" "$work/lib"
cp tests/stages/* "$work/lib/stages/"
RUST_LOG=warn "$bin/osbuildd" --address "$addr" --store "$work/store" --libdir "$work/lib" 2>"$work/osbuildd.log" & dpid=$!
pids+=($dpid)
for _ in $(seq 100); do
    busctl --address="$addr" --timeout=2 call org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus NameHasOwner s org.osbuild.Builder1 2>/dev/null | grep -q true && break
    sleep 0.1
done

kill -0 "$dpid" 2>/dev/null || fail "osbuildd did not start"
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$dpid/status"; }
echo "idle RSS (fresh):      $(rss)"

cat > "$work/m.json" <<'JSON'
{"pipeline": {"stages": [{"name": "org.osbuild.test.record"}],
 "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}}
JSON
"$bin/osbuildctl" --address "$addr" build "$work/m.json" >/dev/null
echo "idle RSS (after 1 build): $(rss)"

n=50
start=$(date +%s%N)
for _ in $(seq $n); do "$bin/osbuildctl" --address "$addr" build --json "$work/m.json" >/dev/null; done
end=$(date +%s%N)
echo "cached Build->JobFinished round trip (osbuildctl build, mean of $n): $(( (end - start) / n / 1000 )) us"

echo '{"pipeline": {"stages": [{"name": "org.osbuild.test.sleep"}]}}' > "$work/s.json"
job=$("$bin/osbuildctl" --address "$addr" build --detach "$work/s.json")
sleep 2
echo "busy RSS (a stage running): $(rss)"
"$bin/osbuildctl" --address "$addr" cancel "$job"
sleep 1
echo "idle RSS (after cancel):  $(rss)"
