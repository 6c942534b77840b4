#!/usr/bin/env bash
# Build the guest's tiny initramfs: static busybox, the few modules needed to reach the root
# disk (virtio_pci, virtio_blk, ext4 and their dependencies, in load order) and our /init.
# The runner's network and 9p modules come along too: insmod from the initramfs is quicker
# under TCG than modprobe reading them from the root disk after switch_root (~1 s saved).
# Uncompressed cpio: the kernel unpacks it with no decompressor, fastest under TCG.
# Usage: mkinitramfs.sh ROOTFS KVER OUTPUT.cpio
set -euo pipefail
root=$1
kver=$2
output=$3
here=$(cd "$(dirname "$0")" && pwd)
modules=(virtio_pci virtio_blk ext4 virtio_net 9pnet_virtio 9p)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,newroot,modules}

busybox="$root/bin/busybox"
[ -x "$busybox" ] || busybox=/bin/busybox # busybox-static missing from the image: use the host's
# ldd fails on a static binary, which is the case we want: read its words, not its status.
linkage=$(ldd "$busybox" 2>&1 || true)
case "$linkage" in
  *'not a dynamic'* | *'statically linked'*) ;;
  *) echo "mkinitramfs: $busybox is not statically linked: $linkage" >&2; exit 1 ;;
esac
cp "$busybox" "$stage/bin/busybox"
install -m 0755 "$here/initramfs-init" "$stage/init"

# modprobe --show-depends prints "insmod PATH" per module, dependencies first, and
# "builtin NAME" for what the kernel has built in (nothing to load).
: >"$stage/modules/order"
declare -A seen=()
while read -r verb path _; do
  [ "$verb" = insmod ] || continue
  name=$(basename "$path")
  [ -z "${seen[$name]:-}" ] || continue
  seen[$name]=1
  cp "$path" "$stage/modules/$name"
  echo "$name" >>"$stage/modules/order"
done < <(for m in "${modules[@]}"; do modprobe -d "$root" -S "$kver" --show-depends "$m"; done)
echo "mkinitramfs: modules: $(tr '\n' ' ' <"$stage/modules/order")" >&2

(cd "$stage" && find . -print0 | LC_ALL=C sort -z \
  | cpio --null --create --format=newc --owner=0:0 --quiet) >"$output"
