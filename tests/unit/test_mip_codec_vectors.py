"""Byte vectors written by hand from the RFC field diagrams, checked in both directions.

Each vector lists its bytes field by field; the comment beside a group names
the field and the RFC section whose diagram it comes from.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from router.mip._wire import Reader, Writer
from router.mip.advert import (
    AdvertisementChallenge,
    AdvertisementCode,
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentAdvertisement,
    PrefixLengths,
    RouterAddress,
    decode_icmp,
    encode_icmp,
)
from router.mip.errors import DecodeError, LocalProtocolError
from router.mip.extensions import (
    AUTH_HEADER_LENGTH,
    EncapsulatingDeliveryStyle,
    Extension,
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
    UDPTunnelReplyCode,
    UDPTunnelRequest,
    UnknownExtension,
    find_extension,
    pull_extension,
    push_extension,
)
from router.mip.messages import (
    Message,
    RegistrationReply,
    RegistrationRequest,
    RegistrationRevocation,
    ReplyCode,
    RequestFlags,
    RevocationAcknowledgement,
    TunnelData,
    decode,
    decode_with_offsets,
    encode,
    encode_with_offsets,
)

A = IPv4Address


def h(text: str) -> bytes:
    """Hex with spaces, newlines and '#' comments allowed."""
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex("".join(lines))


AUTHENTICATOR = bytes.fromhex("00112233445566778899aabbccddeeff")

# ---------------------------------------------------------------------------
# Registration Request (RFC 5944 section 3.3) with NAI, NEMO request, MN-HA auth

REQUEST_HEX = """
01                      # Type 1 = Registration Request
a2                      # flags S B D M G r T x = 1 0 1 0 0 0 1 0 -> S, D, T
0258                    # Lifetime 600 s
0a0a0032                # Home Address 10.10.0.50
0a0a0001                # Home Agent 10.10.0.1
64400007                # Care-of Address 100.64.0.7
eb5e7d3d00000001        # Identification (64 bits)
83 0a 6d72406578616d706c65      # NAI ext: Type 131, Length 10, "mr@example" (RFC 2794 section 2)
94 06 00 18 0a010100            # Mobile Network Request: Type 148, Length 6, Sub-Type 0,
                                # Prefix Length 24, Prefix 10.1.1.0 (RFC 5177 section 4.1)
20 14 00000100                  # MN-HA auth: Type 32, Length 4+16, SPI 256 (RFC 5944 3.5.2)
00112233445566778899aabbccddeeff  # Authenticator (16 bytes)
"""
REQUEST = RegistrationRequest(
    flags=RequestFlags.S | RequestFlags.D | RequestFlags.T,
    lifetime=600,
    home_address=A("10.10.0.50"),
    home_agent=A("10.10.0.1"),
    care_of_address=A("100.64.0.7"),
    identification=0xEB5E7D3D_00000001,
    extensions=(
        MobileNodeNAI("mr@example"),
        MobileNetworkRequest(IPv4Network("10.1.1.0/24")),
        MobileHomeAuth(spi=256, authenticator=AUTHENTICATOR),
    ),
)

# ---------------------------------------------------------------------------
# Registration Reply (RFC 5944 section 3.4) with NEMO acks and UDP tunnel reply

REPLY_HEX = """
03                      # Type 3 = Registration Reply
00                      # Code 0 = registration accepted
012c                    # Lifetime 300 s (shorter than requested)
0a0a0032                # Home Address 10.10.0.50
0a0a0001                # Home Agent 10.10.0.1
eb5e7d3d00000001        # Identification
94 08 01 00 18 00 0a010100      # Mobile Network Ack: Type 148, Length 8, Sub-Type 1 (explicit),
                                # Code 0 success, Prefix Length 24, Reserved, 10.1.1.0 (RFC 5177 4.2)
94 08 02 00 10 00 0a020000      # Sub-Type 2 (implicit), Code 0, /16, Reserved, 10.2.0.0
2c 06 00 00 8000 001e           # UDP Tunnel Reply: Type 44, Length 6, Sub-Type 0, Reply Code 0,
                                # F=1 + 15 reserved bits, Keepalive 30 s (RFC 3519 section 3.2)
