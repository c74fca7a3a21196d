#!/usr/bin/env bash
# Bootable Debian 12 image benchmark (not a test). As root, with apt lists and a mirror:
#   bench/debian-image.sh [--no-boot]
# Times, on an empty store (no downloaded .debs, no trees):
#   resolve   osbuild-mkmanifest-debian --image --boot-probe (apt --print-uris)
#   cold      osbuild: download 111 .debs, dpkg stage (checkpointed), fstab, grub2, probe,
#             qemu assembler (qcow2)
#   cached    the same image with another hostname: the dpkg tree comes from the store, the
#             later stages and the assembler run again
#   boot      private QEMU (tests/boot/qemu.sh, TCG, -smp 2) to the probe's poweroff
set -euo pipefail
cd "$(dirname "$0")/.."
boot=1
[ "${1:-}" = --no-boot ] && boot=0
[ "$(id -u)" = 0 ] || { echo "bench/debian-image.sh: needs root" >&2; exit 1; }

./install.sh libdir target/libdir >/dev/null
cargo build --quiet --release --bin osbuild --bin osbuild-mkmanifest-debian
bin=${CARGO_TARGET_DIR:-target}/release
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
build() { # build MANIFEST: prints the output id
    local dpkg
    dpkg=$(stage_id "$1" 0)
    "$bin/osbuild" --store "$store" --libdir "$lib" --checkpoint "$dpkg" --json "$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["success"]; print(r["output_id"])'
}

t=$(now)
"$bin/osbuild-mkmanifest-debian" --image --boot-probe --hostname bench-a --output "$work/a.json" 2>"$work/resolve.log"
resolve=$(since "$t")
"$bin/osbuild-mkmanifest-debian" --image --boot-probe --hostname bench-b --output "$work/b.json" 2>/dev/null

t=$(now); out_a=$(build "$work/a.json"); cold=$(since "$t")
t=$(now); out_b=$(build "$work/b.json"); cached=$(since "$t")
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
