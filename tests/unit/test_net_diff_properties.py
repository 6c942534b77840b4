"""Properties of `diff`, checked against the fake kernel (which enforces the kernel's order).

For any two valid plans A and B: the changes diff(A, B) apply one by one to a kernel holding
A without a refusal (every device exists before use, routes only through devices that are up,
a bridge before its ports), the kernel then holds B, and diff(B, B) is empty.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from router.net import (
    Address,
    FakeBackend,
    Link,
    LinkKind,
    Operation,
    Ownership,
    Plan,
    ProxyArp,
    Route,
    RouteType,
    Rule,
    TunnelEnds,
    diff,
)

FOREIGN = ("eth0", "wlan0")
A = IPv4Address


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    links: list[Link] = []
    bridge = draw(st.booleans())
    if bridge:
        links.append(Link("mip-br", LinkKind.BRIDGE, up=draw(st.booleans())))
    if draw(st.booleans()):
        master = draw(st.sampled_from([None, "mip-br"] if bridge else [None]))
        mtu = draw(st.sampled_from([None, 1400, 1500]))
        links.append(Link("mip-a0", LinkKind.VETH, peer="mip-a1", mtu=mtu, master=master))
    if draw(st.booleans()):
        links.append(Link("mip-d", LinkKind.DUMMY, up=draw(st.booleans())))
    if draw(st.booleans()):
        kind = draw(st.sampled_from([LinkKind.IPIP, LinkKind.GRE]))
        remote = draw(st.sampled_from([None, A("192.0.2.1"), A("192.0.2.2")]))
        key = draw(st.sampled_from([None, 7])) if kind == LinkKind.GRE else None
        links.append(Link("mip-t", kind, tunnel=TunnelEnds(A("192.0.2.50"), remote, key=key)))

    devices = [n for link in links for n in link.device_names] + list(FOREIGN)
    up = [n for link in links if link.up for n in link.device_names] + list(FOREIGN)
    addresses = draw(
        st.sets(
            st.builds(
                Address,
                st.sampled_from(devices),
                st.sampled_from([IPv4Interface("10.0.0.1/24"), IPv4Interface("10.0.1.1/32")]),
            ),
            max_size=3,
        )
    )
    proxies = draw(st.sets(st.builds(ProxyArp, st.sampled_from(devices), st.just(A("10.0.0.50")))))
    routes: dict[tuple[int, IPv4Network, int], Route] = {}
    for _ in range(draw(st.integers(0, 4))):
        destination = draw(st.sampled_from([IPv4Network("10.1.1.0/24"), IPv4Network("0.0.0.0/0")]))
        table = draw(st.sampled_from([254, 100]))
        metric = draw(st.sampled_from([0, 10]))
        if draw(st.booleans()):
            route = Route(destination, table, dev=draw(st.sampled_from(up)), metric=metric)
        else:
            route = Route(destination, table, metric=metric, type=RouteType.BLACKHOLE)
        routes[route.key] = route
    rules = draw(
        st.sets(
            st.builds(
                Rule,
                st.sampled_from([1000, 1001]),
                table=st.sampled_from([100, 101]),
                iif=st.sampled_from([None, *devices]),
            ),
            max_size=2,
        )
    )
    plan = Plan(
        links=frozenset(links),
        addresses=frozenset(addresses),
        routes=frozenset(routes.values()),
        rules=frozenset(rules),
        proxy_arp=frozenset(proxies),
    )
    plan.validate(Ownership())
    return plan


def kernel_holding(plan: Plan) -> FakeBackend:
    backend = FakeBackend(foreign_links=FOREIGN)
    for change in diff(Plan(), plan):
        backend.apply(change)
    return backend


@settings(max_examples=300, deadline=None)
@given(plans(), plans())
def test_diff_applies_cleanly_and_reaches_the_desired_plan(current: Plan, desired: Plan) -> None:
    backend = kernel_holding(current)
    assert diff(backend.observe(), current) == []
    changes = diff(backend.observe(), desired)
    for change in changes:
        backend.apply(change)  # the fake refuses what the kernel would refuse
    assert diff(backend.observe(), desired) == []
    assert diff(desired, desired) == []


@settings(max_examples=200, deadline=None)
@given(plans(), plans())
def test_removals_come_before_additions(current: Plan, desired: Plan) -> None:
    operations = [c.operation for c in diff(current, desired)]
    first_non_removal = next(
        (i for i, op in enumerate(operations) if op != Operation.REMOVE), len(operations)
    )
    assert all(op != Operation.REMOVE for op in operations[first_non_removal:])
