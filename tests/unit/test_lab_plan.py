"""The lab's plan is consistent, and link conditions become the right netem arguments."""

from __future__ import annotations

from collections import Counter
from ipaddress import ip_interface

from qemu.lab import LinkCondition, plan


def test_interface_names_fit_the_kernel_and_are_unique_per_host() -> None:
    names: Counter[tuple[str, str]] = Counter()
    for link in plan.LINKS:
        for end in (link.a, link.b):
            names[(end.host, end.device)] += 1
    for bridge in plan.BRIDGES:
        names[(bridge.host, bridge.name)] += 1
    for (host, device), count in names.items():
        assert host in plan.HOSTS
        assert len(device) < 16 and device != "br", device
        assert count == 1, (host, device)


def test_link_ends_join_only_bridges_their_host_has() -> None:
    bridges = {(bridge.host, bridge.name) for bridge in plan.BRIDGES}
    for link in plan.LINKS:
        for end in (link.a, link.b):
            assert end.bridge is None or (end.host, end.bridge) in bridges, end


def test_each_dhcp_scope_sits_in_its_interface_subnet() -> None:
    addresses = {(bridge.host, bridge.name): bridge.addresses for bridge in plan.BRIDGES}
    for link in plan.LINKS:
        for end in (link.a, link.b):
            addresses.setdefault((end.host, end.device), end.addresses)
    for scope in plan.DHCP_SCOPES:
        (own,) = addresses[(scope.host, scope.interface)]
        network = ip_interface(own).network
        assert {ip_interface(f"{a}/{network.prefixlen}").network
                for a in (scope.first, scope.last, scope.gateway)} == {network}


def test_every_access_point_has_its_own_radio() -> None:
    radios = [ap.radio for ap in plan.ACCESS_POINTS] + [plan.ROUTER_RADIO]
    assert sorted(radios) == list(range(plan.RADIOS))


def test_netem_arguments() -> None:
    assert LinkCondition().netem_arguments() is None
    assert LinkCondition(delay_ms=50).netem_arguments() == ["delay", "50ms", "loss", "0.0%"]
    assert LinkCondition(delay_ms=10, jitter_ms=2, rate_kbit=384, loss_percent=1.5,
                         ).netem_arguments() == ["delay", "10ms", "2ms", "rate", "384kbit",
                                                 "loss", "1.5%"]
    assert LinkCondition(delay_ms=50, cut=True).netem_arguments() == [
        "delay", "50ms", "loss", "100%"]

