"""The adapter on a real kernel: plans applied over netlink, read back, reconciled, torn down.

Each test gets a fresh namespace; `ip` (iproute2) checks independently what pyroute2 wrote.
The host kernel has no dummy/ipip/gre, so links here are veth pairs and bridges; tunnels
are covered in tests/qemu/test_net_tunnels.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from router.net import (
    Address,
    BackendError,
    KernelAdapter,
    Link,
    LinkKind,
    Ownership,
    Plan,
    ProxyArp,
    Route,
    RouteType,
    Rule,
    RuleAction,
    diff,
)
from router.net.kernel import Pyroute2Backend

from .conftest import in_ns, ip

A = IPv4Address
N = IPv4Network
OWNER = Ownership()


def lab_plan(lan_route_dev: str = "mip-a1", port_mtu: int = 1400) -> Plan:
    """Bridges, veths, addresses, routes in our tables and main, rules, a proxy entry."""
    return Plan.of(
        Link("mip-br", LinkKind.BRIDGE, mtu=1400),
        Link("mip-a0", LinkKind.VETH, peer="mip-a1", mtu=port_mtu, master="mip-br"),
        Link("mip-b0", LinkKind.VETH, peer="mip-b1", mtu=1500),
        Address("mip-br", IPv4Interface("10.1.1.1/24")),
        Address("mip-a1", IPv4Interface("10.2.0.1/24")),
        Address("mip-b1", IPv4Interface("10.3.0.1/24")),
        Route(N("10.50.0.0/16"), table=100, dev=lan_route_dev),
        Route(N("10.60.0.0/16"), dev="mip-a1", gateway=A("10.2.0.2"), src=A("10.2.0.1"), metric=10),
        Route(N("10.70.0.0/16"), table=101, type=RouteType.BLACKHOLE),
        Route(N("10.99.0.0/24"), table=100, type=RouteType.THROW),
        Rule(1000, table=100, source=N("10.1.1.0/24")),
        Rule(1001, table=101, iif="mip-br", fwmark=0x10, fwmask=0xFF),
        Rule(1002, action=RuleAction.BLACKHOLE, destination=N("10.80.0.0/16"), oif="mip-b1"),
        ProxyArp("mip-br", A("10.1.1.77")),
    )


@pytest.fixture
def adapter(netns: str) -> Iterator[KernelAdapter]:
    kernel = KernelAdapter(Pyroute2Backend(OWNER, netns=netns))
    try:
        yield kernel
    finally:
        kernel.close()


def test_applied_plan_reads_back_exactly(adapter: KernelAdapter, netns: str) -> None:
    plan = lab_plan()
    changes = adapter.apply(plan)
    assert len(changes) == len(plan)
    assert adapter.observe() == plan
    # iproute2 agrees, and sees our protocol mark on each route, rule and proxy entry.
    routes = ip("-n", netns, "route", "show", "table", "all", "proto", "201")
    assert "10.50.0.0/16 dev mip-a1 table 100 scope link" in routes
    assert "10.60.0.0/16 via 10.2.0.2 dev mip-a1 src 10.2.0.1 metric 10" in routes
    assert "blackhole 10.70.0.0/16 table 101" in routes
    assert "throw 10.99.0.0/24 table 100" in routes
    rules = ip("-n", netns, "rule", "show")
    assert "1000:\tfrom 10.1.1.0/24 lookup 100 proto 201" in rules
    assert "1001:\tfrom all fwmark 0x10/0xff iif mip-br lookup 101 proto 201" in rules
    assert "1002:\tfrom all to 10.80.0.0/16 oif mip-b1 blackhole proto 201" in rules
    assert "10.1.1.77 dev mip-br proxy proto 201" in ip("-n", netns, "neigh", "show", "proxy")
    assert "master mip-br" in ip("-n", netns, "link", "show", "mip-a0")


def test_applying_twice_changes_nothing(adapter: KernelAdapter) -> None:
    adapter.apply(lab_plan())
    assert adapter.apply(lab_plan()) == []


def test_changed_plan_makes_only_the_needed_changes(adapter: KernelAdapter) -> None:
    adapter.apply(lab_plan())
    changes = adapter.apply(lab_plan(lan_route_dev="mip-b1", port_mtu=1300))
    assert [str(c) for c in changes] == [
        "ip link set mip-a0 mtu 1300",
        "ip route replace 10.50.0.0/16 dev mip-b1 table 100",
    ]
    assert adapter.observe() == lab_plan(lan_route_dev="mip-b1", port_mtu=1300)


def test_a_restarted_daemon_reconciles_leftovers_and_leaves_others_alone(netns: str) -> None:
    first = KernelAdapter(Pyroute2Backend(OWNER, netns=netns))
    first.apply(lab_plan())
    first.close()  # crash: no teardown
    # Someone else's objects, some in our tables and priority range, must survive us.
    ip("-n", netns, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1")
    ip("-n", netns, "link", "set", "keep0", "up")
    ip("-n", netns, "route", "add", "10.90.0.0/16", "dev", "keep0", "table", "100")
    ip("-n", netns, "rule", "add", "priority", "1050", "from", "10.9.0.0/16", "lookup", "100")

    smaller = Plan.of(
        Link("mip-b0", LinkKind.VETH, peer="mip-b1", mtu=1500),
        Address("mip-b1", IPv4Interface("10.3.0.1/24")),
        Route(N("10.50.0.0/16"), table=100, dev="mip-b1"),
    )
    restarted = KernelAdapter(Pyroute2Backend(OWNER, netns=netns))
    try:
        changes = restarted.reconcile(smaller)
        assert any(str(c) == "ip link del mip-a0" for c in changes)
        assert restarted.observe() == smaller
        restarted.teardown()
        assert restarted.observe() == Plan()
    finally:
        restarted.close()
    assert "10.90.0.0/16 dev keep0" in ip("-n", netns, "route", "show", "table", "100")
    assert "1050:\tfrom 10.9.0.0/16 lookup 100" in ip("-n", netns, "rule", "show")
    assert "keep0" in ip("-n", netns, "link", "show")


def test_teardown_leaves_nothing_of_ours(adapter: KernelAdapter, netns: str) -> None:
    adapter.apply(lab_plan())
    adapter.teardown()
    assert adapter.observe() == Plan()
    assert "mip-" not in ip("-n", netns, "link", "show")
    assert ip("-n", netns, "route", "show", "table", "all", "proto", "201").strip() == ""
    assert "proto 201" not in ip("-n", netns, "rule", "show")
    assert ip("-n", netns, "neigh", "show", "proxy").strip() == ""


def test_changes_already_made_by_someone_else_are_accepted(
    adapter: KernelAdapter, netns: str
) -> None:
    # A crash between a change and our bookkeeping leaves the kernel ahead of any plan:
    # adding what exists and removing what is gone must both succeed.
    backend = adapter.backend
    plan = lab_plan()
    for change in diff(Plan(), plan):
        backend.apply(change)
    for change in diff(Plan(), plan):
        backend.apply(change)
    assert adapter.observe() == plan
    for change in diff(plan, Plan()):
        backend.apply(change)
    for change in diff(plan, Plan()):
        backend.apply(change)
    assert adapter.observe() == Plan()


def test_refusal_names_the_object(adapter: KernelAdapter) -> None:
    with pytest.raises(BackendError, match=r"ip route add 10\.0\.0\.0/8 dev eth7 .*eth7"):
        adapter.apply(Plan.of(Route(N("10.0.0.0/8"), dev="eth7")))
    with pytest.raises(BackendError, match=r"ip route add 10\.0\.0\.0/8 via 10\.66\.0\.1"):
        adapter.apply(
            Plan.of(
                Link("mip-b0", LinkKind.VETH, peer="mip-b1"),
                Route(N("10.0.0.0/8"), dev="mip-b1", gateway=A("10.66.0.1")),
            )
        )


def test_adding_over_a_different_device_of_the_same_name_fails(
    adapter: KernelAdapter, netns: str
) -> None:
    # The prefix marks the device as ours, so a plan would replace it; but a single add that
    # races with another creator must not silently adopt a device of another kind.
    ip("-n", netns, "link", "add", "mip-x", "type", "bridge")
    (add_veth,) = diff(Plan(), Plan.of(Link("mip-x", LinkKind.VETH, peer="mip-y")))
    with pytest.raises(BackendError, match=r"mip-x .*a different device with this name exists"):
        adapter.backend.apply(add_veth)
    adapter.apply(Plan.of(Link("mip-x", LinkKind.VETH, peer="mip-y")))
    assert "veth" in ip("-n", netns, "-d", "link", "show", "mip-x")


def test_missing_namespace_is_an_error_not_a_new_namespace() -> None:
    with pytest.raises(OSError):
        Pyroute2Backend(OWNER, netns="nt-no-such-namespace")
    assert "nt-no-such-namespace" not in ip("netns", "list")


def test_sysctls_are_set_in_the_namespace_and_nowhere_else(
    adapter: KernelAdapter, netns: str
) -> None:
    host = Path("/proc/sys/net/ipv4/ip_forward")
    host_forwarding = host.read_text().strip()
    # Both values in turn: whichever the host has, one of them differs from it.
    for value in ("1", "0"):
        assert adapter.ensure_sysctls({"net/ipv4/ip_forward": value}) == [
            f"sysctl -w net/ipv4/ip_forward={value}"
        ]
        assert in_ns(netns, "cat", "/proc/sys/net/ipv4/ip_forward").strip() == value
        assert host.read_text().strip() == host_forwarding
        assert adapter.ensure_sysctls({"net/ipv4/ip_forward": value}) == []


def test_neighbour_table_gives_a_usable_entry_only(netns: str) -> None:
    """The home agent learns a node's own MAC from its ARP cache (RFC 5944 §4.6): an entry
    with an address (stale counts: the kernel still uses it) gives it; an incomplete entry, a
    proxy entry or none gives None; an unknown interface is an error, not None."""
    from router.net.kernel import NeighbourTable

    ip("-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    ip("-n", netns, "link", "set", "eth0", "up")
    ip("-n", netns, "neigh", "add", "192.0.2.50", "lladdr", "02:00:00:00:00:50", "dev", "eth0", "nud", "stale")
    ip("-n", netns, "neigh", "add", "192.0.2.51", "dev", "eth0", "nud", "incomplete")
    ip("-n", netns, "neigh", "add", "proxy", "192.0.2.52", "dev", "eth0")
    ip("-n", netns, "neigh", "add", "192.0.2.53", "lladdr", "02:00:00:00:00:53", "dev", "eth1", "nud", "permanent")
    table = NeighbourTable(netns)
    try:
        assert table.hardware_address("eth0", A("192.0.2.50")) == bytes.fromhex("020000000050")
        assert table.hardware_address("eth0", A("192.0.2.51")) is None
        assert table.hardware_address("eth0", A("192.0.2.52")) is None
        assert table.hardware_address("eth0", A("192.0.2.53")) is None  # on another interface
        assert table.hardware_address("eth1", A("192.0.2.53")) == bytes.fromhex("020000000053")
        with pytest.raises(OSError, match="no interface eth9"):
            table.hardware_address("eth9", A("192.0.2.50"))
    finally:
        table.close()
