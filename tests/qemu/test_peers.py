"""The peer modes of issue 10 work in their own terms before the benchmark measures them:
nat-failover carries the LAN on WLAN and on 3G and fails over when the AP vanishes; mobike-vpn
does the same through its VPN, and MOBIKE really moves the SA (the gateway's SA list shows the
router's new address after the switch) while the correspondent keeps seeing the LAN host's own
address (the LAN is routed into the tunnel).

One world per mode (a mode leaves routes, rules and SAs behind; a fresh world is the fair start).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest

from qemu.lab import World, plan
from qemu.lab.peers import PeerRouter, gateway_sa_remotes
from qemu.lab.testing import module_world
from qemu.lab.traffic import Traffic

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}
HOTSPOT = ip_network("198.51.100.0/24")
CORP_WLAN = ip_network("10.30.0.0/24")


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS)


def outside_on_hotspot(world: World, mode: str) -> PeerRouter:
    """Only the hotspot is on the air; the mode started and settled on it (3G as standby)."""
    for ap in ("corp", "ext"):
        world.ap_down(ap)
    if not world.access_points["hotspot"].daemon.running:
        world.ap_up("hotspot")
    peer = PeerRouter(world, mode)
    TIMINGS[f"{mode}: controller start"] = peer.start()
    TIMINGS[f"{mode}: on hotspot"] = peer.wait_active("wlan", "hotspot", peer.vpn_expected(False),
                                                      timeout=90)
    world.wait_for(lambda: peer.status()["uplinks"]["cell"]["routed"], 60, "3G standby online")
    return peer


def address_of(peer: PeerRouter, uplink: str) -> str:
    address = peer.status()["uplinks"][uplink]["address"]
    assert address, peer.status()
    return str(address)


def test_nat_failover_carries_the_lan_on_wlan_and_3g_and_fails_over(world: World) -> None:
    peer = outside_on_hotspot(world, "nat-failover")
    try:
        hotspot_address = address_of(peer, "wlan")
        cell_address = address_of(peer, "cell")
        assert ip_address(hotspot_address) in HOTSPOT
        assert ip_address(cell_address) in ip_network(plan.CELL_PREFIX)
        rules = world.exec("router", ["nft", "list", "table", "ip", "peer_nat"])
        assert 'oifname "wlan0" masquerade' in rules and 'oifname "ppp0" masquerade' in rules
        routes = world.exec("router", ["ip", "route", "show", "default"])
        assert "dev wlan0" in routes and "metric 10" in routes and "metric 50" in routes, routes
        with Traffic(world, plan.INTERNET_CORE_ADDRESS, rate=50, name="peers-nat") as traffic:
            traffic.wait_resumed(traffic.started_at, timeout=30)
            assert traffic.sources() == {hotspot_address}  # masqueraded on WLAN
            lost_at = time.monotonic()
            world.ap_down("hotspot", silent=True)
            TIMINGS["nat-failover: hotspot lost -> 3G active"] = peer.wait_active("cell", timeout=30)
            switched_at = time.monotonic() + 0.3  # packets NATted before the switch land first
            TIMINGS["nat-failover: stream back on 3G"] = traffic.wait_resumed(switched_at,
                                                                               timeout=30)
            gap = traffic.gap(lost_at)
            print(f"nat-failover WLAN -> 3G: {gap}")
            assert gap.resumed
            after_switch = {a.source for a in traffic.arrivals() if a.at > switched_at}
            assert after_switch == {cell_address}  # new NAT source after the conntrack flush
            world.ap_up("hotspot")
            TIMINGS["nat-failover: hotspot back -> WLAN active"] = peer.wait_active(
                "wlan", "hotspot", timeout=60)
            back_at = time.monotonic() + 0.3
            traffic.wait_resumed(back_at, timeout=30)
            assert {a.source for a in traffic.arrivals() if a.at > back_at} == {
                address_of(peer, "wlan")}
        # The session does not survive a NAT source change: that is nat-failover's nature.
        print(f"nat-failover TCP across two switches: {traffic.tcp_result}")
        log = peer.log_tail(200)
        assert "uplink wlan -> cell" in log and "uplink cell -> wlan" in log, log
        assert log.count("conntrack flushed") >= 2, log
        # Outside, the corporate network is out of reach: no VPN in this mode.
        assert not world.ping("lan-host", plan.CORRESPONDENT_ADDRESS, count=2).ok
    finally:
        print(peer.log_tail(80))
        peer.stop()
    assert "peer_nat" not in world.exec("router", ["nft", "list", "tables"])


def test_mobike_vpn_keeps_the_virtual_ip_and_moves_the_sa_on_failover(world: World) -> None:
    peer = outside_on_hotspot(world, "mobike-vpn")
    try:
        hotspot_address = address_of(peer, "wlan")
        cell_address = address_of(peer, "cell")
        virtual_ip = peer.status()["vpn"]["virtual_ip"]
        assert ip_address(virtual_ip) in ip_network(plan.VPN_POOL)
        world.wait_for(lambda: gateway_sa_remotes(world) == [hotspot_address], 20,
                       "the gateway's SA to name the hotspot address")
        with Traffic(world, plan.CORRESPONDENT_ADDRESS, rate=50, name="peers-mobike") as traffic:
            traffic.wait_resumed(traffic.started_at, timeout=30)
            assert traffic.sources() == {plan.LAN_HOST_ADDRESS}  # routed in, not NATted
            lost_at = time.monotonic()
            world.ap_down("hotspot", silent=True)
            TIMINGS["mobike-vpn: hotspot lost -> 3G active"] = peer.wait_active(
                "cell", vpn=True, timeout=30)
            TIMINGS["mobike-vpn: stream back on 3G"] = traffic.wait_resumed(lost_at, timeout=60)
            # MOBIKE (RFC 4555 section 3.5): the gateway updated the SA to the 3G address.
            world.wait_for(lambda: gateway_sa_remotes(world) == [cell_address], 30,
                           "the gateway's SA to move to the 3G address")
            gap = traffic.gap(lost_at)
            print(f"mobike-vpn WLAN -> 3G: {gap}")
            assert gap.resumed
            assert traffic.tcp_alive()
            assert traffic.sources() == {plan.LAN_HOST_ADDRESS}  # cn never saw another one
        assert traffic.tcp_ok, traffic.tcp_result
        # Inside (corp back; a scan stands in for bgscan): trusted network, VPN closed.
        world.ap_up("corp")
        world.router.station.cli("scan")
        TIMINGS["mobike-vpn: corp back -> inside, VPN down"] = peer.wait_active(
            "wlan", "corp", vpn=False, timeout=90)
        assert ip_address(address_of(peer, "wlan")) in CORP_WLAN
        assert gateway_sa_remotes(world) == []
        assert world.ping("lan-host", plan.CORRESPONDENT_ADDRESS, count=3).ok
        assert "domain inside" in peer.log_tail(200)
    finally:
        print(peer.log_tail(80))
        peer.stop()
