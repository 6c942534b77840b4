"""Plans, their validation, and the order and `ip` lines of their differences (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from router.net.plan import (
    Address,
    Change,
    Link,
    LinkKind,
    Operation,
    Ownership,
    Plan,
    PlanError,
    ProxyArp,
    Route,
    RouteType,
    Rule,
    RuleAction,
    TunnelEnds,
    diff,
)

A = IPv4Address
N = IPv4Network


def tunnel_to(care_of: str, name: str = "mip-mn50") -> Link:
    return Link(name, LinkKind.IPIP, tunnel=TunnelEnds(local=A("10.10.0.1"), remote=A(care_of)))


def home_agent_plan(care_of: str = "100.64.0.7") -> Plan:
    """What the home agent holds for one away mobile router (RFC 5944 §4.6, RFC 5177)."""
    return Plan.of(
        tunnel_to(care_of),
        Route(N("10.10.0.50/32"), dev="mip-mn50"),
        Route(N("10.1.1.0/24"), dev="mip-mn50"),
        ProxyArp("eth0", A("10.10.0.50")),
    )


def lines(changes: list[Change]) -> list[str]:
    return [str(c) for c in changes]


def test_adding_a_plan_creates_links_first_then_addresses_proxies_routes_rules() -> None:
    plan = home_agent_plan() | Plan.of(
        Address("mip-mn50", IPv4Interface("10.255.0.1/32")),
        Rule(1000, table=100, source=N("10.1.1.0/24")),
    )
    assert lines(diff(Plan(), plan)) == [
        "ip link add mip-mn50 up type ipip local 10.10.0.1 remote 100.64.0.7 ttl 64 pmtudisc",
        "ip address add 10.255.0.1/32 dev mip-mn50",
        "ip neigh add proxy 10.10.0.50 dev eth0",
        "ip route add 10.1.1.0/24 dev mip-mn50 table 254",
        "ip route add 10.10.0.50/32 dev mip-mn50 table 254",
        "ip rule add priority 1000 from 10.1.1.0/24 lookup 100",
    ]


def test_removing_everything_goes_in_reverse_dependency_order() -> None:
    plan = home_agent_plan() | Plan.of(
        Address("mip-mn50", IPv4Interface("10.255.0.1/32")),
        Rule(1000, table=100, source=N("10.1.1.0/24")),
    )
    assert lines(diff(plan, Plan())) == [
        "ip rule del priority 1000 from 10.1.1.0/24 lookup 100",
        "ip route del 10.10.0.50/32 dev mip-mn50 table 254",
        "ip route del 10.1.1.0/24 dev mip-mn50 table 254",
        "ip neigh del proxy 10.10.0.50 dev eth0",
        "ip address del 10.255.0.1/32 dev mip-mn50",
        "ip link del mip-mn50",
    ]


def test_same_plan_yields_no_changes() -> None:
    assert diff(home_agent_plan(), home_agent_plan()) == []


def test_new_care_of_address_moves_the_tunnel_in_place_keeping_its_routes() -> None:
    assert lines(diff(home_agent_plan("100.64.0.7"), home_agent_plan("198.51.100.9"))) == [
        "ip link set mip-mn50 type ipip local 10.10.0.1 remote 198.51.100.9 ttl 64 pmtudisc",
    ]


def test_new_kind_recreates_the_link_and_what_lived_on_it() -> None:
    # The kernel drops a device's routes with it, so they must be re-added, in order.
    gre = Link("mip-mn50", LinkKind.GRE, tunnel=TunnelEnds(A("10.10.0.1"), A("100.64.0.7")))
    as_gre = Plan(
        links=frozenset({gre}),
        routes=home_agent_plan().routes,
        proxy_arp=home_agent_plan().proxy_arp,
    )
    assert lines(diff(home_agent_plan(), as_gre)) == [
        "ip route del 10.10.0.50/32 dev mip-mn50 table 254",
        "ip route del 10.1.1.0/24 dev mip-mn50 table 254",
        "ip link del mip-mn50",
        "ip link add mip-mn50 up type gre local 10.10.0.1 remote 100.64.0.7 ttl 64 pmtudisc",
        "ip route add 10.1.1.0/24 dev mip-mn50 table 254",
        "ip route add 10.10.0.50/32 dev mip-mn50 table 254",
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (TunnelEnds(A("10.0.0.1"), A("10.0.0.2")), TunnelEnds(A("10.0.0.1"), None)),
        (TunnelEnds(A("10.0.0.1"), A("10.0.0.2"), key=1), TunnelEnds(A("10.0.0.1"), A("10.0.0.2"))),
    ],
)
def test_tunnel_changes_the_kernel_cannot_make_in_place_recreate(
    old: TunnelEnds, new: TunnelEnds
) -> None:
    before = Plan.of(Link("mip-t", LinkKind.GRE, tunnel=old))
    after = Plan.of(Link("mip-t", LinkKind.GRE, tunnel=new))
    assert [c.operation for c in diff(before, after)] == [Operation.REMOVE, Operation.ADD]


def test_moving_a_route_to_another_tunnel_is_one_atomic_replace() -> None:
    # Make-before-break: both tunnels exist, only the route moves.
    old = Plan.of(tunnel_to("100.64.0.7", "mip-a"), tunnel_to("198.51.100.9", "mip-b"))
    before = old | Plan.of(Route(N("10.1.1.0/24"), dev="mip-a"))
    after = old | Plan.of(Route(N("10.1.1.0/24"), dev="mip-b"))
    assert lines(diff(before, after)) == ["ip route replace 10.1.1.0/24 dev mip-b table 254"]


def test_mtu_master_and_state_change_in_place() -> None:
    bridge = Link("mip-br", LinkKind.BRIDGE)
    before = Plan.of(bridge, Link("mip-v0", LinkKind.VETH, peer="mip-v1", mtu=1500))
    after = Plan.of(
        bridge, Link("mip-v0", LinkKind.VETH, peer="mip-v1", mtu=1400, master="mip-br", up=False)
    )
    assert lines(diff(before, after)) == ["ip link set mip-v0 mtu 1400 master mip-br down"]


def test_a_bridge_is_created_before_its_port_and_removed_after_it() -> None:
    plan = Plan.of(
        Link("mip-a0", LinkKind.VETH, peer="mip-a1", master="mip-br"),
        Link("mip-br", LinkKind.BRIDGE),
    )
    assert lines(diff(Plan(), plan)) == [
        "ip link add mip-br up type bridge",
        "ip link add mip-a0 master mip-br up type veth peer name mip-a1",
    ]
    assert lines(diff(plan, Plan())) == ["ip link del mip-a0", "ip link del mip-br"]


def test_unset_mtu_accepts_whatever_the_kernel_chose() -> None:
    observed = Plan.of(Link("mip-d", LinkKind.DUMMY, mtu=1500))
    assert diff(observed, Plan.of(Link("mip-d", LinkKind.DUMMY))) == []


def test_link_going_down_loses_its_routes_first() -> None:
    # IPv4 flushes routes through a device that goes down; remove them ourselves, first.
    up = Plan.of(Link("mip-d", LinkKind.DUMMY), Route(N("10.9.0.0/16"), dev="mip-d"))
    down = Plan.of(Link("mip-d", LinkKind.DUMMY, up=False))
    assert lines(diff(up, down)) == [
        "ip route del 10.9.0.0/16 dev mip-d table 254",
        "ip link set mip-d down",
    ]


def test_route_rendering_covers_every_field() -> None:
    route = Route(
        N("0.0.0.0/0"),
        table=101,
        dev="wlan0",
        gateway=A("198.51.100.1"),
        src=A("198.51.100.20"),
        metric=10,
    )
    assert str(Change(Operation.ADD, route)) == (
        "ip route add 0.0.0.0/0 via 198.51.100.1 dev wlan0 src 198.51.100.20 table 101 metric 10"
    )
    throw = Route(N("10.99.0.0/24"), table=100, type=RouteType.THROW)
    assert str(Change(Operation.ADD, throw)) == "ip route add throw 10.99.0.0/24 table 100"


def test_rule_rendering_covers_every_field() -> None:
    rule = Rule(
        1010,
        table=101,
        source=N("198.51.100.20/32"),
        destination=N("10.10.0.1/32"),
        iif="br-lan",
        oif="wlan0",
        fwmark=0x10,
        fwmask=0xFF,
    )
    assert str(Change(Operation.ADD, rule)) == (
        "ip rule add priority 1010 from 198.51.100.20/32 to 10.10.0.1/32 iif br-lan "
        "oif wlan0 fwmark 0x10/0xff lookup 101"
    )
    block = Rule(1099, action=RuleAction.BLACKHOLE, source=N("10.1.1.0/24"))
    assert str(Change(Operation.REMOVE, block)) == (
        "ip rule del priority 1099 from 10.1.1.0/24 blackhole"
    )


def test_gre_tunnel_rendering_with_key() -> None:
    gre = Link(
        "mip-gre",
        LinkKind.GRE,
        mtu=1400,
        tunnel=TunnelEnds(A("192.0.2.50"), A("192.0.2.1"), ttl=0, pmtudisc=False, key=7),
    )
    assert str(Change(Operation.ADD, gre)) == (
        "ip link add mip-gre mtu 1400 up type gre local 192.0.2.50 remote 192.0.2.1 "
        "ttl inherit nopmtudisc key 7"
    )


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (Link("eth9", LinkKind.DUMMY), "lacks the owner prefix"),
        (Link("mip-0123456789ab", LinkKind.DUMMY), "1..15 characters"),
        (Link("mip-t", LinkKind.IPIP), "tunnel ends are required"),
        (Link("mip-v1", LinkKind.VETH, peer="mip-v0"), "under its first name"),
        (Link("mip-v", LinkKind.VETH), "a peer is required"),
        (Address("mip-x", IPv4Interface("10.0.0.1/24")), "no such link"),
        (ProxyArp("mip-x", A("10.0.0.1")), "no such link"),
        (Route(N("10.0.0.0/8"), table=220, dev="eth0"), "table outside"),
        (Route(N("10.0.0.0/8")), "must name its dev"),
        (Route(N("10.0.0.0/8"), dev="eth0", type=RouteType.BLACKHOLE), "takes no dev"),
        (Route(N("10.0.0.0/8"), dev="mip-x"), "not a link in the plan"),
        (Rule(220, table=100), "outside the owner's range 1000..1099"),
        (Rule(1000), "a table is required"),
        (Rule(1000, table=100, fwmask=1), "fwmask without fwmark"),
    ],
)
def test_validation_names_the_object_and_the_problem(item: object, problem: str) -> None:
    plan = Plan.of(item)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match=problem):
        plan.validate(Ownership())


def test_validation_rejects_a_route_through_a_link_that_is_down() -> None:
    plan = Plan.of(Link("mip-d", LinkKind.DUMMY, up=False), Route(N("10.0.0.0/8"), dev="mip-d"))
    with pytest.raises(PlanError, match="is down in the plan"):
        plan.validate(Ownership())


def test_validation_rejects_two_routes_with_one_identity() -> None:
    plan = Plan.of(Route(N("10.0.0.0/8"), dev="eth0"), Route(N("10.0.0.0/8"), dev="eth1"))
    with pytest.raises(PlanError, match="declared twice"):
        plan.validate(Ownership())


def test_valid_plan_passes_and_iterates_in_dependency_order() -> None:
    plan = home_agent_plan()
    plan.validate(Ownership())
    kinds = [type(item).__name__ for item in plan]
    assert kinds == ["Link", "ProxyArp", "Route", "Route"]
    assert len(plan) == 4
