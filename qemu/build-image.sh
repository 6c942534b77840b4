#!/usr/bin/env bash
# Build (or reuse) the QEMU guest image and print its directory on stdout (last line).
#
# The image is keyed by a sha256 over everything that goes into it: the package list, the
# pinned Python wheels, the rootfs/ overlay, this script, its helpers under qemu/image/ and the
# guest init under qemu/guest/ (its *.py files are not baked: the guest runs them from /src).
# A finished image lives in ${MOBILE_ROUTER_CACHE:-/var/cache/mobile-router}/image-<hash>/;
# it is built in a temp dir beside it and renamed into place, so a crash never leaves a
# half image that looks finished.
#
# Outputs in the image dir:
#   vmlinux      unpacked kernel with a PVH entry (boot: -kernel vmlinux -bios qboot.rom), if any
#   vmlinuz      the Debian bzImage (fallback boot path)
#   initrd.cpio  busybox + virtio_pci/virtio_blk/ext4 modules; mounts /dev/vda, switch_roots
#   root.img     ext4 root filesystem (mke2fs -d, no loop mount); boot it with snapshot=on
#   info.env     KVER, PVH=yes|no, sizes, build seconds; packages.lst: dpkg -l of the image
#
# Usage: qemu/build-image.sh [--force] [--hash]
#   --force  rebuild even if the cached image exists
#   --hash   print the hash only
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MOBILE_ROUTER_CACHE:-/var/cache/mobile-router}
mirror=${MOBILE_ROUTER_MIRROR:-http://deb.debian.org/debian}
security=${MOBILE_ROUTER_SECURITY_MIRROR:-http://security.debian.org/debian-security}
suite=bookworm
# Bump when the build changes in a way the hashed files do not show.
format=1

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

force=no
only_hash=no
for arg in "$@"; do
  case "$arg" in
    --force) force=yes ;;
    --hash) only_hash=yes ;;
    *) die "unknown argument '$arg' (--force|--hash)" ;;
  esac
done

# Every input, as "path x|- sha256" lines, in a stable order. Only the exec bit of the mode
# counts: git records nothing else, so clones with another umask share the image.
hash_inputs() {
  cd "$repo"
  {
    echo "format=$format suite=$suite mirror=$mirror security=$security"
    find qemu/build-image.sh qemu/image qemu/guest rootfs -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path 'qemu/guest/*.py' -print0 \
      | LC_ALL=C sort -z \
      | while IFS= read -r -d '' f; do
          exec_bit=-
          [ ! -x "$f" ] || exec_bit=x
          printf '%s %s %s\n' "$f" "$exec_bit" "$(sha256sum <"$f" | cut -d' ' -f1)"
        done
  } | sha256sum | cut -c1-16
}

hash=$(hash_inputs)
if [ "$only_hash" = yes ]; then echo "$hash"; exit 0; fi
final="$cache/image-$hash"

if [ "$force" = no ] && [ -f "$final/info.env" ]; then
  log "cached: $final"
  echo "$final"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap --mode=root, mke2fs -d with ownership)"
for tool in mmdebstrap mke2fs cpio modprobe flock; do
  command -v "$tool" >/dev/null || die "missing $tool: run scripts/deps.sh qemu"
done

mkdir -p "$cache"
# One build at a time per cache; a second caller waits and then finds the image.
exec 9>"$cache/build.lock"
flock 9
if [ "$force" = no ] && [ -f "$final/info.env" ]; then
  log "cached (built while waiting): $final"
  echo "$final"
  exit 0
fi

start=$(date +%s)
work=$(mktemp -d "$cache/.build-$hash.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
out="$work/image"
mkdir -p "$out"

"$repo/qemu/image/fetch-wheels.sh" "$repo/qemu/image/python-requirements.txt" "$cache/wheels" \
  "$work/wheels"

packages=$(grep -v '^[[:space:]]*#' "$repo/qemu/image/packages.txt" | tr -s '[:space:]' ',' \
  | sed 's/^,//; s/,$//')
log "mmdebstrap $suite: $packages"

# path-exclude keeps docs, manuals, locales and kernel modules no QEMU guest can use out of
# the image; the patterns are quoted so the host shell does not expand them.
mapfile -t excludes < "$repo/qemu/image/dpkg-excludes.txt"
dpkgopts=()
for line in "${excludes[@]}"; do
  case "$line" in ''|'#'*) continue ;; esac
  dpkgopts+=("--dpkgopt=$line")
done

mmdebstrap --mode=root --variant=essential --format=directory --quiet \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='Acquire::Languages "none"' \
  --include="$packages" \
  "${dpkgopts[@]}" \
  --customize-hook="\"$repo/qemu/image/customize.sh\" \"\$1\" \"$repo\" \"$work/wheels\"" \
  "$suite" "$root" \
  "deb $mirror $suite main" \
  "deb $mirror $suite-updates main" \
  "deb $security $suite-security main"

kver=$(ls "$root/lib/modules")
[ "$(wc -w <<<"$kver")" = 1 ] || die "expected one kernel in the rootfs, found: $kver"

cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
pvh=no
if python3 "$repo/qemu/image/kernel.py" "$out/vmlinuz" "$out/vmlinux"; then
  pvh=yes
else
  log "no PVH-bootable vmlinux; the runner will boot the bzImage"
  rm -f "$out/vmlinux"
fi
rm -rf "${root:?}/boot/"* # the kernel boots from outside the disk

"$repo/qemu/image/mkinitramfs.sh" "$root" "$kver" "$out/initrd.cpio"

# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$out/packages.lst"

# Free space for what the guest writes to / (logs, state): 128 MiB over the content.
used_kib=$(du -sk --apparent-size "$root" | cut -f1)
size_mib=$((used_kib * 12 / 10 / 1024 + 128))
log "mke2fs root.img: ${size_mib} MiB (content $((used_kib / 1024)) MiB)"
# No journal and no metadata checksums: the disk is thrown away after each boot
# (snapshot=on), and without metadata_csum the initramfs needs no crc32c module.
mke2fs -q -t ext4 -L root -O '^has_journal,^metadata_csum' -E root_owner=0:0 \
  -d "$root" "$out/root.img" "${size_mib}M" >&2

end=$(date +%s)
cat >"$out/info.env" <<INFO
HASH=$hash
KVER=$kver
PVH=$pvh
ROOTFS_MIB=$((used_kib / 1024))
DISK_MIB=$size_mib
BUILD_SECONDS=$((end - start))
INFO

rm -rf "$root"
if [ -e "$final" ]; then mv "$final" "$work/old"; fi # --force: replace, the trap deletes it
mv "$out" "$final"
log "built in $((end - start)) s: $final"

# Keep the three newest images: older ones are from earlier commits. A guest still running
# from a deleted image is unaffected (QEMU holds the files open).
find "$cache" -maxdepth 1 -name 'image-*' -type d -printf '%T@ %p\n' | sort -rn | tail -n +4 \
  | cut -d' ' -f2- | while IFS= read -r old; do log "pruning $old"; rm -rf "$old"; done
echo "$final"
