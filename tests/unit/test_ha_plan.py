"""Home agent bindings -> kernel plan, checked through the fake backend's ip-lines."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from router.ha.daemon import HA_OWNERSHIP
from router.ha.plan import home_agent_plan, previous_tunnel_name, tunnel_name
from router.mip.homeagent import Binding
from router.net import FakeBackend, KernelAdapter

HA = IPv4Address("10.10.0.1")


def binding(coa: str = "198.51.100.20", udp: bool = False) -> Binding:
    return Binding(
        home_address=IPv4Address("10.10.0.50"),
        care_of_address=IPv4Address(coa),
        lifetime=600,
        expires_at=600.0,
        mobile_networks=(IPv4Network("10.1.1.0/24"),),
        reverse_tunnel=True,
        udp_tunnel=udp,
        source=(coa, 434),
        request_identification=1,
        reply_identification=1,
        registered_at=0.0,
    )


def adapter() -> tuple[KernelAdapter, FakeBackend]:
    backend = FakeBackend(HA_OWNERSHIP, foreign_links=["eth0", "mip3519"])
    return KernelAdapter(backend, sleep=lambda _: None), backend


def test_tunnel_name_fits_ifnamsiz() -> None:
    assert tunnel_name(IPv4Address("10.10.0.50")) == "mip-0a0a0032"
    assert len(tunnel_name(IPv4Address("255.255.255.255"))) <= 15


def test_binding_added_moved_removed() -> None:
    kernel, backend = adapter()
    kernel.apply(home_agent_plan([binding()], HA, "eth0"))
    lines = backend.take_lines()
    text = "\n".join(lines)
    assert "mip-0a0a0032" in lines[0] and "ipip" in lines[0]
    assert "remote 198.51.100.20" in lines[0] and "local 10.10.0.1" in lines[0]
    assert any("10.10.0.50/32" in line and "dev mip-0a0a0032" in line for line in lines), text
    assert any("10.1.1.0/24" in line and "dev mip-0a0a0032" in line for line in lines), text
    assert any("proxy 10.10.0.50" in line and "dev eth0" in line for line in lines), text
    # A moved care-of address is one change of the tunnel's remote end, routes untouched.
    kernel.apply(home_agent_plan([binding("100.64.0.7")], HA, "eth0"))
    moved = backend.take_lines()
    assert len(moved) == 1 and "remote 100.64.0.7" in moved[0], moved
    # Same plan again: nothing to do.
    assert kernel.apply(home_agent_plan([binding("100.64.0.7")], HA, "eth0")) == []
    kernel.apply(home_agent_plan([], HA, "eth0"))
    removed = backend.take_lines()
    assert removed and all(line.startswith("ip ") for line in removed)
    assert backend.observe() == home_agent_plan([], HA, "eth0")


def test_udp_tunnelled_binding_routes_into_the_tun_without_a_link() -> None:
    kernel, backend = adapter()
    kernel.apply(home_agent_plan([binding(udp=True)], HA, "eth0"))
    lines = backend.take_lines()
    text = "\n".join(lines)
    assert not any("link" in line and "add" in line for line in lines), text
    assert any("10.10.0.50/32" in line and "dev mip3519" in line for line in lines), text
    assert any("10.1.1.0/24" in line and "dev mip3519" in line for line in lines), text
    assert any("proxy 10.10.0.50" in line and "dev eth0" in line for line in lines), text
    # UDP -> IP-in-IP (the NAT went away): a tunnel appears, routes move into it in place.
    kernel.apply(home_agent_plan([binding()], HA, "eth0"))
    moved = "\n".join(backend.take_lines())
    assert "mip-0a0a0032" in moved and "dev mip3519" not in moved, moved
    # Without a data path (udp_device None) a UDP binding gets nothing at all.
    assert home_agent_plan([binding(udp=True)], HA, "eth0", udp_device=None) == home_agent_plan([], HA, "eth0")


def test_no_home_interface_means_no_proxy_arp() -> None:
    plan = home_agent_plan([replace(binding(), mobile_networks=())], HA, None)
    assert not plan.proxy_arp and len(plan.routes) == 1


def test_a_moved_binding_keeps_a_decapsulating_tunnel_from_the_old_care_of_address() -> None:
    home = IPv4Address("10.10.0.50")
    moved = binding("100.64.0.10")
    plan = home_agent_plan([moved], HA, "eth0", {home: IPv4Address("198.51.100.20")})
    links = {link.name: link for link in plan.links}
    assert set(links) == {tunnel_name(home), previous_tunnel_name(home)}
    old = links[previous_tunnel_name(home)].tunnel
    assert old is not None and (old.local, old.remote) == (HA, IPv4Address("198.51.100.20"))
    # No route uses it: it only decapsulates what the router still sends on the old path.
    assert all(route.dev == tunnel_name(home) for route in plan.routes)
    # Back on the old address within the grace period: one tunnel (the kernel refuses twins).
    back = home_agent_plan([binding("198.51.100.20")], HA, "eth0", {home: IPv4Address("198.51.100.20")})
    assert {link.name for link in back.links} == {tunnel_name(home)}
    kernel, _ = adapter()
    kernel.apply(home_agent_plan([binding("198.51.100.20")], HA, "eth0"))
    kernel.apply(home_agent_plan([moved], HA, "eth0"))  # the move first, as the daemon does
    kernel.apply(plan)
    kernel.apply(home_agent_plan([moved], HA, "eth0"))  # grace over
    assert {link.name for link in kernel.backend.observe().links} == {tunnel_name(home)}


def test_a_move_adds_a_tunnel_and_replaces_the_routes_leaving_the_old_one_untouched() -> None:
    """Make-before-break at the home agent: with the slot flipped on the move, the tunnel from
    the old care-of address keeps its name and ends (it decapsulates during the grace period)
    and the new one is added before the routes move into it; no change removes or moves a
    tunnel, so neither care-of address is ever without one."""
    from router.ha.plan import slot_name
    from router.net.plan import Operation, diff

    home = IPv4Address("10.10.0.50")
    kernel, backend = adapter()
    kernel.apply(home_agent_plan([binding("100.64.0.7")], HA, "eth0", slots={home: 0}))
    moved = home_agent_plan([binding("198.51.100.20")], HA, "eth0", {home: IPv4Address("100.64.0.7")}, slots={home: 1})
    changes = diff(backend.observe(), moved)
    assert [c.operation for c in changes if c.operation != Operation.MODIFY] == [Operation.ADD]
    assert str(changes[0]) == (f"ip link add {slot_name(home, 1)} up type ipip local 10.10.0.1 "
                               "remote 198.51.100.20 ttl 64 pmtudisc")
    assert all(c.operation == Operation.MODIFY and "route replace" in str(c) for c in changes[1:]), changes
    kernel.apply(moved)
    ends = {link.name: link.tunnel.remote for link in backend.observe().links if link.tunnel}
    assert ends == {tunnel_name(home): IPv4Address("100.64.0.7"), previous_tunnel_name(home): IPv4Address("198.51.100.20")}
    # Grace over: the old tunnel goes, nothing else changes.
    assert [str(c) for c in kernel.apply(home_agent_plan([binding("198.51.100.20")], HA, "eth0", slots={home: 1}))] == [
        f"ip link del {tunnel_name(home)}"
    ]
    # Moving back within the grace period reuses the old tunnel: routes only.
    back = home_agent_plan([binding("100.64.0.7")], HA, "eth0", {home: IPv4Address("198.51.100.20")}, slots={home: 0})
    kernel.apply(home_agent_plan([binding("198.51.100.20")], HA, "eth0", {home: IPv4Address("100.64.0.7")}, slots={home: 1}))
    assert all("route replace" in str(c) for c in diff(backend.observe(), back))
