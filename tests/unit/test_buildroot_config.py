"""Static validation of the br2-external tree in buildroot-config/.

Buildroot cannot be downloaded or run on these machines, so this checks what a Buildroot
build would trip over first, without network or root:

- every Config.in parses with kconfiglib on top of ``UPSTREAM_KCONFIG`` (a hand-written
  model of the Buildroot 2024.02 symbols we use: names and dependencies copied from
  Buildroot's own Config.in files, simplified), with references to undefined symbols
  treated as errors;
- enabling the router package selects every runtime package with no unmet dependency, and
  the package is hidden on a toolchain that cannot build them;
- every defconfig line is ``BR2_...=...`` syntax, every symbol it sets is defined (ours or
  the upstream model) and every value it sets takes effect;
- every path a defconfig references exists (ours) or is a known upstream Buildroot path;
- kernel fragments, the .mk variables, the .hash file, external.desc, post-build.sh and
  the target-side scripts (which are also run on a scratch directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import kconfiglib
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "buildroot-config"
BOARD = TREE / "board" / "mobile-router"
DEFCONFIGS = sorted((TREE / "configs").glob("*_defconfig"))
PACKAGE_DIRS = sorted(p for p in (TREE / "package").iterdir() if p.is_dir())

# The router package's runtime requirements (what the daemon drives).
RUNTIME_SYMBOLS = {
    "BR2_PACKAGE_PYTHON3",
    "BR2_PACKAGE_PYTHON3_SQLITE",
    "BR2_PACKAGE_PYTHON_PYROUTE2",
    "BR2_PACKAGE_PYTHON_VICI",
    "BR2_PACKAGE_STRONGSWAN",
    "BR2_PACKAGE_STRONGSWAN_CHARON",
    "BR2_PACKAGE_STRONGSWAN_VICI",
    "BR2_PACKAGE_HOSTAPD",
    "BR2_PACKAGE_WPA_SUPPLICANT",
    "BR2_PACKAGE_WPA_SUPPLICANT_CTRL_IFACE",
    "BR2_PACKAGE_PPPD",
    "BR2_PACKAGE_DNSMASQ",
    "BR2_PACKAGE_NFTABLES",
    "BR2_PACKAGE_IPROUTE2",
    "BR2_PACKAGE_IW",
}

# Kernel options every board needs (DESIGN.md section 3: the data plane is the kernel's).
REQUIRED_KERNEL = {
    "CONFIG_NET_IPIP",
    "CONFIG_NET_IPGRE",
    "CONFIG_INET_ESP",
    "CONFIG_XFRM_USER",
    "CONFIG_PPP",
    "CONFIG_NET_SCH_NETEM",
    "CONFIG_NF_TABLES",
    "CONFIG_BRIDGE",
    "CONFIG_VETH",
    "CONFIG_TUN",
    "CONFIG_IP_MULTIPLE_TABLES",
}

# Options holding paths (space-separated lists), checked for existence.
PATH_OPTIONS = {
    "BR2_ROOTFS_OVERLAY",
    "BR2_ROOTFS_POST_BUILD_SCRIPT",
    "BR2_ROOTFS_POST_IMAGE_SCRIPT",
    "BR2_ROOTFS_POST_FAKEROOT_SCRIPT",
    "BR2_ROOTFS_DEVICE_TABLE",
    "BR2_ROOTFS_USERS_TABLES",
    "BR2_GLOBAL_PATCH_DIR",
    "BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE",
    "BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES",
    "BR2_PACKAGE_RPI_FIRMWARE_CONFIG_FILE",
}

# Paths relative to the Buildroot checkout that our defconfigs use. They exist in
# Buildroot 2024.02 (board/raspberrypi4-64 is a symlink to board/raspberrypi there).
UPSTREAM_PATHS = {
    "board/raspberrypi4-64/post-build.sh",
    "board/raspberrypi4-64/post-image.sh",
    "board/raspberrypi4-64/config_4_64bit.txt",
}

# A model of the upstream Buildroot symbols our Config.in files and defconfigs use. It mirrors
# Buildroot 2024.02 names (package/*/Config.in, arch/, toolchain/, system/, linux/, fs/);
# dependencies are copied where they matter to us and simplified elsewhere (e.g. the
# headers chain 6.1 -> 3.12 -> 3.4 skips the versions between). It doubles as the
# allow-list of upstream symbols a defconfig may set.
UPSTREAM_KCONFIG = """
mainmenu "Buildroot 2024.02 (model for tests)"

config BR2_ARCH_HAS_MMU_MANDATORY
	bool
config BR2_ARCH_HAS_ATOMIC_INTRINSICS
	bool

choice
	prompt "Target Architecture"
	default BR2_x86_64
config BR2_arm
	bool "ARM (little endian)"
	select BR2_ARCH_HAS_MMU_MANDATORY
config BR2_aarch64
	bool "AArch64 (little endian)"
	select BR2_ARCH_HAS_MMU_MANDATORY
	select BR2_ARCH_HAS_ATOMIC_INTRINSICS
config BR2_x86_64
	bool "x86_64"
	select BR2_ARCH_HAS_MMU_MANDATORY
	select BR2_ARCH_HAS_ATOMIC_INTRINSICS
endchoice

config BR2_ARM_CPU_HAS_VFPV4
	bool
choice
	prompt "Target Architecture Variant"
	depends on BR2_aarch64
config BR2_cortex_a53
	bool "cortex-A53"
	select BR2_ARM_CPU_HAS_VFPV4
config BR2_cortex_a72
	bool "cortex-A72"
	select BR2_ARM_CPU_HAS_VFPV4
endchoice
choice
	prompt "Floating point strategy"
	depends on BR2_aarch64
