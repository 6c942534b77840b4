"""tshark (Wireshark's dissectors) as an independent oracle for everything we encode.

The test writes a pcap by hand (pcap file format, Ethernet, IPv4, UDP to port
434 or ICMP, all lengths and checksums computed here) holding every message
and extension kind the codec produces, runs ``tshark -T fields`` over it and
compares, field by field, what tshark decoded with the values we encoded.
The expected side is always read from the dataclasses that went into
``encode``, never typed in twice.

tshark does not check authenticators; those are checked against stdlib hmac
in the auth tests.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import get_args

import pytest

from router.mip.advert import (
    AdvertisementChallenge,
    AdvertisementCode,
    AdvertisementExtension,
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentAdvertisement,
    PrefixLengths,
    RouterAddress,
    encode_icmp,
)
from router.mip.extensions import (
    EncapsulatingDeliveryStyle,
    Extension,
    ExtensionType,
    ForeignHomeAuth,
    GeneralizedAuth,
    MessageString,
    MobileForeignAuth,
    MobileForeignChallenge,
    MobileHomeAuth,
    MobileNetworkAck,
    MobileNetworkAckCode,
    MobileNetworkRequest,
    MobileNodeNAI,
    OneBytePadding,
    RevocationSupport,
    TrustedNetworksConfigured,
    TunnelEncapsulation,
    UDPTunnelReply,
    UDPTunnelRequest,
    UnknownExtension,
)
from router.mip.messages import (
    Message,
    MessageType,
    RegistrationReply,
    RegistrationRequest,
    RegistrationRevocation,
    ReplyCode,
    RequestFlags,
    RevocationAcknowledgement,
    TunnelData,
    encode,
)

pytestmark = pytest.mark.tshark

A = IPv4Address
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01 (RFC 5905)

# ---------------------------------------------------------------------------
# A pcap writer (libpcap format: global header, then per-record header + frame)


def _checksum(data: bytes) -> int:
    # Written again here on purpose: the oracle must not reuse the code under test.
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, protocol: int, payload: bytes, ttl: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, IHL 5 words
        0,
        20 + len(payload),
        0x1234,
        0,
        ttl,
        protocol,
        0,
        A(src).packed,
        A(dst).packed,
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    pseudo = A(src).packed + A(dst).packed + struct.pack("!BBH", 0, 17, length)
    datagram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    checksum = _checksum(pseudo + datagram) or 0xFFFF  # RFC 768: 0 is sent as all ones
    return datagram[:6] + struct.pack("!H", checksum) + datagram[8:]


def _ethernet(ip_packet: bytes) -> bytes:
    return bytes.fromhex("02000000000102000000000208 00".replace(" ", "")) + ip_packet


def write_pcap(path: Path, frames: Sequence[bytes]) -> None:
    with path.open("wb") as out:
        # magic, version 2.4, thiszone, sigfigs, snaplen, linktype 1 = Ethernet
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for number, frame in enumerate(frames):
            out.write(struct.pack("<IIII", 1_795_000_000 + number, 0, len(frame), len(frame)))
            out.write(frame)


# ---------------------------------------------------------------------------
# What goes into the capture

IDENT_REQUEST = ((1_795_000_000 + NTP_UNIX_OFFSET) << 32) | 0x12345678
IDENT_SECOND = ((1_795_000_100 + NTP_UNIX_OFFSET) << 32) | 0x80000000

REQUEST = RegistrationRequest(
    flags=RequestFlags.D | RequestFlags.T,
    lifetime=600,
    home_address=A("10.10.0.50"),
    home_agent=A("10.10.0.1"),
    care_of_address=A("100.64.0.7"),
    identification=IDENT_REQUEST,
    extensions=(
        MobileNodeNAI("mr@example.net"),
        MobileNetworkRequest(IPv4Network("10.1.1.0/24")),
        MobileNetworkRequest(IPv4Network("10.1.2.0/23")),
        UDPTunnelRequest(force=True, encapsulation=TunnelEncapsulation.IP_IN_IP),
        RevocationSupport(inform=True, timestamp=0x5F5E1000),
        MobileHomeAuth(spi=256, authenticator=bytes.fromhex("00112233445566778899aabbccddeeff")),
    ),
)
# As relayed by a foreign agent: challenge, MN-FA, generalized (long format), FA-HA.
RELAYED_REQUEST = RegistrationRequest(
    flags=RequestFlags.S | RequestFlags.B | RequestFlags.M | RequestFlags.G | RequestFlags.T,
    lifetime=0xFFFF,
    home_address=A("0.0.0.0"),
    home_agent=A("192.0.2.1"),
    care_of_address=A("198.51.100.9"),
    identification=IDENT_SECOND,
    extensions=(
        MobileNodeNAI("outer@example.net"),
        MobileHomeAuth(257, bytes(range(16))),
        EncapsulatingDeliveryStyle(),
        # RFC 3519 3.1: R = the registration goes through a foreign agent; GRE inside UDP.
        UDPTunnelRequest(registration_through_fa=True, encapsulation=TunnelEncapsulation.GRE),
        MobileForeignChallenge(bytes.fromhex("a1b2c3d4")),
        GeneralizedAuth(1, 0x1000, bytes(range(100, 116))),
        MobileForeignAuth(0x2000, bytes(range(32, 48))),
        ForeignHomeAuth(0x3000, bytes(range(64, 80))),
        # Something a foreign agent appended that we do not understand (skippable, 128-255):
        # re-encoded byte for byte as TLV (RFC 5944 1.9).
        UnknownExtension(200, bytes.fromhex("c0ffee")),
    ),
)
REPLY = RegistrationReply(
    code=ReplyCode.REGISTRATION_ACCEPTED,
    lifetime=300,
    home_address=A("10.10.0.50"),
    home_agent=A("10.10.0.1"),
    identification=IDENT_REQUEST,
    extensions=(
        MobileNetworkAck(MobileNetworkAckCode.SUCCESS, IPv4Network("10.1.1.0/24")),
        MobileNetworkAck(MobileNetworkAckCode.SUCCESS, IPv4Network("10.1.4.0/22"), implicit=True),
        UDPTunnelReply(code=0, forced=True, keepalive_interval=25),
        MessageString("welcome to the corporate network"),
        TrustedNetworksConfigured(),
        RevocationSupport(inform=False, timestamp=0x5F5E1001),
        MobileHomeAuth(256, bytes.fromhex("ffeeddccbbaa99887766554433221100")),
    ),
)
DENIAL = RegistrationReply(
    code=ReplyCode.HA_MOBNET_ERROR,
    lifetime=0,
    home_address=A("10.10.0.50"),
    home_agent=A("10.10.0.1"),
    identification=IDENT_SECOND,
    extensions=(
        MobileNetworkAck(MobileNetworkAckCode.MOBNET_UNAUTHORIZED, IPv4Network("10.9.0.0/16")),
        UDPTunnelReply(code=64, forced=False, keepalive_interval=0),
        MobileHomeAuth(256, bytes(16)),
    ),
)
REVOCATION = RegistrationRevocation(
    home_address=A("10.10.0.50"),
    home_domain_address=A("10.10.0.1"),
    foreign_domain_address=A("198.51.100.7"),
    revocation_identifier=0x5F5E2000,
    sent_by_home_agent=True,
    inform=True,
    extensions=(MobileHomeAuth(256, bytes(range(16))),),
)
REVOCATION_ACK = RevocationAcknowledgement(
    home_address=A("10.10.0.50"),
    revocation_identifier=0x5F5E2000,
    inform=True,
    extensions=(ForeignHomeAuth(0x3000, bytes(range(16))),),
)
# A foreign agent revoking (A = 0) and asking whether to inform (I = 1): A and I differ, so
# a swapped bit position cannot hide behind the all-ones flags of REVOCATION above.
REVOCATION_BY_FOREIGN_AGENT = RegistrationRevocation(
    home_address=A("10.10.0.50"),
    home_domain_address=A("10.10.0.1"),
    foreign_domain_address=A("198.51.100.7"),
    revocation_identifier=0x5F5E2001,
    sent_by_home_agent=False,
    inform=True,
    extensions=(ForeignHomeAuth(0x3000, bytes(range(16, 32))),),
)
REVOCATION_ACK_NO_INFORM = RevocationAcknowledgement(
    home_address=A("10.10.0.50"),
    revocation_identifier=0x5F5E2001,
    inform=False,
    extensions=(MobileHomeAuth(256, bytes(range(48, 64))),),
)
# The two bits RFC 5944 3.3 says are "sent as zero, ignored on reception" (r, x): the codec
# keeps every flag bit as received, so their positions are checked against tshark too.
RESERVED_BITS_REQUEST = RegistrationRequest(
    flags=RequestFlags.r | RequestFlags.x | RequestFlags.D,
    lifetime=0,
    home_address=A("10.10.0.50"),
    home_agent=A("10.10.0.1"),
    care_of_address=A("10.10.0.50"),
    identification=IDENT_SECOND + 1,
    extensions=(MobileHomeAuth(256, bytes(range(80, 96))),),
)
INNER_SOURCE, INNER_DESTINATION = "10.1.1.10", "10.20.0.10"
TUNNEL = TunnelData(
    next_header=4, payload=bytes(_ipv4(INNER_SOURCE, INNER_DESTINATION, 17, b"", 64))
)
ADVERTISEMENT = AgentAdvertisement(
    lifetime=1800,
    router_addresses=(RouterAddress(A("192.0.2.1"), -1), RouterAddress(A("192.0.2.3"), 7)),
    extensions=(
        MobilityAgentAdvertisement(
            sequence_number=257,
            registration_lifetime=600,
            flags=AdvertisementFlags.H
            | AdvertisementFlags.F
            | AdvertisementFlags.R
            | AdvertisementFlags.T
            | AdvertisementFlags.U
            | AdvertisementFlags.X,
            care_of_addresses=(A("192.0.2.1"), A("192.0.2.2")),
        ),
        PrefixLengths((24, 25)),
        AdvertisementChallenge(bytes.fromhex("0badc0de")),
    ),
    code=AdvertisementCode.DOES_NOT_ROUTE_COMMON_TRAFFIC,
)
HOME_ONLY_ADVERTISEMENT = AgentAdvertisement(
    lifetime=30,
    extensions=(
        MobilityAgentAdvertisement(
            0,
            0xFFFF,
            AdvertisementFlags.H
            | AdvertisementFlags.G
            | AdvertisementFlags.B
            | AdvertisementFlags.M
            # r is "sent as zero, ignored on reception" and I (regional registration) has
            # no tshark field: both set here only to check where the bits land.
            | AdvertisementFlags.r
            | AdvertisementFlags.I,
        ),
        OneBytePadding(),
    ),
)
SOLICITATION = AgentSolicitation()

UDP_MESSAGES: list[tuple[str, str, int, int, Message]] = [
    # (src, dst, sport, dport, message)
    ("100.64.0.7", "10.10.0.1", 50000, 434, REQUEST),
    ("198.51.100.9", "192.0.2.1", 434, 434, RELAYED_REQUEST),
    ("10.10.0.1", "100.64.0.7", 434, 50000, REPLY),
    ("10.10.0.1", "100.64.0.7", 434, 50000, DENIAL),
    ("10.10.0.1", "198.51.100.7", 40000, 434, REVOCATION),
    ("198.51.100.7", "10.10.0.1", 434, 40000, REVOCATION_ACK),
    ("10.10.0.1", "100.64.0.7", 434, 50000, TUNNEL),
    ("198.51.100.7", "10.10.0.1", 40001, 434, REVOCATION_BY_FOREIGN_AGENT),
    ("10.10.0.1", "198.51.100.7", 434, 40001, REVOCATION_ACK_NO_INFORM),
    ("10.10.0.50", "10.10.0.1", 50001, 434, RESERVED_BITS_REQUEST),
]
# Frame indexes (0-based) of each kind, so the checks below cannot miss a frame.
REQUEST_FRAMES = [0, 1, 9]
REPLY_FRAMES = [2, 3]
REVOCATION_FRAMES = [4, 7]
REVOCATION_ACK_FRAMES = [5, 8]
TUNNEL_FRAMES = [6]
ICMP_MESSAGES: list[tuple[str, str, AgentAdvertisement | AgentSolicitation]] = [
    ("192.0.2.1", "224.0.0.1", ADVERTISEMENT),
    ("192.0.2.1", "255.255.255.255", HOME_ONLY_ADVERTISEMENT),
    ("0.0.0.0", "224.0.0.2", SOLICITATION),
]

FIELDS = [
    "frame.number",
    "_ws.malformed",
    "ip.src",
    "ip.dst",
    "ip.checksum.status",
    "udp.checksum.status",
    "icmp.checksum.status",
    # Mobile IP fixed headers
    "mip.type",
    "mip.flags",
    "mip.s",
    "mip.b",
    "mip.d",
    "mip.m",
    "mip.g",
    "mip.t",
    "mip.v",  # tshark's name (RFC 2002's V bit) for RFC 5944's r bit
    "mip.x",
    "mip.code",
    "mip.life",
    "mip.homeaddr",
    "mip.haaddr",
    "mip.coa",
    "mip.ident",
    "mip.rev.reserved",
    "mip.rev.reserved2",
    "mip.rev.a",
    "mip.rev.i",
    "mip.rev.hda",
    "mip.rev.fda",
    "mip.revid",
    "mip.ack.reserved",
    "mip.ack.reserved2",
    "mip.ack.i",
    "mip.nattt.nexthdr",
    "mip.nattt.reserved",
    # extensions
    "mip.ext.type",
    "mip.ext.len",
    "mip.ext.auth.subtype",
    "mip.auth.spi",
    "mip.auth.auth",
    "mip.extension",  # the data of an extension tshark does not know
    "mip.nai",
    "mip.ext.rev.i",
    "mip.ext.rev.tstamp",
    "mip.ext.rev.reserved",
    "mip.ext.msgstr.subtype",
    "mip.ext.msgstr.text",
    "mip.ext.utrq.subtype",
    "mip.ext.utrq.f",
    "mip.ext.utrq.r",
    "mip.ext.utrq.encaptype",
    "mip.ext.utrq.reserved1",
    "mip.ext.utrq.reserved2",
    "mip.ext.utrq.reserved3",
    "mip.ext.utrp.subtype",
    "mip.ext.utrp.code",
    "mip.ext.utrp.f",
    "mip.ext.utrp.keepalive",
    "mip.ext.utrp.reserved",
    "mip.ext.mne.subtype",
    "mip.ext.mne.code",
    "mip.ext.mne.prefix_length",
    "mip.ext.mne.prefix",
    "mip.ext.mne.reserved",
    # ICMP agent discovery
    "icmp.type",
    "icmp.code",
    "icmp.num_addrs",
    "icmp.addr_entry_size",
    "icmp.lifetime",
    "icmp.router_address",
    "icmp.pref_level",
    "icmp.mip.type",
    "icmp.mip.length",
    "icmp.mip.seq",
    "icmp.mip.life",
    "icmp.mip.flags",
    "icmp.mip.r",
    "icmp.mip.b",
    "icmp.mip.h",
    "icmp.mip.f",
    "icmp.mip.m",
    "icmp.mip.g",
    "icmp.mip.v",  # tshark's name (RFC 2002's VJ bit) for RFC 5944's r bit
    "icmp.mip.rt",
    "icmp.mip.u",
    "icmp.mip.x",
    "icmp.mip.reserved",
    "icmp.mip.coa",
    "icmp.mip.prefixlength",
    "icmp.mip.challenge",
]

# ---------------------------------------------------------------------------
# Running tshark


@dataclass
class Row:
    """One frame as tshark decoded it: field name -> list of occurrences."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def ints(self, name: str) -> list[int]:
        return [int(v, 0) for v in self.get(name)]

    def bools(self, name: str) -> list[bool]:
        # tshark 4.0 prints booleans as 1/0, later versions as True/False.
        return [v in ("1", "True") for v in self.get(name)]


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (`make test` installs it: apt-get install tshark)")
    frames = [
        _ethernet(_ipv4(src, dst, 17, _udp(src, dst, sport, dport, encode(message)), 64))
        for src, dst, sport, dport, message in UDP_MESSAGES
    ]
    # RFC 5944 sections 2.1, 2.2: agent advertisements and solicitations use TTL 1.
    frames += [
        _ethernet(_ipv4(src, dst, 1, encode_icmp(message), 1))
        for src, dst, message in ICMP_MESSAGES
    ]
    pcap = tmp_path_factory.mktemp("tshark") / "mip.pcap"
    write_pcap(pcap, frames)
    command = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=/t"]
    command += ["-E", "aggregator=|", "-E", "occurrence=a"]
    command += ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    for name in FIELDS:
        command += ["-e", name]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = []
    for line in result.stdout.splitlines():
        cells = line.split("\t")
        assert len(cells) == len(FIELDS), line
        rows.append(
            Row({name: cell.split("|") for name, cell in zip(FIELDS, cells, strict=True) if cell})
        )
    assert len(rows) == len(frames)
    return rows


