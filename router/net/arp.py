"""Gratuitous ARP (RFC 5944 §4.6): tell a link which hardware address now answers for an IP.

The home agent sends one, with its own hardware address, when it accepts a registration from
a node it believed at home, and one with the node's own address when it comes back. §4.6
asks for a few retransmissions; they should run in parallel with the registration, so the
caller schedules repeats (each call sends exactly one frame and never sleeps).

The frame is built by a pure function (`gratuitous_arp_frame`) and sent on a raw AF_PACKET
socket bound to the interface, optionally opened inside a named network namespace.
"""

from __future__ import annotations

import enum
import socket
import struct
from ipaddress import IPv4Address

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
BROADCAST = b"\xff" * 6
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # RFC 826 packet, Ethernet + IPv4


class ArpOperation(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


def gratuitous_arp_frame(
    sender_hardware: bytes,
    address: IPv4Address,
    operation: ArpOperation = ArpOperation.REQUEST,
    ethernet_source: bytes | None = None,
) -> bytes:
    """An Ethernet broadcast frame carrying a gratuitous ARP for `address`.

    §4.6: sender and target protocol address are both `address`; the sender hardware address
    is the one the cache entry should now hold; in a Reply the target hardware address is
    that address too (in a Request it is unused: zero). Linux updates existing entries from
    either; a Request is also what `arping -U` sends.

    `ethernet_source` (default: `sender_hardware`) is the frame's Ethernet source: the
    sending interface's own address. It differs from the ARP sender hardware address when
    the home agent announces a node back home: a frame from the home agent with the node's
    MAC as Ethernet source would teach the link's switches that the node sits behind the
    home agent's port.
    """
    if len(sender_hardware) != 6:
        raise ValueError(f"Ethernet hardware address must be 6 bytes, got {len(sender_hardware)}")
    source = sender_hardware if ethernet_source is None else ethernet_source
    if len(source) != 6:
        raise ValueError(f"Ethernet hardware address must be 6 bytes, got {len(source)}")
    target_hardware = sender_hardware if operation == ArpOperation.REPLY else bytes(6)
    ethernet = BROADCAST + source + struct.pack("!H", ETH_P_ARP)
    arp = _ARP.pack(
        ARPHRD_ETHER,
        ETH_P_IP,
        6,
        4,
        operation,
        sender_hardware,
        address.packed,
        target_hardware,
        address.packed,
    )
    return ethernet + arp


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def send_gratuitous_arp(
    ifname: str,
    address: IPv4Address,
    *,
    hardware_address: bytes | None = None,
    operation: ArpOperation = ArpOperation.REQUEST,
    netns: str | None = None,
) -> bytes:
    """Broadcast one gratuitous ARP for `address` on `ifname`; return the frame sent.

    `hardware_address` defaults to the interface's own (the home agent proxying for an
    away node); pass the node's own address when it has come home. The Ethernet source is
    always the interface's own address.
    """
    sock = _packet_socket(netns)
    try:
        sock.bind((ifname, ETH_P_ARP))
        own_hardware: bytes = sock.getsockname()[4]
        frame = gratuitous_arp_frame(hardware_address or own_hardware, address, operation, own_hardware)
        sock.send(frame)
        return frame
    except OSError as error:
        raise OSError(error.errno, f"gratuitous ARP for {address} on {ifname}: {error}") from error
    finally:
        sock.close()


def _packet_socket(netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    # A socket belongs to the namespace it was created in; pyroute2 creates it there for us.
    from pyroute2.netns import create_socket  # type: ignore[import-untyped]

    sock: socket.socket = create_socket(
        netns,
        family=socket.AF_PACKET,
        socket_type=socket.SOCK_RAW,
        proto=socket.htons(ETH_P_ARP),
        flags=0,
    )
    return sock