config BR2_ARM_FPU_VFPV4
	bool "VFPv4"
	depends on BR2_ARM_CPU_HAS_VFPV4
endchoice

config BR2_USE_MMU
	bool
	default y if BR2_ARCH_HAS_MMU_MANDATORY

choice
	prompt "Toolchain type"
config BR2_TOOLCHAIN_BUILDROOT
	bool "Buildroot toolchain"
endchoice

config BR2_TOOLCHAIN_USES_GLIBC
	bool
	select BR2_USE_WCHAR
	select BR2_ENABLE_LOCALE
	select BR2_TOOLCHAIN_HAS_THREADS
config BR2_TOOLCHAIN_USES_UCLIBC
	bool
config BR2_USE_WCHAR
	bool
config BR2_ENABLE_LOCALE
	bool
config BR2_TOOLCHAIN_HAS_THREADS
	bool
config BR2_TOOLCHAIN_HAS_ATOMIC
	bool
	default y if BR2_ARCH_HAS_ATOMIC_INTRINSICS

choice
	prompt "C library"
	depends on BR2_TOOLCHAIN_BUILDROOT
	default BR2_TOOLCHAIN_BUILDROOT_UCLIBC
config BR2_TOOLCHAIN_BUILDROOT_UCLIBC
	bool "uClibc-ng"
	select BR2_TOOLCHAIN_USES_UCLIBC
config BR2_TOOLCHAIN_BUILDROOT_GLIBC
	bool "glibc"
	select BR2_TOOLCHAIN_USES_GLIBC
endchoice

config BR2_TOOLCHAIN_HEADERS_AT_LEAST_3_4
	bool
config BR2_TOOLCHAIN_HEADERS_AT_LEAST_3_12
	bool
	select BR2_TOOLCHAIN_HEADERS_AT_LEAST_3_4
config BR2_TOOLCHAIN_HEADERS_AT_LEAST_6_1
	bool
	select BR2_TOOLCHAIN_HEADERS_AT_LEAST_3_12

choice
	prompt "Kernel Headers"
	default BR2_KERNEL_HEADERS_AS_KERNEL if BR2_LINUX_KERNEL
	default BR2_KERNEL_HEADERS_6_1
config BR2_KERNEL_HEADERS_AS_KERNEL
	bool "Same as kernel being built"
	depends on BR2_LINUX_KERNEL
config BR2_KERNEL_HEADERS_6_1
	bool "Linux 6.1.x kernel headers"
	select BR2_TOOLCHAIN_HEADERS_AT_LEAST_6_1
endchoice

choice
	prompt "Custom kernel headers series"
	depends on BR2_KERNEL_HEADERS_AS_KERNEL
	default BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_3_2
config BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_1
	bool "6.1.x"
	select BR2_TOOLCHAIN_HEADERS_AT_LEAST_6_1
config BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_3_2
	bool "3.2.x"
endchoice

choice
	prompt "libraries"
	default BR2_SHARED_LIBS
config BR2_STATIC_LIBS
	bool "static only"
config BR2_SHARED_LIBS
	bool "shared only"
config BR2_SHARED_STATIC_LIBS
	bool "both static and shared"
endchoice

config BR2_TARGET_GENERIC_HOSTNAME
	string "System hostname"
	default "buildroot"
config BR2_TARGET_GENERIC_ISSUE
	string "System banner"
	default "Welcome to Buildroot"

choice
	prompt "Init system"
	default BR2_INIT_BUSYBOX
config BR2_INIT_BUSYBOX
	bool "BusyBox"
	select BR2_PACKAGE_BUSYBOX
config BR2_INIT_SYSV
	bool "systemV"
config BR2_INIT_SYSTEMD
	bool "systemd"
	depends on BR2_TOOLCHAIN_USES_GLIBC
config BR2_INIT_NONE
	bool "None"
endchoice

choice
	prompt "/dev management"
	default BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_DEVTMPFS
config BR2_ROOTFS_DEVICE_CREATION_STATIC
	bool "Static using device table"
config BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_DEVTMPFS
	bool "Dynamic using devtmpfs only"
config BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_MDEV
	bool "Dynamic using devtmpfs + mdev"
	select BR2_PACKAGE_BUSYBOX
endchoice

config BR2_SYSTEM_DHCP
	string "Network interface to configure through DHCP"
	depends on BR2_PACKAGE_BUSYBOX
config BR2_ROOTFS_OVERLAY
	string "Root filesystem overlay directories"
config BR2_ROOTFS_POST_BUILD_SCRIPT
	string "Custom scripts to run before creating filesystem images"
config BR2_ROOTFS_POST_IMAGE_SCRIPT
	string "Custom scripts to run after creating filesystem images"
config BR2_ROOTFS_POST_SCRIPT_ARGS
	string "Extra arguments passed to custom scripts"

config BR2_PACKAGE_BUSYBOX
	bool "BusyBox"
	default y

config BR2_LINUX_KERNEL
	bool "Linux Kernel"
if BR2_LINUX_KERNEL
choice
	prompt "Kernel version"
config BR2_LINUX_KERNEL_LATEST_VERSION
	bool "Latest version"
config BR2_LINUX_KERNEL_CUSTOM_VERSION
	bool "Custom version"
config BR2_LINUX_KERNEL_CUSTOM_TARBALL
	bool "Custom tarball"
endchoice
config BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE
	string "Kernel version"
	depends on BR2_LINUX_KERNEL_CUSTOM_VERSION
config BR2_LINUX_KERNEL_CUSTOM_TARBALL_LOCATION
	string "URL of custom kernel tarball"
	depends on BR2_LINUX_KERNEL_CUSTOM_TARBALL
choice
	prompt "Kernel configuration"
