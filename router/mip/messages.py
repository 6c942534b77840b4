"""Mobile IP control messages on UDP port 434: values, fixed headers, encode/decode.

Theory of operation
-------------------
Each message is a fixed header (one ``pull_*``/``push_*`` pair per type)
followed by extensions up to the end of the UDP payload (RFC 5944 section 1.8),
decoded by :func:`router.mip.extensions.pull_extension`. :func:`decode`
dispatches on the first byte; an unknown type is a :class:`DecodeError`.

Authentication needs raw bytes, not re-encoded ones: an authenticator covers
the UDP payload up to and including its own extension's Type, Length and SPI
(RFC 5944 section 3.5.1). :func:`decode_with_offsets` therefore also returns
the byte offset of each extension in the input, so a verifier takes
``data[:offset + AUTH_HEADER_LENGTH]`` of the received datagram.

Flag words keep every bit as received (the RFC's "ignored on reception" is
for the state machines to honour), so flags round-trip byte for byte.
Reply codes that we do not know decode as plain ints: an unknown denial is
still a denial, never a decode failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address

from router.mip._wire import Reader, Writer
from router.mip.errors import DecodeError, LocalProtocolError
from router.mip.extensions import Extension, pull_extension, push_extension

__all__ = [
    "MIP_PORT",
    "Message",
    "MessageType",
    "RegistrationReply",
    "RegistrationRequest",
    "RegistrationRevocation",
    "ReplyCode",
    "RequestFlags",
    "RevocationAcknowledgement",
    "TunnelData",
    "decode",
    "decode_with_offsets",
    "encode",
    "encode_with_offsets",
    "reply_code",
]

MIP_PORT = 434  # RFC 5944 section 1.8


class MessageType(IntEnum):
    """Mobile IP control message types (first byte of the UDP payload)."""

    REGISTRATION_REQUEST = 1  # RFC 5944 section 3.3
    REGISTRATION_REPLY = 3  # RFC 5944 section 3.4
    TUNNEL_DATA = 4  # RFC 3519 section 3.3
    REGISTRATION_REVOCATION = 7  # RFC 3543 section 3.3 / 7.1
    REVOCATION_ACKNOWLEDGEMENT = 15  # RFC 3543 section 3.4 / 7.1


class RequestFlags(IntFlag):
    """The flag byte of a Registration Request, S B D M G r T x (RFC 5944 section 3.3)."""

    S = 0x80  # simultaneous bindings
    B = 0x40  # broadcast datagrams
    D = 0x20  # decapsulation by mobile node (co-located care-of address)
    M = 0x10  # minimal encapsulation
    G = 0x08  # GRE encapsulation
    r = 0x04  # sent as zero, ignored on reception
    T = 0x02  # reverse tunnelling requested (RFC 3024)
    x = 0x01  # sent as zero, ignored on reception

    # Readable aliases for the same bits.
    SIMULTANEOUS_BINDINGS = 0x80
    BROADCAST_DATAGRAMS = 0x40
    DECAPSULATION_BY_MOBILE_NODE = 0x20
    MINIMAL_ENCAPSULATION = 0x10
    GRE_ENCAPSULATION = 0x08
    REVERSE_TUNNELING = 0x02


class ReplyCode(IntEnum):
    """Registration Reply Code values, named after the RFC text that defines them."""

    # RFC 5944 section 3.4: registration successful.
    REGISTRATION_ACCEPTED = 0
    REGISTRATION_ACCEPTED_NO_SIMULTANEOUS_BINDINGS = 1
    # RFC 5944 section 3.4: denied by the foreign agent.
    FA_REASON_UNSPECIFIED = 64
    FA_ADMINISTRATIVELY_PROHIBITED = 65
    FA_INSUFFICIENT_RESOURCES = 66
    FA_MOBILE_NODE_FAILED_AUTHENTICATION = 67
    FA_HOME_AGENT_FAILED_AUTHENTICATION = 68
    FA_REQUESTED_LIFETIME_TOO_LONG = 69
    FA_POORLY_FORMED_REQUEST = 70
    FA_POORLY_FORMED_REPLY = 71
    FA_REQUESTED_ENCAPSULATION_UNAVAILABLE = 72
    FA_RESERVED_AND_UNAVAILABLE = 73
    # RFC 3024 section 3.4: reverse tunnelling, denied by the foreign agent.
    FA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE = 74
    FA_REVERSE_TUNNEL_MANDATORY_T_BIT_NOT_SET = 75
    FA_MOBILE_NODE_TOO_DISTANT = 76
    FA_INVALID_CARE_OF_ADDRESS = 77  # RFC 5944
    FA_REGISTRATION_TIMEOUT = 78  # RFC 5944
    FA_DELIVERY_STYLE_NOT_SUPPORTED = 79  # RFC 3024
    FA_HOME_NETWORK_UNREACHABLE = 80  # RFC 5944 (ICMP error received)
    FA_HOME_AGENT_HOST_UNREACHABLE = 81
    FA_HOME_AGENT_PORT_UNREACHABLE = 82
    FA_HOME_AGENT_UNREACHABLE = 88  # other ICMP error received
    # RFC 2794 section 5: NAI, denied by the foreign agent.
    NONZERO_HOMEADDR_REQD = 96
    MISSING_NAI = 97
    MISSING_HOME_AGENT = 98
    MISSING_HOMEADDR = 99
    # RFC 4721 section 10: challenge/response.
    UNKNOWN_CHALLENGE = 104
    MISSING_CHALLENGE = 105
    STALE_CHALLENGE = 106
    FA_BAD_AAA_AUTH = 108
    HA_WRONG_CHALLENGE = 109
    # RFC 5944 section 3.4: denied by the home agent.
    HA_REASON_UNSPECIFIED = 128
    HA_ADMINISTRATIVELY_PROHIBITED = 129
    HA_INSUFFICIENT_RESOURCES = 130
    HA_MOBILE_NODE_FAILED_AUTHENTICATION = 131
    HA_FOREIGN_AGENT_FAILED_AUTHENTICATION = 132
    HA_REGISTRATION_IDENTIFICATION_MISMATCH = 133
    HA_POORLY_FORMED_REQUEST = 134
    HA_TOO_MANY_SIMULTANEOUS_MOBILITY_BINDINGS = 135
    HA_UNKNOWN_HOME_AGENT_ADDRESS = 136
    # RFC 3024 section 3.4: reverse tunnelling, denied by the home agent.
    HA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE = 137
    HA_REVERSE_TUNNEL_MANDATORY_T_BIT_NOT_SET = 138
    HA_REQUESTED_ENCAPSULATION_UNAVAILABLE = 139
    # RFC 3519 sections 3.5 / 8: requested UDP tunnel encapsulation unavailable.
    ERROR_HA_UDP_ENCAP_UNAVAIL = 142
    # RFC 4721 section 10.
    HA_BAD_AAA_AUTH = 144
    # RFC 5177 section 11, table 3: NEMO.
    HA_MOBNET_ERROR = 147
    HA_MOBNET_DISALLOWED = 148
    # RFC 5944 section 3.4 lists 194 with the foreign agent codes.
    INVALID_HOME_AGENT_ADDRESS = 194


def reply_code(value: int) -> int:
    """``ReplyCode(value)`` if known, else ``value`` unchanged."""
    try:
        return ReplyCode(value)
    except ValueError:
        return value


def is_accepted(code: int) -> bool:
    """RFC 5944 section 3.4: codes 0 and 1 mean the registration was accepted."""
    return code in (
        ReplyCode.REGISTRATION_ACCEPTED,
        ReplyCode.REGISTRATION_ACCEPTED_NO_SIMULTANEOUS_BINDINGS,
    )


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """RFC 5944 section 3.3. Lifetime 0 = deregistration, 0xffff = infinity."""

    flags: RequestFlags
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    identification: int
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistrationReply:
    """RFC 5944 section 3.4. ``code`` is a :class:`ReplyCode` or, if unknown, a plain int."""

    code: int
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    identification: int
    extensions: tuple[Extension, ...] = ()

    @property
    def accepted(self) -> bool:
        return is_accepted(self.code)


@dataclass(frozen=True, slots=True)
class RegistrationRevocation:
    """RFC 3543 section 3.3.

    ``sent_by_home_agent`` is the 'A' bit (1 = the revoking agent serves the
    binding as home agent); ``inform`` is the 'I' bit. ``revocation_identifier``
    is the revoking agent's 32-bit timestamp (section 3.5).
    """

    home_address: IPv4Address
    home_domain_address: IPv4Address
    foreign_domain_address: IPv4Address
    revocation_identifier: int
    sent_by_home_agent: bool = True
    inform: bool = False
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class RevocationAcknowledgement:
    """RFC 3543 section 3.4: Home Address and Revocation Identifier copied from the revocation."""

    home_address: IPv4Address
    revocation_identifier: int
    inform: bool = False
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class TunnelData:
    """MIP Tunnel Data message, RFC 3519 section 3.3: a header then the tunnelled packet."""

    next_header: int
    payload: bytes

    @property
    def extensions(self) -> tuple[Extension, ...]:
        # Uniform with the other messages: tunnel data never carries extensions.
        return ()


Message = (
    RegistrationRequest
    | RegistrationReply
    | RegistrationRevocation
    | RevocationAcknowledgement
    | TunnelData
)

# RFC 3543 sections 3.3/3.4: the A and I bits lead the 16-bit flags word.
_A_BIT = 0x8000
_I_BIT = 0x4000
_ACK_I_BIT = 0x8000


# ---------------------------------------------------------------------------
# Decoding


def _pull_extensions(reader: Reader) -> tuple[tuple[Extension, ...], tuple[int, ...]]:
    extensions: list[Extension] = []
    offsets: list[int] = []
    while not reader.eof():
        offsets.append(reader.pos)
        extensions.append(pull_extension(reader))
    return tuple(extensions), tuple(offsets)


def _pull_request(reader: Reader) -> RegistrationRequest:
    flags = RequestFlags(reader.pull_uint8("Registration Request flags"))
    lifetime = reader.pull_uint16("Lifetime")
    home_address = reader.pull_ipv4("Home Address")
    home_agent = reader.pull_ipv4("Home Agent")
    care_of_address = reader.pull_ipv4("Care-of Address")
    identification = reader.pull_uint64("Identification")
    return RegistrationRequest(
        flags, lifetime, home_address, home_agent, care_of_address, identification
    )


def _pull_reply(reader: Reader) -> RegistrationReply:
    code = reply_code(reader.pull_uint8("Code"))
    lifetime = reader.pull_uint16("Lifetime")
    home_address = reader.pull_ipv4("Home Address")
    home_agent = reader.pull_ipv4("Home Agent")
    identification = reader.pull_uint64("Identification")
    return RegistrationReply(code, lifetime, home_address, home_agent, identification)


def _pull_revocation(reader: Reader) -> RegistrationRevocation:
    reader.pull_uint8("Reserved")
    flags = reader.pull_uint16("Revocation flags")
    home_address = reader.pull_ipv4("Home Address")
    home_domain_address = reader.pull_ipv4("Home Domain Address")
    foreign_domain_address = reader.pull_ipv4("Foreign Domain Address")
    revocation_identifier = reader.pull_uint32("Revocation Identifier")
    return RegistrationRevocation(
        home_address=home_address,
        home_domain_address=home_domain_address,
        foreign_domain_address=foreign_domain_address,
        revocation_identifier=revocation_identifier,
        sent_by_home_agent=bool(flags & _A_BIT),
        inform=bool(flags & _I_BIT),
    )


def _pull_revocation_ack(reader: Reader) -> RevocationAcknowledgement:
    reader.pull_uint8("Reserved")
    flags = reader.pull_uint16("Revocation Acknowledgement flags")
    home_address = reader.pull_ipv4("Home Address")
    revocation_identifier = reader.pull_uint32("Revocation Identifier")
    return RevocationAcknowledgement(
        home_address=home_address,
        revocation_identifier=revocation_identifier,
        inform=bool(flags & _ACK_I_BIT),
    )


def decode_with_offsets(data: bytes) -> tuple[Message, tuple[int, ...]]:
    """Decode a UDP port 434 payload; also return each extension's offset in ``data``.

    Raises :class:`DecodeError` (and nothing else) on malformed input.
    """
    data = bytes(data)
    reader = Reader(data)
    message_type = reader.pull_uint8("message Type")
    message: Message
    if message_type == MessageType.TUNNEL_DATA:
        next_header = reader.pull_uint8("Next Header")
        reader.pull_uint16("Reserved")
        return TunnelData(next_header, reader.pull_rest()), ()
    if message_type == MessageType.REGISTRATION_REQUEST:
        message = _pull_request(reader)
    elif message_type == MessageType.REGISTRATION_REPLY:
        message = _pull_reply(reader)
    elif message_type == MessageType.REGISTRATION_REVOCATION:
        message = _pull_revocation(reader)
    elif message_type == MessageType.REVOCATION_ACKNOWLEDGEMENT:
        message = _pull_revocation_ack(reader)
    else:
        raise DecodeError(0, "a Mobile IP message Type (1, 3, 4, 7 or 15)", f"got {message_type}")
    extensions, offsets = _pull_extensions(reader)
    if extensions:
        # Build once more with the extensions; dataclasses are frozen.
        message = _with_extensions(message, extensions)
    return message, offsets


def _with_extensions(message: Message, extensions: tuple[Extension, ...]) -> Message:
    match message:
        case RegistrationRequest():
            return RegistrationRequest(
                message.flags,
                message.lifetime,
                message.home_address,
                message.home_agent,
                message.care_of_address,
                message.identification,
                extensions,
            )
        case RegistrationReply():
            return RegistrationReply(
                message.code,
                message.lifetime,
                message.home_address,
                message.home_agent,
                message.identification,
                extensions,
            )
        case RegistrationRevocation():
            return RegistrationRevocation(
                message.home_address,
                message.home_domain_address,
                message.foreign_domain_address,
                message.revocation_identifier,
                message.sent_by_home_agent,
                message.inform,
                extensions,
            )
        case RevocationAcknowledgement():
            return RevocationAcknowledgement(
                message.home_address, message.revocation_identifier, message.inform, extensions
            )
        case _:  # TunnelData carries no extensions
            return message


def decode(data: bytes) -> Message:
    """Decode a UDP port 434 payload; :class:`DecodeError` on malformed input."""
    return decode_with_offsets(data)[0]


# ---------------------------------------------------------------------------
# Encoding


def _push_extensions(writer: Writer, extensions: tuple[Extension, ...]) -> tuple[int, ...]:
    if not isinstance(extensions, tuple):
        raise LocalProtocolError(f"extensions must be a tuple, got {type(extensions).__name__}")
    offsets = []
    for extension in extensions:
        offsets.append(len(writer))
        push_extension(writer, extension)
    return tuple(offsets)


def encode_with_offsets(message: Message) -> tuple[bytes, tuple[int, ...]]:
    """Encode ``message``; also return each extension's offset in the result.

    Raises :class:`LocalProtocolError` when a field does not fit on the wire.
    """
    writer = Writer()
    match message:
        case RegistrationRequest():
            writer.push_uint8(MessageType.REGISTRATION_REQUEST, "Type")
            writer.push_uint8(int(message.flags), "Registration Request flags")
            writer.push_uint16(message.lifetime, "Lifetime")
            writer.push_ipv4(message.home_address, "Home Address")
            writer.push_ipv4(message.home_agent, "Home Agent")
            writer.push_ipv4(message.care_of_address, "Care-of Address")
            writer.push_uint64(message.identification, "Identification")
        case RegistrationReply():
            writer.push_uint8(MessageType.REGISTRATION_REPLY, "Type")
            writer.push_uint8(message.code, "Code")
            writer.push_uint16(message.lifetime, "Lifetime")
            writer.push_ipv4(message.home_address, "Home Address")
            writer.push_ipv4(message.home_agent, "Home Agent")
            writer.push_uint64(message.identification, "Identification")
        case RegistrationRevocation():
            writer.push_uint8(MessageType.REGISTRATION_REVOCATION, "Type")
            writer.push_uint8(0, "Reserved")
            flags = (_A_BIT if message.sent_by_home_agent else 0) | (
                _I_BIT if message.inform else 0
            )
            writer.push_uint16(flags, "Revocation flags")
            writer.push_ipv4(message.home_address, "Home Address")
            writer.push_ipv4(message.home_domain_address, "Home Domain Address")
            writer.push_ipv4(message.foreign_domain_address, "Foreign Domain Address")
            writer.push_uint32(message.revocation_identifier, "Revocation Identifier")
        case RevocationAcknowledgement():
            writer.push_uint8(MessageType.REVOCATION_ACKNOWLEDGEMENT, "Type")
            writer.push_uint8(0, "Reserved")
            writer.push_uint16(_ACK_I_BIT if message.inform else 0, "Revocation Ack flags")
            writer.push_ipv4(message.home_address, "Home Address")
            writer.push_uint32(message.revocation_identifier, "Revocation Identifier")
        case TunnelData():
            writer.push_uint8(MessageType.TUNNEL_DATA, "Type")
            writer.push_uint8(message.next_header, "Next Header")
            writer.push_uint16(0, "Reserved")
            if not isinstance(message.payload, bytes | bytearray):
                raise LocalProtocolError("TunnelData payload must be bytes")
            writer.push_bytes(bytes(message.payload))
            return writer.getvalue(), ()
        case _:
            raise LocalProtocolError(f"not a Mobile IP message: {message!r}")
    offsets = _push_extensions(writer, message.extensions)
    return writer.getvalue(), offsets


def encode(message: Message) -> bytes:
    """Encode ``message`` as a UDP port 434 payload."""
    return encode_with_offsets(message)[0]
