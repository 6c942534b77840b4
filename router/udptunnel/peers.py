"""The home agent's peer table: which NAT'd (address, port) serves which inner destination.

One UDP tunnel serves every UDP-tunnelled binding. Outbound (tun -> UDP) the inner destination
address picks the peer: longest prefix over each binding's home address (/32) and its
acknowledged mobile networks (RFC 5177). Inbound (UDP -> tun) only a datagram from a peer's
exact (address, port) is accepted (RFC 3519 §4.3: "the decapsulating node MUST verify that the
outer IP addresses and UDP port numbers exactly match the values used for the tunnel").

Per packet the data path does one dict lookup each way: ``by_source[addr]`` inbound and
``route(destination)`` outbound, which is itself a dict hit once a destination has been seen
(the longest-prefix walk runs on a miss only; the cache is emptied on every table change and
when it grows past ``CACHE_LIMIT``, so a scan of many destinations costs walks, not memory).

Pure: no sockets, no clock. Counters live on :class:`Peer` so the daemon can read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

__all__ = ["CACHE_LIMIT", "Peer", "PeerTable"]

Address = tuple[str, int]
CACHE_LIMIT = 4096


@dataclass(slots=True, eq=False)
class Peer:
    """One UDP-tunnelled binding as the data path sees it."""

    home_address: IPv4Address
    source: Address  # Binding.source: the registration's (NAT'd) source address and port
    networks: tuple[IPv4Network, ...]  # home address /32 first, then mobile networks
    rx_packets: int = 0  # datagrams accepted from this peer (data and keepalives)
    tx_packets: int = 0
    keepalives: int = 0
    #: Silence detection: rx_packets at the last sweep, and when it last moved.
    seen_packets: int = field(default=0, repr=False)
    seen_at: float = field(default=0.0, repr=False)
    silent: bool = False


class PeerTable:
    __slots__ = ("_by_home", "_cache", "_prefixes", "by_source")

    def __init__(self) -> None:
        self.by_source: dict[Address, Peer] = {}
        self._by_home: dict[IPv4Address, Peer] = {}
        # (network int, mask int, prefix length, peer), longest prefix first.
        self._prefixes: list[tuple[int, int, int, Peer]] = []
        self._cache: dict[int, Peer | None] = {}

    def __len__(self) -> int:
        return len(self._by_home)

    def peers(self) -> list[Peer]:
        return list(self._by_home.values())

    def get(self, home_address: IPv4Address) -> Peer | None:
        return self._by_home.get(home_address)

    def set(
        self,
        home_address: IPv4Address,
        source: Address,
        mobile_networks: Iterable[IPv4Network] = (),
        *,
        now: float = 0.0,
    ) -> Peer:
        """Add or update the peer of a binding (a moved source replaces the old one).

        Raises ValueError if another binding already uses ``source``: two bindings behind one
        NAT mapping could not be told apart inbound.
        """
        source = (str(source[0]), int(source[1]))
        other = self.by_source.get(source)
        if other is not None and other.home_address != home_address:
            raise ValueError(f"{source[0]}:{source[1]} already serves {other.home_address}")
        networks = (IPv4Network(home_address), *mobile_networks)
        peer = self._by_home.get(home_address)
        if peer is None:
            peer = Peer(home_address, source, networks, seen_at=now)
            self._by_home[home_address] = peer
        else:
            if peer.source != source:
                del self.by_source[peer.source]
                peer.silent = False
                peer.seen_at = now
            peer.source = source
            peer.networks = networks
        self.by_source[source] = peer
        self._rebuild()
        return peer

    def remove(self, home_address: IPv4Address) -> Peer | None:
        peer = self._by_home.pop(home_address, None)
        if peer is not None:
            del self.by_source[peer.source]
            self._rebuild()
        return peer

    def sync(self, wanted: Iterable[tuple[IPv4Address, Address, Iterable[IPv4Network]]], *, now: float = 0.0) -> None:
        """Make the table hold exactly ``wanted`` (home address, source, mobile networks)."""
        wanted = list(wanted)
        keep = {home for home, _, _ in wanted}
        for home in [h for h in self._by_home if h not in keep]:
            self.remove(home)
        # Free every source first, so that two peers may swap NAT mappings in one sync.
        for home, source, _ in wanted:
            peer = self._by_home.get(home)
            if peer is not None and peer.source != (str(source[0]), int(source[1])):
                self.remove(home)
        for home, source, networks in wanted:
            self.set(home, source, networks, now=now)

    def route(self, destination: int) -> Peer | None:
        """Peer for an inner destination address (as a 32-bit int); None = no binding."""
        try:
            return self._cache[destination]
        except KeyError:
            pass
        found: Peer | None = None
        for network, mask, _, peer in self._prefixes:
            if destination & mask == network:
                found = peer
                break
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[destination] = found
        return found

    def _rebuild(self) -> None:
        prefixes = [
            (int(net.network_address), int(net.netmask), net.prefixlen, peer)
            for peer in self._by_home.values()
            for net in peer.networks
        ]
        prefixes.sort(key=lambda item: -item[2])
        self._prefixes = prefixes
        self._cache = {}

    def sweep(self, now: float, timeout: float) -> list[Peer]:
        """Peers that fell silent (nothing received for ``timeout`` s) since the last sweep.

        Each silence is reported once; traffic from the peer clears it.
        """
        newly_silent = []
        for peer in self._by_home.values():
            if peer.rx_packets != peer.seen_packets:
                peer.seen_packets = peer.rx_packets
                peer.seen_at = now
                peer.silent = False
            elif not peer.silent and now - peer.seen_at >= timeout:
                peer.silent = True
                newly_silent.append(peer)
        return newly_silent
