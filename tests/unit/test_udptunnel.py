"""RFC 3519 data path: header, keepalive packets, peer table, keepalive rules (pure), and the
asyncio data path on loopback with a datagram socketpair standing in for the TUN (no root)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.mip.errors import DecodeError
from router.mip.messages import TunnelData, decode
from router.udptunnel import (
    HomeAgentTunnel,
    KeepaliveAction,
    KeepaliveMonitor,
    MobileTunnel,
    PeerTable,
)
from router.udptunnel.peers import CACHE_LIMIT
from router.udptunnel.wire import (
    echo_reply_for,
    echo_request,
    internet_checksum,
    is_echo_reply,
    parse_tunnel_header,
    tunnel_header,
)

HA = IPv4Address("10.10.0.1")
HOME = IPv4Address("10.10.0.50")
OTHER_HOME = IPv4Address("10.10.0.60")


def ipv4(source: str, destination: str, protocol: int = 17, payload: bytes = b"hello") -> bytes:
    header = bytearray(20)
    header[0] = 0x45
    header[2:4] = (20 + len(payload)).to_bytes(2, "big")
    header[8], header[9] = 64, protocol
    header[12:16] = IPv4Address(source).packed
    header[16:20] = IPv4Address(destination).packed
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload


# --- header ---------------------------------------------------------------------------------


def test_header_bytes_per_rfc3519_section_3_3() -> None:
    assert tunnel_header() == bytes.fromhex("04040000")
    assert tunnel_header(47) == bytes.fromhex("042f0000")
    with pytest.raises(ValueError):
        tunnel_header(256)


def test_header_parse_ignores_reserved_and_names_what_is_wrong() -> None:
    assert parse_tunnel_header(bytes.fromhex("0404ffff") + b"x") == 4
    assert parse_tunnel_header(bytes.fromhex("042f0000")) == 47
    with pytest.raises(DecodeError, match="offset 0: expected Type 4"):
        parse_tunnel_header(bytes.fromhex("03040000"))
    with pytest.raises(DecodeError, match="offset 2: expected the 4-byte tunnel data header"):
        parse_tunnel_header(b"\x04\x04")
    with pytest.raises(DecodeError, match="offset 0"):
        parse_tunnel_header(b"")


def test_header_agrees_with_the_message_codec() -> None:
    packet = ipv4("10.1.1.1", "10.10.0.1")
    assert decode(tunnel_header() + packet) == TunnelData(4, packet)


# --- keepalive packets ----------------------------------------------------------------------


def test_echo_request_is_a_valid_icmp_echo_from_home_address_to_home_agent() -> None:
    packet = echo_request(HOME, HA, 0x1234, 7)
    assert internet_checksum(packet[:20]) == 0 and internet_checksum(packet[20:]) == 0
    assert packet[9] == 1 and packet[12:16] == HOME.packed and packet[16:20] == HA.packed
    assert packet[20] == 8 and packet[24:28] == bytes.fromhex("12340007")


def test_echo_reply_swaps_addresses_and_keeps_identifier_and_sequence() -> None:
    reply = echo_reply_for(echo_request(HOME, HA, 0x1234, 7), HA, HOME)
    assert reply is not None
    assert internet_checksum(reply[:20]) == 0 and internet_checksum(reply[20:]) == 0
    assert reply[12:16] == HA.packed and reply[16:20] == HOME.packed and reply[20] == 0
    assert reply[24:28] == bytes.fromhex("12340007")
    assert is_echo_reply(reply, HA, HOME, 0x1234)
    assert not is_echo_reply(reply, HA, HOME, 0x1235)
    assert not is_echo_reply(echo_request(HOME, HA, 0x1234, 7), HA, HOME, 0x1234)


def test_only_keepalives_from_the_home_address_are_answered() -> None:
    assert echo_reply_for(echo_request(IPv4Address("10.1.1.9"), HA, 1, 1), HA, HOME) is None  # a LAN host's ping
    assert echo_reply_for(echo_request(HOME, IPv4Address("10.10.0.2"), 1, 1), HA, HOME) is None
    assert echo_reply_for(ipv4(str(HOME), str(HA), protocol=17), HA, HOME) is None
    corrupt = bytearray(echo_request(HOME, HA, 1, 1))
    corrupt[-1] ^= 0xFF
    assert echo_reply_for(bytes(corrupt), HA, HOME) is None


@given(st.integers(min_value=0, max_value=60), st.binary(max_size=8))
def test_truncated_or_garbled_keepalives_never_raise(cut: int, junk: bytes) -> None:
    packet = echo_request(HOME, HA, 1, 1)[:cut] + junk
    echo_reply_for(packet, HA, HOME)
    is_echo_reply(packet, HA, HOME, 1)


# --- peer table -----------------------------------------------------------------------------


def dst(address: str) -> int:
    return int(IPv4Address(address))


def test_route_by_longest_prefix_over_home_address_and_mobile_networks() -> None:
    table = PeerTable()
    a = table.set(HOME, ("198.51.100.1", 4340), [IPv4Network("10.1.0.0/16")])
    b = table.set(OTHER_HOME, ("198.51.100.7", 434), [IPv4Network("10.1.2.0/24")])
    assert table.route(dst("10.10.0.50")) is a
    assert table.route(dst("10.10.0.60")) is b
    assert table.route(dst("10.1.1.9")) is a
    assert table.route(dst("10.1.2.9")) is b  # more specific wins
    assert table.route(dst("10.10.0.51")) is None
    assert table.by_source[("198.51.100.7", 434)] is b


def test_changes_invalidate_the_route_cache() -> None:
    table = PeerTable()
    a = table.set(HOME, ("198.51.100.1", 4340), [IPv4Network("10.1.1.0/24")])
    assert table.route(dst("10.1.1.9")) is a
    table.remove(HOME)
    assert table.route(dst("10.1.1.9")) is None
    assert table.by_source == {}
    b = table.set(OTHER_HOME, ("198.51.100.1", 4340), [IPv4Network("10.1.1.0/24")])
    assert table.route(dst("10.1.1.9")) is b


def test_a_moved_binding_replaces_its_source() -> None:
    table = PeerTable()
    peer = table.set(HOME, ("198.51.100.1", 4340))
    assert table.set(HOME, ("203.0.113.5", 1024)) is peer
    assert list(table.by_source) == [("203.0.113.5", 1024)]


def test_one_nat_mapping_cannot_serve_two_bindings() -> None:
    table = PeerTable()
    table.set(HOME, ("198.51.100.1", 4340))
    with pytest.raises(ValueError, match=r"already serves 10\.10\.0\.50"):
        table.set(OTHER_HOME, ("198.51.100.1", 4340))


def test_sync_follows_the_binding_list_even_when_two_peers_swap_mappings() -> None:
    table = PeerTable()
    table.set(HOME, ("198.51.100.1", 1))
    table.set(OTHER_HOME, ("198.51.100.1", 2))
    table.sync([(HOME, ("198.51.100.1", 2), []), (OTHER_HOME, ("198.51.100.1", 1), [])])
    assert {p.home_address: p.source for p in table.peers()} == {HOME: ("198.51.100.1", 2), OTHER_HOME: ("198.51.100.1", 1)}
    table.sync([])
    assert len(table) == 0 and table.by_source == {}


def test_route_cache_stays_bounded() -> None:
    table = PeerTable()
    table.set(HOME, ("198.51.100.1", 1), [IPv4Network("11.0.0.0/8")])
    for i in range(CACHE_LIMIT * 2):
        table.route(0x0B000000 + i)
    assert len(table._cache) <= CACHE_LIMIT


def test_silence_is_reported_once_and_cleared_by_traffic() -> None:
    table = PeerTable()
    peer = table.set(HOME, ("198.51.100.1", 1), now=0.0)
    assert table.sweep(5.0, timeout=10.0) == []
    assert table.sweep(10.0, timeout=10.0) == [peer]
    assert table.sweep(20.0, timeout=10.0) == []
    peer.rx_packets += 1
    assert table.sweep(21.0, timeout=10.0) == [] and not peer.silent
    assert table.sweep(31.0, timeout=10.0) == [peer]


# --- keepalive rules (fake clock) -----------------------------------------------------------

SEND, SILENT, ALIVE = KeepaliveAction.SEND, KeepaliveAction.SILENT, KeepaliveAction.ALIVE


def test_interval_from_the_reply_default_and_floor() -> None:
    monitor = KeepaliveMonitor()
    assert monitor.interval == 110.0  # RFC 3519 §4.9 default
    monitor.set_interval(3)
    assert monitor.interval == 10.0  # §4.10: never below 10 s
    monitor.set_interval(25)
    assert monitor.interval == 25.0
    lab = KeepaliveMonitor(floor=0.5)
    lab.set_interval(1)
    assert lab.interval == 1.0


def test_idle_tunnel_sends_a_keepalive_every_interval_and_the_reply_clears_it() -> None:
    m = KeepaliveMonitor(interval=20)
    m.reset(0.0)
    assert m.next_deadline(0.0, 0.0) == 20.0
    assert m.poll(19.9, 0.0, 0.0) == []
    assert m.poll(20.0, 0.0, 0.0) == [SEND]
    assert m.outstanding == 1 and m.next_deadline(20.0, 0.0) == 22.0
    assert m.poll(20.5, 20.0, 20.1) == []  # the reply arrived at 20.1
    assert m.outstanding == 0 and m.next_deadline(20.0, 20.1) == 40.0


def test_traffic_both_ways_needs_no_keepalive() -> None:
    m = KeepaliveMonitor(interval=20)
    for now in range(1, 100):
        assert m.poll(float(now), now - 0.5, now - 0.5) == []


def test_a_node_that_only_sends_still_probes_the_home_agent() -> None:
    m = KeepaliveMonitor(interval=20)
    assert m.poll(20.0, 19.9, 0.0) == [SEND]


def test_unanswered_keepalives_are_retransmitted_then_the_peer_is_silent_once() -> None:
    m = KeepaliveMonitor(interval=20, retransmit=2, attempts=3)
    assert m.poll(20.0, 0.0, 0.0) == [SEND]
    assert m.poll(22.0, 20.0, 0.0) == [SEND]
    assert m.poll(24.0, 22.0, 0.0) == [SEND]
    assert m.poll(26.0, 24.0, 0.0) == [SILENT, SEND]
    assert m.silent and m.next_deadline(26.0, 0.0) == 46.0  # probing slows to the interval
    assert m.poll(46.0, 26.0, 0.0) == [SEND]
    assert m.poll(47.0, 46.0, 46.5) == [ALIVE]
    assert not m.silent and m.outstanding == 0


def test_reset_on_a_new_binding_forgets_the_silence() -> None:
    m = KeepaliveMonitor(interval=20, retransmit=2, attempts=1)
    m.poll(20.0, 0.0, 0.0)
    assert m.poll(22.0, 20.0, 0.0) == [SILENT, SEND]
    m.reset(30.0)
    assert not m.silent and m.outstanding == 0 and m.next_deadline(30.0, 30.0) == 50.0


# --- the data path on loopback ---------------------------------------------------------------


class FakeTun:
    """A datagram socketpair: the tunnel reads/writes one end like a TUN, the test the other."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setblocking(False)
        self.theirs.setblocking(False)

    @property
    def fd(self) -> int:
        return os.dup(self.ours.fileno())

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), timeout)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def test_mobile_side_encapsulates_decapsulates_and_demultiplexes() -> None:
    async def main() -> None:
        tun = FakeTun()
        home_agent = udp()
        stranger = udp()
        signalling: list[tuple[bytes, Any]] = []
        tunnel = MobileTunnel(tun.fd, home_address=HOME, home_agent=HA)
        sock = udp()
        address = sock.getsockname()
        transport = tunnel.add_socket(sock, lambda data, addr: signalling.append((data, addr)))
        outbound = ipv4("10.1.1.9", "10.20.0.10")

        tun.theirs.send(outbound)  # not attached yet: nowhere to send
        await until(lambda: tunnel.counters.drop_no_peer == 1)
        home_agent.sendto(tunnel_header() + outbound, address)  # nor anything to accept
        await until(lambda: tunnel.counters.drop_unknown_peer == 1)

        tunnel.attach(sock, home_agent.getsockname(), keepalive_interval=0)
        tun.theirs.send(outbound)
        assert await receive(home_agent) == tunnel_header() + outbound

        inbound = ipv4("10.20.0.10", "10.1.1.9")
        home_agent.sendto(tunnel_header() + inbound, address)
        await until(lambda: tunnel.counters.rx_packets == 1)
        assert tun.theirs.recv(65536) == inbound

        home_agent.sendto(bytes.fromhex("03") + b"reply", address)  # a registration reply
        # Data from nobody we know: the attached socket is connected to the home agent, so the
        # kernel drops it before we see it.
        stranger.sendto(tunnel_header() + inbound, address)
        home_agent.sendto(tunnel_header(47) + inbound, address)  # not the negotiated next header
        home_agent.sendto(tunnel_header() + b"\x60" + inbound[1:], address)  # IPv6 inside
        await until(lambda: tunnel.counters.drop_bad_header == 2 and signalling != [])
        assert signalling == [(bytes.fromhex("03") + b"reply", home_agent.getsockname())]
        assert tunnel.counters.rx_packets == 1
        with pytest.raises(BlockingIOError):
            tun.theirs.recv(65536)

        transport.sendto(b"\x01request", home_agent.getsockname())
        assert await receive(home_agent) == b"\x01request"
        assert tunnel.counters.signalling_sent == 1
        tunnel.close()
        assert not tunnel.attached and transport.is_closing() and sock.fileno() == -1
        for s in (home_agent, stranger):
            s.close()
        tun.close()

    run(main)