def _row_for(rows: list[Row], index: int) -> Row:
    row = rows[index]
    assert row.ints("frame.number") == [index + 1]
    return row


def _ntp_text(identification: int) -> tuple[int, int]:
    """(Unix seconds, nanoseconds) that tshark should show for a 64-bit NTP timestamp."""
    seconds = (identification >> 32) - NTP_UNIX_OFFSET
    nanoseconds = ((identification & 0xFFFF_FFFF) * 10**9) >> 32
    return seconds, nanoseconds


def _parse_tshark_time(text: str) -> tuple[int, int]:
    # e.g. "Nov 17, 2026 16:53:20.071111110 UTC"
    stamp, _, rest = text.partition(".")
    fraction = rest.split(" ")[0]
    when = datetime.strptime(stamp, "%b %d, %Y %H:%M:%S").replace(tzinfo=UTC)
    return int(when.timestamp()), int(fraction.ljust(9, "0")[:9])


# ---------------------------------------------------------------------------
# Checks


def test_the_capture_holds_every_kind_we_encode() -> None:
    # A guard on the test data itself: a message or extension kind added to the codec
    # but not to the capture fails here instead of going unchecked.
    messages = [message for *_, message in UDP_MESSAGES]
    assert {type(m) for m in messages} == set(get_args(Message))
    assert {encode(m)[0] for m in messages} == set(MessageType)
    extensions = {type(e) for m in messages for e in m.extensions}
    # One-byte Padding (type 0) is valid in control messages (RFC 5944 1.8), but tshark
    # 4.0's Mobile IP dissector calls it malformed; it is checked in advertisements only.
    assert extensions == set(get_args(Extension)) - {OneBytePadding}
    adverts = [m for *_, m in ICMP_MESSAGES if isinstance(m, AgentAdvertisement)]
    # tshark 4.0's ICMP dissector calls any unknown advertisement extension malformed, so
    # UnknownExtension is left to the vectors and the Hypothesis round trips there.
    assert {type(e) for a in adverts for e in a.extensions} == set(
        get_args(AdvertisementExtension)
    ) - {UnknownExtension}
    assert any(isinstance(m, AgentSolicitation) for *_, m in ICMP_MESSAGES)
    # Each flag bit is set in some frame, so tshark's per-bit field shows where it landed.
    requests = [m for m in messages if isinstance(m, RegistrationRequest)]
    for bit in RequestFlags:
        assert any(r.flags & bit for r in requests), bit
    mobility = [a.mobility for a in adverts if a.mobility is not None]
    for advert_bit in AdvertisementFlags:
        assert any(m.flags & advert_bit for m in mobility), advert_bit
    revocations = [m for m in messages if isinstance(m, RegistrationRevocation)]
    assert {(r.sent_by_home_agent, r.inform) for r in revocations} >= {(True, True), (False, True)}
    assert {a.inform for a in messages if isinstance(a, RevocationAcknowledgement)} == {
        True,
        False,
    }
    tunnel_requests = [e for m in messages for e in m.extensions if isinstance(e, UDPTunnelRequest)]
    assert {e.force for e in tunnel_requests} == {True, False}
    assert {e.registration_through_fa for e in tunnel_requests} == {True, False}
    frames = REQUEST_FRAMES + REPLY_FRAMES + REVOCATION_FRAMES
    frames += REVOCATION_ACK_FRAMES + TUNNEL_FRAMES
    assert sorted(frames) == list(range(len(UDP_MESSAGES)))


