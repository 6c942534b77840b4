"""Reading charon's list-sas answer (shape as the vici package returns it: bytes values)."""

from __future__ import annotations

from ipaddress import IPv4Address

from router.vpn.strongswan import parse_sas

ESTABLISHED = {
    "corp": {
        "uniqueid": b"3",
        "state": b"ESTABLISHED",
        "local-host": b"192.0.2.50",
        "remote-host": b"192.0.2.2",
        "established": b"12",
        "local-vips": [b"fd00::1", b"10.99.0.7"],
        "child-sas": {
            "corp-4": {"state": b"INSTALLED", "bytes-in": b"1200", "bytes-out": b"3400"},
            "corp-5": {"state": b"REKEYED", "bytes-in": b"99", "bytes-out": b"99"},
        },
    }
}


def test_established_sa_gives_virtual_ip_and_counters() -> None:
    state = parse_sas(iter([{"other": {"state": b"ESTABLISHED"}}, ESTABLISHED]), "corp")
    assert state.up and state.child_up
    assert state.virtual_ip == IPv4Address("10.99.0.7")
    assert (state.local, state.remote, state.established_s) == ("192.0.2.50", "192.0.2.2", 12)
    assert (state.bytes_in, state.bytes_out) == (1200, 3400)


def test_connecting_sa_is_not_up() -> None:
    connecting = {"corp": {**ESTABLISHED["corp"], "state": b"CONNECTING"}}
    assert not parse_sas(iter([connecting]), "corp").up
    assert not parse_sas(iter([]), "corp").up