def test_mobile_side_keepalive_is_sent_when_idle_and_the_reply_is_consumed() -> None:
    async def main() -> None:
        tun = FakeTun()
        home_agent = udp()
        states: list[bool] = []
        tunnel = MobileTunnel(
            tun.fd, home_address=HOME, home_agent=HA, keepalive=KeepaliveMonitor(floor=0.05, retransmit=0.05, attempts=2), on_peer_state=states.append
        )
        sock = udp()
        tunnel.add_socket(sock, lambda data, addr: None)
        tunnel.attach(sock, home_agent.getsockname(), keepalive_interval=0.05)
        datagram = await receive(home_agent)
        assert parse_tunnel_header(datagram) == 4
        reply = echo_reply_for(datagram[4:], HA, HOME)
        assert reply is not None
        # No answer: retransmissions, then the peer is reported silent.
        await until(lambda: states == [False])
        home_agent.sendto(tunnel_header() + reply, sock.getsockname())
        await until(lambda: states == [False, True])
        assert tunnel.counters.keepalive_replies >= 1 and tunnel.counters.rx_packets == 0
        with pytest.raises(BlockingIOError):
            tun.theirs.recv(65536)  # the reply went to the keepalive logic, not the TUN
        tunnel.close()
        home_agent.close()
        tun.close()

    run(main)


