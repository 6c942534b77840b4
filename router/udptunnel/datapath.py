"""RFC 3519 IP-in-UDP data path in user space: a TUN device and UDP sockets on asyncio.

Theory of operation
-------------------
The kernel has no encapsulation with the RFC 3519 header (FOU puts IP right after UDP, GUE's
header differs), so this is DESIGN.md §3's one allowed exception to "no user packet passes
through Python". It stays behind a flag (UDP tunnelling is only requested/assented when the
daemon's config enables it) and is measured by ``bench/udp_tunnel.py``.

Per packet the work is the least Python allows:

- tun -> UDP: ``os.readv`` into a preallocated buffer whose first 4 bytes already hold the
  tunnel header (type 4, next header 4, reserved 0), then one ``sendto`` of a memoryview slice.
  The home agent first picks the peer by inner destination (one cached dict lookup).
  Socket buffers are 4 MB and the TUN queue 2000 packets: a single-threaded forwarder that is
  descheduled for a moment must not turn that into TCP losses (measured, see SOCKET_BUFFER).
- UDP -> tun: ``recvfrom_into`` (``recv_into`` on the mobile node's socket, which ``attach``
  connects to the home agent) a preallocated buffer, check ``buf[0] == 4`` (else it is
  signalling: handed to the registration machine), the source (address, port) against the
  peer table (unknown -> dropped and counted), ``buf[1]`` against the negotiated next header
  (RFC 3519 §3.3: mismatch MUST be dropped), then ``os.write`` of the payload slice.
- Readiness via ``loop.add_reader``; each callback drains up to ``budget`` packets (until
  EAGAIN) and adds its counters and one timestamp per batch, never per packet. Nothing is
  logged per packet; drops are counters (``TunnelCounters``).

Demultiplexing on UDP 434 (the choice made here): **the tunnel owns the socket**. Tunnel data
is the hot path, and asyncio's datagram transport reads one datagram per wake-up into a new
bytes object. Every datagram whose first byte is not 4 (registration request 1, reply 3,
revocation 7/15) goes to ``on_signalling(data, addr)``; replies go out through
``SignallingTransport.sendto`` on the same socket, which is what RFC 3519 §4.4/§4.9 require
(data and keepalives use the registration's source port). ``SignallingTransport`` is an
``asyncio.DatagramTransport``, so ``router.drive.MachineDriver`` runs over it unchanged:

    driver = MachineDriver(machine, on_event)
    transport = tunnel.add_socket(sock, driver.datagram_received)
    driver.connection_made(transport)

Keepalives: the mobile node side runs ``KeepaliveMonitor`` (RFC 3519 §4.9/§4.10) on a loop
timer and reports ``on_peer_state(False)`` when the home agent stops answering; the home agent
side answers the encapsulated ICMP echo requests addressed to it (slow path: only inner ICMP
packets are looked at) and reports peers silent for ``silence_timeout`` via ``on_peer_silent``.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from ipaddress import IPv4Address
from typing import Any

from router.udptunnel.keepalive import KeepaliveAction, KeepaliveMonitor
from router.udptunnel.peers import Peer, PeerTable
from router.udptunnel.wire import (
    HEADER_LENGTH,
    IPPROTO_ICMP,
    NEXT_HEADER_IPV4,
    TUNNEL_DATA_TYPE,
    echo_reply_for,
    echo_request,
    is_echo_reply,
    tunnel_header,
)

__all__ = [
    "HomeAgentTunnel",
    "MobileTunnel",
    "SignallingTransport",
    "TunnelCounters",
]

Address = tuple[str, int]
OnSignalling = Callable[[bytes, Address], None]
BUFFER_SIZE = 65536 + HEADER_LENGTH
#: Kernel socket buffers: absorb the moments the (single-threaded) data path is not scheduled.
#: With the 212 KB default the home agent end dropped 17 % of a TCP transfer's datagrams on a
#: busy 2-core host (UdpRcvbufErrors), and TCP collapsed; 4 MB made it loss-free (bench).
SOCKET_BUFFER = 4 * 1024 * 1024
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
DEFAULT_BUDGET = 64
_identifiers = itertools.count(0x3519)
_DESTINATION = struct.Struct("!I")


@dataclass(slots=True)
class TunnelCounters:
    rx_packets: int = 0  # tunnel data written to the TUN
    rx_bytes: int = 0
    tx_packets: int = 0  # packets from the TUN sent as tunnel data
    tx_bytes: int = 0
    signalling_received: int = 0
    signalling_sent: int = 0
    drop_unknown_peer: int = 0  # tunnel data from an (address, port) with no binding
    drop_bad_header: int = 0  # wrong next header, runt, or not IPv4 inside
    drop_no_peer: int = 0  # a TUN packet with no binding to carry it
    drop_send: int = 0  # socket buffer full or send error
    drop_tun_write: int = 0
    keepalives_sent: int = 0  # mobile node: echo requests sent
    keepalive_replies: int = 0  # mobile node: echo replies received
    keepalives_answered: int = 0  # home agent: echo requests answered

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SignallingTransport(asyncio.DatagramTransport):
    """The registration machine's view of a tunnel-owned UDP socket."""

    def __init__(self, endpoint: _Endpoint, sock: socket.socket) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._sock = sock
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            raise OSError(errno.EBADF, "signalling transport closed")
        if addr is None:
            self._sock.send(data)
        else:
            self._sock.sendto(data, addr)
        self._endpoint.counters.signalling_sent += 1
        self._endpoint.note_sent(self._sock)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._endpoint.remove_socket(self._sock)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default


