"""Mobile IP extensions: values, wire formats and the pull/push codec pair.

Theory of operation
-------------------
Every Mobile IP control message (UDP port 434) is a fixed header followed by
extensions running to the end of the datagram (RFC 5944 section 1.8). Three
layouts exist:

- TLV (section 1.9): ``Type, Length, Data``; Length counts Data only.
- Long (section 1.10): ``Type, Sub-Type, Length(16 bits), Data``; only for
  non-skippable types (a receiver that does not know the type would misread
  the Sub-Type as the Length). Here: Generalized Authentication (36).
- Short (section 1.11): ``Type, Length, Sub-Type, Data``; Length = 1 + len(Data).
  Here: Mobile Network (148), UDP Tunnel Request/Reply (144/44), Message
  String (145), Trusted Networks Configured (149).

Plus One-byte Padding (type 0): a single byte, no Length.

Types 0-127 are non-skippable, 128-255 skippable (section 1.9). The codec does
not enforce what to do with an unknown one: it returns an
:class:`UnknownExtension` (parsed as TLV, the only layout a receiver can assume)
and the home agent or mobile node decides; RFC 5944 says a message with an
unknown non-skippable extension MUST be silently discarded.

A known type with a sub-type we do not know, or whose RFC says "handle as not
understood" (UDP Tunnel Request with non-zero Reserved 3, RFC 3519 section
3.1.3), also comes back as :class:`UnknownExtension`, with its data kept
byte for byte so it re-encodes identically.

Reserved fields are sent as zero and ignored on reception, as each RFC says;
decoding then re-encoding such an input may therefore change reserved bits.

ICMP Router Discovery extensions (16, 19, 24) live in a separate number space
(section 1.8); their values are in :class:`ExtensionType` too (no collision)
but they are decoded only by :mod:`router.mip.advert`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

from router.mip._wire import Reader, Writer
from router.mip.errors import DecodeError, LocalProtocolError

__all__ = [
    "AUTH_HEADER_LENGTH",
    "GENERALIZED_AUTH_HEADER_LENGTH",
    "EncapsulatingDeliveryStyle",
    "Extension",
    "ExtensionType",
    "ForeignHomeAuth",
    "GeneralizedAuth",
    "GeneralizedAuthSubtype",
    "MessageString",
    "MobileForeignAuth",
    "MobileForeignChallenge",
    "MobileHomeAuth",
    "MobileNetworkAck",
    "MobileNetworkAckCode",
    "MobileNetworkRequest",
    "MobileNetworkSubtype",
    "MobileNodeNAI",
    "OneBytePadding",
    "RevocationSupport",
    "TrustedNetworksConfigured",
    "TunnelEncapsulation",
    "UDPTunnelReply",
    "UDPTunnelReplyCode",
    "UDPTunnelRequest",
    "UnknownExtension",
    "check_consumed",
    "find_extension",
    "pull_extension",
    "push_extension",
]


class ExtensionType(IntEnum):
    """Extension Type values, each checked against the RFC text cited."""

    # Both number spaces (RFC 5944 section 1.8): a single byte, no Length (section 2.1.3).
    ONE_BYTE_PADDING = 0
    # -- ICMP Router Discovery space (decoded by router.mip.advert only) --
    MOBILITY_AGENT_ADVERTISEMENT = 16  # RFC 5944 section 2.1.1
    PREFIX_LENGTHS = 19  # RFC 5944 section 2.1.2
    CHALLENGE = 24  # RFC 4721 section 2 (Agent Advertisement Challenge)
    # -- Control message space (UDP port 434) --
    MOBILE_HOME_AUTHENTICATION = 32  # RFC 5944 section 3.5.2
    MOBILE_FOREIGN_AUTHENTICATION = 33  # RFC 5944 section 3.5.3
    FOREIGN_HOME_AUTHENTICATION = 34  # RFC 5944 section 3.5.4
    GENERALIZED_AUTHENTICATION = 36  # RFC 4721 section 5 (long format, not skippable)
    UDP_TUNNEL_REPLY = 44  # RFC 3519 section 3.2 (short format, not skippable)
    ENCAPSULATING_DELIVERY_STYLE = 130  # RFC 3024 section 3.3
    MOBILE_NODE_NAI = 131  # RFC 2794 section 2
    MOBILE_FOREIGN_CHALLENGE = 132  # RFC 4721 section 4
    REVOCATION_SUPPORT = 137  # RFC 3543 section 3.2 / 7.2
    UDP_TUNNEL_REQUEST = 144  # RFC 3519 section 3.1 (short format, skippable)
    MESSAGE_STRING = 145  # RFC 4917 (text not in our rfc folder; see MessageString)
    MOBILE_NETWORK = 148  # RFC 5177 section 4 (short format)
    TRUSTED_NETWORKS_CONFIGURED = 149  # RFC 5265 section 3.4 (short format)


class MobileNetworkSubtype(IntEnum):
    """Sub-Type of the Mobile Network Extension (RFC 5177 section 11, table 2)."""

    MOBILE_NETWORK_REQUEST = 0
    EXPLICIT_MODE_ACKNOWLEDGEMENT = 1
    IMPLICIT_MODE_ACKNOWLEDGEMENT = 2


class MobileNetworkAckCode(IntEnum):
    """Code of the Mobile Network Acknowledgement (RFC 5177 section 4.2 / 11, table 4)."""

    SUCCESS = 0
    MOBNET_INVALID_PREFIX_LEN = 1
    MOBNET_UNAUTHORIZED = 2
    MOBNET_FWDING_SETUP_FAILED = 3


class UDPTunnelReplyCode(IntEnum):
    """Reply Code of the UDP Tunnel Reply (RFC 3519 section 3.2.1): 0-63 assent, 64-255 decline."""

    WILL_DO_TUNNELLING = 0
    TUNNELLING_DECLINED_REASON_UNSPECIFIED = 64


class TunnelEncapsulation(IntEnum):
    """Encapsulation / Next Header values, IP protocol numbers (RFC 3519 sections 3.1.4, 3.3)."""

    DEFAULT = 0  # Encapsulation field only: "use the M and G bits of the request"
    IP_IN_IP = 4  # RFC 2003
    GRE = 47  # RFC 2784
    MINIMAL = 55  # RFC 2004


class GeneralizedAuthSubtype(IntEnum):
    """Subtype of the Generalized Authentication extension (RFC 4721 section 5)."""

    MOBILE_AAA = 1


# Bytes an authenticator covers beyond the start of its extension (RFC 5944
# section 3.5.1: "the Type, Length, and SPI of this Extension").
AUTH_HEADER_LENGTH = 6
# Long format: Type, Subtype, Length (2), SPI (RFC 4721 section 6).
GENERALIZED_AUTH_HEADER_LENGTH = 8

_TLV_MAX = 255


# ---------------------------------------------------------------------------
# Extension values


@dataclass(frozen=True, slots=True)
class OneBytePadding:
    """Type 0: one byte, no Length nor Data (RFC 5944 sections 1.8, 2.1.3)."""


@dataclass(frozen=True, slots=True)
class MobileHomeAuth:
    """Mobile-Home Authentication, type 32 (RFC 5944 section 3.5.2): SPI + authenticator."""

    spi: int
    authenticator: bytes


@dataclass(frozen=True, slots=True)
class MobileForeignAuth:
    """Mobile-Foreign Authentication, type 33 (RFC 5944 section 3.5.3)."""

    spi: int
    authenticator: bytes


@dataclass(frozen=True, slots=True)
class ForeignHomeAuth:
    """Foreign-Home Authentication, type 34 (RFC 5944 section 3.5.4)."""

    spi: int
    authenticator: bytes


@dataclass(frozen=True, slots=True)
class GeneralizedAuth:
    """Generalized Mobile IP Authentication, type 36, long format (RFC 4721 section 5)."""

    subtype: int
    spi: int
    authenticator: bytes


@dataclass(frozen=True, slots=True)
class EncapsulatingDeliveryStyle:
    """Encapsulating Delivery Style, type 130, Length 0 (RFC 3024 section 3.3)."""


@dataclass(frozen=True, slots=True)
class MobileNodeNAI:
    """Mobile Node NAI, type 131 (RFC 2794 section 2): the NAI as UTF-8 (ASCII in RFC 2486)."""

    nai: str


@dataclass(frozen=True, slots=True)
class MobileForeignChallenge:
    """Mobile-Foreign Challenge, type 132 (RFC 4721 section 4)."""

    challenge: bytes


@dataclass(frozen=True, slots=True)
class RevocationSupport:
    """Revocation Support, type 137 (RFC 3543 section 3.2): 'I' bit and 32-bit timestamp."""

    inform: bool
    timestamp: int


@dataclass(frozen=True, slots=True)
class UDPTunnelRequest:
    """UDP Tunnel Request, type 144, sub-type 0 (RFC 3519 section 3.1).

    ``force``: F flag; ``registration_through_fa``: R flag; ``encapsulation``:
    an IP protocol number, 0 = decided by the request's M and G bits.
    """

    force: bool = False
    registration_through_fa: bool = False
    encapsulation: int = TunnelEncapsulation.DEFAULT


@dataclass(frozen=True, slots=True)
class UDPTunnelReply:
    """UDP Tunnel Reply, type 44, sub-type 0 (RFC 3519 section 3.2)."""

    code: int = UDPTunnelReplyCode.WILL_DO_TUNNELLING
    forced: bool = False
    keepalive_interval: int = 0

    @property
    def accepted(self) -> bool:
        # RFC 3519 section 3.2.1: 0..63 indicate assent.
        return self.code < 64


@dataclass(frozen=True, slots=True)
class MessageString:
    """Message String, type 145 (RFC 4917), short format, sub-type 1 = message from HA to MN.

    RFC 4917 is not in our rfc folder: encoded per its published layout
    (Type 145, Length = 1 + len(text), Sub-Type 1, UTF-8 text); tshark's
    decoding of it is checked in tests. Other sub-types decode as UnknownExtension.
    """

    text: str


@dataclass(frozen=True, slots=True)
class MobileNetworkRequest:
    """Mobile Network Request, type 148, sub-type 0 (RFC 5177 section 4.1).

    The wire carries "an IPv4 address whose leftmost Prefix Length bits make up
    the prefix": host bits set on the wire are cleared on decode.
    """

    prefix: IPv4Network


@dataclass(frozen=True, slots=True)
class MobileNetworkAck:
    """Mobile Network Acknowledgement, type 148, sub-type 1 explicit / 2 implicit (RFC 5177 4.2)."""

    code: int
    prefix: IPv4Network
    implicit: bool = False

    @property
    def success(self) -> bool:
        return self.code == MobileNetworkAckCode.SUCCESS


@dataclass(frozen=True, slots=True)
class TrustedNetworksConfigured:
    """Trusted Networks Configured, type 149, sub-type 0 (RFC 5265 section 3.4)."""


@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """An extension we do not understand, kept as TLV (RFC 5944 section 1.9)."""

    type: int
    data: bytes

    @property
    def skippable(self) -> bool:
        # RFC 5944 section 1.9: 128-255 are ignored if unknown; 0-127 discard the message.
        return self.type >= 128


Extension = (
    OneBytePadding
    | MobileHomeAuth
    | MobileForeignAuth
    | ForeignHomeAuth
    | GeneralizedAuth
    | EncapsulatingDeliveryStyle
    | MobileNodeNAI
    | MobileForeignChallenge
    | RevocationSupport
    | UDPTunnelRequest
    | UDPTunnelReply
    | MessageString
    | MobileNetworkRequest
    | MobileNetworkAck
    | TrustedNetworksConfigured
    | UnknownExtension
)

_E = TypeVar("_E")


def find_extension(extensions: Iterable[object], kind: type[_E]) -> _E | None:
    """The first extension of class ``kind``, or None."""
    for extension in extensions:
        if isinstance(extension, kind):
            return extension
    return None


# ---------------------------------------------------------------------------
# Decoding


def _check_length(offset: int, what: str, expected: int, got: int) -> None:
    if got != expected:
        raise DecodeError(offset, f"Length {expected} for {what}", f"got {got}")


def _pull_prefix(body: Reader, what: str) -> IPv4Network:
    length_offset = body.pos
    prefix_length = body.pull_uint8(f"{what} Prefix Length")
    address = body.pull_bytes(4, f"{what} Prefix")
    if prefix_length > 32:
        raise DecodeError(length_offset, f"{what} Prefix Length 0..32", f"got {prefix_length}")
    # RFC 5177 4.1: only the leftmost Prefix Length bits make up the prefix.
    return IPv4Network((IPv4Address(address), prefix_length), strict=False)


def _pull_auth(body: Reader, name: str) -> tuple[int, bytes]:
    spi = body.pull_uint32(f"SPI of {name}")
    return spi, body.pull_rest()


def _pull_text(body: Reader, what: str) -> str:
    start = body.pos
    raw = body.pull_rest()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(start + exc.start, f"UTF-8 {what}", exc.reason) from None


def _decode_tlv(ext_type: int, length_offset: int, body: Reader) -> Extension:
    length = body.remaining()
    if ext_type == ExtensionType.MOBILE_HOME_AUTHENTICATION:
        return MobileHomeAuth(*_pull_auth(body, "Mobile-Home Authentication"))
    if ext_type == ExtensionType.MOBILE_FOREIGN_AUTHENTICATION:
        return MobileForeignAuth(*_pull_auth(body, "Mobile-Foreign Authentication"))
    if ext_type == ExtensionType.FOREIGN_HOME_AUTHENTICATION:
        return ForeignHomeAuth(*_pull_auth(body, "Foreign-Home Authentication"))
    if ext_type == ExtensionType.MOBILE_NODE_NAI:
        return MobileNodeNAI(_pull_text(body, "MN-NAI"))
    if ext_type == ExtensionType.MOBILE_FOREIGN_CHALLENGE:
        return MobileForeignChallenge(body.pull_rest())
    if ext_type == ExtensionType.ENCAPSULATING_DELIVERY_STYLE:
        _check_length(length_offset, "Encapsulating Delivery Style", 0, length)
        return EncapsulatingDeliveryStyle()
    if ext_type == ExtensionType.REVOCATION_SUPPORT:
        # RFC 3543 3.2: Length "currently 6", longer allowed for future bits: read the
        # first 6 bytes, ignore the rest.
        flags = body.pull_uint16("Revocation Support flags")
        timestamp = body.pull_uint32("Revocation Support Timestamp")
        body.pull_rest()
        return RevocationSupport(inform=bool(flags & 0x8000), timestamp=timestamp)
    return _decode_short(ext_type, length_offset, body)


def _decode_short(ext_type: int, length_offset: int, body: Reader) -> Extension:
    """Short-format types (RFC 5944 section 1.11); anything else is unknown TLV."""
    data_start = body.pos
    length = body.remaining()
    if ext_type not in _SHORT_TYPES:
        return UnknownExtension(ext_type, body.pull_rest())
    subtype = body.pull_uint8(f"Sub-Type of extension {ext_type}")
    if ext_type == ExtensionType.MOBILE_NETWORK:
        if subtype == MobileNetworkSubtype.MOBILE_NETWORK_REQUEST:
            _check_length(length_offset, "Mobile Network Request", 6, length)
            return MobileNetworkRequest(_pull_prefix(body, "Mobile Network Request"))
        if subtype in (
            MobileNetworkSubtype.EXPLICIT_MODE_ACKNOWLEDGEMENT,
            MobileNetworkSubtype.IMPLICIT_MODE_ACKNOWLEDGEMENT,
        ):
            _check_length(length_offset, "Mobile Network Acknowledgement", 8, length)
            code = _enum_or_int(MobileNetworkAckCode, body.pull_uint8("Ack Code"))
            length_byte = body.pull_uint8("Ack Prefix Length")
            body.pull_uint8("Ack Reserved")
            address = body.pull_bytes(4, "Ack Prefix")
            if length_byte > 32:
                raise DecodeError(
                    data_start + 2, "Mobile Network Ack Prefix Length 0..32", f"got {length_byte}"
                )
            prefix = IPv4Network((IPv4Address(address), length_byte), strict=False)
            implicit = subtype == MobileNetworkSubtype.IMPLICIT_MODE_ACKNOWLEDGEMENT
            return MobileNetworkAck(code=code, prefix=prefix, implicit=implicit)
    elif ext_type == ExtensionType.UDP_TUNNEL_REQUEST:
        if subtype == 0:
            _check_length(length_offset, "UDP Tunnel Request", 6, length)
            body.pull_uint8("Reserved 1")
            flags = body.pull_uint8("UDP Tunnel Request flags")
            encapsulation = body.pull_uint8("Encapsulation")
            reserved3 = body.pull_uint16("Reserved 3")
            # RFC 3519 3.1.3: non-zero Reserved 3 -> "handled as not understood and
            # silently skipped"; keep it as unknown so the caller skips it.
            if reserved3 == 0:
                return UDPTunnelRequest(
                    force=bool(flags & 0x80),
                    registration_through_fa=bool(flags & 0x40),
                    encapsulation=_enum_or_int(TunnelEncapsulation, encapsulation),
                )
    elif ext_type == ExtensionType.UDP_TUNNEL_REPLY:
        if subtype == 0:
            _check_length(length_offset, "UDP Tunnel Reply", 6, length)
            code = _enum_or_int(UDPTunnelReplyCode, body.pull_uint8("UDP Tunnel Reply Code"))
            flags = body.pull_uint16("UDP Tunnel Reply flags")
            keepalive = body.pull_uint16("Keepalive Interval")
            return UDPTunnelReply(
                code=code, forced=bool(flags & 0x8000), keepalive_interval=keepalive
            )
    elif ext_type == ExtensionType.MESSAGE_STRING:
        if subtype == 1:
            return MessageString(_pull_text(body, "Message String text"))
    elif ext_type == ExtensionType.TRUSTED_NETWORKS_CONFIGURED and subtype == 0:
        _check_length(length_offset, "Trusted Networks Configured", 2, length)
        body.pull_uint8("TNC Reserved")
        return TrustedNetworksConfigured()
    # Unknown sub-type (or not-understood content): keep the whole data.
    body.pos = body.end
    return UnknownExtension(ext_type, body.data[data_start : body.end])


_SHORT_TYPES = frozenset(
    {
        ExtensionType.MOBILE_NETWORK,
        ExtensionType.UDP_TUNNEL_REQUEST,
        ExtensionType.UDP_TUNNEL_REPLY,
        ExtensionType.MESSAGE_STRING,
        ExtensionType.TRUSTED_NETWORKS_CONFIGURED,
    }
)

_EnumT = TypeVar("_EnumT", bound=IntEnum)


def _enum_or_int(enum: type[_EnumT], value: int) -> int:
    """The enum member if the value is known, else the plain int (unknown codes are not errors)."""
    try:
        return enum(value)
    except ValueError:
        return value


def pull_extension(reader: Reader) -> Extension:
    """Decode one control-message extension at ``reader.pos`` (RFC 5944 sections 1.9-1.11)."""
    ext_type = reader.pull_uint8("extension Type")
    if ext_type == ExtensionType.ONE_BYTE_PADDING:
        return OneBytePadding()
    if ext_type == ExtensionType.GENERALIZED_AUTHENTICATION:
        # Long format (RFC 5944 section 1.10, RFC 4721 section 5).
        subtype = reader.pull_uint8("Generalized Authentication Subtype")
        length = reader.pull_uint16("Generalized Authentication Length")
        body = reader.sub_reader(length, "Generalized Authentication data")
        spi, authenticator = _pull_auth(body, "Generalized Authentication")
        return GeneralizedAuth(
            subtype=_enum_or_int(GeneralizedAuthSubtype, subtype),
            spi=spi,
            authenticator=authenticator,
        )
    length_offset = reader.pos
    length = reader.pull_uint8(f"Length of extension {ext_type}")
    body = reader.sub_reader(length, f"data of extension {ext_type}")
    extension = _decode_tlv(ext_type, length_offset, body)
    check_consumed(body, ext_type)
    return extension


def check_consumed(body: Reader, ext_type: int) -> None:
    """Every byte an extension's Length claims must belong to a field we read."""
    if not body.eof():
        raise DecodeError(
            body.pos, f"end of extension {ext_type}", f"{body.remaining()} bytes left over"
        )