def test_every_frame_is_well_formed_with_good_checksums(decoded: list[Row]) -> None:
    for index, row in enumerate(decoded):
        assert row.get("_ws.malformed") == [], f"frame {index + 1} malformed"
    for index, (src, dst, *_rest) in enumerate(UDP_MESSAGES + ICMP_MESSAGES):
        assert decoded[index].get("ip.src")[0] == src
        assert decoded[index].get("ip.dst")[0] == dst
        # Tunnel data carries an inner IPv4 header too: every one must check out.
        statuses = row.ints("ip.checksum.status")
        assert statuses and set(statuses) == {1}, f"frame {index + 1} IP checksum"
    for index in range(len(UDP_MESSAGES)):
        assert decoded[index].ints("udp.checksum.status") == [1]
    for index in range(len(UDP_MESSAGES), len(decoded)):
        # tshark validates every ICMP checksum: 1 = good. This checks encode_icmp's.
        assert decoded[index].ints("icmp.checksum.status") == [1]


def _expected_auth(extensions: tuple[Extension, ...]) -> tuple[list[int], list[str]]:
    spis, authenticators = [], []
    for extension in extensions:
        if isinstance(
            extension, MobileHomeAuth | MobileForeignAuth | ForeignHomeAuth | GeneralizedAuth
        ):
            spis.append(extension.spi)
            authenticators.append(extension.authenticator.hex())
    return spis, authenticators


