#!/usr/bin/env bash
# Bootable Debian 12 image benchmark (not a test). As root, with apt lists and a mirror:
#   bench/debian-image.sh [--no-boot]
#   bench/debian-image.sh --smoke   CI: debug build, one run of ours (zlib and zstd) and the
#                                   peer, no boot, no assembler floor; checks that it all works
#                                   (and the zstd checks below), asserts no timing
# Times, on an empty store (no downloaded .debs, no trees):
#   resolve   osbuild-mkmanifest-debian --image --boot-probe (apt --print-uris)
#   cold      osbuild: download 111 .debs, dpkg stage (checkpointed), fstab, grub2, probe,
#             qemu assembler (qcow2)
#   cached    the same image with another hostname: the dpkg tree comes from the store, the
#             later stages and the assembler run again
#   boot      private QEMU (tests/boot/qemu.sh, TCG, -smp 2) to the probe's poweroff
# Then, with the .debs cached, the whole image against its peer, interleaved, medians of
# $ROUNDS (default 3) runs, with the ratios:
#   ours      osbuild on a store holding what earlier builds left besides objects (the
#             downloaded sources and the build root's kept set-up, as any store that has the
#             .debs has): every stage and the assembler; split by the module headers of its log
#             into the dpkg stage, the other stages and the assembler (with the commit)
#   peer      bench/mmdebstrap-image.sh: mmdebstrap with the same packages from a local
#             repository of the same .debs, the same files written by hand, sfdisk, mkfs.ext4 -d,
#             grub-mkimage, qemu-img convert -c; its mmdebstrap step against our dpkg stage
#   ours zstd the same manifest made with --qcow2-compression zstd: ANOTHER OUTPUT FORMAT (a
#             qcow2 with zstd clusters, which only qemu >= 5.1 reads), so its ratio against the
#             same peer is listed apart from the headline one
# Each of our runs checks its qcow2's compression type (qemu-img info); then the qemu assembler
# is run directly on one finished tree twice as a reproducible build (SOURCE_DATE_EPOCH), with
# zlib and with zstd clusters, and `qemu-img compare` must find the same disk in both.
# Then, on the finished tree, the qemu assembler against its floor, interleaved, medians of
# $ROUNDS runs, with the ratio:
#   assembler osbuild with the tree in the store: the qemu assembler alone (sandbox, sfdisk,
#             mkfs.ext4 -d, grub, qemu-img convert, commit)
#   floor     by hand on the same tree: mkfs.ext4 -d into a sparse raw file at the root
#             partition's offset, then the assembler's qcow2 writer (crates/qcow2's
#             qcow2_convert) on it
#
# DROP_CACHES=1 writes back and drops the page cache before each timed run of the comparisons
# (both sides alike). On a kernel whose ext4 inode allocation slows down as the block device's
# cache fills (seen on 6.18 without a journal: `cp -a` of the Debian tree 15.6 s, 1.0 s right
# after a drop), runs otherwise get slower one after the other and the medians mean little.
set -euo pipefail
cd "$(dirname "$0")/.."
boot=1 smoke=0 profile=release
case "${1:-}" in
    --no-boot) boot=0 ;;
    --smoke) boot=0 smoke=1 profile=debug ROUNDS=1 ;;
esac
[ "$(id -u)" = 0 ] || { echo "bench/debian-image.sh: needs root" >&2; exit 1; }

./install.sh libdir target/libdir >/dev/null
if [ "$smoke" = 1 ]; then
    cargo build --quiet --bin osbuild --bin osbuild-mkmanifest-debian
else
    cargo build --quiet --release --bin osbuild --bin osbuild-mkmanifest-debian
    # The floor's qcow2 writer: the assembler's own, by hand.
    cargo build --quiet --release -p osbuild-qcow2 --example qcow2_convert
