"""The WLAN uplink driver against real hostapd APs and wpa_supplicant (issue 6, item 1).

Our WlanUplink talks to the lab's wpa_supplicant over its control socket (no wpa_cli), runs
busybox udhcpc for the lease, and reports: Associated + LinkUp on "corp"; SignalReport when the
AP's transmit power drops; a roam to "hotspot" with SELECT_NETWORK (Disassociated, Associated,
LinkUp in the hotspot's subnet); Disassociated + LinkDown when the hotspot AP goes away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns

from qemu.lab import World, plan
from qemu.lab.testing import module_world
from router.uplink import events as ev
from router.uplink.wlan import WlanUplink

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS)


@pytest.fixture
def in_router(world: World) -> Iterator[World]:
    world.router.station.ensure_running()
    world.router.station.disconnect()  # each test starts unassociated
    netns.pushns(world.ns("router"))
    try:
        yield world
    finally:
        netns.popns()


@dataclass
class Recorder:
    events: list[ev.UplinkEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: ev.UplinkEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait(self, kind: type, where: Callable[[Any], bool] = lambda _: True,
                   timeout: float = 60.0) -> Any:
        """The first event of `kind` satisfying `where` (waiting for it)."""
        async def arrived() -> Any:
            while True:
                for event in self.of(kind):
                    if where(event):
                        return event
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(arrived(), timeout)
        except TimeoutError:
            raise AssertionError(f"no matching {kind.__name__} within {timeout}s; "
                                 f"events: {self.events}") from None


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 300.0) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout))


def in_subnet(prefix: str) -> Callable[[Any], bool]:
    return lambda link: ipaddress.ip_address(link.address) in ipaddress.ip_network(prefix)


def test_associate_signal_roam_and_ap_loss(in_router: World, tmp_path: Path) -> None:
    world = in_router
    station = world.router.station
    corp_bssid = world.access_points["corp"].bssid.lower()
    hotspot_bssid = world.access_points["hotspot"].bssid.lower()
    recorder = Recorder()

    async def scenario() -> None:
        async with WlanUplink("wlan", plan.ROUTER_WLAN, station.control_dir, recorder,
                              run_dir=tmp_path, signal_interval=0.5) as wlan:
            # -- associate with corp, get a lease
            corp = await wlan.network_id("corp")
            started = time.monotonic()
            await wlan.select_network(corp, bssid=corp_bssid)
            associated = await recorder.wait(ev.Associated)
            TIMINGS["SELECT_NETWORK corp -> Associated"] = time.monotonic() - started
            assert (associated.bssid, associated.ssid) == (corp_bssid, "corp")
            assert associated.signal is not None and -35 <= associated.signal <= -25
            up = await recorder.wait(ev.LinkUp)
            TIMINGS["SELECT_NETWORK corp -> LinkUp (DHCP)"] = time.monotonic() - started
            assert in_subnet("10.30.0.0/24")(up), up
            assert (up.ifname, up.gateway, up.prefix_length) == ("wlan0", "10.30.0.1", 24)
            assert world.ping("router", "10.30.0.1", count=1).ok
            info = await wlan.station()  # nl80211 through pyroute2
            assert info is not None and info.bssid.lower() == corp_bssid
            assert info.signal is not None and abs(info.signal - associated.signal) <= 3
            assert info.tx_bitrate_kbps is not None and info.tx_bitrate_kbps > 0
            assert info.tx_failed is not None
            assert any(bss.bssid == corp_bssid for scan in recorder.of(ev.ScanResult)
                       for bss in scan.networks)

            # -- the AP's transmit power drops by 10 dB: a SignalReport follows
            await asyncio.to_thread(world.ap_txpower, "corp", 1000)
            try:
                weaker = await recorder.wait(
                    ev.SignalReport, lambda r: r.dbm is not None and r.dbm <= associated.signal - 8)
                assert weaker.name == "wlan"
            finally:
                await asyncio.to_thread(world.ap_txpower, "corp", 2000)

            # -- roam to the hotspot with SELECT_NETWORK
            hotspot = await wlan.network_id("hotspot")
            started = time.monotonic()
            await wlan.select_network(hotspot, bssid=hotspot_bssid)
            left = await recorder.wait(ev.Disassociated)
            assert left.bssid == corp_bssid
            joined = await recorder.wait(ev.Associated, lambda a: a.bssid == hotspot_bssid)
            TIMINGS["roam corp -> hotspot: Associated"] = time.monotonic() - started
            assert joined.ssid == "hotspot"
            new_up = await recorder.wait(ev.LinkUp, in_subnet("198.51.100.0/24"))
            TIMINGS["roam corp -> hotspot: LinkUp"] = time.monotonic() - started
            assert new_up.gateway == "198.51.100.1"
            downs = recorder.of(ev.LinkDown)
            assert len(downs) == 1 and downs[0].reason.startswith("disassociated")
            assert recorder.events.index(downs[0]) < recorder.events.index(new_up)

            # -- the hotspot goes away (hostapd stops: deauthentication)
            started = time.monotonic()
            await asyncio.to_thread(world.ap_down, "hotspot")
            try:
                gone = await recorder.wait(ev.Disassociated, lambda d: d.bssid == hotspot_bssid)
                TIMINGS["hotspot down -> Disassociated"] = time.monotonic() - started
                down = await recorder.wait(ev.LinkDown, lambda d: d is not downs[0])
                assert down.name == "wlan"
                assert gone.reason
                assert wlan.associated is None and wlan.link is None
                assert await wlan.station() is None
            finally:
                await asyncio.to_thread(world.ap_up, "hotspot")

    run(scenario)
    # Every Associated was followed by exactly one Disassociated; no stray LinkUp after the end.
    assert len(recorder.of(ev.Associated)) == 2
    assert len(recorder.of(ev.Disassociated)) == 2
    assert isinstance([e for e in recorder.events
                       if isinstance(e, ev.LinkUp | ev.LinkDown)][-1], ev.LinkDown)


def test_scan_reports_every_ap(in_router: World, tmp_path: Path) -> None:
    world = in_router
    recorder = Recorder()
    wanted = {world.access_points[name].bssid.lower() for name in ("corp", "ext", "hotspot")}

    async def scenario() -> None:
        async with WlanUplink("wlan", plan.ROUTER_WLAN, world.router.station.control_dir,
                              recorder, run_dir=tmp_path, dhcp=False) as wlan:
            started = time.monotonic()
            await wlan.scan()
            result = await recorder.wait(
                ev.ScanResult, lambda s: wanted <= {bss.bssid for bss in s.networks})
            TIMINGS["SCAN -> ScanResult with all APs"] = time.monotonic() - started
            by_bssid = {bss.bssid: bss for bss in result.networks}
            assert by_bssid[world.access_points["ext"].bssid.lower()].ssid == "ext"
            assert all(bss.frequency > 2400 for bss in result.networks)
            assert (await wlan.scan_results()) != ()

    run(scenario)


def test_silent_ap_loss_is_reported(in_router: World, tmp_path: Path) -> None:
    """The AP vanishes without a goodbye (driving out of range): beacon loss or carrier."""
    world = in_router
    corp_bssid = world.access_points["corp"].bssid.lower()
    recorder = Recorder()

    async def scenario() -> None:
        async with WlanUplink("wlan", plan.ROUTER_WLAN, world.router.station.control_dir,
                              recorder, run_dir=tmp_path) as wlan:
            await wlan.select_network(await wlan.network_id("corp"), bssid=corp_bssid)
            await recorder.wait(ev.LinkUp)
            started = time.monotonic()
            await asyncio.to_thread(world.ap_down, "corp", True)
            try:
                gone = await recorder.wait(ev.Disassociated, lambda d: d.bssid == corp_bssid)
                TIMINGS["silent AP loss -> Disassociated"] = time.monotonic() - started
                down = await recorder.wait(ev.LinkDown)
                assert down.reason == f"disassociated: {gone.reason}"
            finally:
                await asyncio.to_thread(world.ap_up, "corp")

    run(scenario)
