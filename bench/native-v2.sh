#!/usr/bin/env bash
# Per-stage time of our native v2 stages vs osbuild HEAD's Python ones, same engine, same run
# (not a test). As root:
#   bench/native-v2.sh OSBUILD_HEAD_CHECKOUT
# One v2 manifest (a tree of 200 directories by mkdir, a 512 MiB disk made by truncate and
# mkfs.ext4 through a loopback device, the tree copied in through an ext4 mount, the disk
# converted to qcow2) is built on a fresh store 3 times with each libdir, interleaved: ours
# (target/libdir) and ours with HEAD's org.osbuild.{mkdir,copy,mkfs.ext4,qemu} and its
# `osbuild` Python package put in. Prints the median of each stage's duration (from the
# JSON-seq monitor's "Finished module" records) and the ratio. Never commit the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
head_dir=${1:?usage: bench/native-v2.sh OSBUILD_HEAD_CHECKOUT}
[ "$(id -u)" = 0 ] || { echo "bench/native-v2.sh: needs root" >&2; exit 1; }
measured=(mkdir copy mkfs.ext4 qemu)

./install.sh libdir target/libdir >/dev/null
cargo build --quiet --release --bin osbuild
work=$(mktemp -d /var/tmp/osbuild-bench-native-v2.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a target/libdir "$work/native"
cp -a target/libdir "$work/python"
cp -a "$head_dir/osbuild" "$work/python/osbuild"
for s in "${measured[@]}"; do
    rm -f "$work/python/stages/org.osbuild.$s"{,.meta.json}
    cp "$head_dir/stages/org.osbuild.$s"{,.meta.json} "$work/python/stages/"
done

python3 - "$work/m.json" <<'PY'
import json, sys
dev = {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.raw"}}}
mnt = [{"name": "root", "type": "org.osbuild.ext4", "source": "device", "target": "/"}]
tree = [{"type": "org.osbuild.mkdir", "options": {"paths": [
    {"path": f"/d{i}/sub", "parents": True} for i in range(200)]}}]
image = [
    {"type": "org.osbuild.truncate", "options": {"filename": "disk.raw", "size": "512M"}},
    {"type": "org.osbuild.mkfs.ext4", "options": {"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"},
     "devices": dev},
    {"type": "org.osbuild.copy", "options": {"paths": [{"from": "input://t/", "to": "mount://root/"}]},
     "inputs": {"t": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                      "references": ["name:tree"]}},
     "devices": dev, "mounts": mnt},
]
qcow2 = [{"type": "org.osbuild.qemu",
          "options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}},
          "inputs": {"image": {"type": "org.osbuild.files", "origin": "org.osbuild.pipeline",
                               "references": {"name:image": {"file": "/disk.raw"}}}}}]
json.dump({"version": "2", "pipelines": [
    {"name": "tree", "stages": tree}, {"name": "image", "stages": image},
    {"name": "qcow2", "stages": qcow2}]}, open(sys.argv[1], "w"))
PY

run() { # run LIBDIR: one build on a fresh store; appends "stage seconds" lines to LIBDIR.times
    local lib=$1 store="$work/store" out="$work/out"
    rm -rf "$store" "$out"
    target/release/osbuild --libdir "$work/$lib" --store "$store" --output-directory "$out" \
        --export qcow2 --monitor=JSONSeqMonitor --monitor-fd=3 --json "$work/m.json" \
        3>"$work/monitor" >/dev/null
    python3 - "$work/monitor" >>"$work/$lib.times" <<'PY'
import json, sys
names = {}
for rec in open(sys.argv[1]).read().split("\x1e"):
    if not rec.strip():
        continue
    r = json.loads(rec)
    ctx = r.get("context", {})
    stage = ctx.get("pipeline", {}).get("stage", {})
    if stage.get("name"):
        names[ctx.get("id")] = stage["name"]
    if "duration" in r and names.get(ctx.get("id")):
        print(names[ctx["id"]].removeprefix("org.osbuild."), r["duration"])
PY
}
for _ in 1 2 3; do
    run native
    run python
done
median() { sort -g | sed -n 2p; }
printf '%-10s %12s %12s %8s\n' stage native python ratio
for s in "${measured[@]}"; do
    n=$(awk -v s="$s" '$1 == s {print $2}' "$work/native.times" | median)
    p=$(awk -v s="$s" '$1 == s {print $2}' "$work/python.times" | median)
    printf '%-10s %10.3f s %10.3f s %8.2f\n' "$s" "$n" "$p" "$(echo "$n / $p" | bc -l)"
done