20 14 00000100 00112233445566778899aabbccddeeff  # MN-HA auth, SPI 256
"""
REPLY = RegistrationReply(
    code=ReplyCode.REGISTRATION_ACCEPTED,
    lifetime=300,
    home_address=A("10.10.0.50"),
    home_agent=A("10.10.0.1"),
    identification=0xEB5E7D3D_00000001,
    extensions=(
        MobileNetworkAck(MobileNetworkAckCode.SUCCESS, IPv4Network("10.1.1.0/24"), implicit=False),
        MobileNetworkAck(MobileNetworkAckCode.SUCCESS, IPv4Network("10.2.0.0/16"), implicit=True),
        UDPTunnelReply(UDPTunnelReplyCode.WILL_DO_TUNNELLING, forced=True, keepalive_interval=30),
        MobileHomeAuth(spi=256, authenticator=AUTHENTICATOR),
    ),
)

# ---------------------------------------------------------------------------
# Registration Revocation and its Acknowledgement (RFC 3543 sections 3.3, 3.4)

REVOCATION_HEX = """
07                      # Type 7 = Registration Revocation
00                      # Reserved
c000                    # A=1 (sent by home agent), I=1, 14 reserved bits
0a0a0032                # Home Address 10.10.0.50
0a0a0001                # Home Domain Address 10.10.0.1
c6336407                # Foreign Domain Address 198.51.100.7
5f5e1000                # Revocation Identifier (timestamp)
20 08 00000100 cafebabe # MN-HA auth, SPI 256, 4-byte authenticator
"""
REVOCATION = RegistrationRevocation(
    home_address=A("10.10.0.50"),
    home_domain_address=A("10.10.0.1"),
    foreign_domain_address=A("198.51.100.7"),
    revocation_identifier=0x5F5E1000,
    sent_by_home_agent=True,
    inform=True,
    extensions=(MobileHomeAuth(256, bytes.fromhex("cafebabe")),),
)

REVOCATION_ACK_HEX = """
0f                      # Type 15 = Registration Revocation Acknowledgement
00                      # Reserved
8000                    # I=1, 15 reserved bits
0a0a0032                # Home Address
5f5e1000                # Revocation Identifier copied from the revocation
22 04 00000007          # FA-HA auth: Type 34, Length 4, SPI 7, empty authenticator
"""
REVOCATION_ACK = RevocationAcknowledgement(
    home_address=A("10.10.0.50"),
    revocation_identifier=0x5F5E1000,
    inform=True,
    extensions=(ForeignHomeAuth(7, b""),),
)

TUNNEL_DATA_HEX = """
04                      # Type 4 = MIP Tunnel Data (RFC 3519 section 3.3)
04                      # Next Header 4 = IP in UDP
0000                    # Reserved
45000014                # tunnelled payload: start of an IPv4 header (opaque to the codec)
"""
TUNNEL_DATA = TunnelData(next_header=4, payload=bytes.fromhex("45000014"))

MESSAGE_VECTORS: list[tuple[str, str, Message]] = [
    ("request", REQUEST_HEX, REQUEST),
    ("reply", REPLY_HEX, REPLY),
    ("revocation", REVOCATION_HEX, REVOCATION),
    ("revocation-ack", REVOCATION_ACK_HEX, REVOCATION_ACK),
    ("tunnel-data", TUNNEL_DATA_HEX, TUNNEL_DATA),
]


@pytest.mark.parametrize(
    ("hex_text", "message"), [v[1:] for v in MESSAGE_VECTORS], ids=[v[0] for v in MESSAGE_VECTORS]
)
def test_message_vector_decodes(hex_text: str, message: Message) -> None:
    assert decode(h(hex_text)) == message


@pytest.mark.parametrize(
    ("hex_text", "message"), [v[1:] for v in MESSAGE_VECTORS], ids=[v[0] for v in MESSAGE_VECTORS]
)
def test_message_vector_encodes(hex_text: str, message: Message) -> None:
    assert encode(message).hex() == h(hex_text).hex()


def test_request_offsets_locate_each_extension_and_the_authenticated_span() -> None:
    data = h(REQUEST_HEX)
    message, offsets = decode_with_offsets(data)
    # 24-byte fixed header, NAI is 2+10 bytes, NEMO request 2+6.
    assert offsets == (24, 36, 44)
    assert encode_with_offsets(message) == (data, offsets)
    assert [data[o] for o in offsets] == [131, 148, 32]
    # RFC 5944 3.5.1: the MN-HA authenticator covers everything up to and including its SPI.
    covered = data[: offsets[2] + AUTH_HEADER_LENGTH]
    assert covered.endswith(bytes.fromhex("201400000100"))
    assert data[len(covered) :] == AUTHENTICATOR


def test_reply_fields_and_helpers() -> None:
    reply = decode(h(REPLY_HEX))
    assert isinstance(reply, RegistrationReply)
    assert reply.accepted
    assert reply.code is ReplyCode.REGISTRATION_ACCEPTED
    assert find_extension(reply.extensions, UDPTunnelReply) == UDPTunnelReply(0, True, 30)
    assert find_extension(reply.extensions, MobileNodeNAI) is None


def test_unknown_reply_code_is_a_plain_int_not_an_error() -> None:
    data = bytearray(h(REPLY_HEX))
    data[1] = 200  # no RFC in our set defines 200
    reply = decode(bytes(data))
    assert isinstance(reply, RegistrationReply)
    assert reply.code == 200 and not isinstance(reply.code, ReplyCode)
    assert not reply.accepted
    assert encode(reply) == bytes(data)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "REGISTRATION_ACCEPTED"),
        (1, "REGISTRATION_ACCEPTED_NO_SIMULTANEOUS_BINDINGS"),
        (64, "FA_REASON_UNSPECIFIED"),
        (73, "FA_RESERVED_AND_UNAVAILABLE"),
        (74, "FA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE"),
        (88, "FA_HOME_AGENT_UNREACHABLE"),
        (97, "MISSING_NAI"),
        (128, "HA_REASON_UNSPECIFIED"),
        (131, "HA_MOBILE_NODE_FAILED_AUTHENTICATION"),
        (133, "HA_REGISTRATION_IDENTIFICATION_MISMATCH"),
        (136, "HA_UNKNOWN_HOME_AGENT_ADDRESS"),
        (139, "HA_REQUESTED_ENCAPSULATION_UNAVAILABLE"),
        (142, "ERROR_HA_UDP_ENCAP_UNAVAIL"),
        (147, "HA_MOBNET_ERROR"),
        (148, "HA_MOBNET_DISALLOWED"),
        (194, "INVALID_HOME_AGENT_ADDRESS"),
    ],
)
def test_reply_code_values_match_the_rfcs(code: int, name: str) -> None:
    assert ReplyCode(code).name == name


def test_every_rfc5944_reply_code_is_known() -> None:
    # RFC 5944 section 3.4 list, typed in from the RFC text.
    rfc5944 = [0, 1, *range(64, 74), 77, 78, 80, 81, 82, 88, 194, *range(128, 137)]
    for code in rfc5944:
        assert ReplyCode(code) == code


# ---------------------------------------------------------------------------
# Each extension kind on its own: (hex, value)

EXTENSION_VECTORS: list[tuple[str, str, Extension]] = [
    ("padding", "00", OneBytePadding()),  # RFC 5944 2.1.3: the Type byte only
    (
        "mn-ha",  # Type 32, Length 20, SPI 0x00000100, 16-byte authenticator
        "20 14 00000100 00112233445566778899aabbccddeeff",
        MobileHomeAuth(256, AUTHENTICATOR),
    ),
    (
        "mn-fa",  # Type 33, Length 8, SPI 0x00001001, 4-byte authenticator
        "21 08 00001001 cafebabe",
        MobileForeignAuth(0x1001, bytes.fromhex("cafebabe")),
    ),
    ("fa-ha", "22 04 00000007", ForeignHomeAuth(7, b"")),  # Type 34, Length 4, SPI 7
    (
        "generalized-auth",  # long format: Type 36, Subtype 1 (MN-AAA), Length 0x0014, SPI 512
        "24 01 0014 00000200 00112233445566778899aabbccddeeff",
        GeneralizedAuth(1, 512, AUTHENTICATOR),
    ),
    ("delivery-style", "82 00", EncapsulatingDeliveryStyle()),  # RFC 3024 3.3: 130, Length 0
    ("nai", "83 0a 6d72406578616d706c65", MobileNodeNAI("mr@example")),  # 131, 10, text
    ("mf-challenge", "84 04 01020304", MobileForeignChallenge(b"\x01\x02\x03\x04")),  # 132
    (
        "revocation-support",  # 137, Length 6, I=1 + 15 reserved bits, Timestamp
        "89 06 8000 5f5e1000",
        RevocationSupport(inform=True, timestamp=0x5F5E1000),
    ),
    (
        "udp-tunnel-request",  # 144, Length 6, Sub-Type 0, Reserved 1, F R Reserved 2,
        "90 06 00 00 80 04 0000",  # Encapsulation 4, Reserved 3
        UDPTunnelRequest(force=True, encapsulation=TunnelEncapsulation.IP_IN_IP),
    ),
    (
        "udp-tunnel-request-r",  # R flag (0x40), Encapsulation 0 (use M/G bits)
        "90 06 00 00 40 00 0000",
        UDPTunnelRequest(registration_through_fa=True),
    ),
    (
        "udp-tunnel-reply-declined",  # 44, Length 6, Sub-Type 0, Code 64, flags 0, Keepalive 0
        "2c 06 00 40 0000 0000",
        UDPTunnelReply(UDPTunnelReplyCode.TUNNELLING_DECLINED_REASON_UNSPECIFIED),
    ),
    (
        "message-string",  # RFC 4917: 145, Length 1+5, Sub-Type 1, "hello"
        "91 06 01 68656c6c6f",
        MessageString("hello"),
    ),
    (
        "mobile-network-request",  # RFC 5177 4.1: 148, 6, Sub-Type 0, /24, 10.1.1.0
        "94 06 00 18 0a010100",
        MobileNetworkRequest(IPv4Network("10.1.1.0/24")),
    ),
    (
        "mobile-network-ack-explicit-denied",  # 148, 8, Sub-Type 1, Code 2, /24, Rsvd, prefix
        "94 08 01 02 18 00 0a010100",
        MobileNetworkAck(MobileNetworkAckCode.MOBNET_UNAUTHORIZED, IPv4Network("10.1.1.0/24")),
    ),
    (
        "mobile-network-ack-implicit",  # Sub-Type 2
        "94 08 02 00 18 00 0a010100",
        MobileNetworkAck(0, IPv4Network("10.1.1.0/24"), implicit=True),
    ),
    ("tnc", "95 02 00 00", TrustedNetworksConfigured()),  # RFC 5265 3.4: 149, 2, Sub-Type 0, Rsvd
    ("unknown-skippable", "c8 02 abcd", UnknownExtension(200, b"\xab\xcd")),
    ("unknown-non-skippable", "28 00", UnknownExtension(40, b"")),
    (
        "nemo-unknown-subtype",  # Sub-Type 7 is not defined by RFC 5177
        "94 03 07 aabb",
        UnknownExtension(148, bytes.fromhex("07aabb")),
    ),
    (
        "udp-tunnel-request-reserved3-set",  # RFC 3519 3.1.3: treat as not understood
        "90 06 00 00 80 04 0001",
        UnknownExtension(144, bytes.fromhex("000080040001")),
    ),
    ("message-string-other-subtype", "91 02 02 41", UnknownExtension(145, b"\x02\x41")),
]


def _decode_extension(data: bytes) -> Extension:
    reader = Reader(data)
    extension = pull_extension(reader)
    assert reader.eof(), "the extension must consume exactly its own bytes"
    return extension


@pytest.mark.parametrize(
    ("hex_text", "extension"),
    [v[1:] for v in EXTENSION_VECTORS],
    ids=[v[0] for v in EXTENSION_VECTORS],
)
def test_extension_vector_both_ways(hex_text: str, extension: Extension) -> None:
    data = h(hex_text)
    assert _decode_extension(data) == extension
    writer = Writer()
    push_extension(writer, extension)
    assert writer.getvalue().hex() == data.hex()


def test_unknown_extension_skippable_follows_rfc5944_section_1_9() -> None:
    assert UnknownExtension(128, b"").skippable
    assert UnknownExtension(255, b"").skippable
    assert not UnknownExtension(127, b"").skippable
    assert not UnknownExtension(1, b"").skippable


def test_udp_tunnel_reply_assent_range() -> None:
    # RFC 3519 3.2.1: 0..63 assent, 64..255 decline.
    assert UDPTunnelReply(63).accepted
    assert not UDPTunnelReply(64).accepted


def test_decode_ignores_reserved_fields_but_keeps_flag_bits() -> None:
    # UDP Tunnel Request with Reserved 1 and Reserved 2 set: ignored (RFC 3519 3.1.3).
    assert _decode_extension(h("90 06 00 ff bf 2f 0000")) == UDPTunnelRequest(
        force=True, registration_through_fa=False, encapsulation=TunnelEncapsulation.GRE
    )
    # Revocation Support longer than 6 bytes: future bits, the first 6 are read (RFC 3543 3.2).
    assert _decode_extension(h("89 08 0000 00000009 ffff")) == RevocationSupport(False, 9)
    # NEMO prefix with host bits set: only the leftmost Prefix Length bits count (RFC 5177 4.1).
    assert _decode_extension(h("94 06 00 18 0a010105")) == MobileNetworkRequest(
        IPv4Network("10.1.1.0/24")
    )


# ---------------------------------------------------------------------------
# Malformed input: exact offsets and expectations


@pytest.mark.parametrize(
    ("hex_text", "offset", "message"),
    [
        ("", 0, "offset 0: expected 1 byte of message Type, got 0"),
        ("02", 0, "offset 0: expected a Mobile IP message Type (1, 3, 4, 7 or 15), got 2"),
        ("01 00 0258 0a0a", 4, "offset 4: expected 4 bytes of Home Address, got 2"),
        (
            # fixed request header, then MN-HA auth whose Length (2) cannot hold an SPI
            "01 00 0000 00000000 00000000 00000000 0000000000000000 20 02 0001",
            26,
            "offset 26: expected 4 bytes of SPI of Mobile-Home Authentication, got 2",
        ),
        (
            # Length 20 but only 6 bytes follow: the extension overruns the datagram
            "03 00 0000 00000000 00000000 0000000000000000 20 14 00000100 0000",
            22,
            "offset 22: expected 20 bytes of data of extension 32, got 6",
        ),
        (
            "03 00 0000 00000000 00000000 0000000000000000 94 05 00 18 0a0101",
            21,
            "offset 21: expected Length 6 for Mobile Network Request, got 5",
        ),
        (
            "03 00 0000 00000000 00000000 0000000000000000 94 06 00 21 0a010100",
            23,
            "offset 23: expected Mobile Network Request Prefix Length 0..32, got 33",
        ),
        (
            "03 00 0000 00000000 00000000 0000000000000000 83 02 c328",
            22,
            "offset 22: expected UTF-8 MN-NAI, invalid continuation byte",
        ),
        (
            # trailing garbage: one stray byte after a complete extension reads as a Type
            # whose Length is missing
            "0f 00 0000 00000000 00000000 c8",
            13,
            "offset 13: expected 1 byte of Length of extension 200, got 0",
        ),
        (
            "0f 00 0000 00000000 00000000 24 01 00",
            14,
            "offset 14: expected 2 bytes of Generalized Authentication Length, got 1",
        ),
    ],
)
def test_malformed_messages_name_offset_and_expectation(
    hex_text: str, offset: int, message: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode(h(hex_text))
    assert info.value.offset == offset
    assert str(info.value) == message


def test_decode_error_is_a_value_error_with_fields() -> None:
    error = DecodeError(12, "4 bytes of SPI", "got 2")
    assert isinstance(error, ValueError)
    assert (error.offset, error.expected) == (12, "4 bytes of SPI")
    assert str(error) == "offset 12: expected 4 bytes of SPI, got 2"


@pytest.mark.parametrize(
    "message",
    [
        RegistrationRequest(RequestFlags(0), 0x1_0000, A("0.0.0.0"), A("0.0.0.0"), A("0.0.0.0"), 0),
        RegistrationRequest(RequestFlags(0), 0, A("0.0.0.0"), A("0.0.0.0"), A("0.0.0.0"), 2**64),
        RegistrationReply(256, 0, A("0.0.0.0"), A("0.0.0.0"), 0),
        RegistrationReply(0, 0, A("0.0.0.0"), A("0.0.0.0"), 0, (MobileNodeNAI("n" * 256),)),
        RegistrationReply(0, 0, A("0.0.0.0"), A("0.0.0.0"), 0, (MobileHomeAuth(0, bytes(252)),)),
        RegistrationReply(0, 0, A("0.0.0.0"), A("0.0.0.0"), 0, (MobileHomeAuth(-1, b""),)),
        RegistrationReply(0, 0, A("0.0.0.0"), A("0.0.0.0"), 0, (UnknownExtension(0, b""),)),
        RegistrationReply(0, 0, A("0.0.0.0"), A("0.0.0.0"), 0, (UnknownExtension(36, b""),)),
        RegistrationReply(0, 0, A("0.0.0.0"), A("0.0.0.0"), 0, (MessageString("\ud800"),)),
        RegistrationRevocation(A("0.0.0.0"), A("0.0.0.0"), A("0.0.0.0"), 2**32),
        TunnelData(256, b""),
    ],
)
def test_encoding_an_unrepresentable_value_is_a_local_error(message: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode(message)


# ---------------------------------------------------------------------------
# ICMP: Agent Advertisement (RFC 1256 section 3 + RFC 5944 section 2.1) and Solicitation

ADVERTISEMENT_HEX = """
09                      # ICMP Type 9 = Router Advertisement
10                      # Code 16: does not route common traffic (RFC 5944 2.1)
fbfd                    # Checksum: words 0910+0102+0708+c000+0201+ffff+ffff+100a+0101+0258
                        # +3080+c000+0201+1301+1800 = 0x403fe -> fold 0x0402 -> ~ = 0xfbfd
