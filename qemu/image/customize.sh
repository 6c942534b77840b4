#!/usr/bin/env bash
# mmdebstrap --customize-hook: turn the fresh Debian tree into the guest's root filesystem.
# Usage: customize.sh ROOTFS REPO WHEELS_DIR   (runs as root on the host, ROOTFS is the chroot)
set -euo pipefail
root=$1
repo=$2
wheels=$3
log() { printf 'customize: %s\n' "$*" >&2; }

# The product's overlay (config defaults, init scripts): owned by root whatever the clone's
# owner; --keep-directory-symlink so an overlay /lib does not replace the merged-/usr symlink.
if [ -d "$repo/rootfs" ]; then
  tar -C "$repo/rootfs" --owner=0 --group=0 --exclude=.gitkeep -cf - . \
    | tar -C "$root" --keep-directory-symlink -xf -
fi

# The QEMU guest's PID 1 (see qemu/guest/init).
install -D -m 0755 "$repo/qemu/guest/init" "$root/usr/lib/mobile-router/qemu-init"

# Python dependencies: pinned pure-python wheels, installed with the host's pip into the
# guest's /usr/local site directory (Debian's python3 searches it), then byte-compiled by
# the guest's own interpreter: the disk is read-only in effect (snapshot=on), so bytecode
# not made now would be recompiled on every boot, which costs seconds under TCG.
site="$root/usr/local/lib/python3.11/dist-packages"
mkdir -p "$site"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile \
  --target "$site" "$wheels"/*.whl >&2
rm -rf "${site:?}/bin"
chroot "$root" python3 -m compileall -q /usr/local/lib/python3.11/dist-packages >/dev/null \
  || { log "compileall failed"; exit 1; }

# Packages the essential set or a dependency pulled in that nothing at run time needs.
# perl is the big one (~46 MB); dpkg would refuse to drop essential packages without force.
purge=()
for pkg in perl perl-modules-5.36 libperl5.36 perl-base usrmerge libfile-find-rule-perl \
  debconf-i18n liblocale-gettext-perl libtext-iconv-perl libtext-charwidth-perl \
  libtext-wrapi18n-perl; do
  # shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
  status=$(chroot "$root" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" = "install ok installed" ]; then
    purge+=("$pkg")
  fi
done
if ((${#purge[@]})); then
  log "purging ${purge[*]}"
  chroot "$root" dpkg --purge --force-remove-essential --force-depends "${purge[@]}" >/dev/null 2>&1 \
    || { log "dpkg --purge ${purge[*]} failed"; exit 1; }
fi

# Module index for the modules that survived the path excludes, so modprobe works lazily.
for kdir in "$root"/lib/modules/*; do
  depmod -b "$root" "$(basename "$kdir")"
done

# Caches and logs from the build; the guest starts clean. udev's compiled hardware database
# (13 MB) serves real hardware only; udevd, if a test starts it, works without it.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
  "$root"/usr/lib/udev/hwdb.bin "$root"/etc/udev/hwdb.bin \
  "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/tmp/*
mkdir -p "$root/src" "$root/out" "$root/job"