config BR2_LINUX_KERNEL_USE_DEFCONFIG
	bool "Using an in-tree defconfig file"
config BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG
	bool "Use the architecture default configuration"
config BR2_LINUX_KERNEL_USE_CUSTOM_CONFIG
	bool "Using a custom (def)config file"
endchoice
config BR2_LINUX_KERNEL_DEFCONFIG
	string "Defconfig name"
	depends on BR2_LINUX_KERNEL_USE_DEFCONFIG
config BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE
	string "Configuration file path"
	depends on BR2_LINUX_KERNEL_USE_CUSTOM_CONFIG
config BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES
	string "Additional configuration fragment files"
config BR2_LINUX_KERNEL_DTS_SUPPORT
	bool "Build a Device Tree Blob (DTB)"
config BR2_LINUX_KERNEL_INTREE_DTS_NAME
	string "In-tree Device Tree Source file names"
	depends on BR2_LINUX_KERNEL_DTS_SUPPORT
config BR2_LINUX_KERNEL_NEEDS_HOST_OPENSSL
	bool "Needs host OpenSSL"
config BR2_LINUX_KERNEL_NEEDS_HOST_LIBELF
	bool "Needs host libelf"
endif

config BR2_TARGET_ROOTFS_EXT2
	bool "ext2/3/4 root filesystem"
if BR2_TARGET_ROOTFS_EXT2
choice
	prompt "ext2/3/4 variant"
	default BR2_TARGET_ROOTFS_EXT2_2
config BR2_TARGET_ROOTFS_EXT2_2
	bool "ext2 (rev1)"
config BR2_TARGET_ROOTFS_EXT2_4
	bool "ext4"
endchoice
config BR2_TARGET_ROOTFS_EXT2_SIZE
	string "exact size"
	default "60M"
endif
config BR2_TARGET_ROOTFS_TAR
	bool "tar the root filesystem"
	default y

config BR2_PACKAGE_HOST_QEMU
	bool "host qemu"
config BR2_PACKAGE_HOST_QEMU_SYSTEM_MODE
	bool "Enable system emulation"
	depends on BR2_PACKAGE_HOST_QEMU
config BR2_PACKAGE_HOST_DOSFSTOOLS
	bool "host dosfstools"
config BR2_PACKAGE_HOST_GENIMAGE
	bool "host genimage"
config BR2_PACKAGE_HOST_MTOOLS
	bool "host mtools"

config BR2_PACKAGE_LIBFFI
	bool "libffi"
config BR2_PACKAGE_SQLITE
	bool "sqlite"
config BR2_PACKAGE_OPENSSL
	bool "openssl support"
config BR2_PACKAGE_GMP
	bool "gmp"
config BR2_PACKAGE_LIBNL
	bool "libnl"
	depends on BR2_TOOLCHAIN_HAS_THREADS
config BR2_PACKAGE_LIBMNL
	bool "libmnl"
config BR2_PACKAGE_LIBNFTNL
	bool "libnftnl"
config BR2_PACKAGE_LIBPCAP
	bool "libpcap"

config BR2_PACKAGE_PYTHON3
	bool "python3"
	depends on BR2_USE_WCHAR
	depends on BR2_USE_MMU
	depends on BR2_TOOLCHAIN_HAS_THREADS
	depends on !BR2_STATIC_LIBS
	select BR2_PACKAGE_LIBFFI
if BR2_PACKAGE_PYTHON3
choice
	prompt "python3 module format to install"
	default BR2_PACKAGE_PYTHON3_PYC_ONLY
config BR2_PACKAGE_PYTHON3_PY_ONLY
	bool ".py sources only"
config BR2_PACKAGE_PYTHON3_PYC_ONLY
	bool ".pyc compiled sources only"
config BR2_PACKAGE_PYTHON3_PY_PYC
	bool ".py sources and .pyc compiled"
endchoice
config BR2_PACKAGE_PYTHON3_SQLITE
	bool "sqlite module"
	select BR2_PACKAGE_SQLITE
config BR2_PACKAGE_PYTHON3_SSL
	bool "ssl"
	select BR2_PACKAGE_OPENSSL
config BR2_PACKAGE_PYTHON_PYROUTE2
	bool "python-pyroute2"
	select BR2_PACKAGE_PYTHON3_SQLITE
	select BR2_PACKAGE_PYTHON3_SSL # runtime
endif

config BR2_PACKAGE_STRONGSWAN
	bool "strongswan"
	depends on BR2_USE_MMU
	depends on BR2_TOOLCHAIN_HAS_THREADS
	depends on BR2_TOOLCHAIN_HAS_ATOMIC
	depends on !BR2_STATIC_LIBS
if BR2_PACKAGE_STRONGSWAN
choice
	prompt "Cryptographic backend"
	default BR2_PACKAGE_STRONGSWAN_GMP
config BR2_PACKAGE_STRONGSWAN_OPENSSL
	bool "OpenSSL"
	select BR2_PACKAGE_OPENSSL
config BR2_PACKAGE_STRONGSWAN_GMP
	bool "GNU MP (libgmp)"
	select BR2_PACKAGE_GMP
endchoice
config BR2_PACKAGE_STRONGSWAN_CHARON
	bool "Enable the IKEv1/IKEv2 keying daemon charon"
	default y
config BR2_PACKAGE_STRONGSWAN_VICI
	bool "Enable vici/swanctl"
	default y
	depends on BR2_PACKAGE_STRONGSWAN_CHARON
endif

config BR2_PACKAGE_HOSTAPD
	bool "hostapd"
	depends on BR2_USE_MMU
if BR2_PACKAGE_HOSTAPD
config BR2_PACKAGE_HOSTAPD_DRIVER_NL80211
	bool "Enable nl80211 driver"
	default y
	depends on BR2_TOOLCHAIN_HAS_THREADS
	select BR2_PACKAGE_LIBNL
