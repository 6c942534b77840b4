"""Tunnels and dummies through the kernel adapter, in the guest (the host kernel has neither).

Runs inside the QEMU guest: python3 -m qemu.run --tests tests/qemu/test_net_tunnels.py

Two namespaces stand for a home agent (192.0.2.1) and a mobile router (care-of address
192.0.2.50) on one underlay link; each side programs its own IP-in-IP tunnel end through a
`KernelAdapter`, and a UDP datagram between the inner addresses crosses the tunnel.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from pyroute2.netns import create_socket

from router.net import (
    Address,
    KernelAdapter,
    Link,
    LinkKind,
    Ownership,
    Plan,
    Route,
    TunnelEnds,
    diff,
)
from router.net.kernel import Pyroute2Backend

A = IPv4Address
N = IPv4Network
HOME_AGENT, CARE_OF = A("192.0.2.1"), A("192.0.2.50")
_counter = itertools.count()


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    made: list[str] = []

    def new() -> str:
        name = f"tn{os.getpid()}-{next(_counter)}"
        ip("netns", "add", name)
        made.append(name)
        return name

    names = [new(), new()]
    try:
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


def tunnel(kind: LinkKind, local: IPv4Address, remote: IPv4Address, key: int | None = None) -> Link:
    name = "mip-ipip" if kind == LinkKind.IPIP else "mip-gre"
    return Link(name, kind, tunnel=TunnelEnds(local, remote, key=key))


def underlay(address: IPv4Address) -> Plan:
    return Plan.of(
        Link("mip-u", LinkKind.DUMMY),
        Address("mip-u", IPv4Interface(f"{address}/24")),
    )


def test_ipip_and_gre_tunnels_are_created_observed_and_removed(namespaces: list[str]) -> None:
    netns = namespaces[0]
    adapter = KernelAdapter(Pyroute2Backend(Ownership(), netns=netns))
    try:
        plan = underlay(CARE_OF) | Plan.of(
            tunnel(LinkKind.IPIP, CARE_OF, HOME_AGENT),
            tunnel(LinkKind.GRE, CARE_OF, HOME_AGENT, key=7),
            Route(N("10.1.1.0/24"), table=100, dev="mip-ipip"),
        )
        adapter.apply(plan)
        assert diff(adapter.observe(), plan) == []
        observed = {link.name: link for link in adapter.observe().links}
        assert observed["mip-ipip"].mtu == 1480  # 20 bytes of outer IPv4 header
        assert observed["mip-gre"].tunnel == TunnelEnds(CARE_OF, HOME_AGENT, key=7)
        details = ip("-n", netns, "-d", "link", "show", "mip-ipip")
        assert "ipip remote 192.0.2.1 local 192.0.2.50 ttl 64" in details
        assert "ikey 0.0.0.7 okey 0.0.0.7" in ip("-n", netns, "-d", "link", "show", "mip-gre")
        assert adapter.apply(plan) == []

        # A new care-of address moves the tunnel in place: same device, route kept.
        index_before = ip("-n", netns, "link", "show", "mip-ipip").split(":")[0]
        moved = underlay(A("192.0.2.60")) | Plan.of(
            tunnel(LinkKind.IPIP, A("192.0.2.60"), HOME_AGENT),
            Route(N("10.1.1.0/24"), table=100, dev="mip-ipip"),
        )
        changes = [str(c) for c in adapter.apply(moved)]
        assert not any("route" in line for line in changes), changes
        assert diff(adapter.observe(), moved) == []
        assert "local 192.0.2.60" in ip("-n", netns, "-d", "link", "show", "mip-ipip")
        assert ip("-n", netns, "link", "show", "mip-ipip").split(":")[0] == index_before

        adapter.teardown()
        assert adapter.observe() == Plan()
        assert "mip-" not in ip("-n", netns, "link", "show")
    finally:
        adapter.close()


def test_udp_crosses_an_ipip_tunnel_between_two_namespaces(namespaces: list[str]) -> None:
    home_agent, router = namespaces
    ip(
        "-n",
        home_agent,
        "link",
        "add",
        "ul0",
        "type",
        "veth",
        "peer",
        "name",
        "ul1",
        "netns",
        router,
    )
    for netns, dev, address in ((home_agent, "ul0", HOME_AGENT), (router, "ul1", CARE_OF)):
        ip("-n", netns, "address", "add", f"{address}/24", "dev", dev)
        ip("-n", netns, "link", "set", dev, "up")
        ip("-n", netns, "link", "set", "lo", "up")

    def side(local: IPv4Address, remote: IPv4Address, inner: str, peer_inner: str) -> Plan:
        return Plan.of(
            tunnel(LinkKind.IPIP, local, remote),
            Address("mip-ipip", IPv4Interface(f"{inner}/32")),
            Route(N(f"{peer_inner}/32"), dev="mip-ipip", src=A(inner)),
        )

    adapters = [
        KernelAdapter(Pyroute2Backend(Ownership(), netns=home_agent)),
        KernelAdapter(Pyroute2Backend(Ownership(), netns=router)),
    ]
    try:
        adapters[0].apply(side(HOME_AGENT, CARE_OF, "10.10.0.1", "10.10.0.50"))
        adapters[1].apply(side(CARE_OF, HOME_AGENT, "10.10.0.50", "10.10.0.1"))
        receiver: socket.socket = create_socket(
            router, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM, flags=0
        )
        sender: socket.socket = create_socket(
            home_agent, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM, flags=0
        )
        with receiver, sender:
            receiver.bind(("10.10.0.50", 7777))
            receiver.settimeout(5.0)
            sender.sendto(b"through the tunnel", ("10.10.0.50", 7777))
            data, (source, _port) = receiver.recvfrom(100)
        assert data == b"through the tunnel"
        assert source == "10.10.0.1"
        # The datagram really went through the tunnel device, not around it.
        stats = ip("-n", router, "-s", "link", "show", "mip-ipip")
        rx_packets = int(stats.split("RX:")[1].splitlines()[1].split()[1])
        assert rx_packets >= 1
        for adapter in adapters:
            adapter.teardown()
    finally:
        for adapter in adapters:
            adapter.close()


def test_an_address_on_a_foreign_link_is_recognised_by_its_protocol(
    namespaces: list[str],
) -> None:
    # IFA_PROTO is what lets a restarted daemon find an address it put on a device it does
    # not own (the guest runs the image's kernel, older than the host's).
    netns = namespaces[0]
    ip("-n", netns, "link", "add", "eth9", "type", "dummy")
    ip("-n", netns, "address", "add", "10.9.0.1/24", "dev", "eth9")  # not ours: no proto
    adapter = KernelAdapter(Pyroute2Backend(Ownership(), netns=netns))
    try:
        ours = Plan.of(Address("eth9", IPv4Interface("10.9.0.50/24")))
        adapter.apply(ours)
        assert adapter.observe() == ours
        adapter.teardown()
        assert "10.9.0.50" not in ip("-n", netns, "address", "show", "eth9")
        assert "10.9.0.1/24" in ip("-n", netns, "address", "show", "eth9")
    finally:
        adapter.close()