def _extension_length(extension: Extension) -> int:
    """The Length each RFC prescribes, worked out from the value (not from our bytes)."""
    match extension:
        case MobileHomeAuth() | MobileForeignAuth() | ForeignHomeAuth() | GeneralizedAuth():
            return 4 + len(extension.authenticator)  # SPI + authenticator (RFC 5944 3.5.1)
        case EncapsulatingDeliveryStyle():
            return 0  # RFC 3024 3.3
        case MobileNodeNAI():
            return len(extension.nai.encode())  # RFC 2794 2
        case MobileForeignChallenge():
            return len(extension.challenge)  # RFC 4721 4
        case RevocationSupport() | UDPTunnelRequest() | UDPTunnelReply() | MobileNetworkRequest():
            return 6  # RFC 3543 3.2, RFC 3519 3.1 / 3.2, RFC 5177 4.1
        case MessageString():
            return 1 + len(extension.text.encode())  # short format: Sub-Type + text
        case MobileNetworkAck():
            return 8  # RFC 5177 4.2
        case TrustedNetworksConfigured():
            return 2  # RFC 5265 3.4: Sub-Type + Reserved
        case UnknownExtension():
            return len(extension.data)
    raise AssertionError(f"no Length rule for {extension!r}")


def _undissected_data(extension: Extension) -> bytes | None:
    """The Data bytes of an extension tshark prints raw, from the RFC layouts; else None."""
    match extension:
        case EncapsulatingDeliveryStyle():
            return b""  # RFC 3024 3.3: no data
        case MobileForeignChallenge():
            return extension.challenge  # RFC 4721 4
        case TrustedNetworksConfigured():
            return b"\x00\x00"  # RFC 5265 3.4: Sub-Type 0, Reserved 0
        case UnknownExtension():
            return extension.data
    return None


