"""Mobile-Home authentication (RFC 5944 §3.5): RFC 2202 vectors, coverage, tampering, SPI."""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.mip.auth import (
    AuthAlgorithm,
    AuthFailure,
    SecurityAssociation,
    SecurityAssociationTable,
    compute_authenticator,
    sign,
    verify,
)
from router.mip.errors import LocalProtocolError
from router.mip.extensions import (
    MobileForeignAuth,
    MobileHomeAuth,
    MobileNetworkRequest,
    MobileNodeNAI,
)
from router.mip.identification import ReplayMethod
from router.mip.messages import (
    RegistrationRequest,
    RequestFlags,
    decode,
    encode,
)

# RFC 2202 section 2, typed in from /work/shared/rfc/rfc2202.txt: (key, data, digest).
RFC2202_HMAC_MD5 = [
    (b"\x0b" * 16, b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
    (b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
    (b"\xaa" * 16, b"\xdd" * 50, "56be34521d144c88dbb8c733f0e8b3f6"),
    (
        bytes.fromhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
        b"\xcd" * 50,
        "697eaf0aca3a3aea3a75164746ffaa79",
    ),
    (b"\x0c" * 16, b"Test With Truncation", "56461ef2342edc00f9bab995690efd4c"),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
    ),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
        "6f630fad67cda0ee1fb1f562db3aa53e",
    ),
]

HOME = IPv4Address("10.10.0.50")
HA = IPv4Address("10.10.0.1")
KEY = bytes(range(16))


def make_sa(
    algorithm: AuthAlgorithm = AuthAlgorithm.HMAC_MD5, spi: int = 256
) -> SecurityAssociation:
    key = KEY if algorithm is not AuthAlgorithm.HMAC_SHA256 else KEY * 2
    return SecurityAssociation(spi, algorithm, key, ReplayMethod.TIMESTAMPS)


def request_bytes(extensions: tuple = ()) -> bytes:
    return encode(
        RegistrationRequest(
            flags=RequestFlags.D | RequestFlags.T,
            lifetime=600,
            home_address=HOME,
            home_agent=HA,
            care_of_address=IPv4Address("198.51.100.7"),
            identification=0x0123456789ABCDEF,
            extensions=extensions,
        )
    )


def lookup_for(sa: SecurityAssociation):
    return lambda _message, spi: sa if spi == sa.spi else None


@pytest.mark.parametrize(("key", "data", "digest"), RFC2202_HMAC_MD5)
def test_rfc2202_hmac_md5_vectors(key: bytes, data: bytes, digest: str) -> None:
    assert compute_authenticator(AuthAlgorithm.HMAC_MD5, key, data).hex() == digest


def test_rfc2202_vector_lengths_match_the_rfc() -> None:
    # Guard against a typing slip in the table: data_len values from RFC 2202.
    assert [len(d) for _, d, _ in RFC2202_HMAC_MD5] == [8, 28, 50, 50, 20, 54, 73]
    assert [len(k) for k, _, _ in RFC2202_HMAC_MD5] == [16, 4, 16, 25, 16, 80, 80]


@pytest.mark.parametrize(("key", "data", "digest"), RFC2202_HMAC_MD5)
def test_rfc2202_keys_through_sign_and_verify(key: bytes, data: bytes, digest: str) -> None:
    # Each RFC 2202 key in an SA: sign() must produce exactly HMAC-MD5 over the
    # §3.5.1 coverage, and the SA's own algorithm must reproduce the RFC digest.
    sa = SecurityAssociation(1000, AuthAlgorithm.HMAC_MD5, key)
    assert compute_authenticator(sa.algorithm, sa.key, data).hex() == digest
    message = request_bytes()
    signed = sign(message, sa)
    covered = signed[: len(message) + 6]
    assert signed[len(message) + 6 :] == hmac.new(key, covered, "md5").digest()
    assert verify(signed, lookup_for(sa)).ok


def test_sign_appends_type_32_with_spi_and_covers_header() -> None:
    sa = make_sa()
    message = request_bytes()
    signed = sign(message, sa)
    assert signed[: len(message)] == message
    assert signed[len(message)] == 32
    assert signed[len(message) + 1] == 4 + 16
    assert int.from_bytes(signed[len(message) + 2 : len(message) + 6], "big") == 256
    decoded = decode(signed)
    auth = decoded.extensions[-1]
    assert isinstance(auth, MobileHomeAuth) and auth.spi == 256
    expected = hmac.new(KEY, signed[: len(message) + 6], "md5").digest()
    assert auth.authenticator == expected


@pytest.mark.parametrize("algorithm", list(AuthAlgorithm))
def test_round_trip_each_algorithm(algorithm: AuthAlgorithm) -> None:
    sa = make_sa(algorithm)
    signed = sign(request_bytes((MobileNetworkRequest(IPv4Network("10.1.1.0/24")),)), sa)
    result = verify(signed, lookup_for(sa))
    assert result.ok, result
    assert result.sa is sa
    assert result.covered == (MobileNetworkRequest(IPv4Network("10.1.1.0/24")),)
    assert len(result.message.extensions[-1].authenticator) == sa.authenticator_length


