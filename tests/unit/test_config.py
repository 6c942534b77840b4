"""Config loading: the lab's shapes load, and every mistake is a line-precise ConfigError."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from router.config import ConfigError, Secret, load_home_agent_config, load_router_config
from tests.config_samples import HA_TOML, INNER_KEY, ROUTER_TOML


def write(tmp_path: Path, text: str, name: str = "router.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    key = tmp_path / "outer.key"
    if not key.exists():
        key.write_text("hex:ffeeddccbbaa99887766554433221100\n")
        os.chmod(key, 0o600)
    return path


def test_router_config_loads_lab_shape(tmp_path: Path) -> None:
    config = load_router_config(write(tmp_path, ROUTER_TOML))
    assert config.inner.home_agent == IPv4Address("10.10.0.1")
    assert config.inner.key.value == bytes.fromhex(INNER_KEY)
    assert config.inner.algorithm == "hmac-md5" and config.inner.lifetime == 600
    assert config.outer is not None and config.outer.key.value[:2] == b"\xff\xee"
    assert config.outer.home_network == IPv4Network("192.0.2.0/24")
    assert config.vpn is not None and config.vpn.vici_socket == "/run/charon.vici"
    assert [u.name for u in config.uplinks] == ["wlan", "cell"]
    assert config.uplinks[1].metered is True and config.uplinks[0].metered is False
    assert config.web is not None and config.web.listen_port == 80
    assert config.mobile_networks == (IPv4Network("10.1.1.0/24"),)


def test_keys_never_appear_in_repr_or_errors(tmp_path: Path) -> None:
    config = load_router_config(write(tmp_path, ROUTER_TOML))
    text = repr(config) + str(config)
    assert INNER_KEY not in text and bytes.fromhex(INNER_KEY).hex() not in text
    assert "Secret(<16 bytes>)" in text
    bad = ROUTER_TOML.replace(f'key = "hex:{INNER_KEY}"', f'key = "hex:{INNER_KEY}zz"')
    with pytest.raises(ConfigError) as info:
        load_router_config(write(tmp_path, bad))
    assert INNER_KEY not in str(info.value)
    assert repr(Secret(b"secret")) == "Secret(<6 bytes>)"


@pytest.mark.parametrize(
    ("old", "new", "at", "key", "fragment"),
    [
        ("spi = 256", "spi = 12", "spi = 12", "inner.spi", "256..4294967295"),
        ("spi = 256", 'spi = "x"', 'spi = "x"', "inner.spi", "expected an integer"),
        ('home_agent = "10.10.0.1"', 'home_agent = "10.10.0.300"', "10.10.0.300", "inner.home_agent", "IPv4 address"),
        ('kind = "wlan"', 'kind = "lte"', 'kind = "lte"', "uplink[0].kind", "one of wlan, 3g, ethernet"),
        ('apn = "internet"\n', "", 'name = "cell"', "uplink[1].apn", "needs 'modem' and 'apn'"),
        ("priority = 10", "priorty = 10", "priorty = 10", "uplink[0].priorty", "unknown key"),
        ('listen = "10.1.1.1:80"', 'listen = "0.0.0.0:80"', "0.0.0.0:80", "web.listen", "LAN address"),
        ('home_address = "192.0.2.50"', 'home_address = "198.51.100.5"', "198.51.100.5", "outer.home_address", "not inside"),
        ("priority = 10", "priority = true", "priority = true", "uplink[0].priority", "expected an integer"),
    ],
)
def test_router_config_errors_are_line_precise(
    tmp_path: Path, old: str, new: str, at: str, key: str, fragment: str
) -> None:
    assert old in ROUTER_TOML
    text = ROUTER_TOML.replace(old, new, 1)
    lines = text.splitlines()
    # The error points at the offending key's line, or at its table's header when the key is missing.
    line = next(i for i, t in enumerate(lines, 1) if at in t)
    if new == "":
        line = max(i for i, t in enumerate(lines[:line], 1) if t.startswith("[["))
    with pytest.raises(ConfigError) as info:
        load_router_config(write(tmp_path, text))
    error = info.value
    assert (error.line, error.key) == (line, key), str(error)
    assert fragment in str(error)
    assert str(error).startswith(f"{tmp_path / 'router.toml'}:{line}: {key}: ")


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_router_config(write(tmp_path, ROUTER_TOML.replace('spi = 256', 'spi = = 256')))
    assert info.value.line == 8 and "TOML syntax" in str(info.value)


def test_outer_without_vpn_is_rejected(tmp_path: Path) -> None:
    text = ROUTER_TOML.split("[vpn]")[0] + "[[uplink]]" + ROUTER_TOML.split("[[uplink]]", 1)[1]
    with pytest.raises(ConfigError, match=r"\[outer\] and \[vpn\] go together"):
        load_router_config(write(tmp_path, text))


def test_single_system_config_without_outer(tmp_path: Path) -> None:
    text = ROUTER_TOML.split("[outer]")[0] + "[[uplink]]" + ROUTER_TOML.split("[[uplink]]", 1)[1]
    config = load_router_config(write(tmp_path, text))
    assert config.outer is None and config.vpn is None


def test_key_file_with_loose_permissions_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, ROUTER_TOML)
    os.chmod(tmp_path / "outer.key", 0o644)
    with pytest.raises(ConfigError) as info:
        load_router_config(path)
    assert info.value.key == "outer.key_file" and "chmod 600" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_router_config(tmp_path / "nope.toml")


def test_home_agent_config(tmp_path: Path) -> None:
    config = load_home_agent_config(write(tmp_path, HA_TOML, "ha.toml"))
    assert config.address == IPv4Address("10.10.0.1") and config.port == 434
    (node,) = config.mobile_nodes
    assert node.spi == 256 and node.mobile_networks == (IPv4Network("10.1.1.0/24"),)
    assert INNER_KEY not in repr(config)


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ('home_address = "10.10.0.50"', 'home_address = "10.11.0.50"', "mobile_node[0].home_address", "not inside"),
        ('address = "10.10.0.1"', 'address = "10.11.0.1"', "home_agent.address", "not inside"),
        ('algorithm = "hmac-md5"', 'algorithm = "sha1"', "mobile_node[0].algorithm", "one of"),
        ('max_lifetime = 600', 'max_lifetime = 0', "home_agent.max_lifetime", "1..65534"),
    ],
)
def test_home_agent_config_errors(tmp_path: Path, old: str, new: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_home_agent_config(write(tmp_path, HA_TOML.replace(old, new, 1), "ha.toml"))
    assert info.value.key == key and fragment in str(info.value)
    assert info.value.line is not None


def test_home_agent_rejects_overlapping_mobile_networks(tmp_path: Path) -> None:
    second = HA_TOML.split("[[mobile_node]]")[1].replace("10.10.0.50", "10.10.0.51").replace("spi = 256", "spi = 300")
    text = HA_TOML + "\n[[mobile_node]]" + second.replace("10.1.1.0/24", "10.1.0.0/16")
    with pytest.raises(ConfigError, match="overlaps"):
        load_home_agent_config(write(tmp_path, text, "ha.toml"))


def test_shipped_defaults_load_once_keys_are_provisioned(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "rootfs" / "etc" / "router"
    for name in ("inner.key", "outer.key"):
        (tmp_path / name).write_text("hex:" + "ab" * 16)
        os.chmod(tmp_path / name, 0o600)
    text = (root / "router.toml").read_text().replace("/etc/router/keys/", f"{tmp_path}/")
    config = load_router_config(write(tmp_path, text, "shipped.toml"))
    assert config.outer is not None and config.vpn is not None and len(config.uplinks) == 2
    ha_text = (root / "ha.toml.example").read_text().replace("/etc/router/keys/", f"{tmp_path}/")
    assert load_home_agent_config(write(tmp_path, ha_text, "ha.toml")).mobile_nodes[0].spi == 256


def test_outer_udp_tunnel_defaults_to_auto_and_takes_the_inner_systems_choices(tmp_path: Path) -> None:
    """RFC 3519 for the dual system's outer system: the same key and default as the single
    system's [inner] (auto), so a NAT on the uplink is crossed without configuration."""
    config = load_router_config(write(tmp_path, ROUTER_TOML))
    assert config.outer is not None and config.outer.udp_tunnel == "auto"
    for choice in ("always", "never"):
        text = ROUTER_TOML.replace("[outer]\n", f'[outer]\nudp_tunnel = "{choice}"\n', 1)
        outer = load_router_config(write(tmp_path, text)).outer
        assert outer is not None and outer.udp_tunnel == choice
    with pytest.raises(ConfigError) as info:
        load_router_config(write(tmp_path, ROUTER_TOML.replace("[outer]\n", '[outer]\nudp_tunnel = "yes"\n', 1)))
    assert info.value.key == "outer.udp_tunnel" and "one of auto, always, never" in str(info.value)