def _extension_type(extension: Extension) -> int:
    if isinstance(extension, UnknownExtension):
        return extension.type
    return {
        MobileHomeAuth: ExtensionType.MOBILE_HOME_AUTHENTICATION,
        MobileForeignAuth: ExtensionType.MOBILE_FOREIGN_AUTHENTICATION,
        ForeignHomeAuth: ExtensionType.FOREIGN_HOME_AUTHENTICATION,
        GeneralizedAuth: ExtensionType.GENERALIZED_AUTHENTICATION,
        EncapsulatingDeliveryStyle: ExtensionType.ENCAPSULATING_DELIVERY_STYLE,
        MobileNodeNAI: ExtensionType.MOBILE_NODE_NAI,
        MobileForeignChallenge: ExtensionType.MOBILE_FOREIGN_CHALLENGE,
        RevocationSupport: ExtensionType.REVOCATION_SUPPORT,
        UDPTunnelRequest: ExtensionType.UDP_TUNNEL_REQUEST,
        UDPTunnelReply: ExtensionType.UDP_TUNNEL_REPLY,
        MessageString: ExtensionType.MESSAGE_STRING,
        MobileNetworkRequest: ExtensionType.MOBILE_NETWORK,
        MobileNetworkAck: ExtensionType.MOBILE_NETWORK,
        TrustedNetworksConfigured: ExtensionType.TRUSTED_NETWORKS_CONFIGURED,
    }[type(extension)]