class _Endpoint:
    def __init__(self, tun_fd: int, *, next_header: int = NEXT_HEADER_IPV4, budget: int = DEFAULT_BUDGET) -> None:
        self.tun_fd = tun_fd
        self.next_header = next_header
        self.budget = budget
        self.counters = TunnelCounters()
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._sockets: dict[socket.socket, SignallingTransport] = {}
        # UDP -> tun: one receive buffer shared by all sockets (callbacks never interleave).
        self._rx = bytearray(BUFFER_SIZE)
        self._rx_view = memoryview(self._rx)
        # tun -> UDP: the header stays in place at [0:4], the TUN read lands at [4:].
        self._tx = bytearray(BUFFER_SIZE)
        self._tx[:HEADER_LENGTH] = tunnel_header(next_header)
        self._tx_view = memoryview(self._tx)
        self._tx_payload = [self._tx_view[HEADER_LENGTH:]]
        self.last_sent = self._loop.time()
        self.last_received = self.last_sent
        self._loop.add_reader(tun_fd, self._on_tun)

    # sockets -----------------------------------------------------------------------------

    def add_socket(self, sock: socket.socket, on_signalling: OnSignalling) -> SignallingTransport:
        """Own ``sock`` (bound, non-blocking UDP): tunnel data to the TUN, the rest to
        ``on_signalling``. Returns the transport the registration machine sends through."""
        sock.setblocking(False)
        for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)  # beyond rmem_max: root
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
        transport = SignallingTransport(self, sock)
        self._sockets[sock] = transport
        self._loop.add_reader(sock.fileno(), self._on_udp, sock, on_signalling)
        return transport

    def remove_socket(self, sock: socket.socket) -> None:
        transport = self._sockets.pop(sock, None)
        if transport is None:
            return
        self._loop.remove_reader(sock.fileno())
        transport._closing = True
        self._socket_removed(sock)
        sock.close()

    def _socket_removed(self, sock: socket.socket) -> None:
        pass

    def note_sent(self, sock: socket.socket) -> None:
        self.last_sent = self._loop.time()

    def close(self) -> None:
        """Stop reading, close the sockets and the TUN (which removes the device)."""
        if self.closed:
            return
        self.closed = True
        for sock in list(self._sockets):
            self.remove_socket(sock)
        self._loop.remove_reader(self.tun_fd)
        os.close(self.tun_fd)

    def _on_tun(self) -> None:
        raise NotImplementedError

    def _on_udp(self, sock: socket.socket, on_signalling: OnSignalling) -> None:
        raise NotImplementedError

    def _signalling(self, on_signalling: OnSignalling, length: int, addr: Address) -> None:
        self.counters.signalling_received += 1
        on_signalling(bytes(self._rx[:length]), (addr[0], addr[1]))


