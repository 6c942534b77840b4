"""``python -m router.ha --control-only`` on the wire, driven by an independent client.

The client does not use our codecs: scapy builds the fixed Registration Request header
(``scapy.layers.mobileip``), extension bytes are packed here from the RFC diagrams, the
authenticator is stdlib ``hmac`` over the RFC 5944 §3.5.1 span, and replies are read with
scapy and checked the same way. Loopback only, unprivileged port, no root.
"""

from __future__ import annotations

import hmac
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SPI = 256
HOME_AGENT = "127.0.0.1"
HOME_ADDRESS = "127.0.0.50"
NTP_UNIX_OFFSET = 2_208_988_800


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOME_AGENT, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def home_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    tmp = tmp_path_factory.mktemp("ha")
    port = free_udp_port()
    config = tmp / "ha.toml"
    config.write_text(
        f"""
[home_agent]
address = "{HOME_AGENT}"
home_network = "127.0.0.0/8"
max_lifetime = 300
port = {port}
state_dir = "{tmp}"

[[mobile_node]]
home_address = "{HOME_ADDRESS}"
spi = {SPI}
key = "hex:{KEY.hex()}"
mobile_networks = ["10.1.1.0/24"]
"""
    )
    log = tmp / "ha.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "router.ha", "--control-only", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        deadline = time.monotonic() + 60
        while "listening" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "home agent did not start: " + log.read_text()
            time.sleep(0.05)
        yield port, log
    finally:
        process.terminate()
        process.wait(10)
    assert KEY.hex() not in log.read_text(), "the key leaked into the log"


_last_identification = 0


def identification_now(offset_seconds: int = 0) -> int:
    """RFC 5944 §5.7.1: a 64-bit NTP timestamp, greater than any previous one we sent."""
    global _last_identification
    value = int((time.time() + NTP_UNIX_OFFSET + offset_seconds) * 2**32)
    if offset_seconds == 0:
        value = max(value, _last_identification + 1)
        _last_identification = value
    return value


def build_request(
    identification: int,
    *,
    home_address: str = HOME_ADDRESS,
    key: bytes = KEY,
    spi: int = SPI,
    lifetime: int = 120,
    prefixes: tuple[tuple[str, int], ...] = (("10.1.1.0", 24),),
    extra: bytes = b"",
) -> bytes:
    header = bytes(
        MobileIP(type=1)
        / MobileIPRRQ(
            flags=0x02,  # T: reverse tunnelling (RFC 3024); scapy's flags byte S B D M G r T x
            lifetime=lifetime,
            homeaddr=home_address,
            haaddr=HOME_AGENT,
            coaddr="192.0.2.77",
            id=identification,
        )
    )
    assert header[0] == 1 and len(header) == 24
    body = header
    for prefix, length in prefixes:
        # RFC 5177 §4.1 Mobile Network Request: type 148, length 6, sub-type 0, prefix length, prefix.
        body += struct.pack("!BBBB", 148, 6, 0, length) + socket.inet_aton(prefix)
    # RFC 5944 §3.5.2 MN-HA Authentication: type 32, length 4 + 16, SPI; the authenticator
    # covers everything before it (§3.5.1).
    body += extra
    body += struct.pack("!BBI", 32, 20, spi)
    return body + hmac.digest(key, body, "md5")


def exchange(port: int, datagram: bytes, *, expect_reply: bool = True) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5 if expect_reply else 1)
        sock.sendto(datagram, (HOME_AGENT, port))
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            return None
        assert addr == (HOME_AGENT, port)
        return data


def check_reply(
    data: bytes, request_identification: int, home_address: str = HOME_ADDRESS
) -> tuple[MobileIPRRP, list[tuple[int, bytes]]]:
    assert data[0] == 3  # Registration Reply (RFC 5944 §3.4)
    reply = MobileIPRRP(data[1:20])
    assert reply.homeaddr == home_address and reply.haaddr == HOME_AGENT
    # RFC 5944 §5.7.1: the low-order 32 bits are copied from the request.
    assert reply.id & 0xFFFFFFFF == request_identification & 0xFFFFFFFF
    extensions = []
    offset = 20
    while offset < len(data):
        ext_type, length = data[offset], data[offset + 1]
        extensions.append((ext_type, data[offset + 2 : offset + 2 + length]))
        if ext_type == 32:
            spi = struct.unpack("!I", data[offset + 2 : offset + 6])[0]
            assert spi == SPI
            expected = hmac.digest(KEY, data[: offset + 6], "md5")
            assert data[offset + 6 : offset + 2 + length] == expected, "reply authenticator wrong"
            assert offset + 2 + length == len(data), "MN-HA auth must be the last extension here"
        offset += 2 + length
    assert extensions and extensions[-1][0] == 32, "reply is not authenticated"
    return reply, extensions


