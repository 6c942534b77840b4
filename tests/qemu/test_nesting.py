"""The dual system's packet nesting, built statically from the product's own pieces (issue 5,
item 2; DESIGN.md section 2). No daemon runs: the test applies the plans the daemons would.

Outside (3G, then hotspot): IP-in-IP(X -> T_HA)[ESP(T -> T_gw)[IP-in-IP(V -> S_HA)[packet]]]
Outer home (ext WLAN):      ESP(T -> T_gw)[IP-in-IP(V -> S_HA)[packet]]

- outer-ha: router.ha.plan.home_agent_plan for T=192.0.2.50 -> CoA X (then deregistered);
- router: router.dataplane.router_plan, first without, then with the VPN's V and the inner tunnel;
- router-side charon with the product's strongswan.conf / swanctl `corp` (install_routes = no),
  brought up over vici by router.vpn.strongswan.StrongSwanVpn;
- inner-ha: home_agent_plan for S=10.10.0.50 -> CoA V with the mobile network 10.1.1.0/24.

The setup lives in qemu.lab.nesting (shared with the throughput bench). The nesting is read
from captures decoded by tshark (qemu.lab.captures): on the outside link
(inet's end of the cell link, or of the ext WLAN) and on the VPN gateway's inside leg, where
the innermost IP-in-IP (V -> S_HA) appears once ESP is gone.

The router's plan is the product's own (router.dataplane.router_plan): it keeps V on
mip-home, routes the outer home network on-link at home, and sends V's packets to the dummy
device unless xfrm takes them, so a lost CHILD SA fails closed.

Run: python3 -m qemu.run --tests tests/qemu/test_nesting.py
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from qemu.lab import World, nesting, plan
from qemu.lab.captures import Packet, cleartext_leaks, nesting_layers, record, summary
from qemu.lab.nesting import (
    CN,
    HOME_INTERFACE,
    LAN_HOST,
    S_HA,
    T_GW,
    T_HA,
    TRANSFER_BYTES,
    A,
    Dual,
    S,
    T,
    binding,
    dataplane,
    exact_transfer,
    iperf,
    path_mtu,
    planned,
)
from qemu.lab.shell import Daemon, LabError
from qemu.lab.testing import module_world
from router.dataplane import HOME_DEVICE, Tunnel, UplinkRoute
from router.ha.plan import home_agent_plan
from router.net import Plan
from router.net.arp import send_gratuitous_arp

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS)


@pytest.fixture(scope="module")
def outside(world: World) -> Iterator[Dual]:
    """Router on 3G, registered (statically) with both home agents, VPN up from T."""
    with nesting.outside(world, TIMINGS) as dual:
        yield dual


def shapes(packets: list[Packet]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for packet in packets:
        if packet.layers:  # ARP and other non-IP frames have no layers of interest
            counts[packet.shape] = counts.get(packet.shape, 0) + 1
    return counts


def ike_shapes(outer: list[str], back: list[str]) -> set[str]:
    """IKE (and its NAT-T port) nested like ESP: allowed on the outside link, never required."""
    return {f"{' / '.join(stack)} / udp {port}>{port}"
            for stack in (outer, back) for port in (500, 4500)}


def assert_nesting(pcap: Path, expected: dict[str, int], allowed: set[str], what: str) -> None:
    """Every IP packet in `pcap` has one of the `expected` (at least that many) or `allowed`
    shapes; nothing carries a secure-domain address in clear when `what` is an outside link."""
    packets = nesting_layers(pcap)
    seen = shapes(packets)
    print(f"\n{what} ({pcap.name}):\n{summary(packets)}")
    unexpected = {shape: n for shape, n in seen.items() if shape not in expected and shape not in allowed}
    assert not unexpected, f"{what}: unexpected nesting {unexpected}\n{summary(packets)}"
    for shape, least in expected.items():
        assert seen.get(shape, 0) >= least, f"{what}: wanted {least} x {shape!r}, saw {seen}"


def inner_shapes(virtual_ip: IPv4Address, pings: int) -> dict[str, int]:
    return {
        f"ip {virtual_ip}>{S_HA} / ip {LAN_HOST}>{CN} / icmp 8/0": pings,
        f"ip {S_HA}>{virtual_ip} / ip {CN}>{LAN_HOST} / icmp 0/0": pings,
    }


PINGS = 5


def test_outside_nesting_on_3g(outside: Dual, out_dir: Path) -> None:
    world, x, v = outside.world, outside.care_of, outside.virtual_ip
    with record(world, "inet", "cell0", out_dir / "outside-cell0.pcap") as outside_pcap, \
            record(world, "vpn-gw", "in0", out_dir / "inside-vpn-gw-in0.pcap") as inside_pcap:
        result = world.ping("lan-host", CN, count=PINGS)
    assert result.received == PINGS, f"{result}\n{outside.diagnostics()}"

    out_stack = [f"ip {x}>{T_HA}", f"ip {T}>{T_GW}"]
    back_stack = [f"ip {T_HA}>{x}", f"ip {T_GW}>{T}"]
    assert_nesting(
        outside_pcap,
        {" / ".join([*out_stack, "esp"]): PINGS, " / ".join([*back_stack, "esp"]): PINGS},
        ike_shapes(out_stack, back_stack), "outside link (inet cell0)")
    leaks = cleartext_leaks(outside_pcap, [plan.VPN_PROTECTED])
    assert leaks == [], f"secure-domain addresses in clear on the outside link:\n{summary(leaks)}"
    assert_nesting(inside_pcap, inner_shapes(v, PINGS), set(), "VPN gateway inside leg (in0)")

    # The router's own view of the middle layer: ESP from T, and V's traffic to the secure
    # domain (the inner tunnel's V -> S_HA packets) is what the policy sends into it.
    states = world.exec("router", ["ip", "xfrm", "state"])
    assert f"src {T} dst {T_GW}" in states and "proto esp" in states, states
    policies = world.exec("router", ["ip", "xfrm", "policy"])
    assert f"src {v}/32 dst {plan.VPN_PROTECTED}" in policies, policies
    # install_routes = no, routing_table = 0 took effect: no table 220, no rule 220.
    assert "table 220" not in world.exec("router", ["ip", "route", "show", "table", "all"])
    assert "lookup 220" not in world.exec("router", ["ip", "rule"])
    # The router's own traffic: from S it rides the inner tunnel like the LAN's (rule 1001);
    # from V (the inner registrations' source while outside) it goes straight into ESP.
    assert world.ping("router", CN, count=2, source=str(S)).ok, outside.diagnostics()
    assert world.ping("router", str(S_HA), count=2, source=str(v)).ok, outside.diagnostics()


def test_outside_path_mtu_and_tcp_bulk(outside: Dual) -> None:
    world = outside.world
    upstream = path_mtu(world, "lan-host", CN)
    downstream = path_mtu(world, "cn", LAN_HOST)
    TIMINGS["path MTU lan-host -> cn, outside (bytes)"] = upstream
    TIMINGS["path MTU cn -> lan-host, outside (bytes)"] = downstream
    print(f"\npath MTU outside: lan-host -> cn {upstream}, cn -> lan-host {downstream}")
    # The inner tunnel's fixed MTU (router.dataplane.INNER_TUNNEL_MTU) bounds the LAN's path.
    assert upstream == 1400, outside.diagnostics()
    assert 1400 <= downstream <= 1406, outside.diagnostics()

    for sender, receiver, address, port in (("lan-host", "cn", CN, 5001),
                                            ("cn", "lan-host", LAN_HOST, 5002)):
        try:
            received = exact_transfer(world, sender, receiver, address, port)
        except LabError as error:
            raise AssertionError(f"TCP {sender} -> {receiver} stalled: {error}\n"
                                 f"{outside.diagnostics()}") from None
        assert received == TRANSFER_BYTES, f"{sender} -> {receiver}: {received} bytes arrived"

    log = world.run_dir / "iperf3-cn.log"
    server = Daemon("iperf3 cn", ["iperf3", "-s", "--forceflush"], log, world.ns("cn"),
                    ready=lambda: "Server listening" in log.read_text(errors="replace"))
    server.start()
    try:
        for reverse, label in ((False, "lan-host -> cn"), (True, "cn -> lan-host")):
            result = iperf(world, "lan-host", CN, reverse)
            print(f"TCP bulk {label} (iperf3): {result}")
            TIMINGS[f"TCP {label} through 3 layers (Mbit/s)"] = result["mbit_s"]
            assert result["received"] > 0, result
    finally:
        server.stop()


def test_child_sa_loss_fails_closed(outside: Dual, out_dir: Path) -> None:
    """The CHILD SA goes (the IKE SA and V stay): no LAN packet may leave in clear meanwhile."""
    world = outside.world

    def dummy_tx_packets() -> int:
        # The VPN table points at the dummy device: what xfrm does not take dies there.
        stats = json.loads(world.exec("router", ["ip", "-s", "-j", "link", "show", HOME_DEVICE]))
        return int(stats[0]["stats64"]["tx"]["packets"])

    outside.charon.swanctl("--terminate", "--child", "corp")
    world.wait_for(lambda: "proto esp" not in world.exec("router", ["ip", "xfrm", "state"]),
                   10, "the CHILD SA's states to go")
    assert str(outside.virtual_ip) in world.exec("router", ["ip", "-br", "addr", "show", HOME_DEVICE])
    before = dummy_tx_packets()
    with record(world, "inet", "cell0", out_dir / "child-sa-gone-cell0.pcap") as outside_pcap:
        result = world.ping("lan-host", CN, count=3)
    assert not result.ok
    leaks = cleartext_leaks(outside_pcap, [plan.VPN_PROTECTED])
    assert leaks == [], f"secure-domain traffic in clear while the CHILD SA was gone:\n{summary(leaks)}"
    discarded = dummy_tx_packets() - before
    print(f"\npackets discarded on {HOME_DEVICE} while the CHILD SA was gone: {discarded}")
    assert discarded >= 3, "the leak path was not exercised: this test proves nothing"

    # The child again under the same IKE SA: same V, traffic flows.
    state = asyncio.run(outside.vpn.up(timeout=30))
    assert state.virtual_ip == outside.virtual_ip and state.child_up, state
    assert world.ping("lan-host", CN, count=3).ok, outside.diagnostics()


def test_care_of_change_to_the_hotspot(outside: Dual, out_dir: Path) -> None:
    """Outside -> outside: only the outer binding moves (T -> X2); the VPN and V stay."""
    world, v = outside.world, outside.virtual_ip
    before = asyncio.run(outside.vpn.state())
    TIMINGS["wlan0 association with hotspot"] = world.router.associate("hotspot")
    lease = world.router.dhcp()
    care_of = A(lease.address)
    hotspot = UplinkRoute(1, plan.ROUTER_WLAN, care_of, A(lease.gateway))
    outside.router.apply(planned(dataplane((outside.cell, hotspot), outer=Tunnel(care_of, T_HA),
                                           virtual_ip=v, inner=Tunnel(v, S_HA))))
    outside.outer_ha.apply(home_agent_plan([binding(T, care_of)], T_HA, HOME_INTERFACE))

    with record(world, "inet", "hs0", out_dir / "hotspot-hs0.pcap") as outside_pcap:
        result = world.ping("lan-host", CN, count=PINGS)
    assert result.received == PINGS, f"{result}\n{outside.diagnostics()}"
    out_stack = [f"ip {care_of}>{T_HA}", f"ip {T}>{T_GW}"]
    back_stack = [f"ip {T_HA}>{care_of}", f"ip {T_GW}>{T}"]
    assert_nesting(
        outside_pcap,
        {" / ".join([*out_stack, "esp"]): PINGS, " / ".join([*back_stack, "esp"]): PINGS},
        ike_shapes(out_stack, back_stack), "hotspot link (inet hs0)")
    assert cleartext_leaks(outside_pcap, [plan.VPN_PROTECTED]) == []
    after = asyncio.run(outside.vpn.state())
    assert after.local == str(T) and after.virtual_ip == v
    assert after.established_s is not None and before.established_s is not None
    assert after.established_s >= before.established_s, "the IKE SA was re-established"


def test_outer_home_nesting_on_ext(outside: Dual, out_dir: Path) -> None:
    """Outside -> outer home network (the ext WLAN): the outer binding goes, the VPN stays."""
    world, v = outside.world, outside.virtual_ip
    TIMINGS["wlan0 association with ext"] = world.router.associate("ext")
    lease = world.router.dhcp()
    wlan = UplinkRoute(1, plan.ROUTER_WLAN, A(lease.address), A(lease.gateway))

    # At home: deregistered from the outer home agent, so it stops proxying for T...
    outside.outer_ha.apply(home_agent_plan([], T_HA, HOME_INTERFACE))
    assert outside.outer_ha.observe() == Plan()
    # ...and the router's own packets from T (and V's, through ESP) leave via the home WLAN.
    outside.router.apply(planned(dataplane(
        (outside.cell, wlan), home_uplink=wlan, virtual_ip=v, inner=Tunnel(v, S_HA))))
    # RFC 5944 section 4.6: back home, the node itself announces its home address, which
    # corrects the caches (the VPN gateway's) that still hold the home agent's proxy answer.
    for _ in range(3):
        send_gratuitous_arp(plan.ROUTER_WLAN, T, netns=world.ns("router"))

    with record(world, "inet", "ext0", out_dir / "outer-home-ext0.pcap") as outside_pcap, \
            record(world, "vpn-gw", "in0", out_dir / "outer-home-vpn-gw-in0.pcap") as inside_pcap:
        result = world.ping("lan-host", CN, count=PINGS)
    assert result.received == PINGS, f"{result}\n{outside.diagnostics()}"

    out_stack, back_stack = [f"ip {T}>{T_GW}"], [f"ip {T_GW}>{T}"]
    assert_nesting(outside_pcap, {f"ip {T}>{T_GW} / esp": PINGS, f"ip {T_GW}>{T} / esp": PINGS},
                   ike_shapes(out_stack, back_stack), "outer home WLAN (inet ext0)")
    leaks = cleartext_leaks(outside_pcap, [plan.VPN_PROTECTED])
    assert leaks == [], f"secure-domain addresses in clear on the ext WLAN:\n{summary(leaks)}"
    assert_nesting(inside_pcap, inner_shapes(v, PINGS), set(), "VPN gateway inside leg (in0)")
    assert asyncio.run(outside.vpn.state()).local == str(T)
