"""The home agent's config contract, exactly as issue 4 writes it, and its errors.

The issue's TOML (comments included) must load as is; ``key = "hex:..."`` and ``key_file``
are interchangeable; every mistake is one ``file:line: key: message`` line that never shows
the key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from router.config import ConfigError, load_home_agent_config

ROOT = Path(__file__).resolve().parents[2]
KEY_HEX = "00112233445566778899aabbccddeeff"

# Issue 4, "Deliver" item 1, verbatim.
ISSUE_TOML = """\
[home_agent]
address = "10.10.0.1"          # listens on UDP 434 here
home_network = "10.10.0.0/24"
max_lifetime = 600
[[mobile_node]]
home_address = "10.10.0.50"
spi = 256
key = "hex:00112233445566778899aabbccddeeff"   # or key_file = "..."
algorithm = "hmac-md5"
mobile_networks = ["10.1.1.0/24"]
"""
KEY_LINE = 'key = "hex:00112233445566778899aabbccddeeff"   # or key_file = "..."'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ha.toml"
    path.write_text(text)
    return path


def key_file(tmp_path: Path, mode: int = 0o600, text: str = f"hex:{KEY_HEX}\n") -> Path:
    path = tmp_path / "node.key"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_issues_config_loads_as_written(tmp_path: Path) -> None:
    config = load_home_agent_config(write(tmp_path, ISSUE_TOML))
    assert (config.address, config.home_network, config.max_lifetime, config.port) == (
        IPv4Address("10.10.0.1"), IPv4Network("10.10.0.0/24"), 600, 434)
    (node,) = config.mobile_nodes
    assert (node.home_address, node.spi, node.algorithm) == (IPv4Address("10.10.0.50"), 256, "hmac-md5")
    assert node.key.value == bytes.fromhex(KEY_HEX)
    assert node.mobile_networks == (IPv4Network("10.1.1.0/24"),)
    assert KEY_HEX not in repr(config) and KEY_HEX not in str(node)


@pytest.mark.parametrize("path_form", ["relative", "absolute"])
def test_key_file_is_the_same_key(tmp_path: Path, path_form: str) -> None:
    key = key_file(tmp_path)
    shown = key.name if path_form == "relative" else str(key)  # relative to the config's directory
    config = load_home_agent_config(write(tmp_path, ISSUE_TOML.replace(KEY_LINE, f'key_file = "{shown}"')))
    assert config.mobile_nodes[0].key.value == bytes.fromhex(KEY_HEX)


def test_key_file_readable_by_others_is_one_located_error(tmp_path: Path) -> None:
    key_file(tmp_path, mode=0o644)
    path = write(tmp_path, ISSUE_TOML.replace(KEY_LINE, 'key_file = "node.key"'))
    with pytest.raises(ConfigError) as info:
        load_home_agent_config(path)
    text = str(info.value)
    assert info.value.key == "mobile_node[0].key_file" and info.value.line == 8
    assert "chmod 600" in text and "mode 644" in text
    # Located once: the file/line/key prefix is not repeated inside the message.
    assert text.count(str(path)) == 1 and text.count("mobile_node[0].key_file:") == 1, text
    assert KEY_HEX not in text


@pytest.mark.parametrize(
    ("replacement", "key", "fragment"),
    [
        (f'{KEY_LINE}\nkey_file = "node.key"', "mobile_node[0].key", "exactly one of 'key' and 'key_file'"),
        ("", "mobile_node[0].key", "exactly one of 'key' and 'key_file'"),
        ('key = "hex:0011zz"', "mobile_node[0].key", "not valid hex"),
        ('key = "hex:"', "mobile_node[0].key", "1..64 bytes"),
        (f"key = 0x{KEY_HEX}", "mobile_node[0].key", "value not shown"),
        ('key_file = "missing.key"', "mobile_node[0].key_file", "cannot read"),
    ],
    ids=["both", "neither", "bad-hex", "empty", "not-a-string", "missing-file"],
)
def test_key_mistakes_are_located_and_never_show_the_key(
        tmp_path: Path, replacement: str, key: str, fragment: str) -> None:
    key_file(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_home_agent_config(write(tmp_path, ISSUE_TOML.replace(KEY_LINE, replacement)))
    assert info.value.key == key and fragment in str(info.value), str(info.value)
    assert info.value.line is not None
    assert KEY_HEX not in str(info.value) and str(int(KEY_HEX, 16)) not in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ('algorithm = "hmac-md5"', 'algorithm = "hmac-md4"', "mobile_node[0].algorithm", "one of"),
        ('["10.1.1.0/24"]', '["10.1.1.1/24"]', "mobile_node[0].mobile_networks", "host bits"),
        ('["10.1.1.0/24"]', '"10.1.1.0/24"', "mobile_node[0].mobile_networks", "list"),
        ("spi = 256", "spi = 255", "mobile_node[0].spi", "256..4294967295"),  # 0-255 reserved (§3.5.1)
        ('home_address = "10.10.0.50"', 'home_address = "10.10.1.50"', "mobile_node[0].home_address", "not inside"),
        ('home_address = "10.10.0.50"', 'home_address = "10.10.0.1"', "mobile_node[0].home_address", "own address"),
        ("mobile_networks =", "mobile_network =", "mobile_node[0].mobile_network", "unknown key"),
        ('home_network = "10.10.0.0/24"', 'home_network = "10.10.0.0/33"', "home_agent.home_network", "prefix"),
        ("max_lifetime = 600", "max_lifetime = 65535", "home_agent.max_lifetime", "1..65534"),
    ],
)
def test_bad_values_are_located(tmp_path: Path, old: str, new: str, key: str, fragment: str) -> None:
    assert old in ISSUE_TOML
    with pytest.raises(ConfigError) as info:
        load_home_agent_config(write(tmp_path, ISSUE_TOML.replace(old, new, 1)))
    assert info.value.key == key and fragment in str(info.value), str(info.value)
    assert info.value.line is not None


def test_check_flag_reports_the_file_and_exits_non_zero(tmp_path: Path) -> None:
    good = write(tmp_path, ISSUE_TOML)
    ok = subprocess.run([sys.executable, "-m", "router.ha", "--config", str(good), "--check"],
                        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert ok.returncode == 0 and "ok (1 mobile node(s))" in ok.stdout, ok
    bad = tmp_path / "bad.toml"
    bad.write_text(ISSUE_TOML.replace('algorithm = "hmac-md5"', 'algorithm = "md5"'))
    failed = subprocess.run([sys.executable, "-m", "router.ha", "--config", str(bad), "--check"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert failed.returncode == 2, failed
    assert failed.stderr.strip() == (f"router.ha: {bad}:9: mobile_node[0].algorithm: "
                                     "expected one of hmac-md5, keyed-md5, hmac-sha256, got 'md5'")
    assert KEY_HEX not in failed.stderr + failed.stdout