def _check_extensions(row: Row, extensions: tuple[Extension, ...]) -> None:
    assert row.ints("mip.ext.type") == [_extension_type(e) for e in extensions]
    spis, authenticators = _expected_auth(extensions)
    assert row.ints("mip.auth.spi") == spis
    assert row.get("mip.auth.auth") == authenticators
    assert row.ints("mip.ext.auth.subtype") == [
        e.subtype for e in extensions if isinstance(e, GeneralizedAuth)
    ]
    # Every Length (the 16-bit one of the long format too, RFC 5944 1.10).
    assert row.ints("mip.ext.len") == [_extension_length(e) for e in extensions]
    # tshark 4.0 shows the raw data of the types it does not dissect (130, 132, 149 and
    # unknown ones); an empty one prints as <MISSING>.
    assert row.get("mip.extension") == [
        data.hex() or "<MISSING>" for data in map(_undissected_data, extensions) if data is not None
    ]
    assert row.get("mip.nai") == [e.nai for e in extensions if isinstance(e, MobileNodeNAI)]
    revocation = [e for e in extensions if isinstance(e, RevocationSupport)]
    assert row.bools("mip.ext.rev.i") == [e.inform for e in revocation]
    assert row.ints("mip.ext.rev.tstamp") == [e.timestamp for e in revocation]
    assert row.ints("mip.ext.rev.reserved") == [0] * len(revocation)
    strings = [e for e in extensions if isinstance(e, MessageString)]
    assert row.ints("mip.ext.msgstr.subtype") == [1] * len(strings)
    assert row.get("mip.ext.msgstr.text") == [e.text for e in strings]
    tunnel_requests = [e for e in extensions if isinstance(e, UDPTunnelRequest)]
    assert row.ints("mip.ext.utrq.subtype") == [0] * len(tunnel_requests)
    assert row.bools("mip.ext.utrq.f") == [e.force for e in tunnel_requests]
    assert row.bools("mip.ext.utrq.r") == [e.registration_through_fa for e in tunnel_requests]
    assert row.ints("mip.ext.utrq.encaptype") == [e.encapsulation for e in tunnel_requests]
    for reserved in ("reserved1", "reserved2", "reserved3"):
        assert row.ints(f"mip.ext.utrq.{reserved}") == [0] * len(tunnel_requests)
    tunnel_replies = [e for e in extensions if isinstance(e, UDPTunnelReply)]
    assert row.ints("mip.ext.utrp.subtype") == [0] * len(tunnel_replies)
    assert row.ints("mip.ext.utrp.code") == [e.code for e in tunnel_replies]
    assert row.bools("mip.ext.utrp.f") == [e.forced for e in tunnel_replies]
    assert row.ints("mip.ext.utrp.keepalive") == [e.keepalive_interval for e in tunnel_replies]
    assert row.ints("mip.ext.utrp.reserved") == [0] * len(tunnel_replies)
    networks = [e for e in extensions if isinstance(e, MobileNetworkRequest | MobileNetworkAck)]
    assert row.ints("mip.ext.mne.subtype") == [
        0 if isinstance(e, MobileNetworkRequest) else (2 if e.implicit else 1) for e in networks
    ]
    assert row.ints("mip.ext.mne.code") == [
        e.code for e in networks if isinstance(e, MobileNetworkAck)
    ]
    assert row.ints("mip.ext.mne.prefix_length") == [e.prefix.prefixlen for e in networks]
    assert row.get("mip.ext.mne.prefix") == [str(e.prefix.network_address) for e in networks]
    acks = [e for e in networks if isinstance(e, MobileNetworkAck)]
    assert row.ints("mip.ext.mne.reserved") == [0] * len(acks)