class MobileTunnel(_Endpoint):
    """The mobile router's end: one home agent, one (address, port) per binding.

    ``attach(sock, home_agent_address)`` after a registration reply assents to UDP tunnelling
    (``Registered.udp_tunnel``); ``detach()`` when the binding ends or stops being UDP.
    """

    def __init__(
        self,
        tun_fd: int,
        *,
        home_address: IPv4Address,
        home_agent: IPv4Address,
        keepalive: KeepaliveMonitor | None = None,
        on_peer_state: Callable[[bool], None] | None = None,
        next_header: int = NEXT_HEADER_IPV4,
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        super().__init__(tun_fd, next_header=next_header, budget=budget)
        self.home_address = home_address
        self.home_agent = home_agent
        self.keepalive = keepalive or KeepaliveMonitor()
        self.on_peer_state = on_peer_state
        self.peer: Address | None = None
        self._data_sock: socket.socket | None = None
        self._identifier = next(_identifiers) & 0xFFFF
        self._sequence = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def attached(self) -> bool:
        return self.peer is not None

    def attach(self, sock: socket.socket, peer: Address, keepalive_interval: float = 0) -> None:
        """Tunnel data through ``sock`` (one added with ``add_socket``: the registration's
        source port, §4.4) to ``peer`` (the home agent's address and port)."""
        if sock not in self._sockets:
            raise ValueError("attach: add_socket(sock, ...) first")
        self.peer = (str(peer[0]), int(peer[1]))
        # Connected: the kernel then drops datagrams from anyone else, and the hot loops use
        # send/recv_into (no address to parse or build per packet: ~10 % per packet).
        sock.connect(self.peer)
        self._data_sock = sock
        now = self._loop.time()
        self.keepalive.set_interval(keepalive_interval)
        self.keepalive.reset(now)
        self.last_received = now
        self._arm()

    def detach(self) -> None:
        self.peer = None
        self._data_sock = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _socket_removed(self, sock: socket.socket) -> None:
        if sock is self._data_sock:
            self.detach()

    def note_sent(self, sock: socket.socket) -> None:
        if sock is self._data_sock:
            self.last_sent = self._loop.time()

    def close(self) -> None:
        self.detach()
        super().close()

    # keepalives -------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.keepalive.next_deadline(self.last_sent, self.last_received)
        self._timer = self._loop.call_at(max(deadline, self._loop.time() + 0.01), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.peer is None:
            return
        for action in self.keepalive.poll(self._loop.time(), self.last_sent, self.last_received):
            if action is KeepaliveAction.SEND:
                self.send_keepalive()
            elif self.on_peer_state is not None:
                self.on_peer_state(action is KeepaliveAction.ALIVE)
        self._arm()

    def send_keepalive(self) -> None:
        """One UDP-encapsulated ICMP echo request to the home agent (RFC 3519 §4.9)."""
        if self.peer is None or self._data_sock is None:
            return
        self._sequence = (self._sequence + 1) & 0xFFFF
        inner = echo_request(self.home_address, self.home_agent, self._identifier, self._sequence)
        try:
            self._data_sock.sendto(tunnel_header(self.next_header) + inner, self.peer)
        except OSError:
            self.counters.drop_send += 1
            return
        self.counters.keepalives_sent += 1
        self.last_sent = self._loop.time()

    # hot paths --------------------------------------------------------------------------

    def _on_tun(self) -> None:
        readv = os.readv
        fd = self.tun_fd
        payload = self._tx_payload
        view = self._tx_view
        sock = self._data_sock
        peer = self.peer
        packets = nbytes = dropped = errors = 0
        for _ in range(self.budget):
            try:
                length = readv(fd, payload)
            except BlockingIOError:
                break
            if sock is None or peer is None or length < 20:
                dropped += 1
                continue
            try:
                sock.send(view[: length + HEADER_LENGTH])
            except OSError:
                errors += 1
                continue
            packets += 1
            nbytes += length
        counters = self.counters
        if packets:
            counters.tx_packets += packets
            counters.tx_bytes += nbytes
            self.last_sent = self._loop.time()
        if dropped:
            counters.drop_no_peer += dropped
        if errors:
            counters.drop_send += errors

    def _on_udp(self, sock: socket.socket, on_signalling: OnSignalling) -> None:
        if sock is self._data_sock and self.peer is not None:
            self._on_connected_udp(sock, on_signalling, self.peer)
            return
        recv = sock.recvfrom_into
        buf = self._rx
        view = self._rx_view
        write = os.write
        fd = self.tun_fd
        peer = self.peer if sock is self._data_sock else None
        next_header = self.next_header
        probing = self.keepalive.outstanding > 0 or self.keepalive.silent
        packets = nbytes = unknown = bad = failed = heard = 0
        for _ in range(self.budget):
            try:
                length, addr = recv(buf)
            except BlockingIOError:
                break
            except OSError:  # an ICMP error queued on the socket: nothing to read
                break
            if buf[0] != TUNNEL_DATA_TYPE:
                if peer is not None and addr == peer:
                    heard += 1
                self._signalling(on_signalling, length, addr)
                continue
            if addr != peer:
                unknown += 1
                continue
            heard += 1
            if length < HEADER_LENGTH + 20 or buf[1] != next_header or buf[4] >> 4 != 4:
                bad += 1
                continue
            if probing and buf[HEADER_LENGTH + 9] == IPPROTO_ICMP and is_echo_reply(
                view[HEADER_LENGTH:length], self.home_agent, self.home_address, self._identifier
            ):
                self.counters.keepalive_replies += 1
                continue
            try:
                write(fd, view[HEADER_LENGTH:length])
            except OSError:
                failed += 1
                continue
            packets += 1
            nbytes += length - HEADER_LENGTH
        counters = self.counters
        if heard:
            self.last_received = self._loop.time()
        if packets:
            counters.rx_packets += packets
            counters.rx_bytes += nbytes
        if unknown:
            counters.drop_unknown_peer += unknown
        if bad:
            counters.drop_bad_header += bad
        if failed:
            counters.drop_tun_write += failed


    def _on_connected_udp(self, sock: socket.socket, on_signalling: OnSignalling, peer: Address) -> None:
        """The attached socket: connected to the home agent, so every datagram is from it."""
        recv = sock.recv_into
        buf = self._rx
        view = self._rx_view
        write = os.write
        fd = self.tun_fd
        next_header = self.next_header
        probing = self.keepalive.outstanding > 0 or self.keepalive.silent
        packets = nbytes = bad = failed = heard = 0
        for _ in range(self.budget):
            try:
                length = recv(buf)
            except BlockingIOError:
                break
            except OSError:  # ICMP port unreachable from a restarted home agent: nothing to read
                break
            heard += 1
            if buf[0] != TUNNEL_DATA_TYPE:
                self._signalling(on_signalling, length, peer)
                continue
            if length < HEADER_LENGTH + 20 or buf[1] != next_header or buf[4] >> 4 != 4:
                bad += 1
                continue
            if probing and buf[HEADER_LENGTH + 9] == IPPROTO_ICMP and is_echo_reply(
                view[HEADER_LENGTH:length], self.home_agent, self.home_address, self._identifier
            ):
                self.counters.keepalive_replies += 1
                continue
            try:
                write(fd, view[HEADER_LENGTH:length])
            except OSError:
                failed += 1
                continue
            packets += 1
            nbytes += length - HEADER_LENGTH
        counters = self.counters
        if heard:
            self.last_received = self._loop.time()
        if packets:
            counters.rx_packets += packets
            counters.rx_bytes += nbytes
        if bad:
            counters.drop_bad_header += bad
        if failed:
            counters.drop_tun_write += failed


class HomeAgentTunnel(_Endpoint):
    """The home agent's end: one TUN and one socket (UDP 434) for every UDP-tunnelled binding.

    Keep ``peers`` in step with the bindings: ``set_peer`` on a UDP binding added, renewed or
    moved (``Binding.source`` is the NAT'd address and port, RFC 3519 §4.6), ``remove_peer`` on
    removal or expiry; or call ``sync_bindings`` with the whole binding list after each event.
    """

    def __init__(
        self,
        tun_fd: int,
        *,
        home_agent: IPv4Address,
        on_peer_silent: Callable[[Peer], None] | None = None,
        silence_timeout: float = 3 * 110.0,
        next_header: int = NEXT_HEADER_IPV4,
        budget: int = DEFAULT_BUDGET,
    ) -> None:
        super().__init__(tun_fd, next_header=next_header, budget=budget)
        self.home_agent = home_agent
        self.peers = PeerTable()
        self.on_peer_silent = on_peer_silent
        self.silence_timeout = silence_timeout
        self._sock: socket.socket | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._home_agent_packed = home_agent.packed
        self._sweep()

    def add_socket(self, sock: socket.socket, on_signalling: OnSignalling) -> SignallingTransport:
        if self._sock is not None:
            raise ValueError("the home agent tunnel serves one socket (UDP 434)")
        transport = super().add_socket(sock, on_signalling)
        self._sock = sock
        return transport

    def _socket_removed(self, sock: socket.socket) -> None:
        self._sock = None

    def set_peer(self, home_address: IPv4Address, source: Address, mobile_networks: Any = ()) -> Peer:
        return self.peers.set(home_address, source, mobile_networks, now=self._loop.time())

    def remove_peer(self, home_address: IPv4Address) -> Peer | None:
        return self.peers.remove(home_address)

    def sync_bindings(self, bindings: Any) -> None:
        """Peers = the UDP-tunnelled ones of ``HomeAgentLogic.bindings().values()``."""
        self.peers.sync(
            ((b.home_address, b.source, b.mobile_networks) for b in bindings if b.udp_tunnel),
            now=self._loop.time(),
        )

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        super().close()

    def _sweep(self) -> None:
        now = self._loop.time()
        for peer in self.peers.sweep(now, self.silence_timeout):
            if self.on_peer_silent is not None:
                self.on_peer_silent(peer)
        self._sweeper = self._loop.call_later(max(self.silence_timeout / 4, 0.05), self._sweep)

    # hot paths --------------------------------------------------------------------------

    def _on_tun(self) -> None:
        readv = os.readv
        fd = self.tun_fd
        payload = self._tx_payload
        view = self._tx_view
        buf = self._tx
        destination_of = _DESTINATION.unpack_from
        route = self.peers.route
        sock = self._sock
        packets = nbytes = dropped = errors = 0
        for _ in range(self.budget):
            try:
                length = readv(fd, payload)
            except BlockingIOError:
                break
            if length < 20 or buf[HEADER_LENGTH] >> 4 != 4 or sock is None:
                dropped += 1
                continue
            peer = route(destination_of(buf, HEADER_LENGTH + 16)[0])
            if peer is None:
                dropped += 1
                continue
            try:
                sock.sendto(view[: length + HEADER_LENGTH], peer.source)
            except OSError:
                errors += 1
                continue
            peer.tx_packets += 1
            packets += 1
            nbytes += length
        counters = self.counters
        if packets:
            counters.tx_packets += packets
            counters.tx_bytes += nbytes
            self.last_sent = self._loop.time()
        if dropped:
            counters.drop_no_peer += dropped
        if errors:
            counters.drop_send += errors

    def _on_udp(self, sock: socket.socket, on_signalling: OnSignalling) -> None:
        recv = sock.recvfrom_into
        buf = self._rx
        view = self._rx_view
        write = os.write
        fd = self.tun_fd
        by_source = self.peers.by_source
        next_header = self.next_header
        packets = nbytes = unknown = bad = failed = 0
        for _ in range(self.budget):
            try:
                length, addr = recv(buf)
            except BlockingIOError:
                break
            except OSError:
                break
            if buf[0] != TUNNEL_DATA_TYPE:
                self._signalling(on_signalling, length, addr)
                continue
            peer = by_source.get(addr)
            if peer is None:
                unknown += 1
                continue
            if length < HEADER_LENGTH + 20 or buf[1] != next_header or buf[4] >> 4 != 4:
                bad += 1
                continue
            peer.rx_packets += 1
            if buf[HEADER_LENGTH + 9] == IPPROTO_ICMP and buf[HEADER_LENGTH + 16 : HEADER_LENGTH + 20] == self._home_agent_packed:
                self._answer_keepalive(sock, peer, length)
                continue
            try:
                write(fd, view[HEADER_LENGTH:length])
            except OSError:
                failed += 1
                continue
            packets += 1
            nbytes += length - HEADER_LENGTH
        counters = self.counters
        if packets:
            counters.rx_packets += packets
            counters.rx_bytes += nbytes
            self.last_received = self._loop.time()
        if unknown:
            counters.drop_unknown_peer += unknown
        if bad:
            counters.drop_bad_header += bad
        if failed:
            counters.drop_tun_write += failed

    def _answer_keepalive(self, sock: socket.socket, peer: Peer, length: int) -> None:
        reply = echo_reply_for(self._rx_view[HEADER_LENGTH:length], self.home_agent, peer.home_address)
        if reply is None:  # other ICMP to the home agent (a LAN host's ping): its kernel answers
            try:
                os.write(self.tun_fd, self._rx_view[HEADER_LENGTH:length])
                self.counters.rx_packets += 1
                self.counters.rx_bytes += length - HEADER_LENGTH
            except OSError:
                self.counters.drop_tun_write += 1
            return
        try:
            sock.sendto(tunnel_header(self.next_header) + reply, peer.source)
        except OSError:
            self.counters.drop_send += 1
            return
        peer.keepalives += 1
        self.counters.keepalives_answered += 1