01                      # Num Addrs 1
02                      # Addr Entry Size 2 (words)
0708                    # Lifetime 1800 s
c0000201                # Router Address[1] 192.0.2.1
ffffffff                # Preference Level[1] -1 (signed)
10 0a                   # Mobility Agent Advertisement: Type 16, Length 6 + 4*1
0101                    # Sequence Number 257
0258                    # Registration Lifetime 600 s
3080                    # flags R B H F M G r T | U X I rsvd = 0011 0000 | 1000 0000 -> H F U
c0000201                # Care-of Address 192.0.2.1
13 01 18                # Prefix-Lengths: Type 19, Length 1 (= Num Addrs), /24
00                      # One-byte Padding to an even ICMP length
"""
ADVERTISEMENT = AgentAdvertisement(
    lifetime=1800,
    router_addresses=(RouterAddress(A("192.0.2.1"), -1),),
    extensions=(
        MobilityAgentAdvertisement(
            sequence_number=257,
            registration_lifetime=600,
            flags=AdvertisementFlags.H | AdvertisementFlags.F | AdvertisementFlags.U,
            care_of_addresses=(A("192.0.2.1"),),
        ),
        PrefixLengths((24,)),
        OneBytePadding(),
    ),
    code=AdvertisementCode.DOES_NOT_ROUTE_COMMON_TRAFFIC,
)

SOLICITATION_HEX = """
0a 00                   # Type 10 = Router Solicitation, Code 0
f5ff                    # Checksum: ~0x0a00 = 0xf5ff
00000000                # Reserved
"""


def test_advertisement_vector_both_ways() -> None:
    data = h(ADVERTISEMENT_HEX)
    assert decode_icmp(data) == ADVERTISEMENT
    assert encode_icmp(ADVERTISEMENT).hex() == data.hex()
    assert ADVERTISEMENT.mobility is not None
    assert ADVERTISEMENT.mobility.care_of_addresses == (A("192.0.2.1"),)
    assert ADVERTISEMENT.prefix_lengths == (24,)


def test_solicitation_vector_both_ways() -> None:
    assert decode_icmp(h(SOLICITATION_HEX)) == AgentSolicitation()
    assert encode_icmp(AgentSolicitation()) == h(SOLICITATION_HEX)


def test_advertisement_flag_bit_positions() -> None:
    # RFC 5944 2.1.1: R is the first bit after Registration Lifetime; I the eleventh.
    order = ["R", "B", "H", "F", "M", "G", "r", "T", "U", "X", "I"]
    for index, name in enumerate(order):
        assert AdvertisementFlags[name] == 0x8000 >> index


def test_request_flag_bit_positions() -> None:
    # RFC 5944 3.3: S B D M G r T x from the most significant bit.
    order = ["S", "B", "D", "M", "G", "r", "T", "x"]
    for index, name in enumerate(order):
        assert RequestFlags[name] == 0x80 >> index


def test_plain_router_advertisement_and_challenge() -> None:
    advert = AgentAdvertisement(
        lifetime=0, extensions=(AdvertisementChallenge(b"\x01\x02\x03\x04"),)
    )
    data = encode_icmp(advert)
    # Num Addrs 0, Addr Entry Size 2, then Challenge: Type 24, Length 4 (RFC 4721 section 2).
    assert data[4:] == h("00 02 0000 18 04 01020304")
    assert decode_icmp(data) == advert
    assert advert.mobility is None and advert.prefix_lengths is None


def test_bad_icmp_checksum_is_a_decode_error() -> None:
    data = bytearray(h(ADVERTISEMENT_HEX))
    data[2:4] = b"\xfb\xfe"
    with pytest.raises(DecodeError) as info:
        decode_icmp(bytes(data))
    assert info.value.offset == 2
    assert str(info.value) == "offset 2: expected ICMP Checksum 0xfbfd, got 0xfbfe"


def _with_checksum(body: bytes) -> bytes:
    """Fill in a valid ICMP checksum so the structural checks are reached."""
    from router.mip._wire import internet_checksum

    data = body[:2] + b"\x00\x00" + body[4:]
    return data[:2] + internet_checksum(data).to_bytes(2, "big") + data[4:]


@pytest.mark.parametrize(
    ("hex_text", "offset", "expected"),
    [
        ("0b 00 0000 00000000", 0, "ICMP Type 9 or 10"),
        ("0a 01 0000 00000000", 1, "ICMP Code 0 for a Router Solicitation"),
        ("0a 00 0000 0000", 4, "4 bytes of Reserved"),
        ("09 00 0000 01 01 0000 c0000201", 5, "Addr Entry Size >= 2"),
        ("09 00 0000 01 02 0000 c0000201", 8, "8 bytes of router address entry"),
        (
            "09 00 0000 00 02 0000 10 05 0000 0000 00",
            9,
            "Mobility Agent Advertisement Length 6 + 4*N",
        ),
        (
            "09 00 0000 00 02 0000 10 07 0000 0000 0000 00",
            9,
            "Mobility Agent Advertisement Length 6 + 4*N",
        ),
        ("09 00 0000 00 02 0000 10 0a 0000 0000 0000", 10, "10 bytes of data of extension 16"),
    ],
)
def test_malformed_icmp(hex_text: str, offset: int, expected: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_icmp(_with_checksum(h(hex_text)))
    assert (info.value.offset, info.value.expected) == (offset, expected)


def test_addr_entry_size_above_two_skips_extra_words() -> None:
    # RFC 1256 5.2: additional per-address words are ignored.
    data = _with_checksum(h("09 00 0000 01 03 0708 c0000201 00000005 deadbeef"))
    advert = decode_icmp(data)
    assert advert == AgentAdvertisement(1800, (RouterAddress(A("192.0.2.1"), 5),))