@pytest.mark.parametrize("index", REQUEST_FRAMES, ids=["request", "relayed", "reserved-bits"])
def test_registration_requests(decoded: list[Row], index: int) -> None:
    request = UDP_MESSAGES[index][4]
    assert isinstance(request, RegistrationRequest)
    row = _row_for(decoded, index)
    assert row.ints("mip.type") == [1]
    assert row.ints("mip.flags") == [int(request.flags)]
    # tshark's field for each bit of S B D M G r T x (it calls r "v", RFC 2002's V bit).
    for ours, theirs in zip("SBDMGrTx", "sbdmgvtx", strict=True):
        assert row.bools(f"mip.{theirs}") == [bool(request.flags & RequestFlags[ours])], ours
    assert row.ints("mip.life") == [request.lifetime]
    assert row.get("mip.homeaddr") == [str(request.home_address)]
    assert row.get("mip.haaddr") == [str(request.home_agent)]
    assert row.get("mip.coa") == [str(request.care_of_address)]
    seconds, nanoseconds = _ntp_text(request.identification)
    shown_seconds, shown_nanoseconds = _parse_tshark_time(row.get("mip.ident")[0])
    assert shown_seconds == seconds
    assert abs(shown_nanoseconds - nanoseconds) <= 1  # rounding of the NTP fraction
    _check_extensions(row, request.extensions)


@pytest.mark.parametrize("index", REPLY_FRAMES, ids=["reply", "denial"])
def test_registration_replies(decoded: list[Row], index: int) -> None:
    reply = UDP_MESSAGES[index][4]
    assert isinstance(reply, RegistrationReply)
    row = _row_for(decoded, index)
    assert row.ints("mip.type") == [3]
    assert row.ints("mip.code") == [reply.code]
    assert row.ints("mip.life") == [reply.lifetime]
    assert row.get("mip.homeaddr") == [str(reply.home_address)]
    assert row.get("mip.haaddr") == [str(reply.home_agent)]
    seconds, nanoseconds = _ntp_text(reply.identification)
    shown_seconds, shown_nanoseconds = _parse_tshark_time(row.get("mip.ident")[0])
    assert shown_seconds == seconds
    assert abs(shown_nanoseconds - nanoseconds) <= 1
    _check_extensions(row, reply.extensions)


@pytest.mark.parametrize("index", REVOCATION_FRAMES, ids=["by-home-agent", "by-foreign-agent"])
def test_registration_revocation(decoded: list[Row], index: int) -> None:
    revocation = UDP_MESSAGES[index][4]
    assert isinstance(revocation, RegistrationRevocation)
    row = _row_for(decoded, index)
    assert row.ints("mip.type") == [7]
    assert row.bools("mip.rev.a") == [revocation.sent_by_home_agent]
    assert row.bools("mip.rev.i") == [revocation.inform]
    assert row.ints("mip.rev.reserved") == [0]  # RFC 3543 3.3: sent as 0
    assert row.ints("mip.rev.reserved2") == [0]
    assert row.get("mip.homeaddr") == [str(revocation.home_address)]
    assert row.get("mip.rev.hda") == [str(revocation.home_domain_address)]
    assert row.get("mip.rev.fda") == [str(revocation.foreign_domain_address)]
    assert row.ints("mip.revid") == [revocation.revocation_identifier]
    _check_extensions(row, revocation.extensions)


@pytest.mark.parametrize("index", REVOCATION_ACK_FRAMES, ids=["inform", "no-inform"])
def test_revocation_acknowledgement(decoded: list[Row], index: int) -> None:
    acknowledgement = UDP_MESSAGES[index][4]
    assert isinstance(acknowledgement, RevocationAcknowledgement)
    row = _row_for(decoded, index)
    assert row.ints("mip.type") == [15]
    assert row.bools("mip.ack.i") == [acknowledgement.inform]
    assert row.ints("mip.ack.reserved") == [0]  # RFC 3543 3.4: sent as 0
    assert row.ints("mip.ack.reserved2") == [0]
    assert row.get("mip.homeaddr") == [str(acknowledgement.home_address)]
    assert row.ints("mip.revid") == [acknowledgement.revocation_identifier]
    _check_extensions(row, acknowledgement.extensions)