fi
bin=${CARGO_TARGET_DIR:-target}/$profile
work=$(mktemp -d /var/tmp/osbuild-bench-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
store=$work/store
lib=target/libdir

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l | xargs printf '%.1f'; }
stage_id() { # stage_id MANIFEST INDEX
    "$bin/osbuild" --libdir "$lib" --inspect "$1" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['pipeline']['stages'][$2]['id'])"
}
build() { # build MANIFEST [CHECKPOINT...]: prints the output id
    local dpkg m=$1 cps=()
    dpkg=$(stage_id "$m" 0)
    shift
    for c in "$@"; do cps+=(--checkpoint "$c"); done
    "$bin/osbuild" --store "$store" --libdir "$lib" --checkpoint "$dpkg" "${cps[@]}" --json "$m" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["success"]; print(r["output_id"])'
}

t=$(now)
"$bin/osbuild-mkmanifest-debian" --image --boot-probe --hostname bench-a --output "$work/a.json" 2>"$work/resolve.log"
resolve=$(since "$t")
"$bin/osbuild-mkmanifest-debian" --image --boot-probe --hostname bench-b --output "$work/b.json" 2>/dev/null
"$bin/osbuild-mkmanifest-debian" --image --boot-probe --hostname bench-a --qcow2-compression zstd \
    --output "$work/a-zstd.json" 2>/dev/null

tree_a=$(stage_id "$work/a.json" -1) tree_b=$(stage_id "$work/b.json" -1)
if [ "$smoke" = 1 ]; then
    # Keep the finished tree for the zstd check at the end (no cached build to make one).
    t=$(now); out_a=$(build "$work/a.json" "$tree_a"); cold=$(since "$t")
    out_b=$out_a cached=skipped
else
    t=$(now); out_a=$(build "$work/a.json"); cold=$(since "$t")
    t=$(now); out_b=$(build "$work/b.json" "$tree_b"); cached=$(since "$t")
fi
qcow=$store/refs/$out_b/disk.qcow2

echo "packages:          $(cat "$work/resolve.log")"
echo "resolve:           ${resolve} s"
echo "cold build:        ${cold} s   (empty store: download, dpkg, stages, qcow2)"
echo "tree cached:       ${cached} s   (dpkg stage from the store)"
echo "qcow2:             $(du -m --apparent-size "$qcow" | cut -f1) MB, virtual $(qemu-img info --output=json "$qcow" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"] >> 20)') MiB"
if [ "$boot" = 1 ]; then
    tests/boot/qemu.sh --prepare >/dev/null
    t=$(now)
    timeout -k 10 240 tests/boot/qemu.sh -accel tcg -smp 2 -m 1024 -nographic -no-reboot -nic none \
        -vga none -snapshot -drive "file=$qcow,format=qcow2,if=virtio" </dev/null >"$work/serial.log" 2>&1
    bt=$(since "$t")
    grep -aq 'IMGTEST-END failed=0' "$work/serial.log" || { tail -40 "$work/serial.log"; exit 1; }
    echo "boot to poweroff:  ${bt} s   ($(grep -a -o 'IMGTEST-END failed=0' "$work/serial.log"))"
fi

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
rounds=${ROUNDS:-3}

