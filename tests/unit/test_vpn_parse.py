"""Reading charon's list-sas answer (shape as the vici package returns it: bytes values)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from router.vpn.strongswan import StrongSwanVpn, VpnReading, VpnState, parse_sas

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


# Recorded from the lab (charon 5.9.8, `list-sas {"ike": "lab"}` through the vici package)
# after three pings through the tunnel: one IKE SA over 3G with its CHILD SA.
RECORDED_LAB = {
    "lab": {
        "uniqueid": b"1", "version": b"2", "state": b"ESTABLISHED",
        "local-host": b"100.64.0.10", "local-port": b"4500", "local-id": b"router.lab",
        "remote-host": b"192.0.2.2", "remote-port": b"4500", "remote-id": b"vpn-gw.lab",
        "initiator": b"yes", "initiator-spi": b"25f24e008274fcc4", "responder-spi": b"96b381fad76055cf",
        "encr-alg": b"AES_CBC", "encr-keysize": b"128", "integ-alg": b"HMAC_SHA2_256_128",
        "prf-alg": b"PRF_HMAC_SHA2_256", "dh-group": b"MODP_2048",
        "established": b"2", "rekey-time": b"13579",
        "local-vips": [b"10.99.0.1"],
        "child-sas": {
            "corp-1": {
                "name": b"corp", "uniqueid": b"1", "reqid": b"1", "state": b"INSTALLED", "mode": b"TUNNEL",
                "protocol": b"ESP", "spi-in": b"c5589219", "spi-out": b"c51116f5", "encr-alg": b"AES_GCM_16",
                "encr-keysize": b"128", "bytes-in": b"252", "packets-in": b"3", "use-in": b"2",
                "bytes-out": b"252", "packets-out": b"3", "use-out": b"2", "rekey-time": b"3337",
                "life-time": b"3958", "install-time": b"4",
                "local-ts": [b"10.99.0.1/32"], "remote-ts": [b"10.0.0.0/8"],
            }
        },
    }
}


def test_recorded_lab_reply() -> None:
    state = parse_sas(iter([RECORDED_LAB]), "lab")
    assert state.up and state.child_up and state.virtual_ip == IPv4Address("10.99.0.1")
    assert (state.local, state.remote, state.established_s) == ("100.64.0.10", "192.0.2.2", 2)
    assert (state.bytes_in, state.bytes_out) == (252, 252)


def test_reading_gives_status_fields_that_age_between_readings() -> None:
    state = parse_sas(iter([ESTABLISHED]), "corp")
    reading = VpnReading(state, at=1_000_000.0)
    fields = reading.status_fields(1_000_030.0)
    # established 12 s before the reading, read 30 s ago: 42 s old
    assert fields == {"sa_age_s": 42.0, "established_at": 999_988.0, "tx_bytes": 3400, "rx_bytes": 1200}
    down = VpnReading(VpnState(up=False), at=1_000_000.0).status_fields(1_000_030.0)
    assert down == {"sa_age_s": None, "established_at": None, "tx_bytes": None, "rx_bytes": None}


class RecordedSession:
    """Stands in for vici.Session: answers list-sas with the recorded reply."""

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.calls = calls
        self.transport = SimpleNamespace(socket=SimpleNamespace(close=lambda: None))

    def list_sas(self, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.calls.append(filters)
        yield RECORDED_LAB


def test_stats_never_blocks_and_refreshes_in_the_background() -> None:
    vpn = StrongSwanVpn("/nonexistent/charon.vici", "lab")
    calls: list[dict[str, Any]] = []
    release = threading.Event()

    def session(timeout: float = 10.0) -> RecordedSession:
        assert timeout <= 2.0, "a stats refresh must not wait long on charon"
        release.wait(10)  # charon is slow to answer
        return RecordedSession(calls)

    vpn._session = session  # type: ignore[method-assign]
    # The first call returns at once (nothing read yet), although charon has not answered.
    assert vpn.stats(max_age_s=60) is None
    assert vpn.stats(max_age_s=60) is None  # a refresh is running: no second one
    release.set()
    assert vpn.wait_stats_refreshed()
    reading = vpn.stats(max_age_s=60)
    assert reading is not None and reading.state.virtual_ip == IPv4Address("10.99.0.1")
    assert (reading.state.bytes_in, reading.state.bytes_out) == (252, 252)
    assert calls == [{"ike": "lab"}] and vpn.stats_reads == 1  # within max_age: no new read
    vpn.stats(max_age_s=0)  # stale: the next refresh starts
    assert vpn.wait_stats_refreshed() and vpn.stats_reads == 2 and len(calls) == 2


def test_stats_with_charon_gone_is_none_and_rate_limited(tmp_path: Path) -> None:
    vpn = StrongSwanVpn(str(tmp_path / "charon.vici"), "lab")
    assert vpn.stats(max_age_s=60) is None
    assert vpn.wait_stats_refreshed()
    for _ in range(5):
        assert vpn.stats(max_age_s=60) is None
    assert vpn.wait_stats_refreshed() and vpn.stats_reads == 1