def test_valid_request_is_accepted_with_nemo_ack(home_agent: tuple[int, Path]) -> None:
    port, log = home_agent
    identification = identification_now()
    data = exchange(port, build_request(identification))
    assert data is not None
    reply, extensions = check_reply(data, identification)
    assert reply.code == 0
    assert 0 < reply.lifetime <= 120
    nemo = [body for kind, body in extensions if kind == 148]
    # RFC 5177 §4.2: sub-type 1 explicit ack, code 0 success, prefix length 24, prefix 10.1.1.0.
    assert nemo == [bytes([1, 0, 24, 0]) + socket.inet_aton("10.1.1.0")]
    deadline = time.monotonic() + 5
    while "binding 127.0.0.50 added" not in log.read_text() and "binding 127.0.0.50 renewed" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_bad_authenticator_is_denied_131(home_agent: tuple[int, Path]) -> None:
    port, log = home_agent
    identification = identification_now()
    data = exchange(port, build_request(identification, key=b"wrong key 16byte"))
    assert data is not None
    reply, _ = check_reply(data, identification)  # signed with the node's real key
    assert reply.code == 131
    deadline = time.monotonic() + 5
    while "denied 131 (mobile node failed authentication)" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_replayed_identification_is_denied_133(home_agent: tuple[int, Path]) -> None:
    port, _ = home_agent
    identification = identification_now()
    request = build_request(identification)
    first = exchange(port, request)
    assert first is not None and check_reply(first, identification)[0].code == 0
    # An older timestamp than the last accepted one is a replay (§5.7.1).
    stale = identification_now(-60)
    data = exchange(port, build_request(stale))
    assert data is not None
    reply, _ = check_reply(data, stale)
    assert reply.code == 133
    # The reply carries the home agent's time in the high 32 bits for resynchronisation.
    assert abs((reply.id >> 32) - (int(time.time()) + NTP_UNIX_OFFSET)) < 30


def test_a_replayed_request_is_denied_133(home_agent: tuple[int, Path]) -> None:
    """The very bytes of an accepted request, sent again after a newer one was accepted: a
    replay (RFC 5944 §5.7), not a retransmission of the current registration (§3.8.2.2)."""
    port, log = home_agent
    old_identification = identification_now()
    old_request = build_request(old_identification)
    first = exchange(port, old_request)
    assert first is not None and check_reply(first, old_identification)[0].code == 0
    newer_identification = identification_now()
    newer = exchange(port, build_request(newer_identification))
    assert newer is not None and check_reply(newer, newer_identification)[0].code == 0
    data = exchange(port, old_request)
    assert data is not None
    reply, _ = check_reply(data, old_identification)
    assert reply.code == 133
    deadline = time.monotonic() + 5
    while "denied 133" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_unknown_home_address_is_denied(home_agent: tuple[int, Path]) -> None:
    port, _ = home_agent
    identification = identification_now()
    data = exchange(port, build_request(identification, home_address="127.0.0.99"))
    assert data is not None
    # Administratively prohibited, signed with the SA the node used: an authentic node that
    # claims a home address this home agent does not serve (RFC 5944 §3.8.3.2).
    reply, _ = check_reply(data, identification, home_address="127.0.0.99")
    assert reply.code == 129


def test_unknown_home_address_without_a_security_association_is_silently_discarded(
        home_agent: tuple[int, Path]) -> None:
    """RFC 5944 §3.8.2.1 a: no Mobility Security Association -> "MUST silently discard" (a
    reply could not even be authenticated); the home agent keeps answering its nodes."""
    port, _ = home_agent
    stranger = build_request(identification_now(), home_address="127.0.0.99", spi=4242, key=b"another key 16 b")
    assert exchange(port, stranger, expect_reply=False) is None
    identification = identification_now()
    data = exchange(port, build_request(identification))
    assert data is not None and check_reply(data, identification)[0].code == 0


def test_unauthorised_prefix_is_denied(home_agent: tuple[int, Path]) -> None:
    port, _ = home_agent
    identification = identification_now()
    data = exchange(port, build_request(identification, prefixes=(("10.9.9.0", 24),)))
    assert data is not None
    reply, extensions = check_reply(data, identification)
    assert reply.code == 147  # RFC 5177: no mobile network prefix accepted
    assert [body[1] for kind, body in extensions if kind == 148] == [2]  # MOBNET_UNAUTHORIZED


def _valid_then(cut: int | None = None, extra: bytes = b"", overrun: bool = False) -> bytes:
    request = build_request(identification_now(), extra=extra)
    if overrun:  # the authentication extension claims more bytes than the datagram holds
        at = len(request) - 22
        request = request[:at] + bytes([32, 200]) + request[at + 2 :]
    return request if cut is None else request[:cut]


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x01",
        b"\x01" + b"\x00" * 23,
        b"\x03" * 40,
        os.urandom(300),
        b"\x01" * 1400,
        _valid_then(cut=-1),  # authenticator one byte short
        _valid_then(cut=24 + 3),  # cut inside the Mobile Network Request
        _valid_then(overrun=True),
        # RFC 5944 §1.8: an unknown extension of type 0-127 -> silently discarded, even signed.
        _valid_then(extra=bytes([99, 2, 0, 0])),
    ],
    ids=["empty", "type-only", "zero-header", "reply-type", "random", "oversized",
         "short-authenticator", "cut-extension", "length-overrun", "unknown-critical-extension"],
)
def test_malformed_requests_do_not_crash_it(home_agent: tuple[int, Path], garbage: bytes) -> None:
    port, _ = home_agent
    assert exchange(port, garbage, expect_reply=False) is None
    identification = identification_now()
    data = exchange(port, build_request(identification))
    assert data is not None and check_reply(data, identification)[0].code == 0