# ---------------------------------------------------------------------------
# Encoding


def _push_tlv(writer: Writer, ext_type: int, data: bytes, what: str) -> None:
    if len(data) > _TLV_MAX:
        raise LocalProtocolError(f"{what}: {len(data)} bytes of data exceed the 255-byte Length")
    writer.push_uint8(ext_type, f"{what} Type")
    writer.push_uint8(len(data), f"{what} Length")
    writer.push_bytes(data)


def _auth_data(spi: int, authenticator: bytes, what: str) -> bytes:
    inner = Writer()
    inner.push_uint32(spi, f"{what} SPI")
    inner.push_bytes(_as_bytes(authenticator, f"{what} authenticator"))
    return inner.getvalue()


def _as_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise LocalProtocolError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _as_network(value: object, what: str) -> IPv4Network:
    if not isinstance(value, IPv4Network):
        raise LocalProtocolError(f"{what} must be an IPv4Network, got {value!r}")
    return value


def _prefix_bytes(prefix: IPv4Network, what: str) -> bytes:
    prefix = _as_network(prefix, what)
    return bytes([prefix.prefixlen]) + prefix.network_address.packed


def _encode_text(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise LocalProtocolError(f"{what} must be str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise LocalProtocolError(f"{what} is not encodable as UTF-8: {exc.reason}") from None


def push_extension(writer: Writer, extension: Extension) -> None:
    """Append one control-message extension; LocalProtocolError if it cannot be encoded."""
    T = ExtensionType
    match extension:
        case OneBytePadding():
            writer.push_uint8(T.ONE_BYTE_PADDING, "One-byte Padding")
        case MobileHomeAuth(spi, authenticator):
            what = "Mobile-Home Authentication"
            _push_tlv(
                writer, T.MOBILE_HOME_AUTHENTICATION, _auth_data(spi, authenticator, what), what
            )
        case MobileForeignAuth(spi, authenticator):
            what = "Mobile-Foreign Authentication"
            _push_tlv(
                writer, T.MOBILE_FOREIGN_AUTHENTICATION, _auth_data(spi, authenticator, what), what
            )
        case ForeignHomeAuth(spi, authenticator):
            what = "Foreign-Home Authentication"
            _push_tlv(
                writer, T.FOREIGN_HOME_AUTHENTICATION, _auth_data(spi, authenticator, what), what
            )
        case GeneralizedAuth(subtype, spi, authenticator):
            what = "Generalized Authentication"
            data = _auth_data(spi, authenticator, what)
            writer.push_uint8(T.GENERALIZED_AUTHENTICATION, f"{what} Type")
            writer.push_uint8(subtype, f"{what} Subtype")
            writer.push_uint16(len(data), f"{what} Length")
            writer.push_bytes(data)
        case EncapsulatingDeliveryStyle():
            _push_tlv(writer, T.ENCAPSULATING_DELIVERY_STYLE, b"", "Encapsulating Delivery Style")
        case MobileNodeNAI(nai):
            _push_tlv(writer, T.MOBILE_NODE_NAI, _encode_text(nai, "MN-NAI"), "MN-NAI")
        case MobileForeignChallenge(challenge):
            what = "Mobile-Foreign Challenge"
            _push_tlv(writer, T.MOBILE_FOREIGN_CHALLENGE, _as_bytes(challenge, what), what)
        case RevocationSupport(inform, timestamp):
            inner = Writer()
            inner.push_uint16(0x8000 if inform else 0, "Revocation Support flags")
            inner.push_uint32(timestamp, "Revocation Support Timestamp")
            _push_tlv(writer, T.REVOCATION_SUPPORT, inner.getvalue(), "Revocation Support")
        case UDPTunnelRequest(force, through_fa, encapsulation):
            inner = Writer()
            inner.push_uint8(0, "Sub-Type")
            inner.push_uint8(0, "Reserved 1")
            inner.push_uint8((0x80 if force else 0) | (0x40 if through_fa else 0), "flags")
            inner.push_uint8(encapsulation, "UDP Tunnel Request Encapsulation")
            inner.push_uint16(0, "Reserved 3")
            _push_tlv(writer, T.UDP_TUNNEL_REQUEST, inner.getvalue(), "UDP Tunnel Request")
        case UDPTunnelReply(code, forced, keepalive):
            inner = Writer()
            inner.push_uint8(0, "Sub-Type")
            inner.push_uint8(code, "UDP Tunnel Reply Code")
            inner.push_uint16(0x8000 if forced else 0, "flags")
            inner.push_uint16(keepalive, "UDP Tunnel Reply Keepalive Interval")
            _push_tlv(writer, T.UDP_TUNNEL_REPLY, inner.getvalue(), "UDP Tunnel Reply")
        case MessageString(text):
            data = b"\x01" + _encode_text(text, "Message String text")
            _push_tlv(writer, T.MESSAGE_STRING, data, "Message String")
        case MobileNetworkRequest(prefix):
            what = "Mobile Network Request"
            data = bytes([MobileNetworkSubtype.MOBILE_NETWORK_REQUEST]) + _prefix_bytes(
                prefix, what
            )
            _push_tlv(writer, T.MOBILE_NETWORK, data, what)
        case MobileNetworkAck(code, prefix, implicit):
            what = "Mobile Network Acknowledgement"
            prefix = _as_network(prefix, f"{what} prefix")
            subtype = (
                MobileNetworkSubtype.IMPLICIT_MODE_ACKNOWLEDGEMENT
                if implicit
                else MobileNetworkSubtype.EXPLICIT_MODE_ACKNOWLEDGEMENT
            )
            inner = Writer()
            inner.push_uint8(subtype, "Sub-Type")
            inner.push_uint8(code, f"{what} Code")
            inner.push_uint8(prefix.prefixlen, "Prefix Length")
            inner.push_uint8(0, "Reserved")
            inner.push_bytes(prefix.network_address.packed)
            _push_tlv(writer, T.MOBILE_NETWORK, inner.getvalue(), what)
        case TrustedNetworksConfigured():
            _push_tlv(
                writer, T.TRUSTED_NETWORKS_CONFIGURED, b"\x00\x00", "Trusted Networks Configured"
            )
        case UnknownExtension(ext_type, data):
            if ext_type in (T.ONE_BYTE_PADDING, T.GENERALIZED_AUTHENTICATION):
                # Neither is TLV: the bytes would not decode back to this value.
                raise LocalProtocolError(f"UnknownExtension cannot carry type {ext_type}")
            _push_tlv(
                writer, ext_type, _as_bytes(data, "UnknownExtension data"), "UnknownExtension"
            )
        case _:
            raise LocalProtocolError(f"not a Mobile IP extension: {extension!r}")
