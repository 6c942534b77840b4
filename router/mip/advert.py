"""Agent Discovery over ICMP: Agent Advertisement and Agent Solicitation.

Theory of operation
-------------------
An Agent Advertisement is an ICMP Router Advertisement (RFC 1256 section 3,
type 9) followed by extensions from the ICMP Router Discovery number space
(RFC 5944 sections 1.8 and 2.1): Mobility Agent Advertisement (16),
Prefix-Lengths (19), One-byte Padding (0) and, from RFC 4721, Challenge (24).
An Agent Solicitation is an ICMP Router Solicitation (type 10, RFC 5944
section 2.2). The functions here take and return the ICMP message only (no IP
header); the IP TTL of 1 (RFC 5944 sections 2.1, 2.2) is the sender's job.

:func:`decode_icmp` verifies the ICMP checksum first (RFC 1256 sections 4.2,
5.2: a message with a bad checksum is silently discarded) and raises
:class:`DecodeError`, never anything else, on malformed input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address

from router.mip._wire import Reader, Writer, internet_checksum
from router.mip.errors import DecodeError, LocalProtocolError
from router.mip.extensions import (
    ExtensionType,
    OneBytePadding,
    UnknownExtension,
    check_consumed,
)

__all__ = [
    "AdvertisementChallenge",
    "AdvertisementCode",
    "AdvertisementExtension",
    "AdvertisementFlags",
    "AgentAdvertisement",
    "AgentSolicitation",
    "IcmpMessage",
    "IcmpType",
    "MobilityAgentAdvertisement",
    "PrefixLengths",
    "RouterAddress",
    "decode_icmp",
    "encode_icmp",
]


class IcmpType(IntEnum):
    ROUTER_ADVERTISEMENT = 9  # RFC 1256 section 3
    ROUTER_SOLICITATION = 10  # RFC 1256 section 3


class AdvertisementCode(IntEnum):
    """ICMP Code of an Agent Advertisement (RFC 5944 section 2.1)."""

    HANDLES_COMMON_TRAFFIC = 0
    DOES_NOT_ROUTE_COMMON_TRAFFIC = 16


class AdvertisementFlags(IntFlag):
    """Flags of the Mobility Agent Advertisement Extension, R B H F M G r T U X I (RFC 5944 2.1.1).

    The 16-bit word after Registration Lifetime; the low 5 bits are reserved.
    Bits are kept as received so the extension round-trips byte for byte.
    """

    R = 0x8000  # registration required
    B = 0x4000  # busy
    H = 0x2000  # home agent
    F = 0x1000  # foreign agent
    M = 0x0800  # minimal encapsulation
    G = 0x0400  # GRE encapsulation
    r = 0x0200  # sent as zero, ignored on reception
    T = 0x0100  # reverse tunnelling (RFC 3024)
    U = 0x0080  # UDP tunnelling (RFC 3519 section 3.4)
    X = 0x0040  # registration revocation (RFC 3543)
    I = 0x0020  # regional registration  # noqa: E741 - the RFC's name


# RFC 5944 section 2.1.1: a Registration Lifetime of 0xffff means infinity.
INFINITE_REGISTRATION_LIFETIME = 0xFFFF
_ADDR_ENTRY_SIZE = 2  # 32-bit words per router address (RFC 1256 section 3)


@dataclass(frozen=True, slots=True)
class RouterAddress:
    """One Router Address / Preference Level pair (RFC 1256 section 3); preference is signed."""

    address: IPv4Address
    preference: int = 0


@dataclass(frozen=True, slots=True)
class MobilityAgentAdvertisement:
    """Extension 16 (RFC 5944 section 2.1.1)."""

    sequence_number: int
    registration_lifetime: int
    flags: AdvertisementFlags
    care_of_addresses: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True, slots=True)
class PrefixLengths:
    """Extension 19 (RFC 5944 section 2.1.2): one prefix length per router address, in order."""

    prefix_lengths: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AdvertisementChallenge:
    """Extension 24, the foreign agent's challenge (RFC 4721 section 2)."""

    challenge: bytes


AdvertisementExtension = (
    MobilityAgentAdvertisement
    | PrefixLengths
    | AdvertisementChallenge
    | OneBytePadding
    | UnknownExtension
)


