#!/usr/bin/env bash
#
# Buildroot post-build script for the mobile router (every board).
# Buildroot runs it after the rootfs overlay ($(BR2_EXTERNAL_MOBILE_ROUTER_PATH)/../rootfs)
# has been copied, as: post-build.sh TARGET_DIR [BR2_ROOTFS_POST_SCRIPT_ARGS...]
# with BR2_CONFIG (the .config) in the environment.
#
#  1. installs the daemons' init: SysV scripts S90router / S91router-ha with a
#     procd-like respawn supervisor (busybox init), or systemd units with
#     Restart= (BR2_INIT_SYSTEMD) -- unless the overlay already ships them;
#  2. creates the state directory /var/lib/router (history database);
#  3. makes key material readable by root only: 0600 files, 0700 directories
#     (the daemons refuse key files readable by group or others).
#
# Ownership needs no care here: Buildroot makes every file root:root when it
# builds the filesystem images.

set -euo pipefail

TARGET_DIR=${1:?usage: post-build.sh TARGET_DIR [ARGS...]}
BOARD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

init_is_systemd() {
	[ -n "${BR2_CONFIG:-}" ] && [ -f "$BR2_CONFIG" ] &&
		grep -qx 'BR2_INIT_SYSTEMD=y' "$BR2_CONFIG"
}

install_sysv() {
	install -D -m 0755 "$BOARD_DIR/respawn" "$TARGET_DIR/usr/libexec/router/respawn"
	local script
	for script in S90router S91router-ha; do
		if [ -e "$TARGET_DIR/etc/init.d/$script" ]; then
			echo "post-build: keeping /etc/init.d/$script from the overlay"
			continue
		fi
		install -D -m 0755 "$BOARD_DIR/init.d/router-service" "$TARGET_DIR/etc/init.d/$script"
	done
}

install_systemd_unit() { # NAME MODULE CONFIG
	local unit="$TARGET_DIR/usr/lib/systemd/system/$1.service"
	[ -e "$TARGET_DIR/etc/systemd/system/$1.service" ] && return 0
	[ -e "$unit" ] && return 0
	install -d -m 0755 "$(dirname "$unit")" "$TARGET_DIR/etc/systemd/system/multi-user.target.wants"
	cat >"$unit" <<UNIT
[Unit]
Description=Mobile router: python -m $2
After=network.target
ConditionPathExists=$3
StartLimitIntervalSec=3600
StartLimitBurst=5

[Service]
ExecStart=/usr/bin/python3 -m $2 --config $3
Restart=always
RestartSec=5
StateDirectory=router

[Install]
WantedBy=multi-user.target
UNIT
	chmod 0644 "$unit"
	ln -sf "../../../../usr/lib/systemd/system/$1.service" \
		"$TARGET_DIR/etc/systemd/system/multi-user.target.wants/$1.service"
}

if init_is_systemd; then
	install_systemd_unit router router /etc/router/router.toml
	install_systemd_unit router-ha router.ha /etc/router/ha.toml
else
	install_sysv
fi

install -d -m 0750 "$TARGET_DIR/var/lib/router"
install -d -m 0755 "$TARGET_DIR/etc/router"

# Key material: the router's and home agent's MN-HA keys, strongSwan's
# private keys and PSK-bearing swanctl configs, PPP and WLAN secrets.
install -d -m 0700 "$TARGET_DIR/etc/router/keys"
for dir in etc/router/keys etc/swanctl/private etc/swanctl/rsa etc/swanctl/ecdsa \
	etc/swanctl/pkcs8 etc/swanctl/pkcs12; do
	if [ -d "$TARGET_DIR/$dir" ]; then
		chmod 0700 "$TARGET_DIR/$dir"
		find "$TARGET_DIR/$dir" -type f -exec chmod 0600 {} +
	fi
done
for pattern in 'etc/router/*.key' 'etc/swanctl/swanctl.conf' 'etc/swanctl/conf.d/*.conf' \
	'etc/ipsec.secrets' 'etc/ppp/chap-secrets' 'etc/ppp/pap-secrets' \
	'etc/hostapd/*.conf' 'etc/hostapd*.conf' 'etc/wpa_supplicant/*.conf' \
	'etc/wpa_supplicant*.conf'; do
	for file in "$TARGET_DIR"/$pattern; do
		if [ -f "$file" ]; then
			chmod 0600 "$file"
		fi
	done
done

# The daemon's package must be on the target (BR2_PACKAGE_PYTHON_MOBILE_ROUTER).
# (__init__.py, or only __init__.pyc with BR2_PACKAGE_PYTHON3_PYC_ONLY.)
if ! compgen -G "$TARGET_DIR/usr/lib/python3*/site-packages/router/__init__.py*" >/dev/null; then
	echo "post-build: warning: the router Python package is not in $TARGET_DIR" \
		"(enable BR2_PACKAGE_PYTHON_MOBILE_ROUTER)" >&2
fi
