#!/bin/bash
# Benchmark (not a test): org.osbuild.files against `curl --parallel` on the same files in the
# same run. 200 files of 1 MiB are served from 127.0.0.1 by python3's http.server; each side
# downloads all of them into an empty directory, 3 times, and the best time is reported.
# Our source also verifies every sha256 while it downloads; curl's figure is given with and
# without a `sha256sum -c` afterwards. Both run 16 transfers at once.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BENCH_CACHE:-/var/tmp/osbuild-bench-sources}
N=${BENCH_FILES:-200}
PARALLEL=${BENCH_PARALLEL:-16}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --release -q -p osbuild-sources
BIN=$CARGO_TARGET_DIR/release/osbuild-sources

mkdir -p "$CACHE/files"
if [ ! -e "$CACHE/.files-done-$N" ]; then
    for i in $(seq 1 "$N"); do head -c 1048576 /dev/urandom > "$CACHE/files/f$i"; done
    touch "$CACHE/.files-done-$N"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# python's http.server with a listen backlog of 128 instead of 5: with 16 clients connecting at
# once a backlog of 5 drops SYNs, and the 1 s retransmits, not the clients, decided the result.
python3 - "$CACHE/files" "$port" >/dev/null 2>&1 <<'PY' &
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
Server(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
PY
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/f1" && break; sleep 0.1; done

# The request for our source, curl's config and sha256sum's list, for the same URLs.
(cd "$CACHE/files" && sha256sum $(seq -f 'f%g' 1 "$N")) > "$CACHE/sums"
python3 - "$CACHE" "$port" "$PARALLEL" <<'PY'
import json, sys
cache, port, parallel = sys.argv[1], sys.argv[2], int(sys.argv[3])
urls, checks = {}, []
with open(f"{cache}/curl.cfg", "w") as cfg:
    for line in open(f"{cache}/sums"):
        digest, name = line.split()
        c = f"sha256:{digest}"
        urls[c] = f"http://127.0.0.1:{port}/{name}"
        checks.append(c)
        cfg.write(f'url = "http://127.0.0.1:{port}/{name}"\noutput = "{name}"\n')
req = {"options": {"urls": urls, "parallel": parallel}, "secrets": {},
       "cache": f"{cache}/ours/cache", "output": f"{cache}/ours/output", "checksums": checks}
json.dump(req, open(f"{cache}/request.json", "w"))
PY

now() { date +%s.%N; }
best() { sort -n | head -1; }
t_ours=$(for _ in 1 2 3; do
    rm -rf "$CACHE/ours"
    s=$(now); "$BIN" org.osbuild.files < "$CACHE/request.json" > "$CACHE/reply.json"; e=$(now)
    [ "$(cat "$CACHE/reply.json")" = "{}" ] || { cat "$CACHE/reply.json" >&2; exit 1; }
    echo "$e - $s" | bc; done | best)
t_cached=$(for _ in 1 2 3; do
    rm -rf "$CACHE/ours/output"
    s=$(now); "$BIN" org.osbuild.files < "$CACHE/request.json" > /dev/null; e=$(now)
    echo "$e - $s" | bc; done | best)
t_curl=$(for _ in 1 2 3; do
    rm -rf "$CACHE/curl" && mkdir -p "$CACHE/curl"
    s=$(now); (cd "$CACHE/curl" && curl -sSf --no-progress-meter --parallel --parallel-max "$PARALLEL" -K "$CACHE/curl.cfg"); e=$(now)
    echo "$e - $s" | bc; done | best)
t_curl_sum=$(for _ in 1 2 3; do
    rm -rf "$CACHE/curl" && mkdir -p "$CACHE/curl"
    s=$(now)
    (cd "$CACHE/curl" && curl -sSf --no-progress-meter --parallel --parallel-max "$PARALLEL" -K "$CACHE/curl.cfg" && sha256sum --quiet -c "$CACHE/sums")
    e=$(now); echo "$e - $s" | bc; done | best)

mbs() { echo "scale=0; $N / $1" | bc; }
echo "$N files of 1 MiB from 127.0.0.1, $PARALLEL at once, best of 3:"
printf '  org.osbuild.files (download + sha256): %6.3fs  %5s MiB/s\n' "$t_ours" "$(mbs "$t_ours")"
printf '  curl --parallel:                       %6.3fs  %5s MiB/s\n' "$t_curl" "$(mbs "$t_curl")"
printf '  curl --parallel + sha256sum -c:        %6.3fs  %5s MiB/s\n' "$t_curl_sum" "$(mbs "$t_curl_sum")"
printf '  org.osbuild.files, all cached (re-verify + link): %6.3fs\n' "$t_cached"
