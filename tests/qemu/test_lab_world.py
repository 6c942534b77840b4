"""Lab smoke tests in the guest: every uplink of the router works, and the VPN carries
corporate traffic in ESP only (issue 3, item 4). One world for the whole module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from qemu.lab import World, plan, vpn
from qemu.lab.testing import module_world

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS)


def on_3g(world: World) -> None:
    """The router's uplink is ppp0 (dialled here unless an earlier test did)."""
    dialer = world.router.dialer
    assert dialer is not None
    if not dialer.has_address():
        world.router.station.disconnect()
        world.router.dial()
    world.router.default_route("ppp0")


def test_world_is_up(world: World) -> None:
    assert TIMINGS["world up"] > 0
    for host in ("lan-host", "router", "inet", "corp", "cn"):
        assert world.exec(host, ["ip", "-br", "link"])


@pytest.mark.parametrize(
    ("ap", "subnet", "gateway"),
    [("corp", "10.30.0.0/24", "10.30.0.1"),
     ("ext", "192.0.2.0/24", "192.0.2.254"),
     ("hotspot", "198.51.100.0/24", "198.51.100.1")],
)
def test_wlan0_associates_with_each_ap_and_gets_a_lease(
    world: World, ap: str, subnet: str, gateway: str
) -> None:
    TIMINGS[f"wlan0 association with {ap}"] = world.router.associate(ap)
    lease = world.router.dhcp()
    TIMINGS[f"DHCP lease from {ap}"] = lease.seconds
    assert ip_address(lease.address) in ip_network(subnet)
    assert lease.gateway == gateway
    assert world.ping("router", gateway, count=2).ok


def test_3g_dials_and_ppp0_gets_a_cell_address(world: World) -> None:
    world.router.station.disconnect()
    address, seconds = world.router.dial()
    TIMINGS["3G dial to ppp0 address"] = seconds
    assert ip_address(address) in ip_network(plan.CELL_PREFIX)
    assert "ATD*99#" in world.cellular.commands_seen() if world.cellular else False
    world.router.default_route("ppp0")
    assert world.ping("router", plan.INTERNET_CORE_ADDRESS, count=2).ok


def test_netem_delay_shows_in_the_round_trip_time(world: World) -> None:
    on_3g(world)
    before = world.ping("router", plan.INTERNET_CORE_ADDRESS, count=5).average_ms
    world.shape("cell", delay_ms=50)
    try:
        after = world.ping("router", plan.INTERNET_CORE_ADDRESS, count=5).average_ms
    finally:
        world.unshape("cell")
    assert before is not None and after is not None
    TIMINGS["cell RTT plain (ms)"], TIMINGS["cell RTT with 2x50 ms netem (ms)"] = before, after
    # 50 ms each way: the RTT grows by about 100 ms whatever TCG's own latency is.
    assert after - before > 80, (before, after)
    assert after / before > 2, (before, after)


def test_cut_link_drops_everything_and_uncut_restores(world: World) -> None:
    on_3g(world)
    world.cut("cell")
    try:
        assert not world.ping("router", plan.INTERNET_CORE_ADDRESS, count=2).ok
    finally:
        world.uncut("cell")
    assert world.ping("router", plan.INTERNET_CORE_ADDRESS, count=2).ok


def vpn_client(world: World) -> Any:
    """A vici session on the router's charon with the lab connection loaded."""
    TIMINGS.setdefault("router charon start", world.router.start_vpn_client())
    session = world.router.vici_session()
    session.load_shared(vpn.router_secret())
    session.load_conn(vpn.router_connection())
    return session


@contextmanager
def ike_sa(session: Any, what: str) -> Iterator[None]:
    """The router's IKE SA "lab" up for the block (timed as `what`), always torn down after."""
    start = time.monotonic()
    for _ in session.initiate({"child": "corp", "ike": "lab", "timeout": 30000}):
        pass
    TIMINGS[what] = time.monotonic() - start
    try:
        yield
    finally:
        for _ in session.terminate({"ike": "lab", "timeout": 10000}):
            pass
    assert list(session.list_sas()) == []


CLEAR_ICMP = r" IP .*ICMP"  # an IPv4 ICMP packet in tcpdump's one-line form


def test_ike_sa_over_3g_reaches_cn_in_esp_only(world: World) -> None:
    on_3g(world)
    session = vpn_client(world)
    with ike_sa(session, "IKE SA + CHILD SA up over 3G"):
        virtual_ips = [ip.decode() for sa in session.list_sas()
                       for ip in sa["lab"]["local-vips"]]
        assert len(virtual_ips) == 1
        assert ip_address(virtual_ips[0]) in ip_network(plan.VPN_POOL)
        assert "proto esp" in world.exec("router", ["ip", "xfrm", "state"])
        # The operator's link into the internet is outside: it must see ESP, never the ICMP.
        with world.capture("inet", "cell0") as outside:
            assert world.ping("router", plan.CORRESPONDENT_ADDRESS, count=3).ok
        assert outside.count(r"100\.64\.0\.10 > 192\.0\.2\.2: ESP\(spi=") >= 3, outside.lines
        assert outside.count(CLEAR_ICMP) == 0, outside.lines
    assert not world.ping("router", plan.CORRESPONDENT_ADDRESS, count=1).ok


def test_cell_nat_knob_puts_ike_and_esp_in_udp(world: World) -> None:
    """With the operator's CGNAT on, IKEv2 detects the NAT and moves ESP into UDP 4500."""
    on_3g(world)
    session = vpn_client(world)
    world.cell_nat(True)
    try:
        with ike_sa(session, "IKE SA up over 3G behind CGNAT"):
            with world.capture("inet", "cell0") as outside:
                assert world.ping("router", plan.CORRESPONDENT_ADDRESS, count=2).ok
            encapsulated = r"203\.0\.113\.2\.4500 > 192\.0\.2\.2\.4500: UDP-encap: ESP"
            assert outside.count(encapsulated) >= 2, outside.lines
            assert outside.count(CLEAR_ICMP) == 0, outside.lines
    finally:
        world.cell_nat(False)


def test_ike_sa_over_the_hotspot(world: World) -> None:
    """The other outside path: WLAN hotspot -> internet core -> DMZ."""
    router = world.router
    if router.dialer is not None and router.dialer.has_address():
        router.hang_up()
    router.associate("hotspot")
    lease = router.dhcp()
    router.default_route(plan.ROUTER_WLAN, lease.gateway)
    session = vpn_client(world)
    with ike_sa(session, "IKE SA up over the hotspot"):
        with world.capture("inet", "hs0") as outside:
            assert world.ping("router", plan.CORRESPONDENT_ADDRESS, count=2).ok
        assert outside.count(rf"{lease.address} > {plan.VPN_GATEWAY_ADDRESS}: ESP") >= 2, \
            outside.lines
        assert outside.count(CLEAR_ICMP) == 0, outside.lines
