"""RFC 5944 §4.6 on a real link: gratuitous ARP from the home agent, proxy ARP for an away node.

Two namespaces joined by a veth pair: "home agent" (ha0, 10.0.0.1) and "neighbour" (nb0,
10.0.0.2) on the home network; 10.0.0.50 is the away node's home address.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pytest
from pyroute2.netns import create_socket

from router.net import KernelAdapter, Link, LinkKind, Ownership, Plan, ProxyArp, Route
from router.net.arp import ETH_P_ARP, ArpOperation, parse_mac, send_gratuitous_arp
from router.net.kernel import Pyroute2Backend

from .conftest import Namespaces, ip

HOME_ADDRESS = IPv4Address("10.0.0.50")


@dataclass(frozen=True, slots=True)
class HomeNetwork:
    home_agent: str
    neighbour: str
    home_agent_mac: bytes


def mac_of(namespace: str, ifname: str) -> bytes:
    words = ip("-n", namespace, "link", "show", ifname).split()
    return parse_mac(words[words.index("link/ether") + 1])


@pytest.fixture
def home(namespaces: Namespaces) -> HomeNetwork:
    home_agent, neighbour = namespaces.new("ha"), namespaces.new("nb")
    ip(
        "-n",
        home_agent,
        "link",
        "add",
        "ha0",
        "type",
        "veth",
        "peer",
        "name",
        "nb0",
        "netns",
        neighbour,
    )
    ip("-n", home_agent, "address", "add", "10.0.0.1/24", "dev", "ha0")
    ip("-n", neighbour, "address", "add", "10.0.0.2/24", "dev", "nb0")
    ip("-n", home_agent, "link", "set", "ha0", "up")
    ip("-n", neighbour, "link", "set", "nb0", "up")
    return HomeNetwork(home_agent, neighbour, mac_of(home_agent, "ha0"))


@pytest.fixture
def capture(home: HomeNetwork) -> Iterator[socket.socket]:
    sock: socket.socket = create_socket(
        home.neighbour,
        family=socket.AF_PACKET,
        socket_type=socket.SOCK_RAW,
        proto=socket.htons(ETH_P_ARP),
        flags=0,
    )
    sock.bind(("nb0", ETH_P_ARP))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()


def next_gratuitous_arp(sock: socket.socket, deadline_s: float = 3.0) -> bytes:
    """The first ARP frame whose sender and target IP are both the home address."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        if frame[28:32] == HOME_ADDRESS.packed and frame[38:42] == HOME_ADDRESS.packed:
            return frame
    raise AssertionError(f"no gratuitous ARP for {HOME_ADDRESS} within {deadline_s} s")


def neighbour_entry(home: HomeNetwork) -> str:
    return ip("-n", home.neighbour, "neigh", "show", str(HOME_ADDRESS), "dev", "nb0").strip()


def wait_for_neighbour_mac(home: HomeNetwork, deadline_s: float = 3.0) -> bool:
    """Whether the neighbour maps the home address to the home agent's MAC (bounded wait)."""
    expected = ":".join(f"{b:02x}" for b in home.home_agent_mac)
    deadline = time.monotonic() + deadline_s
    while expected not in neighbour_entry(home):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_gratuitous_arp_reaches_the_link_as_rfc5944_describes(
    home: HomeNetwork, capture: socket.socket
) -> None:
    # The neighbour still believes the node is at home, with its own MAC.
    ip(
        "-n",
        home.neighbour,
        "neigh",
        "add",
        str(HOME_ADDRESS),
        "lladdr",
        "02:00:00:00:00:50",
        "dev",
        "nb0",
        "nud",
        "stale",
    )
    sent = send_gratuitous_arp("ha0", HOME_ADDRESS, netns=home.home_agent)

    frame = next_gratuitous_arp(capture)
    assert frame[: len(sent)] == sent
    destination, source, ethertype = struct.unpack("!6s6sH", frame[:14])
    assert destination == b"\xff" * 6  # §4.6: MUST be a local broadcast
    assert source == home.home_agent_mac and ethertype == ETH_P_ARP
    hardware_type, protocol_type, _, _, operation = struct.unpack("!HHBBH", frame[14:22])
    assert (hardware_type, protocol_type, operation) == (1, 0x0800, ArpOperation.REQUEST)
    assert frame[22:28] == home.home_agent_mac  # sender hardware = the home agent's own
    # ... and the neighbour's cache now sends the node's traffic to the home agent.
    assert wait_for_neighbour_mac(home), neighbour_entry(home)


def test_gratuitous_arp_reply_for_a_node_back_home_carries_its_own_address(
    home: HomeNetwork, capture: socket.socket
) -> None:
    node_mac = parse_mac("02:00:00:00:00:50")
    send_gratuitous_arp(
        "ha0",
        HOME_ADDRESS,
        hardware_address=node_mac,
        operation=ArpOperation.REPLY,
        netns=home.home_agent,
    )
    frame = next_gratuitous_arp(capture)
    assert struct.unpack("!H", frame[20:22])[0] == ArpOperation.REPLY
    assert frame[22:28] == node_mac and frame[32:38] == node_mac
    assert frame[6:12] == home.home_agent_mac  # Ethernet source: the sender's own interface


def test_proxy_entry_makes_the_home_agent_answer_for_the_away_node(home: HomeNetwork) -> None:
    adapter = KernelAdapter(Pyroute2Backend(Ownership(), netns=home.home_agent))
    try:
        # The kernel answers for a proxy entry only on an interface that forwards.
        assert adapter.ensure_sysctls({"net/ipv4/conf/all/forwarding": "1"}) != []
        # The away node is reached through a tunnel; a veth stands in for it on this host.
        adapter.apply(
            Plan.of(
                Link("mip-t0", LinkKind.VETH, peer="mip-t1"),
                Route(IPv4Network(f"{HOME_ADDRESS}/32"), dev="mip-t0"),
                ProxyArp("ha0", HOME_ADDRESS),
            )
        )
        # Any datagram to the node makes the neighbour ask ARP for it (no ping on the host).
        probe: socket.socket = create_socket(
            home.neighbour, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM, flags=0
        )
        with probe:
            probe.sendto(b"probe", (str(HOME_ADDRESS), 9))
        # The kernel delays proxy replies to broadcast requests by up to proxy_delay (0.8 s).
        assert wait_for_neighbour_mac(home), neighbour_entry(home)
        adapter.teardown()
    finally:
        adapter.close()
