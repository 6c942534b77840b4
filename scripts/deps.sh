#!/usr/bin/env bash
# Install what the project needs on a fresh machine of this kind (Debian bookworm, root).
# Idempotent: installs only what is missing; a stamp keyed by pyproject.toml skips pip.
#   scripts/deps.sh host     - host tools: tests, linters, tshark oracle
#   scripts/deps.sh qemu     - plus QEMU and the image builder
#   scripts/deps.sh browser  - plus headless Chromium for the status page tests
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

want=(tshark iproute2 nftables)
for part in "$@"; do
  case "$part" in
    host) ;;
    # qemu-system-data has qboot.rom (the fast PVH boot); kmod and cpio build the initramfs.
    qemu) want+=(qemu-system-x86 qemu-system-data qemu-utils mmdebstrap e2fsprogs xz-utils kmod
                 cpio busybox-static ca-certificates debian-archive-keyring iputils-ping) ;;
    browser) want+=(chromium) ;;
    *) echo "deps.sh: unknown part '$part' (host|qemu|browser)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: apt-get install ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "deps: need root to install ${missing[*]}" >&2; exit 1; fi
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp_dir=${XDG_CACHE_HOME:-$HOME/.cache}/mobile-router
mkdir -p "$stamp_dir"
key=$( (cat pyproject.toml; python3 --version) | sha256sum | cut -c1-16)
if [ ! -f "$stamp_dir/pip-$key" ] || ! python3 -c "import router, pyroute2, vici, hypothesis, scapy" 2>/dev/null; then
  echo "deps: pip install -e .[test,dev]"
  python3 -m pip install -q --disable-pip-version-check -e '.[test,dev]'
  touch "$stamp_dir/pip-$key"
fi