@dataclass(frozen=True, slots=True)
class AgentAdvertisement:
    """ICMP Router Advertisement plus its Mobile IP extensions (RFC 5944 section 2.1).

    Without a :class:`MobilityAgentAdvertisement` extension it is a plain
    router advertisement (``mobility`` is None).
    """

    lifetime: int
    router_addresses: tuple[RouterAddress, ...] = ()
    extensions: tuple[AdvertisementExtension, ...] = ()
    code: int = AdvertisementCode.HANDLES_COMMON_TRAFFIC

    @property
    def mobility(self) -> MobilityAgentAdvertisement | None:
        for extension in self.extensions:
            if isinstance(extension, MobilityAgentAdvertisement):
                return extension
        return None

    @property
    def prefix_lengths(self) -> tuple[int, ...] | None:
        for extension in self.extensions:
            if isinstance(extension, PrefixLengths):
                return extension.prefix_lengths
        return None


@dataclass(frozen=True, slots=True)
class AgentSolicitation:
    """ICMP Router Solicitation (RFC 1256 section 3; RFC 5944 section 2.2)."""


IcmpMessage = AgentAdvertisement | AgentSolicitation


# ---------------------------------------------------------------------------
# Decoding


def _pull_advert_extension(reader: Reader) -> AdvertisementExtension:
    ext_type = reader.pull_uint8("extension Type")
    if ext_type == ExtensionType.ONE_BYTE_PADDING:
        return OneBytePadding()
    length_offset = reader.pos
    length = reader.pull_uint8(f"Length of extension {ext_type}")
    body = reader.sub_reader(length, f"data of extension {ext_type}")
    if ext_type == ExtensionType.MOBILITY_AGENT_ADVERTISEMENT:
        # Length is 6 + 4*N (RFC 5944 section 2.1.1).
        if length < 6 or (length - 6) % 4:
            raise DecodeError(
                length_offset, "Mobility Agent Advertisement Length 6 + 4*N", f"got {length}"
            )
        sequence_number = body.pull_uint16("Sequence Number")
        registration_lifetime = body.pull_uint16("Registration Lifetime")
        flags = AdvertisementFlags(body.pull_uint16("Mobility Agent Advertisement flags"))
        care_of_addresses = tuple(
            body.pull_ipv4("Care-of Address") for _ in range((length - 6) // 4)
        )
        extension: AdvertisementExtension = MobilityAgentAdvertisement(
            sequence_number, registration_lifetime, flags, care_of_addresses
        )
    elif ext_type == ExtensionType.PREFIX_LENGTHS:
        extension = PrefixLengths(tuple(body.pull_rest()))
    elif ext_type == ExtensionType.CHALLENGE:
        extension = AdvertisementChallenge(body.pull_rest())
    else:
        extension = UnknownExtension(ext_type, body.pull_rest())
    check_consumed(body, ext_type)
    return extension


def decode_icmp(data: bytes) -> IcmpMessage:
    """Decode an ICMP Agent Advertisement or Agent Solicitation (no IP header).

    Raises :class:`DecodeError` on a bad checksum or malformed message.
    """
    data = bytes(data)
    reader = Reader(data)
    icmp_type = reader.pull_uint8("ICMP Type")
    code = reader.pull_uint8("ICMP Code")
    received = reader.pull_uint16("ICMP Checksum")
    # RFC 1256 sections 4.2 / 5.2: verify the checksum before anything else.
    if internet_checksum(data) != 0:
        computed = internet_checksum(data[:2] + b"\x00\x00" + data[4:])
        raise DecodeError(2, f"ICMP Checksum 0x{computed:04x}", f"got 0x{received:04x}")
    if icmp_type == IcmpType.ROUTER_SOLICITATION:
        # RFC 1256 section 4.2: Code 0, at least 8 octets; Reserved and any further
        # octets are ignored.
        if code != 0:
            raise DecodeError(1, "ICMP Code 0 for a Router Solicitation", f"got {code}")
        reader.pull_uint32("Reserved")
        return AgentSolicitation()
    if icmp_type != IcmpType.ROUTER_ADVERTISEMENT:
        raise DecodeError(0, "ICMP Type 9 or 10", f"got {icmp_type}")
    num_addrs = reader.pull_uint8("Num Addrs")
    entry_size_offset = reader.pos
    entry_size = reader.pull_uint8("Addr Entry Size")
    lifetime = reader.pull_uint16("Lifetime")
    if num_addrs and entry_size < _ADDR_ENTRY_SIZE:
        # RFC 1256 section 5.2 (RFC 5944 allows Num Addrs 0, so only check when used).
        raise DecodeError(entry_size_offset, "Addr Entry Size >= 2", f"got {entry_size}")
    router_addresses = []
    for _ in range(num_addrs):
        entry = reader.sub_reader(entry_size * 4, "router address entry")
        address = entry.pull_ipv4("Router Address")
        preference = entry.pull_int32("Preference Level")
        # Extra per-address words (entry size > 2) are ignored (RFC 1256 section 5.2).
        router_addresses.append(RouterAddress(address, preference))
    extensions = []
    while not reader.eof():
        extensions.append(_pull_advert_extension(reader))
    return AgentAdvertisement(
        lifetime=lifetime,
        router_addresses=tuple(router_addresses),
        extensions=tuple(extensions),
        code=_code(code),
    )


def _code(value: int) -> int:
    try:
        return AdvertisementCode(value)
    except ValueError:
        return value


# ---------------------------------------------------------------------------
# Encoding


def _push_tlv(writer: Writer, ext_type: int, data: bytes, what: str) -> None:
    if len(data) > 255:
        raise LocalProtocolError(f"{what}: {len(data)} bytes of data exceed the 255-byte Length")
    writer.push_uint8(ext_type, f"{what} Type")
    writer.push_uint8(len(data), f"{what} Length")
    writer.push_bytes(data)


def _push_advert_extension(writer: Writer, extension: AdvertisementExtension) -> None:
    match extension:
        case OneBytePadding():
            writer.push_uint8(ExtensionType.ONE_BYTE_PADDING, "One-byte Padding")
        case MobilityAgentAdvertisement(sequence, registration_lifetime, flags, addresses):
            inner = Writer()
            inner.push_uint16(sequence, "Sequence Number")
            inner.push_uint16(registration_lifetime, "Registration Lifetime")
            inner.push_uint16(int(flags), "Mobility Agent Advertisement flags")
            for address in addresses:
                inner.push_ipv4(address, "Care-of Address")
            _push_tlv(
                writer,
                ExtensionType.MOBILITY_AGENT_ADVERTISEMENT,
                inner.getvalue(),
                "Mobility Agent Advertisement",
            )
        case PrefixLengths(lengths):
            inner = Writer()
            for length in lengths:
                inner.push_uint8(length, "Prefix Length")
            _push_tlv(writer, ExtensionType.PREFIX_LENGTHS, inner.getvalue(), "Prefix-Lengths")
        case AdvertisementChallenge(challenge):
            if not isinstance(challenge, bytes):
                raise LocalProtocolError("Challenge must be bytes")
            _push_tlv(writer, ExtensionType.CHALLENGE, challenge, "Challenge")
        case UnknownExtension(ext_type, data):
            if ext_type == ExtensionType.ONE_BYTE_PADDING:
                raise LocalProtocolError("UnknownExtension cannot carry type 0 (One-byte Padding)")
            if not isinstance(data, bytes):
                raise LocalProtocolError("UnknownExtension data must be bytes")
            _push_tlv(writer, ext_type, data, "UnknownExtension")
        case _:
            raise LocalProtocolError(f"not an Agent Advertisement extension: {extension!r}")


def encode_icmp(message: IcmpMessage) -> bytes:
    """Encode an Agent Advertisement or Solicitation as an ICMP message with its checksum."""
    writer = Writer()
    match message:
        case AgentSolicitation():
            writer.push_uint8(IcmpType.ROUTER_SOLICITATION, "ICMP Type")
            writer.push_uint8(0, "ICMP Code")
            writer.push_uint16(0, "ICMP Checksum")
            writer.push_uint32(0, "Reserved")
        case AgentAdvertisement():
            writer.push_uint8(IcmpType.ROUTER_ADVERTISEMENT, "ICMP Type")
            writer.push_uint8(message.code, "ICMP Code")
            writer.push_uint16(0, "ICMP Checksum")
            writer.push_uint8(len(message.router_addresses), "Num Addrs")
            writer.push_uint8(_ADDR_ENTRY_SIZE, "Addr Entry Size")
            writer.push_uint16(message.lifetime, "Lifetime")
            for router in message.router_addresses:
                writer.push_ipv4(router.address, "Router Address")
                writer.push_int32(router.preference, "Preference Level")
            for extension in message.extensions:
                _push_advert_extension(writer, extension)
        case _:
            raise LocalProtocolError(f"not an ICMP agent discovery message: {message!r}")
    data = writer.getvalue()
    writer.patch_uint16(2, internet_checksum(data), "ICMP Checksum")
    return writer.getvalue()