def test_keyed_md5_is_prefix_suffix() -> None:
    data = b"registration"
    assert (
        compute_authenticator(AuthAlgorithm.KEYED_MD5, KEY, data)
        == hashlib.md5(KEY + data + KEY).digest()
    )


def test_hmac_sha256_is_32_bytes() -> None:
    assert len(compute_authenticator(AuthAlgorithm.HMAC_SHA256, KEY, b"x")) == 32


def test_tamper_any_covered_byte_is_rejected() -> None:
    sa = make_sa()
    message = request_bytes((MobileNetworkRequest(IPv4Network("10.1.1.0/24")),))
    signed = sign(message, sa)
    for index in range(len(signed)):
        tampered = bytearray(signed)
        tampered[index] ^= 0x01
        result = verify(bytes(tampered), lookup_for(sa))
        assert not result.ok, f"flip at byte {index} went unnoticed"


def test_wrong_spi_is_rejected() -> None:
    signed = sign(request_bytes(), make_sa(spi=300))
    result = verify(signed, lookup_for(make_sa(spi=256)))
    assert result.failure is AuthFailure.UNKNOWN_SPI
    assert result.message is not None and result.spi == 300


def test_wrong_key_is_bad_authenticator() -> None:
    signed = sign(request_bytes(), make_sa())
    other = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"another key 1234")
    assert verify(signed, lookup_for(other)).failure is AuthFailure.BAD_AUTHENTICATOR


def test_algorithm_length_mismatch() -> None:
    signed = sign(request_bytes(), make_sa(AuthAlgorithm.HMAC_SHA256))
    assert verify(signed, lookup_for(make_sa())).failure is AuthFailure.BAD_LENGTH


def test_missing_and_duplicate_auth_extension() -> None:
    sa = make_sa()
    assert verify(request_bytes(), lookup_for(sa)).failure is AuthFailure.NO_AUTH_EXTENSION
    signed = sign(request_bytes(), sa)
    twice = sign(signed, sa)
    assert verify(twice, lookup_for(sa)).failure is AuthFailure.MULTIPLE_AUTH_EXTENSIONS


def test_foreign_auth_before_mobile_home_is_refused() -> None:
    sa = make_sa()
    message = request_bytes((MobileForeignAuth(300, b"\x00" * 16),))
    result = verify(sign(message, sa), lookup_for(sa))
    assert result.failure is AuthFailure.AUTH_EXTENSION_ORDER


def test_trailing_extensions_are_not_covered_but_reported() -> None:
    # §3.6.1.3: extensions after the authentication extension belong to a foreign
    # agent; they may change without breaking the authenticator, and are reported
    # separately so nobody acts on them.
    sa = make_sa()
    signed = sign(request_bytes(), sa)
    extra = encode(
        RegistrationRequest(RequestFlags(0), 0, HOME, HA, HOME, 0, (MobileNodeNAI("fa"),))
    )[24:]
    result = verify(signed + extra, lookup_for(sa))
    assert result.ok
    assert result.trailing == (MobileNodeNAI("fa"),)
    assert result.covered == ()


def test_malformed_is_reported_not_raised() -> None:
    sa = make_sa()
    signed = sign(request_bytes(), sa)
    for cut in range(len(signed)):
        result = verify(signed[:cut], lookup_for(sa))
        assert not result.ok


@given(st.binary(max_size=200))
def test_verify_never_raises(data: bytes) -> None:
    result = verify(data, lookup_for(make_sa()))
    # Random bytes essentially never carry a valid HMAC.
    assert result.failure is not None


def test_key_never_in_repr_or_str() -> None:
    secret = b"\xde\xad\xbe\xef-super-secret"
    sa = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, secret)
    for text in (repr(sa), str(sa), repr(SecurityAssociationTable())):
        assert "super-secret" not in text and secret.hex() not in text
        assert "dead" not in text.lower()
    assert "hidden" in repr(sa)


def test_reserved_spi_and_empty_key_refused() -> None:
    with pytest.raises(LocalProtocolError):
        SecurityAssociation(255, AuthAlgorithm.HMAC_MD5, KEY)
    with pytest.raises(LocalProtocolError):
        SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"")


def test_table_keyed_by_peer_and_spi() -> None:
    table = SecurityAssociationTable()
    a = make_sa(spi=256)
    b = make_sa(spi=257)
    table.add(HOME, a)
    table.add(HOME, b)
    table.add(IPv4Address("10.10.0.51"), make_sa(spi=256))
    assert table.lookup(HOME, 257) is b
    assert table.lookup(HOME, 258) is None
    assert table.default_for(HOME) is a
    assert table.lookup(IPv4Address("10.10.0.99"), 256) is None
    with pytest.raises(LocalProtocolError):
        table.add(HOME, make_sa(spi=256))
    assert len(table) == 3