@pytest.mark.parametrize("index", TUNNEL_FRAMES)
def test_tunnel_data(decoded: list[Row], index: int) -> None:
    tunnel = UDP_MESSAGES[index][4]
    assert isinstance(tunnel, TunnelData)
    row = _row_for(decoded, index)
    assert row.ints("mip.type") == [4]
    assert row.ints("mip.nattt.nexthdr") == [tunnel.next_header]
    assert row.ints("mip.nattt.reserved") == [0]  # RFC 3519 3.3
    # tshark hands the payload to its IPv4 dissector: the tunnelled packet is intact.
    assert row.get("ip.src") == [UDP_MESSAGES[index][0], INNER_SOURCE]
    assert row.get("ip.dst") == [UDP_MESSAGES[index][1], INNER_DESTINATION]


def _advert_flag_names() -> list[tuple[str, AdvertisementFlags]]:
    # tshark's field names for R B H F M G r T U X (tshark 4.0 has no field for I; it
    # calls r "v", RFC 2002's VJ compression bit).
    flags = AdvertisementFlags
    return [
        ("r", flags.R),
        ("b", flags.B),
        ("h", flags.H),
        ("f", flags.F),
        ("m", flags.M),
        ("g", flags.G),
        ("v", flags.r),
        ("rt", flags.T),
        ("u", flags.U),
        ("x", flags.X),
    ]


@pytest.mark.parametrize("offset", [0, 1], ids=["full", "home-only"])
def test_agent_advertisements(decoded: list[Row], offset: int) -> None:
    advert = ICMP_MESSAGES[offset][2]
    assert isinstance(advert, AgentAdvertisement)
    row = _row_for(decoded, len(UDP_MESSAGES) + offset)
    assert row.ints("icmp.type") == [9]
    assert row.ints("icmp.code") == [advert.code]
    assert row.ints("icmp.num_addrs") == [len(advert.router_addresses)]
    assert row.ints("icmp.addr_entry_size") == [2]
    assert row.ints("icmp.lifetime") == [advert.lifetime]
    assert row.get("icmp.router_address") == [str(r.address) for r in advert.router_addresses]
    assert row.ints("icmp.pref_level") == [r.preference for r in advert.router_addresses]
    mobility = advert.mobility
    assert mobility is not None
    # tshark lists the One-byte Padding's type (0) too, in order.
    known_types = {
        MobilityAgentAdvertisement: 16,
        PrefixLengths: 19,
        AdvertisementChallenge: 24,
        OneBytePadding: 0,
    }
    expected_types = [
        e.type if isinstance(e, UnknownExtension) else known_types[type(e)]
        for e in advert.extensions
    ]
    assert row.ints("icmp.mip.type") == expected_types
    assert row.ints("icmp.mip.seq") == [mobility.sequence_number]
    assert row.ints("icmp.mip.life") == [mobility.registration_lifetime]
    assert row.ints("icmp.mip.flags") == [int(mobility.flags)]
    for name, bit in _advert_flag_names():
        assert row.bools(f"icmp.mip.{name}") == [bool(mobility.flags & bit)], name
    # What tshark shows as "Reserved" is the 6 bits after X: I (RFC 5944 2.1.1, the
    # eleventh flag, 0x0020) and the reserved bits we send as zero.
    i_bit = 0x0020 if mobility.flags & AdvertisementFlags.I else 0
    assert row.ints("icmp.mip.reserved") == [i_bit]
    # Length 6 + 4 N for extension 16, N for 19 (RFC 5944 2.1.1, 2.1.2), the data otherwise;
    # One-byte Padding has no Length at all (2.1.3).
    expected_lengths = []
    for extension in advert.extensions:
        match extension:
            case MobilityAgentAdvertisement():
                expected_lengths.append(6 + 4 * len(extension.care_of_addresses))
            case PrefixLengths():
                expected_lengths.append(len(extension.prefix_lengths))
            case AdvertisementChallenge():
                expected_lengths.append(len(extension.challenge))
            case UnknownExtension():
                expected_lengths.append(len(extension.data))
    assert row.ints("icmp.mip.length") == expected_lengths
    assert row.get("icmp.mip.coa") == [str(a) for a in mobility.care_of_addresses]
    assert row.ints("icmp.mip.prefixlength") == list(advert.prefix_lengths or ())
    challenges = [
        e.challenge.hex() for e in advert.extensions if isinstance(e, AdvertisementChallenge)
    ]
    assert row.get("icmp.mip.challenge") == challenges


def test_agent_solicitation(decoded: list[Row]) -> None:
    row = _row_for(decoded, len(UDP_MESSAGES) + 2)
    assert row.ints("icmp.type") == [10]
    assert row.ints("icmp.code") == [0]
    assert row.get("icmp.mip.type") == []