def test_home_agent_routes_by_inner_destination_and_accepts_only_known_peers() -> None:
    async def main() -> None:
        tun = FakeTun()
        router_a, router_b, stranger = udp(), udp(), udp()
        signalling: list[bytes] = []
        silent: list[Any] = []
        tunnel = HomeAgentTunnel(tun.fd, home_agent=HA, on_peer_silent=silent.append, silence_timeout=0.2)
        sock = udp()
        address = sock.getsockname()
        transport = tunnel.add_socket(sock, lambda data, addr: signalling.append(data))
        with pytest.raises(ValueError):
            tunnel.add_socket(udp(), lambda data, addr: None)
        tunnel.set_peer(HOME, router_a.getsockname(), [IPv4Network("10.1.1.0/24")])
        tunnel.set_peer(OTHER_HOME, router_b.getsockname(), [IPv4Network("10.2.2.0/24")])

        to_a, to_b = ipv4("10.20.0.10", "10.1.1.9"), ipv4("10.20.0.10", "10.10.0.60")
        tun.theirs.send(to_a)
        tun.theirs.send(to_b)
        tun.theirs.send(ipv4("10.20.0.10", "10.3.3.3"))  # no binding
        assert await receive(router_a) == tunnel_header() + to_a
        assert await receive(router_b) == tunnel_header() + to_b
        await until(lambda: tunnel.counters.drop_no_peer == 1)

        reverse = ipv4("10.1.1.9", "10.20.0.10")
        router_a.sendto(tunnel_header() + reverse, address)
        stranger.sendto(tunnel_header() + reverse, address)
        await until(lambda: tunnel.counters.rx_packets == 1 and tunnel.counters.drop_unknown_peer == 1)
        assert tun.theirs.recv(65536) == reverse

        # A keepalive is answered to its sender; a LAN host's ping to the home agent goes to the kernel.
        router_a.sendto(tunnel_header() + echo_request(HOME, HA, 9, 1), address)
        answer = await receive(router_a)
        assert answer[:4] == tunnel_header() and is_echo_reply(answer[4:], HA, HOME, 9)
        lan_ping = echo_request(IPv4Address("10.1.1.9"), HA, 9, 2)
        router_a.sendto(tunnel_header() + lan_ping, address)
        await until(lambda: tunnel.counters.rx_packets == 2)
        assert tun.theirs.recv(65536) == lan_ping
        assert tunnel.counters.keepalives_answered == 1

        router_b.sendto(b"\x01registration", address)
        await until(lambda: signalling == [b"\x01registration"])
        transport.sendto(b"\x03reply", router_b.getsockname())
        assert await receive(router_b) == b"\x03reply"

        # router_b has sent no tunnel data since its peer entry appeared: reported silent, once.
        await until(lambda: OTHER_HOME in [p.home_address for p in silent])
        await asyncio.sleep(0.3)
        assert [p.home_address for p in silent].count(OTHER_HOME) == 1
        tunnel.remove_peer(HOME)
        router_a.sendto(tunnel_header() + reverse, address)
        await until(lambda: tunnel.counters.drop_unknown_peer == 2)
        tunnel.close()
        for s in (router_a, router_b, stranger):
            s.close()
        tun.close()

    run(main)


def test_home_agent_peers_follow_the_udp_bindings() -> None:
    class B:
        def __init__(self, home: IPv4Address, source: tuple[str, int], udp_tunnel: bool) -> None:
            self.home_address, self.source, self.udp_tunnel = home, source, udp_tunnel
            self.mobile_networks = (IPv4Network("10.1.1.0/24"),)

    async def main() -> None:
        tun = FakeTun()
        tunnel = HomeAgentTunnel(tun.fd, home_agent=HA)
        tunnel.sync_bindings([B(HOME, ("198.51.100.1", 4340), True), B(OTHER_HOME, ("192.0.2.9", 434), False)])
        assert [p.home_address for p in tunnel.peers.peers()] == [HOME]
        assert tunnel.peers.route(dst("10.1.1.1")) is tunnel.peers.get(HOME)
        tunnel.sync_bindings([])
        assert len(tunnel.peers) == 0
        tunnel.close()
        tun.close()

    run(main)
