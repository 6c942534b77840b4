"""The router's data plane per situation, checked as plans and as ip-lines (fake backend)."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

import pytest

from router.dataplane import (
    INNER_TUNNEL,
    LAN_TABLE,
    OUTER_TABLE,
    OUTER_UDP_TUNNEL_DEVICE,
    ROUTER_OWNERSHIP,
    DataPlane,
    Tunnel,
    UplinkRoute,
    router_plan,
)
from router.net import FakeBackend, KernelAdapter, Plan, RouteType
from router.net.plan import Change, LinkKind, Operation, Route, diff

S, S_HA = IPv4Address("10.10.0.50"), IPv4Address("10.10.0.1")
T, T_HA = IPv4Address("192.0.2.50"), IPv4Address("192.0.2.1")
V = IPv4Address("10.99.0.7")
MNP = IPv4Network("10.1.1.0/24")
WLAN = UplinkRoute(0, "wlan0", IPv4Address("10.30.0.23"), IPv4Address("10.30.0.1"))
CELL = UplinkRoute(1, "ppp0", IPv4Address("100.64.0.9"), None)


def base(**changes: object) -> DataPlane:
    return DataPlane("br-lan", (MNP,), S, **changes)  # type: ignore[arg-type]


def kernel() -> tuple[KernelAdapter, FakeBackend]:
    backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "wlan0", "ppp0"])
    return KernelAdapter(backend, sleep=lambda _: None), backend


def test_no_tunnel_means_lan_fails_closed() -> None:
    plan = router_plan(base(uplinks=(WLAN,)))
    lan_routes = [r for r in plan.routes if r.table == LAN_TABLE and r.destination.prefixlen == 0]
    assert [r.type for r in lan_routes] == [RouteType.UNREACHABLE]
    assert not any(link.kind == LinkKind.IPIP for link in plan.links)


def test_inside_plan() -> None:
    adapter, backend = kernel()
    adapter.apply(router_plan(base(uplinks=(WLAN,), inner=Tunnel(WLAN.address, S_HA), inner_in_place=True)))
    text = "\n".join(backend.take_lines())
    assert "mip-inner" in text and "remote 10.10.0.1" in text and "local 10.30.0.23" in text
    assert "from 10.1.1.0/24" in text and "from 10.30.0.23" in text
    assert "mip-out-" not in text


def test_move_inside_to_outside_changes_tunnel_in_place() -> None:
    adapter, backend = kernel()
    adapter.apply(router_plan(base(uplinks=(WLAN,), inner=Tunnel(WLAN.address, S_HA), inner_in_place=True)))
    backend.take_lines()
    outside = base(
        uplinks=(CELL,),
        inner=Tunnel(V, S_HA),
        outer=Tunnel(CELL.address, T_HA),
        outer_home_address=T,
        virtual_ip=V,
        inner_in_place=True,
    )
    adapter.apply(router_plan(outside))
    lines = backend.take_lines()
    text = "\n".join(lines)
    inner_changes = [line for line in lines if INNER_TUNNEL in line and "link" in line]
    # The inner tunnel is changed in place (its routes survive), never deleted and re-added.
    assert inner_changes and not any(" del " in line for line in inner_changes), inner_changes
    assert "ip link add mip-out-1 " in text and "local 100.64.0.9 remote 192.0.2.1" in text
    assert "from 10.99.0.7" in text and "from 192.0.2.50" in text
    # The old uplink's rule and table are gone.
    assert any("del" in line and "10.30.0.23" in line for line in lines), text


def test_outer_home_has_no_outer_tunnel() -> None:
    home = UplinkRoute(0, "wlan0", IPv4Address("192.0.2.77"), IPv4Address("192.0.2.254"))
    plan = router_plan(
        base(uplinks=(home,), inner=Tunnel(V, S_HA), outer_home_address=T, virtual_ip=V, home_uplink=home)
    )
    assert not any(link.name.startswith("mip-out-") for link in plan.links)
    assert any(r.dev == "wlan0" and r.src == T for r in plan.routes)


def test_plans_are_valid_for_the_ownership() -> None:
    for state in (base(), base(uplinks=(WLAN, CELL), inner=Tunnel(WLAN.address, S_HA))):
        router_plan(state).validate(ROUTER_OWNERSHIP)


def test_vpn_table_fails_closed_on_the_dummy_and_keeps_v() -> None:
    from ipaddress import IPv4Interface

    from router.dataplane import HOME_DEVICE, VPN_TABLE
    from router.net import Address

    plan = router_plan(
        base(uplinks=(CELL,), inner=Tunnel(V, S_HA), outer=Tunnel(CELL.address, T_HA), outer_home_address=T, virtual_ip=V)
    )
    assert Address(HOME_DEVICE, IPv4Interface(f"{V}/32")) in plan.addresses
    vpn_routes = [r for r in plan.routes if r.table == VPN_TABLE and r.type == RouteType.UNICAST]
    # Only xfrm may carry V's packets out: without a policy they die on the dummy device.
    assert [r.dev for r in vpn_routes] == [HOME_DEVICE]


def test_outer_home_network_is_on_link_at_home() -> None:
    from router.dataplane import OUTER_TABLE

    home = UplinkRoute(0, "wlan0", IPv4Address("192.0.2.77"), IPv4Address("192.0.2.254"))
    network = IPv4Network("192.0.2.0/24")
    plan = router_plan(
        base(uplinks=(home,), outer_home_address=T, home_uplink=home, outer_home_network=network)
    )
    on_link = [r for r in plan.routes if r.table == OUTER_TABLE and r.destination == network]
    assert len(on_link) == 1 and on_link[0].gateway is None and on_link[0].dev == "wlan0"


def test_udp_tunnelled_binding_routes_the_lan_into_the_tun_and_still_fails_closed() -> None:
    backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "wlan0", "ppp0", "mip3519"])
    adapter = KernelAdapter(backend, sleep=lambda _: None)
    adapter.apply(router_plan(base(uplinks=(CELL,), inner=Tunnel(CELL.address, S_HA))))
    backend.take_lines()
    plan = router_plan(base(uplinks=(CELL,), inner=Tunnel(CELL.address, S_HA), inner_udp=True))
    defaults = {r.dev: r.type for r in plan.routes if r.table == LAN_TABLE and r.destination.prefixlen == 0}
    assert defaults == {"mip3519": RouteType.UNICAST, None: RouteType.UNREACHABLE}
    assert not any(link.kind == LinkKind.IPIP for link in plan.links)
    adapter.apply(plan)
    text = "\n".join(backend.take_lines())
    assert "0.0.0.0/0 dev mip3519 src 10.10.0.50 table 100" in text and "ip link del mip-in-1" in text, text
    # Without a binding the UDP flag alone routes nothing into the TUN.
    held = router_plan(base(uplinks=(CELL,), inner_udp=True))
    assert not any(r.dev == "mip3519" for r in held.routes)


# --- make-before-break: the kernel's state after every single change of a move --------------


def tunnels(plan: Plan) -> list[tuple[IPv4Address | None, IPv4Address | None]]:
    return [(link.tunnel.local, link.tunnel.remote) for link in plan.links if link.tunnel is not None]


def default_of(plan: Plan, table: int) -> Route | None:
    return next((r for r in plan.routes if r.table == table and r.destination.prefixlen == 0 and r.metric == 0), None)


def start(desired: DataPlane) -> FakeBackend:
    backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "wlan0", "ppp0"])
    KernelAdapter(backend, sleep=lambda _: None).apply(router_plan(desired))
    return backend


def step(backend: FakeBackend, desired: DataPlane, home_agent: IPv4Address, sends_to: set[IPv4Address],
         table: int) -> list[Change]:
    """Apply the changes to `desired` one at a time (as the adapter does) and check the
    kernel after each: a tunnel decapsulates on every address the home agent may send to,
    no two tunnels share their ends (the kernel refuses that), and `table`'s default still
    goes into a tunnel that exists (never falls to the unreachable default)."""
    changes = diff(backend.observe(), router_plan(desired))
    for change in changes:
        backend.apply(change)
        now = backend.observe()
        ends = tunnels(now)
        assert len(ends) == len(set(ends)), f"two tunnels with equal ends after {change}"
        for address in sends_to:
            assert (address, home_agent) in ends, f"no tunnel on {address} after {change}"
        route = default_of(now, table)
        assert route is not None and route.dev in {link.name for link in now.links}, f"{table} default gone after {change}"
    return changes


def only_route_replace(changes: list[Change], table: int, dev: str) -> bool:
    return [(c.operation, c.item.table, c.item.dev) for c in changes if isinstance(c.item, Route)] == [
        (Operation.MODIFY, table, dev)
    ] and len(changes) == 1


def test_single_system_planned_move_has_no_moment_without_a_tunnel_and_switches_by_one_route_replace() -> None:
    ha = T_HA  # the single system's home agent
    both = (WLAN, CELL)
    backend = start(base(uplinks=both, inner=Tunnel(CELL.address, ha)))
    # 1. The tunnel on the new care-of address is built before the Request leaves: additions only.
    prepared = base(uplinks=both, inner=Tunnel(CELL.address, ha), inner_standby=(Tunnel(WLAN.address, ha),))
    changes = step(backend, prepared, ha, {CELL.address}, LAN_TABLE)
    assert [(c.operation, c.item.name) for c in changes] == [(Operation.ADD, "mip-in-0")]  # type: ignore[union-attr]
    # 2. The home agent moved the binding (on the Request); the Reply moves the LAN: one route
    #    replace, and both tunnels stay (what was sent to the old address still arrives).
    acknowledged = base(uplinks=both, inner=Tunnel(WLAN.address, ha), inner_standby=(Tunnel(CELL.address, ha),))
    changes = step(backend, acknowledged, ha, {CELL.address, WLAN.address}, LAN_TABLE)
    assert only_route_replace(changes, LAN_TABLE, "mip-in-0"), [str(c) for c in changes]
    # 3. Back to 3G: its tunnel is still there, so preparing changes nothing and the ack is
    #    again a single route replace.
    back = base(uplinks=both, inner=Tunnel(CELL.address, ha), inner_standby=(Tunnel(WLAN.address, ha),))
    assert step(backend, acknowledged, ha, {WLAN.address}, LAN_TABLE) == []
    changes = step(backend, back, ha, {CELL.address, WLAN.address}, LAN_TABLE)
    assert only_route_replace(changes, LAN_TABLE, "mip-in-1"), [str(c) for c in changes]
    # 4. The old uplink goes: its tunnel goes with it, the LAN route does not move.
    changes = step(backend, base(uplinks=(CELL,), inner=Tunnel(CELL.address, ha)), ha, {CELL.address}, LAN_TABLE)
    assert [str(c) for c in changes if "mip-in" in str(c)] == ["ip link del mip-in-0"]


def test_a_tunnel_whose_uplink_is_gone_is_not_built_and_the_lan_fails_closed() -> None:
    plan = router_plan(base(uplinks=(CELL,), inner=Tunnel(WLAN.address, T_HA), inner_standby=(Tunnel(WLAN.address, T_HA),)))
    assert tunnels(plan) == []
    lan = [r for r in plan.routes if r.table == LAN_TABLE and r.destination.prefixlen == 0]
    assert [r.type for r in lan] == [RouteType.UNREACHABLE]


def test_standby_on_the_acknowledged_address_is_that_tunnel_not_a_second_one() -> None:
    plan = router_plan(base(uplinks=(CELL,), inner=Tunnel(CELL.address, T_HA), inner_standby=(Tunnel(CELL.address, T_HA),)))
    assert tunnels(plan) == [(CELL.address, T_HA)]
    plan.validate(ROUTER_OWNERSHIP)


def outside(outer: UplinkRoute, standby: tuple[UplinkRoute, ...] = (), **changes: object) -> DataPlane:
    return base(
        uplinks=(WLAN, CELL),
        inner=Tunnel(V, S_HA),
        inner_in_place=True,
        outer=Tunnel(outer.address, T_HA),
        outer_standby=tuple(Tunnel(u.address, T_HA) for u in standby),
        outer_home_address=T,
        virtual_ip=V,
        **changes,
    )


def test_outer_system_planned_move_registers_while_the_old_tunnel_carries_t_then_one_route_replace() -> None:
    backend = start(outside(CELL))
    # RegisterOuter: the tunnel on the new address first; T still rides the old one.
    changes = step(backend, outside(CELL, (WLAN,)), T_HA, {CELL.address}, OUTER_TABLE)
    assert [str(c) for c in changes] == ["ip link add mip-out-0 up type ipip local 10.30.0.23 remote 192.0.2.1 ttl 64 pmtudisc"]
    assert default_of(backend.observe(), OUTER_TABLE).dev == "mip-out-1"  # type: ignore[union-attr]
    # OuterRegistered: table 101's default moves, nothing else (mip-inner, V, the VPN untouched).
    changes = step(backend, outside(WLAN, (CELL,)), T_HA, {CELL.address, WLAN.address}, OUTER_TABLE)
    assert only_route_replace(changes, OUTER_TABLE, "mip-out-0"), [str(c) for c in changes]
    assert ("mip-inner", V) in {(link.name, link.tunnel.local) for link in backend.observe().links if link.tunnel}


def test_outer_home_keeps_the_old_outer_tunnel_unrouted_until_it_goes() -> None:
    backend = start(outside(CELL))
    home = base(
        uplinks=(WLAN, CELL), inner=Tunnel(V, S_HA), inner_in_place=True, outer_standby=(Tunnel(CELL.address, T_HA),),
        outer_home_address=T, virtual_ip=V, home_uplink=WLAN, outer_home_network=IPv4Network("10.30.0.0/24"),
    )
    changes = diff(backend.observe(), router_plan(home))
    assert not any(c.operation == Operation.REMOVE for c in changes), [str(c) for c in changes]
    for change in changes:
        backend.apply(change)
    assert default_of(backend.observe(), OUTER_TABLE).dev == "wlan0"  # type: ignore[union-attr]
    assert (CELL.address, T_HA) in tunnels(backend.observe())


def test_dropping_the_old_tunnel_in_the_same_apply_as_the_switch_would_open_a_window() -> None:
    """Why the tunnel just left stays as a standby: the plan diff removes a link (and the
    routes through it) before it adds or replaces anything, so an ack that also dropped the
    old tunnel would leave the LAN without a default for a moment. The checker sees it."""
    ha = T_HA
    backend = start(base(uplinks=(WLAN, CELL), inner=Tunnel(CELL.address, ha)))
    step(backend, base(uplinks=(WLAN, CELL), inner=Tunnel(CELL.address, ha), inner_standby=(Tunnel(WLAN.address, ha),)),
         ha, {CELL.address}, LAN_TABLE)
    with pytest.raises(AssertionError, match=re.escape("100 default gone after ip route del 0.0.0.0/0 dev mip-in-1")):
        step(backend, base(uplinks=(WLAN, CELL), inner=Tunnel(WLAN.address, ha)), ha, {WLAN.address}, LAN_TABLE)


# --- RFC 3519 for the dual system's outer system ---------------------------------------------


def udp_kernel() -> tuple[KernelAdapter, FakeBackend]:
    backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "wlan0", "ppp0", OUTER_UDP_TUNNEL_DEVICE])
    return KernelAdapter(backend, sleep=lambda _: None), backend


def test_outside_with_a_udp_tunnelled_outer_binding_routes_t_into_the_outer_tun() -> None:
    """Behind a NAT on 3G: T's default (IKE, ESP to the VPN gateway) goes into the outer
    system's TUN, no IP-in-IP tunnel exists on the acknowledged care-of address, the outer
    table still fails closed behind it, and the inner system is untouched (mip-inner from V,
    the LAN into it, V's table on the dummy)."""
    adapter, backend = udp_kernel()
    adapter.apply(router_plan(outside(CELL)))
    backend.take_lines()
    plan = router_plan(outside(CELL, outer_udp=True))
    defaults = {r.dev: r.type for r in plan.routes if r.table == OUTER_TABLE and r.destination.prefixlen == 0}
    assert defaults == {OUTER_UDP_TUNNEL_DEVICE: RouteType.UNICAST, None: RouteType.UNREACHABLE}
    assert default_of(plan, OUTER_TABLE).src == T  # type: ignore[union-attr]
    assert not any(link.name.startswith("mip-out-") for link in plan.links)
    assert default_of(plan, LAN_TABLE).dev == INNER_TUNNEL  # type: ignore[union-attr]
    assert (INNER_TUNNEL, V) in {(link.name, link.tunnel.local) for link in plan.links if link.tunnel}
    plan.validate(ROUTER_OWNERSHIP)
    adapter.apply(plan)
    lines = backend.take_lines()
    # A binding that turns UDP on the same care-of address (a NAT appeared) loses its IP-in-IP
    # tunnel first (the diff removes before it adds): T fails closed for that moment.
    assert lines == [
        "ip route del 0.0.0.0/0 dev mip-out-1 src 192.0.2.50 table 101",
        "ip link del mip-out-1",
        "ip route add 0.0.0.0/0 dev mip3519-out src 192.0.2.50 table 101",
    ], lines


def test_leaving_the_nat_detaches_t_from_the_outer_tun() -> None:
    """3G behind a NAT (UDP) -> hotspot without one (IP-in-IP): the tunnel on the new
    address is built first, the ack moves T's default out of the TUN by one route replace;
    at the outer home and inside nothing routes into the TUN."""
    adapter, backend = udp_kernel()
    adapter.apply(router_plan(outside(CELL, outer_udp=True)))
    # RegisterOuter on the hotspot: a decapsulating tunnel there; T still rides the TUN.
    adapter.apply(router_plan(outside(CELL, (WLAN,), outer_udp=True)))
    assert default_of(backend.observe(), OUTER_TABLE).dev == OUTER_UDP_TUNNEL_DEVICE  # type: ignore[union-attr]
    assert set(tunnels(backend.observe())) == {(WLAN.address, T_HA), (V, S_HA)}
    backend.take_lines()
    # The plain (non-UDP) ack: T into mip-out-0; the NAT'd care-of address gets no IP-in-IP.
    adapter.apply(router_plan(outside(WLAN, outer_udp=False)))
    assert backend.take_lines() == ["ip route replace 0.0.0.0/0 dev mip-out-0 src 192.0.2.50 table 101"]
    assert set(tunnels(backend.observe())) == {(WLAN.address, T_HA), (V, S_HA)}
    # Outer home / inside: no outer binding, whatever the flag says.
    home = base(uplinks=(WLAN,), inner=Tunnel(V, S_HA), inner_in_place=True, outer_home_address=T,
                virtual_ip=V, home_uplink=WLAN, outer_udp=True)
    assert not any(r.dev == OUTER_UDP_TUNNEL_DEVICE for r in router_plan(home).routes)
    inside = base(uplinks=(WLAN,), inner=Tunnel(WLAN.address, S_HA), inner_in_place=True, outer_udp=True)
    assert not any(r.dev == OUTER_UDP_TUNNEL_DEVICE for r in router_plan(inside).routes)


def test_a_udp_outer_binding_whose_uplink_is_gone_routes_nothing_into_the_tun() -> None:
    gone = base(uplinks=(WLAN,), inner=Tunnel(V, S_HA), inner_in_place=True, outer=Tunnel(CELL.address, T_HA),
                outer_home_address=T, virtual_ip=V, outer_udp=True)
    plan = router_plan(gone)
    assert not any(r.dev == OUTER_UDP_TUNNEL_DEVICE for r in plan.routes)
    assert [r.type for r in plan.routes if r.table == OUTER_TABLE and r.destination.prefixlen == 0] == [RouteType.UNREACHABLE]


def test_a_standby_on_the_udp_care_of_address_is_not_built() -> None:
    """The daemon never asks for it, but a plan with an IP-in-IP standby on the address the UDP
    binding uses must not build one beside the TUN either (the home agent sends UDP there)."""
    plan = router_plan(outside(CELL, (CELL, WLAN), outer_udp=True))
    assert set(tunnels(plan)) == {(WLAN.address, T_HA), (V, S_HA)}
