"""Mobile-Home authentication (RFC 5944 §3.2, §3.5, §5.1).

Theory of operation
-------------------
A Mobility Security Association (SA) is selected by the SPI carried in the
Mobile-Home Authentication Extension (type 32) together with the peer's address
(§3.2: "indexed by their SPI and IP address"; for the home agent that is the
mobile node's home address). The SA fixes the algorithm, the key and the style
of replay protection.

The authenticator covers exactly (§3.5.1): the fixed part of the message, every
extension before the authentication extension in its entirety, and that
extension's Type, Length and SPI -- i.e. ``datagram[:offset_of_auth_ext + 6]``.
The UDP header and the authenticator itself are not covered.

Extensions *after* the Mobile-Home Authentication Extension are not covered
(§3.6.1.3 and §3.8.3.3 reserve that place for a foreign agent's extensions).
Our decision: :func:`verify` returns them separately as ``trailing`` and the
registration machine and home agent act only on ``covered`` extensions. An
unknown non-skippable extension anywhere still makes the codec's caller discard
the message (§1.8); that is the caller's check, not authentication's.

Algorithms (§5.1):

- HMAC-MD5 (RFC 2104), the mandatory default: 16-byte authenticator.
- keyed MD5 "prefix+suffix", MD5(key || data || key), for old home agents that
  only speak RFC 2002 style; §5.1 says implementations SHOULD keep it for
  backward compatibility although it is considered weak.
- HMAC-SHA-256 for our own pairs: 32-byte authenticator.

Comparisons use :func:`hmac.compare_digest`; keys never appear in ``repr``/``str``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from ipaddress import IPv4Address

from .errors import DecodeError, LocalProtocolError
from .extensions import (
    AUTH_HEADER_LENGTH,
    Extension,
    ExtensionType,
    ForeignHomeAuth,
    MobileForeignAuth,
    MobileHomeAuth,
)
from .identification import DEFAULT_TIMESTAMP_TOLERANCE, ReplayMethod
from .messages import Message, decode_with_offsets

__all__ = [
    "AUTHENTICATOR_LENGTH",
    "AuthAlgorithm",
    "AuthFailure",
    "SecurityAssociation",
    "SecurityAssociationTable",
    "Verification",
    "compute_authenticator",
    "sign",
    "verify",
]

#: Type (1) + Length (1) + SPI (4): the part of the extension the authenticator covers.
_AUTH_HEADER = struct.Struct("!BBI")
assert _AUTH_HEADER.size == AUTH_HEADER_LENGTH


class AuthAlgorithm(IntEnum):
    """Authentication algorithm and mode selected by an SA (§3.5.1, §5.1)."""

    HMAC_MD5 = 1
    KEYED_MD5 = 2
    HMAC_SHA256 = 3


AUTHENTICATOR_LENGTH: dict[AuthAlgorithm, int] = {
    AuthAlgorithm.HMAC_MD5: 16,
    AuthAlgorithm.KEYED_MD5: 16,
    AuthAlgorithm.HMAC_SHA256: 32,
}


def compute_authenticator(algorithm: AuthAlgorithm, key: bytes, data: bytes) -> bytes:
    """The authenticator of ``data`` (already cut to the §3.5.1 coverage) under ``key``."""
    if algorithm is AuthAlgorithm.HMAC_MD5:
        return hmac.digest(key, data, "md5")
    if algorithm is AuthAlgorithm.HMAC_SHA256:
        return hmac.digest(key, data, "sha256")
    if algorithm is AuthAlgorithm.KEYED_MD5:
        # RFC 2002 style prefix+suffix keyed MD5 (the legacy mode §5.1 mentions).
        return hashlib.md5(key + data + key, usedforsecurity=False).digest()
    raise LocalProtocolError(f"unknown authentication algorithm {algorithm!r}")


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """One Mobility Security Association. The key never shows in ``repr`` or ``str``."""

    spi: int
    algorithm: AuthAlgorithm
    key: bytes = field(repr=False)
    replay: ReplayMethod = ReplayMethod.TIMESTAMPS
    #: §5.7.1: time tolerance "specific to a particular Mobility Security Association".
    timestamp_tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE

    def __post_init__(self) -> None:
        # §1.6: "SPI values 0 through 255 are reserved and MUST NOT be used".
        if not 256 <= self.spi <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"SPI {self.spi} outside 256..4294967295 (RFC 5944 §1.6)")
        if not isinstance(self.algorithm, AuthAlgorithm):
            raise LocalProtocolError(f"unknown authentication algorithm {self.algorithm!r}")
        if not self.key:
            raise LocalProtocolError(f"SPI {self.spi}: empty key")

    def __repr__(self) -> str:
        return (
            f"SecurityAssociation(spi={self.spi}, algorithm={self.algorithm.name}, "
            f"key=<{len(self.key)} bytes hidden>, replay={self.replay.name}, "
            f"timestamp_tolerance={self.timestamp_tolerance})"
        )

    __str__ = __repr__

    @property
    def authenticator_length(self) -> int:
        return AUTHENTICATOR_LENGTH[self.algorithm]


class SecurityAssociationTable:
    """SAs indexed by (peer address, SPI), as RFC 5944 §3.2 asks.

    On the mobile node the peer is the home agent; on the home agent it is the
    mobile node's home address. ``default_for`` gives the SA to use when we must
    sign a reply but the peer's SPI was unknown (§3.8.2.1 a: "choose a security
    association that is likely to exist in the mobile node"): the first one added.
    """

    __slots__ = ("_by_key", "_default")

    def __init__(self) -> None:
        self._by_key: dict[tuple[IPv4Address, int], SecurityAssociation] = {}
        self._default: dict[IPv4Address, SecurityAssociation] = {}

    def add(self, peer: IPv4Address, sa: SecurityAssociation) -> None:
        key = (peer, sa.spi)
        if key in self._by_key:
            raise LocalProtocolError(f"duplicate SA for {peer} SPI {sa.spi}")
        self._by_key[key] = sa
        self._default.setdefault(peer, sa)

    def lookup(self, peer: IPv4Address, spi: int) -> SecurityAssociation | None:
        return self._by_key.get((peer, spi))

    def default_for(self, peer: IPv4Address) -> SecurityAssociation | None:
        return self._default.get(peer)

    def knows(self, peer: IPv4Address) -> bool:
        return peer in self._default

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"SecurityAssociationTable({len(self._by_key)} SAs, keys hidden)"


def sign(message_bytes: bytes, sa: SecurityAssociation) -> bytes:
    """Append a Mobile-Home Authentication Extension to an encoded message (§3.5.2).

    ``message_bytes`` is the fixed part plus every extension that must be covered
    (§3.6.1.3: all extensions the home agent uses come before this one).
    """
    header = _AUTH_HEADER.pack(
        ExtensionType.MOBILE_HOME_AUTHENTICATION, 4 + sa.authenticator_length, sa.spi
    )
    covered = message_bytes + header
    return covered + compute_authenticator(sa.algorithm, sa.key, covered)


class AuthFailure(StrEnum):
    """Why a message did not authenticate; the values double as drop-counter names."""

    MALFORMED = "malformed"
    NO_AUTH_EXTENSION = "no_auth_extension"
    MULTIPLE_AUTH_EXTENSIONS = "multiple_auth_extensions"
    #: §3.2: the Mobile-Home extension "MUST be the first authentication extension".
    AUTH_EXTENSION_ORDER = "auth_extension_order"
    UNKNOWN_SPI = "unknown_spi"
    BAD_LENGTH = "bad_authenticator_length"
    BAD_AUTHENTICATOR = "bad_authenticator"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of :func:`verify`.

    ``message`` is set whenever the datagram decoded (even if authentication
    failed: the home agent still builds a 131 reply from it). ``covered`` are the
    extensions before the Mobile-Home Authentication Extension, ``trailing`` those
    after it (not authenticated; see the module docstring).
    """

    failure: AuthFailure | None
    message: Message | None = None
    sa: SecurityAssociation | None = None
    spi: int | None = None
    covered: tuple[Extension, ...] = ()
    trailing: tuple[Extension, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


SALookup = Callable[[Message, int], SecurityAssociation | None]
"""``sa_lookup(decoded_message, spi)`` returns the SA or None."""


def verify(datagram: bytes, sa_lookup: SALookup) -> Verification:
    """Decode ``datagram`` and check its Mobile-Home Authentication Extension.

    Never raises on hostile input: every problem is an :class:`AuthFailure`.
    """
    try:
        message, offsets = decode_with_offsets(datagram)
    except DecodeError as error:
        return Verification(AuthFailure.MALFORMED, detail=str(error))
    extensions = message.extensions
    auth_index = -1
    for index, extension in enumerate(extensions):
        if isinstance(extension, MobileHomeAuth):
            if auth_index >= 0:
                # §3.6.2.1 b: exactly one Mobile-Home Authentication Extension.
                return Verification(AuthFailure.MULTIPLE_AUTH_EXTENSIONS, message)
            auth_index = index
        elif isinstance(extension, MobileForeignAuth | ForeignHomeAuth) and auth_index < 0:
            return Verification(AuthFailure.AUTH_EXTENSION_ORDER, message)
    if auth_index < 0:
        return Verification(AuthFailure.NO_AUTH_EXTENSION, message)
    auth = extensions[auth_index]
    assert isinstance(auth, MobileHomeAuth)
    covered = extensions[:auth_index]
    trailing = extensions[auth_index + 1 :]
    sa = sa_lookup(message, auth.spi)
    if sa is None:
        return Verification(AuthFailure.UNKNOWN_SPI, message, None, auth.spi, covered, trailing)
    if len(auth.authenticator) != sa.authenticator_length:
        return Verification(AuthFailure.BAD_LENGTH, message, sa, auth.spi, covered, trailing)
    end = offsets[auth_index] + AUTH_HEADER_LENGTH
    expected = compute_authenticator(sa.algorithm, sa.key, datagram[:end])
    if not hmac.compare_digest(expected, auth.authenticator):
        return Verification(AuthFailure.BAD_AUTHENTICATOR, message, sa, auth.spi, covered, trailing)
    return Verification(None, message, sa, auth.spi, covered, trailing)
