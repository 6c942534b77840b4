"""RFC 3519 tunnel data header and the keepalive packets (pure: bytes in, bytes out).

The MIP Tunnel Data message (RFC 3519 §3.3) is four bytes before the tunnelled packet:
Type 4, Next Header (IP protocol number of what follows: 4 = IPv4, 47 = GRE, 55 = minimal
encapsulation), two Reserved bytes (0 on sending, ignored on reception).

Keepalives (RFC 3519 §4.9) are "a properly UDP encapsulated ICMP echo request directed to the
home agent": an inner IPv4 packet from the home address to the home agent, carried in the
tunnel like data; the home agent answers with the UDP-encapsulated echo reply (two-way
keepalives, so the mobile node can detect a lost NAT mapping, §4.10).

The data path does not call these per packet: it checks ``buf[0]`` and ``buf[1]`` in place.
These functions are the same rules written once, for tests, the slow path and the oracles.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from router.mip.errors import DecodeError

__all__ = [
    "HEADER_LENGTH",
    "NEXT_HEADER_GRE",
    "NEXT_HEADER_IPV4",
    "TUNNEL_DATA_TYPE",
    "echo_reply_for",
    "echo_request",
    "internet_checksum",
    "is_echo_reply",
    "parse_tunnel_header",
    "tunnel_header",
]

TUNNEL_DATA_TYPE = 4  # RFC 3519 §3.3
HEADER_LENGTH = 4
NEXT_HEADER_IPV4 = 4  # RFC 2003 IP-in-IP (the default, §4.1: MUST be implemented)
NEXT_HEADER_GRE = 47  # RFC 2784
IPV4_HEADER_LENGTH = 20
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
IPPROTO_ICMP = 1

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")


def tunnel_header(next_header: int = NEXT_HEADER_IPV4) -> bytes:
    """The 4-byte RFC 3519 §3.3 header; Reserved is 0 on sending."""
    if not 0 <= next_header <= 255:
        raise ValueError(f"next header {next_header} outside 0..255")
    return bytes((TUNNEL_DATA_TYPE, next_header, 0, 0))


def parse_tunnel_header(data: bytes | bytearray | memoryview) -> int:
    """Return the Next Header of a tunnel data message; the payload starts at HEADER_LENGTH.

    Reserved is ignored on reception (§3.3). Raises :class:`DecodeError` on a short datagram
    or a type other than 4 (a registration message, which belongs to the signalling path).
    """
    if len(data) < 1:
        raise DecodeError(0, "message Type", "got 0 bytes")
    if data[0] != TUNNEL_DATA_TYPE:
        raise DecodeError(0, f"Type {TUNNEL_DATA_TYPE} (tunnel data)", f"got {data[0]}")
    if len(data) < HEADER_LENGTH:
        raise DecodeError(len(data), "the 4-byte tunnel data header", f"got {len(data)} bytes")
    return int(data[1])


def internet_checksum(data: bytes | bytearray) -> int:
    """RFC 1071 one's complement sum, as a 16-bit value ready to store."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(source: IPv4Address, destination: IPv4Address, payload: bytes, ttl: int = 64) -> bytes:
    header = _IPV4.pack(0x45, 0, IPV4_HEADER_LENGTH + len(payload), 0, 0x4000, ttl, IPPROTO_ICMP, 0, source.packed, destination.packed)
    checksum = internet_checksum(header)
    return header[:10] + checksum.to_bytes(2, "big") + header[12:] + payload


def _icmp_echo(kind: int, identifier: int, sequence: int, data: bytes) -> bytes:
    body = _ICMP_ECHO.pack(kind, 0, 0, identifier, sequence) + data
    checksum = internet_checksum(body)
    return body[:2] + checksum.to_bytes(2, "big") + body[4:]


def echo_request(home_address: IPv4Address, home_agent: IPv4Address, identifier: int, sequence: int) -> bytes:
    """The inner packet of a keepalive (§4.9): ICMP echo request, home address -> home agent."""
    return _ipv4(home_address, home_agent, _icmp_echo(ICMP_ECHO_REQUEST, identifier & 0xFFFF, sequence & 0xFFFF, b"rfc3519 keepalive"))


def _icmp_of(packet: bytes | bytearray | memoryview) -> tuple[bytes, bytes, bytes] | None:
    """(source, destination, ICMP bytes) of a well-formed IPv4 ICMP packet, else None."""
    if len(packet) < IPV4_HEADER_LENGTH + 8 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_ICMP:
        return None
    header_length = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if header_length < IPV4_HEADER_LENGTH or total > len(packet) or total < header_length + 8:
        return None
    if int.from_bytes(packet[6:8], "big") & 0x3FFF:  # a fragment: not a keepalive
        return None
    return bytes(packet[12:16]), bytes(packet[16:20]), bytes(packet[header_length:total])


def echo_reply_for(packet: bytes | bytearray | memoryview, home_agent: IPv4Address, home_address: IPv4Address) -> bytes | None:
    """The inner echo reply the home agent returns for a keepalive, or None if ``packet`` is not
    an ICMP echo request from ``home_address`` to ``home_agent`` (RFC 3519 §4.6, §4.9); then it
    is ordinary data (a LAN host pinging the home agent is answered by its kernel)."""
    parts = _icmp_of(packet)
    if parts is None:
        return None
    source, destination, icmp = parts
    if destination != home_agent.packed or source != home_address.packed:
        return None
    if icmp[0] != ICMP_ECHO_REQUEST or icmp[1] != 0:
        return None
    if internet_checksum(icmp) != 0:
        return None
    reply = bytes((ICMP_ECHO_REPLY, 0, 0, 0)) + icmp[4:]
    checksum = internet_checksum(reply)
    reply = reply[:2] + checksum.to_bytes(2, "big") + reply[4:]
    return _ipv4(home_agent, IPv4Address(source), reply)


def is_echo_reply(packet: bytes | bytearray | memoryview, home_agent: IPv4Address, home_address: IPv4Address, identifier: int) -> bool:
    """Is ``packet`` the home agent's answer to one of our keepalives?"""
    parts = _icmp_of(packet)
    if parts is None:
        return False
    source, destination, icmp = parts
    return (
        source == home_agent.packed
        and destination == home_address.packed
        and icmp[0] == ICMP_ECHO_REPLY
        and int.from_bytes(icmp[4:6], "big") == identifier & 0xFFFF
    )
