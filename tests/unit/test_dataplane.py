"""The router's data plane per situation, checked as plans and as ip-lines (fake backend)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from router.dataplane import (
    INNER_TUNNEL,
    LAN_TABLE,
    OUTER_TUNNEL,
    ROUTER_OWNERSHIP,
    DataPlane,
    Tunnel,
    UplinkRoute,
    router_plan,
)
from router.net import FakeBackend, KernelAdapter, RouteType

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
    assert not any(link.name == INNER_TUNNEL for link in plan.links)


def test_inside_plan() -> None:
    adapter, backend = kernel()
    adapter.apply(router_plan(base(uplinks=(WLAN,), inner=Tunnel(WLAN.address, S_HA))))
    text = "\n".join(backend.take_lines())
    assert "mip-inner" in text and "remote 10.10.0.1" in text and "local 10.30.0.23" in text
    assert "from 10.1.1.0/24" in text and "from 10.30.0.23" in text
    assert OUTER_TUNNEL not in text


def test_move_inside_to_outside_changes_tunnel_in_place() -> None:
    adapter, backend = kernel()
    adapter.apply(router_plan(base(uplinks=(WLAN,), inner=Tunnel(WLAN.address, S_HA))))
    backend.take_lines()
    outside = base(
        uplinks=(CELL,),
        inner=Tunnel(V, S_HA),
        outer=Tunnel(CELL.address, T_HA),
        outer_home_address=T,
        virtual_ip=V,
    )
    adapter.apply(router_plan(outside))
    lines = backend.take_lines()
    text = "\n".join(lines)
    inner_changes = [line for line in lines if INNER_TUNNEL in line and "link" in line]
    # The inner tunnel is changed in place (its routes survive), never deleted and re-added.
    assert inner_changes and not any(" del " in line for line in inner_changes), inner_changes
    assert "mip-outer" in text and "remote 192.0.2.1" in text
    assert "from 10.99.0.7" in text and "from 192.0.2.50" in text
    # The old uplink's rule and table are gone.
    assert any("del" in line and "10.30.0.23" in line for line in lines), text


def test_outer_home_has_no_outer_tunnel() -> None:
    home = UplinkRoute(0, "wlan0", IPv4Address("192.0.2.77"), IPv4Address("192.0.2.254"))
    plan = router_plan(
        base(uplinks=(home,), inner=Tunnel(V, S_HA), outer_home_address=T, virtual_ip=V, home_uplink=home)
    )
    assert not any(link.name == OUTER_TUNNEL for link in plan.links)
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
    assert not any(link.name == INNER_TUNNEL for link in plan.links)
    adapter.apply(plan)
    text = "\n".join(backend.take_lines())
    assert "dev mip3519" in text and "mip-inner" in text, text  # route moved, ipip tunnel removed
    # Without a binding the UDP flag alone routes nothing into the TUN.
    held = router_plan(base(uplinks=(CELL,), inner_udp=True))
    assert not any(r.dev == "mip3519" for r in held.routes)
