"""dnsmasq config rendering and lease parsing (pure parts of the LAN driver)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from router.lan.dnsmasq import LanSettings, parse_leases, render_config, render_servers


def lan(tmp_path: Path) -> LanSettings:
    return LanSettings.default_pool("br-lan", IPv4Interface("10.1.1.1/24"), tmp_path)


def test_default_pool_and_config_bind_to_lan_only(tmp_path: Path) -> None:
    settings = lan(tmp_path)
    assert (settings.pool_start, settings.pool_end) == (IPv4Address("10.1.1.100"), IPv4Address("10.1.1.199"))
    lines = render_config(settings).splitlines()
    assert "interface=br-lan" in lines and "bind-interfaces" in lines
    assert "listen-address=10.1.1.1" in lines
    assert "dhcp-range=10.1.1.100,10.1.1.199,255.255.255.0,43200" in lines
    assert "dhcp-option=option:router,10.1.1.1" in lines
    assert f"servers-file={tmp_path / 'servers'}" in lines
    assert not any(line.startswith("server=") for line in lines)


def test_small_network_pool_stays_inside(tmp_path: Path) -> None:
    settings = LanSettings.default_pool("br-lan", IPv4Interface("10.1.1.1/28"), tmp_path)
    network = settings.address.network
    assert settings.pool_start in network and settings.pool_end in network
    assert settings.pool_start <= settings.pool_end


def test_servers_file() -> None:
    assert render_servers([IPv4Address("10.20.0.53"), IPv4Address("9.9.9.9")]) == "server=10.20.0.53\nserver=9.9.9.9\n"


def test_parse_leases_skips_torn_lines() -> None:
    text = (
        "1764400000 02:AA:bb:cc:dd:01 10.1.1.150 laptop 01:02:aa:bb:cc:dd:01\n"
        "1764400001 02:aa:bb:cc:dd:02 10.1.1.151 * *\n"
        "17644000"  # torn write
        "\nnot-a-time 02:aa:bb:cc:dd:03 10.1.1.152 x *\n"
    )
    leases = parse_leases(text)
    assert [(lease.mac, str(lease.address), lease.hostname) for lease in leases] == [
        ("02:aa:bb:cc:dd:01", "10.1.1.150", "laptop"),
        ("02:aa:bb:cc:dd:02", "10.1.1.151", None),
    ]