# The whole image with the .debs cached, against the peer.
split() { # the log on stdin: seconds per module header (dpkg, stages, assembler), then total
    python3 -c '
import re, sys, time
start = last = time.monotonic(); cur = None; spent = {"dpkg": 0.0, "stages": 0.0, "assembler": 0.0}
head = re.compile(r"^(Assembler )?org\.osbuild\.([\w.-]+): [0-9a-f]{64}$")
for line in sys.stdin:
    m = head.match(line.strip())
    if m:
        now = time.monotonic()
        if cur: spent[cur] += now - last
        cur, last = ("assembler" if m.group(1) else "dpkg" if m.group(2) == "dpkg" else "stages"), now
now = time.monotonic()
if cur: spent[cur] += now - last
print(" ".join("%.2f" % v for v in spent.values()), "%.2f" % (now - start))'
}
settle() { # before a timed run: drop the page cache when asked (see the header)
    if [ "${DROP_CACHES:-0}" = 1 ]; then sync && echo 3 > /proc/sys/vm/drop_caches; fi
}
compression_type() { # compression_type QCOW2: zlib or zstd, as qemu-img reads its header
    qemu-img info --output=json "$1" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["compression-type"])'
}
ours_run() { # ours_run MANIFEST CLUSTERS (zlib|zstd), prints: dpkg stages assembler total
    local s=$work/e2e-store out got
    settle
    rm -rf "$s"
    mkdir "$s"
    cp -al "$store/sources" "$s/sources"
    cp -a "$store/setups" "$s/setups"
    "$bin/osbuild" --store "$s" --libdir "$lib" "$1" 2>&1 | tee "$work/e2e.log" | split ||
        { tail -30 "$work/e2e.log" >&2; exit 1; }
    out=$(sed -n 's/^output id: \([0-9a-f]*\)$/\1/p' "$work/e2e.log")
    [ -n "$out" ] || { tail -30 "$work/e2e.log" >&2; exit 1; }
    got=$(compression_type "$s/refs/$out/disk.qcow2")
    [ "$got" = "$2" ] || { echo "bench/debian-image.sh: $1 made $got clusters, not $2" >&2; exit 1; }
    rm -rf "$s"
}
peer_run() { # prints: mmdebstrap total
    settle
    bench/mmdebstrap-image.sh "$work/a.json" "$store/sources/org.osbuild.files" "$work/peer.qcow2" \
        >"$work/peer.log" 2>&1 || { tail -30 "$work/peer.log" >&2; exit 1; }
    rm -f "$work/peer.qcow2"
    echo "$(awk '$1 == "mmdebstrap" {print $2}' "$work/peer.log") $(awk '$1 == "total" {print $2}' "$work/peer.log")"
}
o_dpkg=() o_stages=() o_asm=() o_total=() p_mm=() p_total=() z_asm=() z_total=()
for _ in $(seq "$rounds"); do
    # Not `< <(...)`: a failing run must stop the script, not go by as empty figures.
    ours_run "$work/a.json" zlib >"$work/run"
    read -r a b c d <"$work/run"
    [ -n "$d" ] || { echo "bench/debian-image.sh: our build failed" >&2; exit 1; }
    o_dpkg+=("$a") o_stages+=("$b") o_asm+=("$c") o_total+=("$d")
    peer_run >"$work/run"
    read -r a b <"$work/run"
    [ -n "$b" ] || { echo "bench/debian-image.sh: the peer failed" >&2; exit 1; }
    p_mm+=("$a") p_total+=("$b")
    ours_run "$work/a-zstd.json" zstd >"$work/run"
    read -r a b c d <"$work/run"
    [ -n "$d" ] || { echo "bench/debian-image.sh: our zstd build failed" >&2; exit 1; }
    z_asm+=("$c") z_total+=("$d")
done
med() { printf '%s\n' "$@" | median; }
ot=$(med "${o_total[@]}") pt=$(med "${p_total[@]}") od=$(med "${o_dpkg[@]}") pm=$(med "${p_mm[@]}")
echo "ours, .debs cached: ${ot} s   (median of ${o_total[*]}; load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "  dpkg stage:       ${od} s   (median of ${o_dpkg[*]})"
echo "  other stages:     $(med "${o_stages[@]}") s   (median of ${o_stages[*]})"
echo "  assembler+commit: $(med "${o_asm[@]}") s   (median of ${o_asm[*]})"
echo "peer (mmdebstrap):  ${pt} s   (median of ${p_total[*]})"
echo "  mmdebstrap:       ${pm} s   (median of ${p_mm[*]})"
echo "ours / peer:        $(ratio "$ot" "$pt")   (goal <= 0.5)"
echo "dpkg / mmdebstrap:  $(ratio "$od" "$pm")   (goal <= 0.6)"
zt=$(med "${z_total[@]}")
echo "another format, zstd clusters (qemu >= 5.1 reads them), against the same peer:"
echo "ours, zstd qcow2:   ${zt} s   (median of ${z_total[*]})"
echo "  assembler+commit: $(med "${z_asm[@]}") s   (median of ${z_asm[*]})"
echo "ours zstd / peer:   $(ratio "$zt" "$pt")   (not the headline: the peer writes zlib)"

