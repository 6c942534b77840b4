"""The real daemon's status snapshot against router/web/SCHEMA.md (no fake source).

The daemon is built as in test_daemon_loopback (real registration machines and home-agent
logic on loopback, FakeBackend for the kernel); the observations the snapshot adds are real
too: interface counters from this namespace's /proc/net/dev (the uplink is ``lo``), LAN
clients from a dnsmasq lease file in the daemon's state_dir, and the VPN's SA age and bytes
from a driver reading of a list-sas reply recorded in the lab.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import router
from router.lan.dnsmasq import state_run_dir
from router.observe import read_interface_counters
from router.policy.coordinator import LanRoute
from router.uplink import events as ue
from router.vpn.strongswan import VpnReading, parse_sas
from router.web import page
from router.web.metrics import render_metrics
from router.web.schema import check_status, normalise
from tests.unit.test_daemon_loopback import (
    FakeVpn,
    free_port,
    make_daemon,
    start_home_agent,
    wait_for,
)
from tests.unit.test_vpn_parse import RECORDED_LAB


def write_leases(state_dir: Path, now: float) -> None:
    run_dir = state_run_dir(state_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "leases").write_text(
        f"{int(now) + 3600} 52:54:00:12:34:56 10.1.1.150 lan-host 01:52:54:00:12:34:56\n"
        f"{int(now) - 60} 52:54:00:ab:cd:ef 10.1.1.151 * *\n"  # expired a minute ago
    )


def test_single_system_status_conforms_and_carries_real_observations(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        await start_home_agent("127.0.0.1", "127.0.0.0/8", "127.0.0.50", 256, port)
        daemon, _ = make_daemon(tmp_path, port, None)
        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.lan_route == LanRoute.DIRECT)
        written = time.time()
        write_leases(tmp_path, written)
        before = time.time()
        status = daemon.status()
        after = time.time()
        await daemon.stop()

        assert check_status(status) == [], check_status(status)
        json.dumps(status)  # JSON-ready as it is
        assert status["version"] == router.__version__
        assert before <= status["now"] <= after
        assert status["situation"]["name"] == "single"
        assert "registered with 127.0.0.1 via eth" in status["situation"]["reason"]
        assert status["situation"]["since"] is not None and before - 60 < status["situation"]["since"] <= after

        uplink = status["uplinks"][0]
        lo = read_interface_counters()["lo"]
        # Real counters of the uplink's interface: registrations crossed it, so they moved.
        assert isinstance(uplink["tx_bytes"], int) and isinstance(uplink["rx_bytes"], int)
        assert 0 < uplink["tx_bytes"] <= lo.tx_bytes and 0 < uplink["rx_bytes"] <= lo.rx_bytes

        inner = status["registrations"]["inner"]
        assert (inner["state"], inner["last_code"], inner["last_message"]) == ("registered", 0, "accepted")
        assert inner["care_of_address"] == "127.0.0.2" and inner["home_agent"] == "127.0.0.1"
        assert "outer" not in status["registrations"]
        assert status["vpn"] == {"state": "down", "virtual_ip": None, "gateway": None, "sa_age_s": None,
                                 "established_at": None, "tx_bytes": None, "rx_bytes": None}
        assert status["mobile_network"]["lan_address"] == "10.1.1.1"
        assert status["mobile_network"]["clients"] == [
            {"mac": "52:54:00:12:34:56", "address": "10.1.1.150", "hostname": "lan-host",
             "expires": float(int(written) + 3600)}]
        first = status["handovers"][0]
        assert (first["kind"], first["from"], first["to"], first["gap_ms"]) == ("uplink", None, "eth", None)
        assert before - 60 < first["at"] <= after

        # ... and every consumer takes it: the page shows it, the metrics carry the bytes.
        shown = normalise(status)
        html = page.render_page(shown, {}, nonce="n")
        assert "lan-host" in html and "127.0.0.2" in html
        metrics = render_metrics(shown)
        assert f'router_uplink_transmit_bytes_total{{uplink="eth",kind="ethernet"}} {uplink["tx_bytes"]}' in metrics
        assert "router_lan_clients 1" in metrics

    asyncio.run(main())


class StatsVpn(FakeVpn):
    """The test's VPN, with the driver's stats() over the recorded list-sas reply."""

    def __init__(self, virtual_ip: str) -> None:
        super().__init__(virtual_ip)
        self.stats_calls = 0
        self.read_at = time.time() - 30.0  # the reading is 30 s old

    def stats(self) -> VpnReading:
        self.stats_calls += 1
        return VpnReading(parse_sas(iter([RECORDED_LAB]), "lab"), self.read_at)


def test_dual_system_status_conforms_inside_and_outside(tmp_path: Path) -> None:
    async def main() -> None:
        inner_port, outer_port = free_port("127.0.0.1"), free_port("127.0.0.4")
        inner_ha = await start_home_agent("127.0.0.1", "127.0.0.0/24", "127.0.0.50", 256, inner_port)
        await start_home_agent("127.0.0.4", "127.0.0.0/8", "127.0.0.60", 257, outer_port)
        vpn = StatsVpn("127.0.0.7")
        daemon, _ = make_daemon(tmp_path, inner_port, outer_port, vpn)
        await daemon.start()
        assert check_status(daemon.status()) == [], "before any uplink"
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.situation.name == "inside", 15)
        inside = daemon.status()
        assert check_status(inside) == [], check_status(inside)
        assert inside["situation"]["name"] == "inside"
        assert inside["vpn"]["state"] == "down" and inside["vpn"]["sa_age_s"] is None
        assert vpn.stats_calls == 0, "no VPN statistics are asked for while the VPN is down"

        inner_ha.allowed = {"127.0.0.7"}
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.9", None))
        await wait_for(lambda: daemon.situation.name == "outside" and daemon.lan_route == LanRoute.VPN, 20)
        outside = daemon.status()
        await daemon.stop()

        assert check_status(outside) == [], check_status(outside)
        assert outside["situation"]["name"] == "outside"
        vpn_status = outside["vpn"]
        assert (vpn_status["state"], vpn_status["virtual_ip"], vpn_status["gateway"]) == ("up", "127.0.0.7", "127.0.0.5")
        # established 2 s before a reading taken 30 s before the snapshot
        assert vpn_status["sa_age_s"] == round(outside["now"] - (vpn.read_at - 2), 1)
        assert (vpn_status["tx_bytes"], vpn_status["rx_bytes"]) == (252, 252)
        assert outside["registrations"]["outer"]["state"] == "registered"
        assert outside["registrations"]["inner"]["care_of_address"] == "127.0.0.7"
        domain = [h for h in outside["handovers"] if h["kind"] == "situation"]
        assert domain, outside["handovers"]
        for entry in domain:
            assert isinstance(entry["at"], float) and entry["at"] <= outside["now"]
            offsets = [phase["at_ms"] for phase in entry["phases"]]
            assert offsets and offsets[0] == 0.0 and offsets == sorted(offsets)
        assert any(entry["to"] == "outside" for entry in domain)
        # newest first
        ats = [h["at"] for h in outside["handovers"]]
        assert ats[0] == max(ats)
        metrics = render_metrics(normalise(outside))
        assert "router_vpn_transmit_bytes_total 252" in metrics
        assert 'router_situation{situation="outside"} 1' in metrics

    asyncio.run(main())


def test_status_of_a_daemon_before_any_uplink(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        daemon, _ = make_daemon(tmp_path, free_port("127.0.0.1"), None)
        await daemon.start()
        try:
            return daemon.status()
        finally:
            await daemon.stop()

    status = asyncio.run(main())
    assert check_status(status) == [], check_status(status)
    assert status["situation"] == {"name": "unknown", "since": None, "reason": "starting", "phase": "unknown"}
    assert status["mobile_network"]["clients"] == []  # no lease file yet
    assert status["handovers"] == []
