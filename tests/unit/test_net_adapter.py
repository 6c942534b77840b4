"""KernelAdapter over the fake backend: idempotence, reconcile after restart, teardown, errors."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from router.net import (
    Address,
    BackendError,
    ConvergenceError,
    FakeBackend,
    KernelAdapter,
    Link,
    LinkKind,
    Plan,
    PlanError,
    ProxyArp,
    Route,
    Rule,
    SysctlError,
    TunnelEnds,
)
from router.net.plan import Change, Operation, diff

A = IPv4Address
N = IPv4Network


def router_plan(care_of: str = "198.51.100.20") -> Plan:
    """The mobile router, inside: LAN traffic into the tunnel, outer packets via the uplink."""
    return Plan.of(
        Link("mip-inner", LinkKind.IPIP, tunnel=TunnelEnds(A(care_of), A("10.10.0.1"))),
        Address("mip-inner", IPv4Interface("10.10.0.50/32")),
        Route(N("0.0.0.0/0"), table=100, dev="mip-inner", src=A("10.10.0.50")),
        Route(N("10.10.0.1/32"), table=101, dev="wlan0", gateway=A("198.51.100.1")),
        Rule(1000, table=100, source=N("10.1.1.0/24")),
        Rule(1001, table=101, source=N(f"{care_of}/32")),
    )


def fresh() -> tuple[FakeBackend, KernelAdapter]:
    backend = FakeBackend(foreign_links={"wlan0", "eth0", "br-lan"})
    return backend, KernelAdapter(backend)


def test_apply_records_ip_lines_and_returns_the_changes() -> None:
    backend, adapter = fresh()
    changes = adapter.apply(router_plan())
    assert [str(c) for c in changes] == backend.lines
    assert backend.lines == [
        "ip link add mip-inner up type ipip local 198.51.100.20 remote 10.10.0.1 ttl 64 pmtudisc",
        "ip address add 10.10.0.50/32 dev mip-inner",
        "ip route add 0.0.0.0/0 dev mip-inner src 10.10.0.50 table 100",
        "ip route add 10.10.0.1/32 via 198.51.100.1 dev wlan0 table 101",
        "ip rule add priority 1000 from 10.1.1.0/24 lookup 100",
        "ip rule add priority 1001 from 198.51.100.20/32 lookup 101",
    ]


def test_applying_the_same_plan_twice_changes_nothing_the_second_time() -> None:
    backend, adapter = fresh()
    adapter.apply(router_plan())
    backend.take_lines()
    assert adapter.apply(router_plan()) == []
    assert backend.lines == []


def test_changed_plan_gives_minimal_changes() -> None:
    backend, adapter = fresh()
    plan = router_plan()
    adapter.apply(plan)
    backend.take_lines()
    adapter.apply(plan | Plan.of(ProxyArp("eth0", A("10.10.0.50"))))
    assert backend.take_lines() == ["ip neigh add proxy 10.10.0.50 dev eth0"]


def test_restart_reconciles_leftovers_from_the_kernel_not_from_memory() -> None:
    backend, adapter = fresh()
    adapter.apply(router_plan("198.51.100.20"))
    # The daemon dies; a new one starts on 3G with a new care-of address, and a stale
    # object of a previous run is still there.
    backend.apply(Change(Operation.ADD, Link("mip-old", LinkKind.BRIDGE)))
    restarted = KernelAdapter(backend)
    backend.take_lines()
    restarted.reconcile(router_plan("100.64.0.7"))
    assert backend.take_lines() == [
        "ip rule del priority 1001 from 198.51.100.20/32 lookup 101",
        "ip link del mip-old",
        "ip link set mip-inner type ipip local 100.64.0.7 remote 10.10.0.1 ttl 64 pmtudisc",
        "ip rule add priority 1001 from 100.64.0.7/32 lookup 101",
    ]
    assert diff(backend.observe(), router_plan("100.64.0.7")) == []


def test_teardown_leaves_nothing_owned() -> None:
    backend, adapter = fresh()
    adapter.apply(router_plan())
    adapter.teardown()
    assert backend.observe().is_empty()
    assert backend.lines[-1] == "ip link del mip-inner"


def test_invalid_plan_is_refused_before_touching_the_kernel() -> None:
    backend, adapter = fresh()
    with pytest.raises(PlanError, match="lacks the owner prefix"):
        adapter.apply(Plan.of(Link("tun0", LinkKind.DUMMY)))
    assert backend.lines == []


def test_kernel_refusal_names_the_object_and_keeps_earlier_changes() -> None:
    backend = FakeBackend(foreign_links={"wlan0"}, fail_on=("ip rule add priority 1001",))
    adapter = KernelAdapter(backend)
    with pytest.raises(BackendError, match=r"ip rule add priority 1001 .*refused"):
        adapter.apply(router_plan())
    assert len(backend.observe().rules) == 1
    backend.fail_on = ()
    assert [str(c) for c in adapter.apply(router_plan())] == [
        "ip rule add priority 1001 from 198.51.100.20/32 lookup 101"
    ]


def test_route_through_a_missing_device_is_refused_with_its_name() -> None:
    backend = FakeBackend()
    with pytest.raises(BackendError, match="Cannot find device 'wlan0'"):
        KernelAdapter(backend).apply(Plan.of(Route(N("10.0.0.0/8"), dev="wlan0")))


class _LaggingBackend(FakeBackend):
    """Shows nothing it was asked to do: the adapter must give up, bounded, and say why."""

    def apply(self, change: Change) -> None:
        self.lines.append(str(change))


def test_convergence_wait_is_bounded_and_lists_what_differs() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    adapter = KernelAdapter(
        _LaggingBackend(), settle_timeout=1.0, clock=lambda: now[0], sleep=sleep
    )
    with pytest.raises(ConvergenceError, match="ip link add mip-d up type dummy"):
        adapter.apply(Plan.of(Link("mip-d", LinkKind.DUMMY)))
    assert now[0] >= 1.0


def test_sysctls_are_written_only_when_they_differ() -> None:
    backend, adapter = fresh()
    backend.sysctls["net/ipv4/conf/eth0/rp_filter"] = "2"
    wanted = {"net/ipv4/ip_forward": "1", "net/ipv4/conf/eth0/rp_filter": "2"}
    assert adapter.ensure_sysctls(wanted) == ["sysctl -w net/ipv4/ip_forward=1"]
    assert adapter.ensure_sysctls(wanted) == []
    assert backend.lines == ["sysctl -w net/ipv4/ip_forward=1"]


@pytest.mark.parametrize("key", ["kernel/panic", "net/ipv4/../../kernel/x", "net/ipv4//x"])
def test_only_networking_sysctls_are_accepted(key: str) -> None:
    _, adapter = fresh()
    with pytest.raises(SysctlError, match="expected net/ipv4/"):
        adapter.ensure_sysctls({key: "1"})


class CountingBackend(FakeBackend):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.observations = 0

    def observe(self) -> Plan:
        self.observations += 1
        return super().observe()


def counting_adapter() -> tuple[KernelAdapter, CountingBackend]:
    backend = CountingBackend(foreign_links={"wlan0", "eth0", "br-lan"})
    return KernelAdapter(backend, sleep=lambda _: None), backend


def test_quick_apply_diffs_against_the_known_state_without_observing() -> None:
    adapter, backend = counting_adapter()
    adapter.apply(router_plan("198.51.100.20"))
    before = backend.observations
    changes = adapter.apply_quick(router_plan("198.51.100.30"))
    assert backend.observations == before, "the quick path must not dump the kernel first"
    assert changes and diff(backend.observe(), router_plan("198.51.100.30")) == []
    assert adapter.verify(router_plan("198.51.100.30")) == []  # nothing left to heal


def test_quick_apply_with_nothing_known_observes_first() -> None:
    adapter, backend = counting_adapter()
    adapter.apply_quick(router_plan())
    assert backend.observations >= 1 and diff(backend.observe(), router_plan()) == []


def test_verification_heals_what_vanished_behind_our_back() -> None:
    adapter, backend = counting_adapter()
    plan = router_plan()
    adapter.apply(plan)
    route = next(r for r in plan.routes if r.table == 101)
    backend.apply(Change(Operation.REMOVE, route))  # e.g. the uplink's device went away
    assert adapter.apply_quick(plan) == []  # the known state does not see it ...
    healed = adapter.verify(plan)  # ... the verification does, and puts it back
    assert [c.item for c in healed] == [route] and diff(backend.observe(), plan) == []


def test_a_refused_quick_change_falls_back_to_a_full_apply() -> None:
    adapter, backend = counting_adapter()
    adapter.apply(router_plan("198.51.100.20"))
    rule = next(r for r in router_plan("198.51.100.20").rules if r.priority == 1001)
    backend.apply(Change(Operation.REMOVE, rule))  # gone already: removing it again is refused
    adapter.apply_quick(router_plan("198.51.100.30"))
    assert diff(backend.observe(), router_plan("198.51.100.30")) == []


def test_a_device_that_went_away_is_forgotten_so_its_routes_come_back() -> None:
    """ppp0 redialled with the same address: the kernel flushed its routes; the quick path must
    add them again at once, not wait for the verification."""
    adapter, backend = counting_adapter()
    plan = router_plan()
    adapter.apply(plan)
    route = next(r for r in plan.routes if r.table == 101)
    backend.apply(Change(Operation.REMOVE, route))  # the device went down: its routes are gone
    adapter.forget_device("wlan0")
    assert [c.item for c in adapter.apply_quick(plan)] == [route]
    assert diff(backend.observe(), plan) == []
