"""Per-uplink ICMP echo probes, sent out of one uplink only, for the health tracker.

Each probe leaves from the uplink's own address and is pinned to its device
(SO_BINDTODEVICE), so it measures that uplink whatever the routing tables say. The
tracker (router.policy.health) decides when to probe; this driver only sends, matches
replies and reports answered/lost by key. Costs one raw socket per uplink.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def echo_request(identifier: int, sequence: int, payload: bytes = b"mobile-router-probe") -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, identifier, sequence)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + payload), identifier, sequence) + payload


def parse_echo_reply(packet: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an ICMP echo reply inside an IPv4 packet, or None."""
    if len(packet) < 20:
        return None
    header_length = (packet[0] & 0x0F) * 4
    icmp = packet[header_length:]
    if len(icmp) < 8 or icmp[0] != ICMP_ECHO_REPLY:
        return None
    _, _, _, identifier, sequence = struct.unpack("!BBHHH", icmp[:8])
    return identifier, sequence


class IcmpProber:
    """Sends echo requests from ``source`` on ``device`` to ``target``; reports replies by sequence."""

    def __init__(
        self,
        device: str,
        source: str,
        target: str,
        on_answer: Callable[[int], None],
    ) -> None:
        self.device = device
        self.source = source
        self.target = target
        self.on_answer = on_answer
        self.identifier = os.getpid() & 0xFFFF ^ (hash(device) & 0xFFFF)
        self._sequence = 0
        self._sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.device.encode())
            sock.bind((self.source, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def send(self) -> int:
        """Send one probe; returns its key (sequence number) for the tracker."""
        assert self._sock is not None, "open() first"
        self._sequence = (self._sequence + 1) & 0xFFFF
        try:
            self._sock.sendto(echo_request(self.identifier, self._sequence), (self.target, 0))
        except OSError as exc:  # no route / link down: the tracker counts it lost by timeout
            log.debug("probe %s -> %s: %s", self.device, self.target, exc)
        return self._sequence

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                packet = self._sock.recv(2048)
            except BlockingIOError:
                return
            except OSError:
                return
            parsed = parse_echo_reply(packet)
            if parsed is not None and parsed[0] == self.identifier:
                self.on_answer(parsed[1])

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
