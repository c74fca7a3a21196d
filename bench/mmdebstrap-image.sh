#!/usr/bin/env bash
# The peer of bench/debian-image.sh (not a test): the same bootable Debian qcow2 as an
# `osbuild-mkmanifest-debian --image` manifest describes, made with mmdebstrap and the disk steps
# done by hand. As root, with mmdebstrap, dpkg-dev, fdisk, e2fsprogs, grub-pc-bin, qemu-utils:
#   bench/mmdebstrap-image.sh MANIFEST DEBS OUTPUT.qcow2 [TREE]
# MANIFEST  a v10 manifest from osbuild-mkmanifest-debian --image (BIOS, one ext4 root)
# DEBS      a directory holding its packages named by checksum (a store's
#           sources/org.osbuild.files), so nothing is downloaded
# TREE      keep the installed tree here (default: a temporary directory, removed)
# Prints, one per line, `step seconds`: mmdebstrap (the same packages from a local flat
# repository of those .debs, merged /usr, the same initramfs module list), tree (hostname, fstab, grub.cfg,
# the probe unit), disk (truncate, sfdisk, mkfs.ext4 -d, grub-mkimage + boot.img, qemu-img
# convert -c as a person types it), total.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,13p "$0" >&2; exit 2; }
manifest=$(realpath "$1") debs=$(realpath "$2") output=$3
[ "$(id -u)" = 0 ] || { echo "bench/mmdebstrap-image.sh: needs root" >&2; exit 1; }
for tool in mmdebstrap dpkg-scanpackages sfdisk mkfs.ext4 grub-mkimage qemu-img; do
    command -v "$tool" >/dev/null || { echo "bench/mmdebstrap-image.sh: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/osbuild-bench-mmdebstrap.XXXXXX)
# A failed mmdebstrap may leave its bind mounts: unmount, and never delete across a mount.
cleanup() {
    findmnt -rn -o TARGET | { grep "^$work/" || true; } | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
tree=${4:-$work/tree}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l | xargs printf '%.2f'; }

# Everything the manifest says, as shell words: checksums, modules, hostname, fstab, grub, disk.
eval "$(python3 - "$manifest" <<'EOF'
import json, shlex, sys
p = json.load(open(sys.argv[1]))["pipeline"]
st = {s["name"]: s.get("options", {}) for s in p["stages"]}
asm = p["assembler"]["options"]
assert asm.get("bootloader", {}).get("platform", "i386-pc") == "i386-pc", "BIOS images only"
dpkg = st["org.osbuild.dpkg"]
out = {
    "sums": " ".join(dpkg["packages"]),
    "modules": " ".join(dpkg.get("initramfs", {}).get("modules", [])),
    "hostname": st.get("org.osbuild.hostname", {}).get("hostname", "debian"),
    "uuid": asm["root_fs_uuid"],
    "ptuuid": asm["ptuuid"],
    "size": asm["size"],
    "cmdline": st["org.osbuild.grub2"].get("kernel_opts", ""),
    "script": st.get("org.osbuild.script", {}).get("script", ""),
}
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
EOF
)"

# A flat repository of the .debs under their Debian names (hard links, no copies).
t0=$(now)
repo=$work/repo
mkdir -p "$repo"
names=()
for sum in $sums; do
    read -r name file < <(dpkg-deb --show --showformat='${Package} ${Package}_${Version}_${Architecture}.deb\n' "$debs/$sum")
    ln -f "$debs/$sum" "$repo/${file//:/%3a}" 2>/dev/null || cp "$debs/$sum" "$repo/${file//:/%3a}"
    names+=("$name")
done
(cd "$repo" && dpkg-scanpackages --multiversion . 2>/dev/null > Packages)
include=$(IFS=,; echo "${names[*]}")

# The initramfs configuration the dpkg stage writes, before any package is installed.
hook='#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in '"$modules"'; do force_load "$m"; done'
t=$(now)
mmdebstrap ${MMDEBSTRAP_VERBOSE:+--verbose} --variant=custom --include="$include" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"' \
    --setup-hook='echo MODULES=list > "$1/etc/initramfs-tools/conf.d/osbuild.conf"' \
    --setup-hook="printf '%s\n' '${hook//\'/\'\\\'\'}' > \"\$1/etc/initramfs-tools/hooks/osbuild\"" \
    --setup-hook='chmod 755 "$1/etc/initramfs-tools/hooks/osbuild"' \
    bookworm "$tree" "deb [trusted=yes] file://$repo ./"
echo "mmdebstrap $(since "$t")"

# What the hostname, fstab, grub2 and script stages write.
t=$(now)
echo "$hostname" > "$tree/etc/hostname"
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$tree/etc/fstab"
kernel=$(cd "$tree/boot" && ls vmlinuz-* | sort -V | tail -1)
mkdir -p "$tree/boot/grub"
cat > "$tree/boot/grub/grub.cfg" <<EOF
set timeout=0
search --no-floppy --fs-uuid --set=root $uuid
linux /boot/$kernel root=UUID=$uuid $cmdline
initrd /boot/initrd.img-${kernel#vmlinuz-}
boot
EOF
[ -z "$script" ] || chroot "$tree" /bin/sh -c "$script"
echo "tree $(since "$t")"

# The disk: one bootable dos partition at 1 MiB, ext4 filled from the tree, GRUB in the gap.
t=$(now)
raw=$work/disk.raw
truncate -s "$size" "$raw"
printf 'label: dos\nlabel-id: %s\nstart=2048, type=83, bootable\n' "$ptuuid" | sfdisk -q "$raw"
mkfs.ext4 -q -F -U "$uuid" -d "$tree" -E offset=$((2048 * 512)) "$raw" "$(( (size - 2048 * 512) / 1024 ))k"
grub-mkimage -O i386-pc -p '(,msdos1)/boot/grub' -o "$work/core.img" \
    biosdisk part_msdos ext2 normal linux search search_fs_uuid configfile echo test
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 -c "$raw" "$output"
echo "disk $(since "$t")"
echo "total $(since "$t0")"
