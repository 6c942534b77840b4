"""Agent advertisements heard on one uplink, and Agent Solicitations sent on it.

Theory of operation
-------------------
An Agent Advertisement is an ICMP Router Advertisement (type 9) carrying a Mobility Agent
Advertisement extension (type 16) (RFC 5944 section 2.1). Agents multicast it to the
all-systems group 224.0.0.1 or broadcast it to 255.255.255.255 (RFC 1256 section 3), or send
it unicast in answer to a solicitation. :class:`AdvertListener` owns one raw ICMP socket per
uplink interface:

- pinned to the device (``SO_BINDTODEVICE``), so an advert heard on the corp WLAN is never
  attributed to the 3G uplink;
- joined to 224.0.0.1 on that interface (hosts are members anyway, RFC 1256 section 5.3;
  the explicit join costs nothing and survives an odd multicast configuration);
- with the kernel's ICMP type filter (``ICMP_FILTER``) letting only type 9 through, so echo
  replies and other ICMP never wake the loop;
- read with ``loop.add_reader``; each datagram goes through :func:`parse_datagram` (pure:
  IP header checks, IHL strip, :func:`router.mip.advert.decode_icmp`, which verifies the
  checksum). Malformed input is counted by reason and debug-logged, never raised.
  A plain router advertisement (no extension 16) is not an agent advertisement and is
  dropped (RFC 5944 section 2.4: the extension is what identifies one).

Flood protection: a token bucket per source address and one for the whole socket
(:class:`AdvertRateLimit`), applied after the cheap IP header checks and before the ICMP
decode; at most :data:`MAX_DATAGRAMS_PER_WAKEUP` datagrams are read per loop wake-up, and the
socket's receive buffer is small, so a flood costs the kernel drops, not the event loop.

:meth:`AdvertListener.solicit` sends an Agent Solicitation (an ICMP Router Solicitation with
IP TTL 1, RFC 5944 section 2.2) to 224.0.0.2 (all routers, RFC 1256 section 3) or to the
limited broadcast, so an agent on a new link answers at once instead of at its next periodic
advert. :class:`SolicitationPacer` enforces RFC 5944 section 2.4's limits: at most three
solicitations at most once a second, then binary exponential backoff up to a minute, reset
only by a positive indication of a new link (a new attachment).

Security
--------
An advertisement is unauthenticated ICMP: anyone on the link can forge one (the rogue AP of
issue 5 does). It is a *hint only*: it feeds
:func:`router.policy.domain.conjecture_from_advertisements`, which chooses what to try first.
The daemon never switches the VPN off, nor routes the LAN directly, on an advertisement;
only an authenticated reply from the inner home agent over the direct path proves "inside"
(RFC 5265 section 3.2.3, ``router.policy.domain.Proof``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from router.mip.advert import AgentAdvertisement, AgentSolicitation, decode_icmp, encode_icmp
from router.mip.errors import DecodeError
from router.policy.domain import AdvertisementHeard

log = logging.getLogger(__name__)

__all__ = [
    "ALL_ROUTERS",
    "ALL_SYSTEMS",
    "LIMITED_BROADCAST",
    "AdvertListener",
    "AdvertRateLimit",
    "Drop",
    "Parsed",
    "SolicitationPacer",
    "advert_from_datagram",
    "parse_datagram",
    "parse_ip_header",
]

ALL_SYSTEMS = IPv4Address("224.0.0.1")  # RFC 1256 section 3: advertisement destination
ALL_ROUTERS = IPv4Address("224.0.0.2")  # RFC 1256 section 3: solicitation destination
LIMITED_BROADCAST = IPv4Address("255.255.255.255")

IPPROTO_ICMP = 1
ICMP_ROUTER_ADVERTISEMENT = 9
#: An advertisement is a one-link message; nothing legitimate here exceeds an Ethernet MTU.
MAX_DATAGRAM = 1500
#: Datagrams handled per loop wake-up before the reader yields to the rest of the daemon.
MAX_DATAGRAMS_PER_WAKEUP = 32
#: Kernel receive buffer: a flood beyond it is dropped by the kernel, not queued for us.
RECEIVE_BUFFER = 64 * 1024

# Linux: raw ICMP sockets take a 32-bit mask of ICMP types to *drop* (linux/icmp.h).
_SOL_RAW = 255
_ICMP_FILTER = 1


class Drop(enum.StrEnum):
    """Why a datagram produced no :class:`AdvertisementHeard` (the counter names)."""

    SHORT = "short"  # shorter than an IPv4 header, or than its own IHL / Total Length
    NOT_IPV4 = "not_ipv4"
    NOT_ICMP = "not_icmp"
    FRAGMENT = "fragment"  # the kernel reassembles; a fragment here is not ours to decode
    OVERSIZED = "oversized"
    BAD_SOURCE = "bad_source"  # unspecified, multicast, broadcast, loopback, reserved
    NOT_ADVERTISEMENT = "not_advertisement"  # another ICMP type
    MALFORMED = "malformed"  # decode_icmp's DecodeError, bad checksum included
    PLAIN_ROUTER_ADVERTISEMENT = "plain_router_advertisement"  # no extension 16
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Parsed:
    """Outcome of one datagram: an advertisement heard, or the reason it was dropped."""

    heard: AdvertisementHeard | None
    drop: Drop | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IpHeader:
    source: IPv4Address
    destination: IPv4Address
    ttl: int
    payload: bytes


def parse_ip_header(packet: bytes) -> IpHeader | Parsed:
    """The IPv4 header checks (RFC 791 section 3.1); the ICMP message follows the IHL."""
    if len(packet) > MAX_DATAGRAM:
        return Parsed(None, Drop.OVERSIZED, f"{len(packet)} bytes > {MAX_DATAGRAM}")
    if len(packet) < 20:
        return Parsed(None, Drop.SHORT, f"{len(packet)} bytes, no IPv4 header")
    version, ihl = packet[0] >> 4, (packet[0] & 0x0F) * 4
    if version != 4:
        return Parsed(None, Drop.NOT_IPV4, f"version {version}")
    (total_length,) = struct.unpack_from("!H", packet, 2)
    if ihl < 20 or ihl > len(packet) or total_length < ihl or total_length > len(packet):
        return Parsed(
            None, Drop.SHORT, f"IHL {ihl}, Total Length {total_length}, got {len(packet)} bytes"
        )
    (fragment,) = struct.unpack_from("!H", packet, 6)
    if fragment & 0x3FFF:  # MF flag or a fragment offset
        return Parsed(None, Drop.FRAGMENT, f"flags/offset 0x{fragment:04x}")
    if packet[9] != IPPROTO_ICMP:
        return Parsed(None, Drop.NOT_ICMP, f"protocol {packet[9]}")
    source = IPv4Address(packet[12:16])
    if (
        source.is_unspecified
        or source.is_multicast
        or source.is_loopback
        or source.is_reserved
        or source == LIMITED_BROADCAST
    ):
        return Parsed(None, Drop.BAD_SOURCE, f"source {source}")
    # Trailing bytes beyond Total Length (link padding) are not part of the ICMP message.
    return IpHeader(source, IPv4Address(packet[16:20]), packet[8], packet[ihl:total_length])


def parse_icmp(source: IPv4Address, icmp: bytes, at: float) -> Parsed:
    """Decode the ICMP part; only an Agent Advertisement (with extension 16) is kept."""
    if not icmp or icmp[0] != ICMP_ROUTER_ADVERTISEMENT:
        return Parsed(None, Drop.NOT_ADVERTISEMENT, f"ICMP type {icmp[0] if icmp else None}")
    try:
        message = decode_icmp(icmp)
    except DecodeError as exc:
        return Parsed(None, Drop.MALFORMED, str(exc))
    if not isinstance(message, AgentAdvertisement):  # pragma: no cover - type 9 decodes to one
        return Parsed(None, Drop.NOT_ADVERTISEMENT, type(message).__name__)
    heard = AdvertisementHeard.from_advert(source, message, at)
    if heard is None:
        return Parsed(None, Drop.PLAIN_ROUTER_ADVERTISEMENT, "no Mobility Agent Advertisement")
    return Parsed(heard)


def parse_datagram(packet: bytes, at: float) -> Parsed:
    """One raw-socket datagram (IPv4 header included) -> the advertisement heard, or why not."""
    header = parse_ip_header(bytes(packet))
    if isinstance(header, Parsed):
        return header
    return parse_icmp(header.source, header.payload, at)


def advert_from_datagram(packet: bytes, at: float) -> AdvertisementHeard | None:
    return parse_datagram(packet, at).heard


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class AdvertRateLimit:
    """Token buckets: ``per_source`` adverts/s (burst ``source_burst``) per source address, and
    ``total`` adverts/s (burst ``total_burst``) overall. Time is a parameter.

    Agents advertise about once a second at most (RFC 5944 section 2.3 leaves the interval to
    the agent, RFC 1256 section 4.1 defaults to minutes), so the defaults are generous for a
    real agent and tight for a flood. The source table holds ``max_sources`` entries; the
    least recently used is evicted, and the overall bucket bounds what churning sources buys.
    """

    def __init__(
        self,
        per_source: float = 5.0,
        source_burst: float = 10.0,
        total: float = 50.0,
        total_burst: float = 100.0,
        max_sources: int = 64,
    ) -> None:
        self.per_source, self.source_burst = per_source, source_burst
        self.total, self.total_burst = total, total_burst
        self.max_sources = max_sources
        self._sources: dict[IPv4Address, _Bucket] = {}
        self._overall: _Bucket | None = None

    @staticmethod
    def _take(bucket: _Bucket, rate: float, burst: float, now: float) -> bool:
        bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.updated) * rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def allow(self, source: IPv4Address, now: float) -> bool:
        if self._overall is None:
            self._overall = _Bucket(self.total_burst, now)
        bucket = self._sources.pop(source, None)
        if bucket is None:
            bucket = _Bucket(self.source_burst, now)
            while len(self._sources) >= self.max_sources:
                del self._sources[next(iter(self._sources))]  # least recently used
        self._sources[source] = bucket  # re-insert: dict order is recency order
        if not self._take(bucket, self.per_source, self.source_burst, now):
            return False
        return self._take(self._overall, self.total, self.total_burst, now)


class SolicitationPacer:
    """RFC 5944 section 2.4: three solicitations at most once a second, then the interval
    doubles up to ``max_interval`` (at least a minute). :meth:`reset` on a new link only."""

    def __init__(self, initial: int = 3, interval: float = 1.0, max_interval: float = 60.0) -> None:
        self.initial, self.interval, self.max_interval = initial, interval, max_interval
        self.reset()

    def reset(self) -> None:
        self._sent = 0
        self._last: float | None = None

    def next_allowed(self) -> float | None:
        """Earliest time of the next solicitation (None: now)."""
        if self._last is None:
            return None
        extra = max(0, self._sent - self.initial + 1)
        return self._last + min(self.max_interval, self.interval * 2.0**extra)

    def allow(self, now: float) -> bool:
        earliest = self.next_allowed()
        if earliest is not None and now < earliest:
            return False
        self._sent += 1
        self._last = now
        return True


class AdvertListener:
    """Reports agent advertisements heard on ``ifname`` as :class:`AdvertisementHeard`.

    ``on_advert`` is called on the event loop, once per accepted advertisement, with
    ``at`` from ``clock`` (the loop's monotonic time by default, as the daemon's ``now()``).
    ``open()`` / ``close()`` are idempotent; ``counters`` counts every outcome by name.
    Needs CAP_NET_RAW.
    """

    def __init__(
        self,
        ifname: str,
        on_advert: Callable[[AdvertisementHeard], None],
        *,
        rate_limit: AdvertRateLimit | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ifname = ifname
        self.on_advert = on_advert
        self.rate_limit = rate_limit or AdvertRateLimit()
        self.pacer = SolicitationPacer()
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        assert self._loop is not None
        return self._loop.time()

    def open(self) -> None:
        """Open the socket and start reading (call from the running loop). OSError if the
        device does not exist or CAP_NET_RAW is missing."""
        if self._sock is not None:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setsockopt(
                _SOL_RAW,
                _ICMP_FILTER,
                struct.pack("=I", ~(1 << ICMP_ROUTER_ADVERTISEMENT) & 0xFFFFFFFF),
            )
            index = socket.if_nametoindex(self.ifname)
            # struct ip_mreqn: group, local address (any), interface index.
            mreqn = ALL_SYSTEMS.packed + bytes(4) + struct.pack("=i", index)
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            except OSError as exc:  # no multicast on the device (ppp): broadcast/unicast remain
                log.debug("adverts %s: cannot join %s: %s", self.ifname, ALL_SYSTEMS, exc)
            # Solicitations: out of this device only, never beyond the link (TTL 1).
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._readable)
        except OSError:
            sock.close()
            raise
        self._sock, self._loop = sock, loop
        log.info("adverts %s: listening for agent advertisements (hints only)", self.ifname)

    def close(self) -> None:
        if self._sock is None:
            return
        assert self._loop is not None
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # loop closed at shutdown
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None

    def new_link(self) -> None:
        """A new attachment on this interface: the solicitation rate may start over."""
        self.pacer.reset()

    def solicit(self, destination: IPv4Address = ALL_ROUTERS) -> bool:
        """Send one Agent Solicitation (RFC 5944 section 2.2) if the pacer allows it now.

        True if sent. Never raises: a send failure (no address yet, link down) is counted.
        """
        if self._sock is None:
            return False
        if not self.pacer.allow(self.now()):
            self.counters["solicitation_paced"] += 1
            return False
        try:
            self._sock.sendto(encode_icmp(AgentSolicitation()), (str(destination), 0))
        except OSError as exc:
            self.counters["solicitation_failed"] += 1
            log.debug("adverts %s: solicitation to %s failed: %s", self.ifname, destination, exc)
            return False
        self.counters["solicitation_sent"] += 1
        log.debug("adverts %s: agent solicitation sent to %s", self.ifname, destination)
        return True

    def _readable(self) -> None:
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            if self._sock is None:
                return
            try:
                packet = self._sock.recv(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.counters["receive_error"] += 1
                log.debug("adverts %s: receive: %s", self.ifname, exc)
                return
            self.handle_datagram(packet)

    def handle_datagram(self, packet: bytes) -> AdvertisementHeard | None:
        """One datagram from the socket: checks, rate limit, decode, callback."""
        now = self.now()
        header = parse_ip_header(packet)
        if isinstance(header, Parsed):
            self._dropped(header)
            return None
        if not self.rate_limit.allow(header.source, now):
            self._dropped(Parsed(None, Drop.RATE_LIMITED, f"source {header.source}"))
            return None
        parsed = parse_icmp(header.source, header.payload, now)
        if parsed.heard is None:
            self._dropped(parsed)
            return None
        self.counters["heard"] += 1
        log.debug(
            "adverts %s: agent advertisement from %s (H=%s F=%s)",
            self.ifname,
            parsed.heard.source,
            parsed.heard.home_agent,
            parsed.heard.foreign_agent,
        )
        self.on_advert(parsed.heard)
        return parsed.heard

    def _dropped(self, parsed: Parsed) -> None:
        assert parsed.drop is not None
        self.counters[parsed.drop.value] += 1
        if parsed.drop is not Drop.RATE_LIMITED:  # a flood must not flood the log either
            log.debug("adverts %s: dropped (%s): %s", self.ifname, parsed.drop, parsed.detail)