endif

config BR2_PACKAGE_WPA_SUPPLICANT
	bool "wpa_supplicant"
	depends on BR2_USE_MMU
if BR2_PACKAGE_WPA_SUPPLICANT
config BR2_PACKAGE_WPA_SUPPLICANT_NL80211
	bool "Enable nl80211 support"
	default y
	depends on BR2_TOOLCHAIN_HAS_THREADS
	select BR2_PACKAGE_LIBNL
config BR2_PACKAGE_WPA_SUPPLICANT_CTRL_IFACE
	bool "Enable the control interface"
	default y
config BR2_PACKAGE_WPA_SUPPLICANT_CLI
	bool "Install wpa_cli binary"
	depends on BR2_PACKAGE_WPA_SUPPLICANT_CTRL_IFACE
endif

config BR2_PACKAGE_PPPD
	bool "pppd"
	depends on !BR2_STATIC_LIBS
	depends on BR2_USE_MMU
config BR2_PACKAGE_DNSMASQ
	bool "dnsmasq"
config BR2_PACKAGE_NFTABLES
	bool "nftables"
	depends on BR2_USE_WCHAR
	depends on BR2_TOOLCHAIN_HEADERS_AT_LEAST_3_12
	select BR2_PACKAGE_LIBMNL
	select BR2_PACKAGE_LIBNFTNL
config BR2_PACKAGE_IPROUTE2
	bool "iproute2"
	depends on BR2_USE_MMU
	depends on BR2_TOOLCHAIN_HEADERS_AT_LEAST_3_4
config BR2_PACKAGE_IW
	bool "iw"
	depends on BR2_TOOLCHAIN_HAS_THREADS
	select BR2_PACKAGE_LIBNL
config BR2_PACKAGE_TCPDUMP
	bool "tcpdump"
	select BR2_PACKAGE_LIBPCAP

config BR2_PACKAGE_RPI_FIRMWARE
	bool "rpi-firmware"
	depends on BR2_arm || BR2_aarch64
if BR2_PACKAGE_RPI_FIRMWARE
choice
	prompt "Firmware to boot"
	default BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI
config BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI
	bool "rpi 0/1/2/3 (default)"
config BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI4
	bool "rpi 4 (default)"
endchoice
config BR2_PACKAGE_RPI_FIRMWARE_CONFIG_FILE
	string "Path to a file stored as boot/config.txt"
endif
config BR2_PACKAGE_RPI_WIFI_FIRMWARE
	bool "rpi-wifi-firmware"
	depends on BR2_arm || BR2_aarch64

menu "External options"
source "$BR2_EXTERNAL_MOBILE_ROUTER_PATH/Config.in"
endmenu
"""

# A toolchain able to build the router: what both defconfigs choose.
GOOD_TOOLCHAIN = "BR2_x86_64=y\nBR2_TOOLCHAIN_BUILDROOT_GLIBC=y\nBR2_LINUX_KERNEL=y\n" \
    "BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_1=y\n"


# --- helpers -----------------------------------------------------------------------------


def external_name() -> str:
    fields = dict(
        line.split(":", 1) for line in (TREE / "external.desc").read_text().splitlines() if line
    )
    return fields["name"].strip()


def path_var() -> str:
    return f"BR2_EXTERNAL_{external_name()}_PATH"


def make_vars(mk: Path) -> dict[str, str]:
    """Variable assignments of a package .mk file (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", mk.read_text())
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_]+)\s*(\+=|:=|\?=|=)\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(3).strip()
    return out


def pkg_prefix(pkg_dir: Path) -> str:
    return pkg_dir.name.upper().replace("-", "_")


def expand_external(value: str) -> str:
    return value.replace(f"$({path_var()})", str(TREE))


DEFCONFIG_LINE = re.compile(r'^(BR2_[A-Za-z0-9_]+)=(y|m|-?[0-9]+|0x[0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$')
NOT_SET_LINE = re.compile(r"^# (BR2_[A-Za-z0-9_]+) is not set$")


def parse_defconfig(path: Path) -> dict[str, str]:
    """``{symbol: value}`` with strings unquoted and ``is not set`` as ``n``; bad lines fail."""
    values: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = DEFCONFIG_LINE.match(line)
        unset = NOT_SET_LINE.match(line)
        if m:
            sym, value = m.group(1), m.group(2)
            if value.startswith('"'):
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif unset:
            sym, value = unset.group(1), "n"
        elif line.startswith("#"):
            continue
        else:
            pytest.fail(f"{path.name}:{n}: not BR2_...=... syntax: {line!r}")
        assert sym not in values, f"{path.name}:{n}: {sym} set twice"
        values[sym] = value
    return values


def fragment_options(path: Path) -> dict[str, str]:
    opts: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or (line.startswith("#") and " is not set" not in line):
            continue
        m = re.match(r'^(CONFIG_[A-Z0-9_]+)=(y|m|-?[0-9]+|0x[0-9a-fA-F]+|"[^"]*")$', line)
        unset = re.match(r"^# (CONFIG_[A-Z0-9_]+) is not set$", line)
        assert m or unset, f"{path.name}:{n}: not a kernel config line: {line!r}"
        key, value = (m.group(1), m.group(2)) if m else (unset.group(1), "n")  # type: ignore[union-attr]
        assert key not in opts, f"{path.name}:{n}: {key} set twice"
        opts[key] = value
    return opts


