"""The guest image has what the lab needs: kernel modules, peer binaries, Python packages.

Runs inside the QEMU guest: python3 -m qemu.run --tests tests/qemu/test_guest_boot.py
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MODULES = [
    "ipip",
    "ip_gre",
    "esp4",
    "xfrm_user",
    "mac80211_hwsim",
    "ppp_generic",
    "sch_netem",
    "9p",
]
# The binary and the arguments that make it print its version: running it proves its shared
# libraries are all in the image, not just the file.
BINARIES = {
    "hostapd": ["-v"],
    "wpa_supplicant": ["-v"],
    "pppd": ["--version"],
    "swanctl": ["--version"],
    "dnsmasq": ["--version"],
    "tshark": ["--version"],
}
CHARON = Path("/usr/lib/ipsec/charon")  # not on PATH in Debian
IMPORTS = ["pyroute2", "vici", "pytest", "hypothesis"]


def loaded_modules() -> set[str]:
    return {line.split()[0] for line in Path("/proc/modules").read_text().splitlines()}


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("module", MODULES)
def test_kernel_module_loads(module: str) -> None:
    before = loaded_modules()
    result = run("modprobe", module)
    assert result.returncode == 0, f"modprobe {module}: {result.stderr}"
    assert Path("/sys/module", module.replace("-", "_")).exists()
    if module not in before:
        # Unload again so the lab can load it with its own parameters (hwsim radios=N).
        run("modprobe", "-r", module)


def test_kernel_loads_tunnel_module_on_demand() -> None:
    """No udev: the kernel itself must find modprobe when a link type needs a module."""
    run("ip", "link", "del", "mrtest0")
    result = run("ip", "link", "add", "mrtest0", "type", "ipip", "local", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    run("ip", "link", "del", "mrtest0")


@pytest.mark.parametrize("binary", sorted(BINARIES))
def test_binary_runs(binary: str) -> None:
    path = shutil.which(binary)
    assert path, f"{binary} not on PATH"
    result = run(path, *BINARIES[binary])
    output = result.stdout + result.stderr
    assert "error while loading shared libraries" not in output, output
    assert output.strip(), f"{binary} printed nothing"


def test_charon_present() -> None:
    assert CHARON.is_file() and os.access(CHARON, os.X_OK), f"{CHARON} missing"


@pytest.mark.parametrize("name", IMPORTS)
def test_python_import(name: str) -> None:
    importlib.import_module(name)


def test_scapy_installed() -> None:
    # Found, not imported: importing scapy costs ~8 s under TCG.
    assert importlib.util.find_spec("scapy") is not None


def test_shares(out_dir: Path) -> None:
    assert Path("/src/qemu/run.py").is_file(), "/src is not the repository"
    assert not os.access("/src", os.W_OK) or run("touch", "/src/.probe").returncode != 0
    probe = out_dir / "probe.txt"
    probe.write_text("written in the guest\n")
    assert probe.read_text() == "written in the guest\n"


def test_runtime_directories() -> None:
    for path in ["/proc/self", "/sys/kernel", "/dev/pts", "/run/lock", "/tmp"]:
        assert Path(path).exists(), path