# zlib and zstd clusters hold the same disk: the assembler run directly on one finished tree
# as a reproducible build (the raw disks are then the same bytes), once with each.
same_disk_tree=$store/refs/$([ "$smoke" = 1 ] && echo "$tree_a" || echo "$tree_b")
assemble_directly() { # assemble_directly MANIFEST: the manifest's qcow2 of the tree, in $work
    python3 -c '
import json, sys
args = {"tree": sys.argv[2], "output_dir": sys.argv[3],
        "options": json.load(open(sys.argv[1]))["pipeline"]["assembler"]["options"]}
print(json.dumps(args))' "$1" "$same_disk_tree" "$work/direct" |
        SOURCE_DATE_EPOCH=1700000000 "$lib/assemblers/org.osbuild.qemu" >"$work/direct.log" 2>&1 ||
        { tail -30 "$work/direct.log" >&2; exit 1; }
    mv "$work/direct/disk.qcow2" "$work/direct-$(compression_type "$work/direct/disk.qcow2").qcow2"
}
mkdir -p "$work/direct"
assemble_directly "$work/a.json"
assemble_directly "$work/a-zstd.json"
qemu-img compare -q "$work/direct-zlib.qcow2" "$work/direct-zstd.qcow2" ||
    { echo "bench/debian-image.sh: the zlib and zstd qcow2 of one tree differ" >&2; exit 1; }
echo "zstd qcow2:         $(du -m --apparent-size "$work/direct-zstd.qcow2" | cut -f1) MB, zlib $(du -m --apparent-size "$work/direct-zlib.qcow2" | cut -f1) MB; the same disk (qemu-img compare)"
rm -rf "$work/direct" "$work"/direct-*.qcow2
[ "$smoke" = 1 ] && exit 0

# The assembler against its floor on the same tree.
read -r size start uuid < <(python3 -c '
import json,sys
o = json.load(open(sys.argv[1]))["pipeline"]["assembler"]["options"]
if "partitions" in o:
    root = [p for p in o["partitions"] if p.get("filesystem", {}).get("mountpoint") == "/"][0]
    print(o["size"], root["start"], root["filesystem"]["uuid"])
else:  # v10 legacy layout: one partition where sfdisk puts the first, at 1 MiB
    print(o["size"], 2048, o["root_fs_uuid"])' "$work/b.json")
tree=$store/refs/$tree_b
floor_run() {
    local raw=$work/floor.raw t
    rm -f "$raw" "$work/floor.qcow2"
    settle
    t=$(now)
    truncate -s "$size" "$raw"
    mkfs.ext4 -q -F -U "$uuid" -d "$tree" -E "offset=$((start * 512))" "$raw" \
        "$(( (size - start * 512) / 1024 ))k"
    "$bin/examples/qcow2_convert" "$raw" "$work/floor.qcow2" >/dev/null
    since "$t"
    rm -f "$raw" "$work/floor.qcow2"
}
assembler_run() {
    local t
    # Only the output goes: the tree stays in the store, so only the assembler runs.
    rm -rf "$(readlink -f "$store/refs/$out_b")" "$store/refs/$out_b" "$store/meta/refs/$out_b.json"
    settle
    t=$(now)
    build "$work/b.json" >/dev/null
    since "$t"
}
floors=() asms=()
for _ in $(seq "$rounds"); do
    asms+=("$(assembler_run)")
    floors+=("$(floor_run)")
done
fm=$(printf '%s\n' "${floors[@]}" | median)
am=$(printf '%s\n' "${asms[@]}" | median)
echo "qemu assembler:    ${am} s   (median of ${asms[*]}; tree in the store)"
echo "floor:             ${fm} s   (median of ${floors[*]}; mkfs.ext4 -d + crates/qcow2's writer)"
echo "assembler / floor: $(ratio "$am" "$fm")"