@pytest.fixture
def kconf_factory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Build a Kconfig from the upstream model plus our tree; warnings are collected."""
    monkeypatch.setenv(path_var(), str(TREE))
    monkeypatch.setenv("KCONFIG_WARN_UNDEF", "y")
    monkeypatch.setenv("CONFIG_", "")  # Buildroot symbols carry their BR2_ prefix themselves
    top = tmp_path / "Config.in"
    top.write_text(UPSTREAM_KCONFIG.replace("MOBILE_ROUTER", external_name()))

    def make(config: str | None = None) -> kconfiglib.Kconfig:
        kconf = kconfiglib.Kconfig(str(top), warn_to_stderr=False)
        kconf.warn_assign_undef = True
        if config is not None:
            # With an empty CONFIG_ prefix kconfiglib would read "# text with a=b" as an
            # assignment; Buildroot's kconfig skips comments other than "is not set".
            lines = [x for x in config.splitlines() if not x.startswith("#") or NOT_SET_LINE.match(x)]
            cfg = tmp_path / "test.config"
            cfg.write_text("\n".join(lines) + "\n")
            kconf.load_config(str(cfg))
        return kconf

    return make


def our_symbols(kconf: kconfiglib.Kconfig) -> set[str]:
    return {
        s.name for s in kconf.unique_defined_syms
        if any(Path(node.filename).resolve().is_relative_to(TREE) for node in s.nodes)
    }


# --- external.desc, Config.in, external.mk ---------------------------------------------------


def test_external_desc_names_the_path_variable_used_everywhere() -> None:
    name = external_name()
    assert name == "MOBILE_ROUTER"
    assert re.fullmatch(r"[A-Za-z0-9_]+", name)
    desc = dict(line.split(":", 1) for line in (TREE / "external.desc").read_text().splitlines() if line)
    assert set(desc) <= {"name", "desc"}, "external.desc knows only name: and desc:"
    assert 0 < len(desc.get("desc", "").strip()) <= 45
    used = set()
    for f in TREE.rglob("*"):
        if f.is_file():
            used |= set(re.findall(r"BR2_EXTERNAL_([A-Za-z0-9_]+?)_PATH", f.read_text(errors="replace")))
    assert used == {name}, f"files refer to {used}, external.desc says {name}"


def test_external_mk_includes_every_package_mk() -> None:
    text = (TREE / "external.mk").read_text()
    assert f"include $(sort $(wildcard $({path_var()})/package/*/*.mk))" in text
    for pkg in PACKAGE_DIRS:
        assert (pkg / f"{pkg.name}.mk").is_file(), f"{pkg.name}: no {pkg.name}.mk"
        assert (pkg / "Config.in").is_file(), f"{pkg.name}: no Config.in"


def test_kconfig_parses_strictly_and_sources_every_package(kconf_factory) -> None:
    kconf = kconf_factory()
    assert kconf.warnings == []
    sourced = {Path(f).resolve() for f in kconf.kconfig_filenames}
    for pkg in PACKAGE_DIRS:
        assert (pkg / "Config.in").resolve() in sourced, f"{pkg.name}/Config.in is not sourced"
        sym = f"BR2_PACKAGE_{pkg_prefix(pkg)}"
        assert sym in our_symbols(kconf), f"{pkg.name}/Config.in must define {sym}"


def test_kconfig_rejects_an_undefined_reference(
    kconf_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strictness the test above relies on: a typo in a select is reported."""
    broken = tmp_path / "broken"
    shutil.copytree(TREE, broken, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = broken / "package" / "python-mobile-router" / "Config.in"
    cfg.write_text(cfg.read_text().replace("BR2_PACKAGE_IPROUTE2", "BR2_PACKAGE_IPROUTE3"))
    monkeypatch.setenv(path_var(), str(broken))
    kconf = kconf_factory()
    assert any("BR2_PACKAGE_IPROUTE3" in w for w in kconf.warnings)


def evaluate_all(kconf: kconfiglib.Kconfig) -> None:
    """Compute every value: kconfiglib warns about a 'select' of a symbol whose own
    dependencies are unmet only when that symbol's value is computed."""
    for sym in kconf.unique_defined_syms:
        _ = sym.str_value


def test_router_package_selects_runtime_without_unmet_dependencies(kconf_factory) -> None:
    kconf = kconf_factory(GOOD_TOOLCHAIN + "BR2_PACKAGE_PYTHON_MOBILE_ROUTER=y\n")
    router = kconf.syms["BR2_PACKAGE_PYTHON_MOBILE_ROUTER"]
    assert router.str_value == "y"
    selected = {target.name for target, _cond in router.selects}
    assert sorted(RUNTIME_SYMBOLS - selected) == [], "select runtime packages explicitly"
    off = sorted(s for s in RUNTIME_SYMBOLS if kconf.syms[s].str_value != "y")
    assert off == [], f"enabling the router leaves {off} off"
    evaluate_all(kconf)
    assert kconf.warnings == []


@pytest.mark.parametrize("libc", ["GLIBC", "UCLIBC"])
@pytest.mark.parametrize("libs", ["BR2_SHARED_LIBS", "BR2_STATIC_LIBS"])
@pytest.mark.parametrize("headers", ["6_1", "3_2"])
def test_router_package_dependencies_are_propagated(kconf_factory, libc: str, libs: str, headers: str) -> None:
    """On every toolchain: either the package and all it selects are buildable, or the
    package is hidden and its comment says why. Never a select with unmet dependencies."""
    config = (f"BR2_x86_64=y\nBR2_TOOLCHAIN_BUILDROOT_{libc}=y\n{libs}=y\nBR2_LINUX_KERNEL=y\n"
              f"BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_{headers}=y\nBR2_PACKAGE_PYTHON_MOBILE_ROUTER=y\n")
    kconf = kconf_factory(config)
    evaluate_all(kconf)
    assert kconf.warnings == []
    buildable = libc == "GLIBC" and libs == "BR2_SHARED_LIBS" and headers == "6_1"
    assert kconf.syms["BR2_PACKAGE_PYTHON_MOBILE_ROUTER"].str_value == ("y" if buildable else "n")
    comments = [
        n for n in kconf.node_iter()
        if n.item == kconfiglib.COMMENT and "python-mobile-router needs" in n.prompt[0]
    ]
    assert len(comments) == 1
    assert (kconfiglib.expr_value(comments[0].dep) == 2) == (not buildable)


def test_pyproject_dependencies_are_selected() -> None:
    """Every runtime dependency in pyproject.toml has its Buildroot package selected."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    text = (TREE / "package" / "python-mobile-router" / "Config.in").read_text()
    selects = set(re.findall(r"^\s*select\s+(\S+)", text, re.M))
    for dep in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0)  # type: ignore[union-attr]
        sym = "BR2_PACKAGE_PYTHON_" + re.sub(r"[-.]", "_", name).upper()
        assert sym in selects, f"pyproject needs {name}: select {sym}"


# --- package .mk and .hash ---------------------------------------------------------------


@pytest.mark.parametrize("pkg", PACKAGE_DIRS, ids=lambda p: p.name)
def test_package_mk_variables(pkg: Path) -> None:
    mk = pkg / f"{pkg.name}.mk"
    lines = mk.read_text().splitlines()
    bar = "#" * 80
    assert lines[:5] == [bar, "#", f"# {pkg.name}", "#", bar], "Buildroot's .mk header"
    prefix = pkg_prefix(pkg)
    v = make_vars(mk)
    for suffix in ("VERSION", "SITE", "SETUP_TYPE", "LICENSE"):
        assert v.get(f"{prefix}_{suffix}"), f"{mk.name}: {prefix}_{suffix} is not set"
    stray = [k for k in v if not k.startswith(prefix + "_")]
    assert stray == [], f"{mk.name}: variables outside the {prefix}_ namespace: {stray}"
    assert v[f"{prefix}_SETUP_TYPE"] in {"setuptools", "pep517", "flit", "maturin"}
    assert [x for x in lines if x.strip()][-1] == "$(eval $(python-package))"
    assert pkg.name.startswith("python-"), "Buildroot names Python module packages python-*"


def test_router_package_builds_this_repository() -> None:
    pkg = TREE / "package" / "python-mobile-router"
    v = make_vars(pkg / "python-mobile-router.mk")
    assert v["PYTHON_MOBILE_ROUTER_SITE_METHOD"] == "local"
    site = Path(expand_external(v["PYTHON_MOBILE_ROUTER_SITE"])).resolve()
    assert site == REPO, f"SITE resolves to {site}, not the repository"
    assert (site / "pyproject.toml").is_file() and (site / "router" / "__init__.py").is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert v["PYTHON_MOBILE_ROUTER_VERSION"] == pyproject["project"]["version"]
    backend = pyproject["build-system"]["build-backend"]
    assert backend.startswith("setuptools") == (v["PYTHON_MOBILE_ROUTER_SETUP_TYPE"] == "setuptools")
    for lic in v.get("PYTHON_MOBILE_ROUTER_LICENSE_FILES", "").split():
        assert (REPO / lic).is_file(), f"license file {lic} missing"


def test_vici_package_is_a_pinned_pypi_sdist_with_hashes() -> None:
    pkg = TREE / "package" / "python-vici"
    v = make_vars(pkg / "python-vici.mk")
    version = v["PYTHON_VICI_VERSION"]
    assert re.fullmatch(r"https://files\.pythonhosted\.org/packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}",
                        v["PYTHON_VICI_SITE"])
    source = v["PYTHON_VICI_SOURCE"].replace("$(PYTHON_VICI_VERSION)", version)
    assert source == f"vici-{version}.tar.gz"
    # the pinned version satisfies what pyproject.toml asks for
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"vici\b", d))[len("vici"):]
    assert Version(version) in SpecifierSet(spec)
    # .hash: "<algo>  <hex>  <file>" for the tarball (sha256) and every license file
    lengths = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
    hashed: dict[str, set[str]] = {}
    for n, line in enumerate((pkg / "python-vici.hash").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"(md5|sha1|sha256|sha512)  ([0-9a-f]+)  (\S+)", line)
        assert m, f"python-vici.hash:{n}: {line!r}"
        assert len(m.group(2)) == lengths[m.group(1)], f"python-vici.hash:{n}: bad digest length"
        hashed.setdefault(m.group(3), set()).add(m.group(1))
    assert "sha256" in hashed.get(source, set()), f"no sha256 for {source}"
    for lic in v["PYTHON_VICI_LICENSE_FILES"].split():
        assert "sha256" in hashed.get(lic, set()), f"no sha256 for license file {lic}"
    assert set(hashed) <= {source, *v["PYTHON_VICI_LICENSE_FILES"].split()}, "stale hash lines"


# --- defconfigs ------------------------------------------------------------------------------


def test_both_boards_have_a_defconfig() -> None:
    names = {p.name for p in DEFCONFIGS}
    assert names == {"mobile_router_qemu_x86_64_defconfig", "mobile_router_raspberrypi4_64_defconfig"}


@pytest.mark.parametrize("defconfig", DEFCONFIGS, ids=lambda p: p.name)
def test_defconfig_symbols_are_known_and_take_effect(defconfig: Path, kconf_factory) -> None:
    values = parse_defconfig(defconfig)
    kconf = kconf_factory()
    ours = our_symbols(kconf)
    for sym in values:
        assert sym in kconf.syms and kconf.syms[sym].nodes, f"{defconfig.name}: unknown symbol {sym}"
        if sym.startswith("BR2_PACKAGE_") and sym not in ours:
            # an upstream package: it must be in the Buildroot 2024.02 model above
            assert f"config {sym}\n" in UPSTREAM_KCONFIG
    kconf = kconf_factory(defconfig.read_text())
    assert kconf.warnings == [], f"{defconfig.name}: {kconf.warnings}"
    wrong = {s: (v, kconf.syms[s].str_value) for s, v in values.items() if kconf.syms[s].str_value != v}
    assert wrong == {}, f"{defconfig.name}: set -> effective value differs (unmet dependency?)"
    assert kconf.syms["BR2_PACKAGE_PYTHON_MOBILE_ROUTER"].str_value == "y"
    off = sorted(s for s in RUNTIME_SYMBOLS if kconf.syms[s].str_value != "y")
    assert off == [], f"{defconfig.name}: {off} off"


@pytest.mark.parametrize("defconfig", DEFCONFIGS, ids=lambda p: p.name)
def test_defconfig_paths_exist(defconfig: Path) -> None:
    values = parse_defconfig(defconfig)
    ext = f"$({path_var()})"
    assert values["BR2_ROOTFS_OVERLAY"] == f"{ext}/../rootfs"
    assert f"{ext}/board/mobile-router/post-build.sh" in values["BR2_ROOTFS_POST_BUILD_SCRIPT"].split()
    fragments = values["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"].split()
    assert f"{ext}/board/mobile-router/linux.fragment" in fragments
    qemu_fragment = f"{ext}/board/mobile-router/qemu-x86_64/linux.fragment"
    assert (qemu_fragment in fragments) == ("qemu" in defconfig.name)
    checked = 0
    for sym, value in values.items():
        tokens = value.split() if sym in PATH_OPTIONS else [t for t in value.split() if "$(BR2_EXTERNAL" in t]
        for token in tokens:
            if token.startswith(ext):
                path = Path(expand_external(token))
                assert path.exists(), f"{defconfig.name}: {sym}: {token} -> {path} missing"
                if sym.endswith("_SCRIPT"):
                    assert os.access(path, os.X_OK), f"{path} is not executable"
                checked += 1
            else:
                assert "$(" not in token, f"{defconfig.name}: {sym}: unknown variable in {token}"
                assert token in UPSTREAM_PATHS, f"{defconfig.name}: {sym}: unknown upstream path {token}"
    assert checked >= 3


# --- kernel fragments ---------------------------------------------------------------------


def test_kernel_fragments() -> None:
    common = fragment_options(BOARD / "linux.fragment")
    qemu = fragment_options(BOARD / "qemu-x86_64" / "linux.fragment")
    missing = sorted(k for k in REQUIRED_KERNEL if common.get(k) not in {"y", "m"})
    assert missing == [], f"linux.fragment lacks {missing}"
    assert "CONFIG_MAC80211_HWSIM" not in common, "hwsim belongs to the QEMU fragment only"
    assert qemu.get("CONFIG_MAC80211_HWSIM") in {"y", "m"}
    assert qemu.get("CONFIG_MAC80211") == "y"
    clash = {k: (common[k], qemu[k]) for k in common.keys() & qemu.keys() if common[k] != qemu[k]}
    assert clash == {}


# Syntax busybox ash does not have (a small subset of checkbashisms' list).
BASHISMS = [r"\[\[", r"^\s*function\s", r"<<<", r"\$'", r"\w+=\(", r"\$\{\w+//",
            r"^\s*source\s", r"&>", r"\[ [^]]* == ", r"\$\{\w+:[0-9]", r"\bdeclare\b", r"\$RANDOM"]


# --- post-build and target scripts --------------------------------------------------------


def test_scripts_are_executable_and_parse() -> None:
    post = BOARD / "post-build.sh"
    assert post.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["bash", "-n", str(post)], capture_output=True).returncode == 0
    # These run on the target, where /bin/sh is busybox ash: POSIX sh only.
    posix_sh = shutil.which("dash") or shutil.which("sh")
    assert posix_sh
    for script in (BOARD / "respawn", BOARD / "init.d" / "router-service"):
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} not executable"
        assert script.read_text().startswith("#!/bin/sh\n"), f"{script}: the target has no bash"
        r = subprocess.run([posix_sh, "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script}: {r.stderr}"
        for n, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            found = [b for b in BASHISMS if re.search(b, code)]
            assert not found, f"{script.name}:{n}: bash-only syntax {found}: {line!r}"


def run_post_build(target: Path, br2_config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BR2_CONFIG"}
    if br2_config is not None:
        env["BR2_CONFIG"] = str(br2_config)
    return subprocess.run(["bash", str(BOARD / "post-build.sh"), str(target), "extra-arg"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_post_build_installs_init_state_dir_and_locks_keys(tmp_path: Path) -> None:
    target = tmp_path / "target"
    secrets = ["etc/router/keys/inner.key", "etc/swanctl/conf.d/corp.conf",
               "etc/swanctl/private/router.pem", "etc/ppp/chap-secrets"]
    for rel in [*secrets, "etc/router/router.toml"]:
        f = target / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x\n")
        f.chmod(0o644)
    (target / "etc/init.d").mkdir(parents=True)
    (target / "etc/init.d/S91router-ha").write_text("#!/bin/sh\n# from the overlay\n")
    r = run_post_build(target)
    assert r.returncode == 0, r.stderr
    for rel in secrets:
        assert stat.S_IMODE((target / rel).stat().st_mode) == 0o600, rel
    for rel in ("etc/router/keys", "etc/swanctl/private"):
        assert stat.S_IMODE((target / rel).stat().st_mode) == 0o700, rel
    assert stat.S_IMODE((target / "etc/router/router.toml").stat().st_mode) == 0o644
    assert (target / "var/lib/router").is_dir()
    s90 = target / "etc/init.d/S90router"
    assert s90.read_bytes() == (BOARD / "init.d" / "router-service").read_bytes()
    assert os.access(s90, os.X_OK)
    assert "from the overlay" in (target / "etc/init.d/S91router-ha").read_text(), "overlay kept"
    assert os.access(target / "usr/libexec/router/respawn", os.X_OK)
    assert "router Python package is not in" in r.stderr
    # idempotent: a second run changes nothing and still succeeds
    assert run_post_build(target).returncode == 0


def test_post_build_installs_systemd_units_for_systemd_images(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    config = tmp_path / ".config"
    config.write_text("BR2_INIT_SYSTEMD=y\n")
    r = run_post_build(target, config)
    assert r.returncode == 0, r.stderr
    for name, module in (("router", "router"), ("router-ha", "router.ha")):
        unit = target / f"usr/lib/systemd/system/{name}.service"
        text = unit.read_text()
        assert f"-m {module} --config" in text and "Restart=always" in text
        link = target / f"etc/systemd/system/multi-user.target.wants/{name}.service"
        assert link.is_symlink() and link.resolve() == unit.resolve()
    assert not (target / "etc/init.d/S90router").exists()


def test_respawn_gives_up_after_retry_crashes(tmp_path: Path) -> None:
    log = tmp_path / "runs"
    env = {**os.environ, "RESPAWN_TIMEOUT": "0", "RESPAWN_RETRY": "2", "RESPAWN_THRESHOLD": "3600"}
    r = subprocess.run(["sh", str(BOARD / "respawn"), "t", "sh", "-c", f"echo run >> {log}; exit 3"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert log.read_text().count("run") == 3  # procd: give up when crashes > retry
    assert "giving up" in r.stderr


def test_respawn_stops_its_daemon_on_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    marker = f"RESPAWN_TEST={tmp_path}"
    proc = subprocess.Popen(["sh", str(BOARD / "respawn"), "t", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"],
                            env={**os.environ, "RESPAWN_TEST": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(pidfile.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not Path(f"/proc/{child}").exists(), "the daemon outlived its supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_if_ours(pidfile, marker)


def kill_if_ours(pidfile: Path, marker: str) -> None:
    """SIGKILL the process named in pidfile if it is still one of this test's (its
    environment holds marker), so a reused pid is never hit."""
    if not (pidfile.exists() and pidfile.read_text().strip()):
        return
    pid = int(pidfile.read_text())
    with contextlib.suppress(OSError):
        if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            os.kill(pid, signal.SIGKILL)


def pid_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":  # exited; waiting for a reaper that is not ours
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize(("script", "module", "config"), [
    ("S90router", "router", "router.toml"),
    ("S91router-ha", "router.ha", "ha.toml"),
])
def test_init_script_starts_supervises_and_stops_the_daemon(
    tmp_path: Path, script: str, module: str, config: str
) -> None:
    root = tmp_path / "root"
    name = script[3:]
    respawn = root / "usr/libexec/router/respawn"
    respawn.parent.mkdir(parents=True)
    shutil.copy2(BOARD / "respawn", respawn)
    argv, daemon_pid = tmp_path / "argv", tmp_path / "daemon.pid"
    fake_python = tmp_path / "python3"
    fake_python.write_text(f'#!/bin/sh\necho $$ > {daemon_pid}\necho "$@" > {argv}\nexec sleep 30\n')
    fake_python.chmod(0o755)
    (root / "etc/default").mkdir(parents=True)
    (root / f"etc/default/{name}").write_text(f"PYTHON={fake_python}\nARGS=--verbose\n")
    init = tmp_path / script
    shutil.copy2(BOARD / "init.d" / "router-service", init)
    env = {**os.environ, "ROUTER_INIT_ROOT": str(root)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(init), *args], env=env, capture_output=True, text=True, timeout=30)

    # no config file: not started, and that is not a boot failure
    r = run("start")
    assert r.returncode == 0 and f"{config} not found" in r.stdout
    assert not (root / f"var/run/{name}.pid").exists()

    (root / "etc/router").mkdir()
    (root / f"etc/router/{config}").write_text("")
    assert run("status").returncode == 3
    try:
        check_start_stop(run, root / f"var/run/{name}.pid", argv, daemon_pid,
                         ["-m", module, "--config", f"{root}/etc/router/{config}", "--verbose"])
    finally:  # never leave a supervisor or a daemon behind, even when an assertion failed
        for pidfile in (root / f"var/run/{name}.pid", daemon_pid):
            kill_if_ours(pidfile, f"ROUTER_INIT_ROOT={root}")


def check_start_stop(run, pidfile: Path, argv: Path, daemon_pid: Path, expected: list[str]) -> None:
    r = run("start")
    assert r.returncode == 0 and "OK" in r.stdout, r
    deadline = time.monotonic() + 10
    while not (argv.exists() and argv.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert argv.read_text().split() == expected
    assert run("status").returncode == 0
    assert "already running" in run("start").stdout
    supervisor = int(pidfile.read_text())
    daemon = int(daemon_pid.read_text())
    started = time.monotonic()
    assert run("stop").returncode == 0
    assert time.monotonic() - started < 5, "SIGTERM should stop it, not the SIGKILL fallback"
    assert pid_gone(supervisor) and pid_gone(daemon), "supervisor or daemon survived stop"
    assert run("status").returncode == 3
    assert run("bogus").returncode == 1


def test_readme_says_how_to_build() -> None:
    text = (TREE / "README.md").read_text()
    for defconfig in DEFCONFIGS:
        assert f"make BR2_EXTERNAL=/path/to/repo/buildroot-config {defconfig.name} && make" in text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
