"""dnsmasq config rendering and lease parsing (pure parts of the LAN driver)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from router.lan.dnsmasq import (
    LanSettings,
    parse_leases,
    read_leases,
    render_config,
    render_servers,
    state_run_dir,
)


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


# A lease file as dnsmasq 2.89 writes it (lease_update_file: expiry, MAC, address, name or *,
# client id or *); the last lease is infinite (expiry 0).
LEASE_FILE = """\
1764403600 52:54:00:12:34:56 10.1.1.150 lan-host 01:52:54:00:12:34:56
1764401000 52:54:00:ab:cd:ef 10.1.1.151 * 01:52:54:00:ab:cd:ef
0 52:54:00:00:00:01 10.1.1.20 printer *
"""


def test_read_leases_gives_status_clients_soonest_expiry_first(tmp_path: Path) -> None:
    path = tmp_path / "leases"
    path.write_text(LEASE_FILE)
    clients = [lease.as_status() for lease in read_leases(path)]
    assert clients == [
        {"mac": "52:54:00:ab:cd:ef", "address": "10.1.1.151", "hostname": None, "expires": 1764401000.0},
        {"mac": "52:54:00:12:34:56", "address": "10.1.1.150", "hostname": "lan-host", "expires": 1764403600.0},
        {"mac": "52:54:00:00:00:01", "address": "10.1.1.20", "hostname": "printer", "expires": None},
    ]
    from router.web.schema import CLIENT

    for client in clients:
        assert set(client) == set(CLIENT)


def test_read_leases_without_a_file_is_empty(tmp_path: Path) -> None:
    assert read_leases(tmp_path / "missing" / "leases") == []
    assert state_run_dir(tmp_path) / "leases" == tmp_path / "dnsmasq" / "leases"
