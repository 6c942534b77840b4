"""Hypothesis: round trips, truncations and hostile bytes for every message and extension."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.mip._wire import Reader, Writer, internet_checksum
from router.mip.advert import AgentAdvertisement, AgentSolicitation, decode_icmp, encode_icmp
from router.mip.errors import DecodeError
from router.mip.extensions import Extension, pull_extension, push_extension
from router.mip.messages import (
    Message,
    MessageType,
    TunnelData,
    decode,
    decode_with_offsets,
    encode,
    encode_with_offsets,
)
from tests.unit import strategies_mip as S

MESSAGE_TYPES = [int(t) for t in MessageType]


def _fix_checksum(data: bytes) -> bytes:
    """Give arbitrary ICMP bytes a valid checksum, so decoding goes past the checksum test."""
    if len(data) < 4:
        return data
    zeroed = data[:2] + b"\x00\x00" + data[4:]
    return zeroed[:2] + internet_checksum(zeroed).to_bytes(2, "big") + zeroed[4:]


# ---------------------------------------------------------------------------
# Round trips (no deadlines: they measure the machine, not the codec; never assert timings)


@given(S.control_extensions)
def test_extension_round_trip(extension: Extension) -> None:
    writer = Writer()
    push_extension(writer, extension)
    reader = Reader(writer.getvalue())
    assert pull_extension(reader) == extension
    assert reader.eof()


@settings(deadline=None)
@given(S.messages)
def test_message_round_trip(message: Message) -> None:
    data, offsets = encode_with_offsets(message)
    decoded, decoded_offsets = decode_with_offsets(data)
    assert decoded == message
    assert decoded_offsets == offsets
    assert encode(decoded) == data


@given(S.icmp_messages)
def test_icmp_round_trip(message: AgentAdvertisement | AgentSolicitation) -> None:
    data = encode_icmp(message)
    assert internet_checksum(data) == 0
    assert decode_icmp(data) == message
    assert encode_icmp(decode_icmp(data)) == data


# ---------------------------------------------------------------------------
# Truncations: a cut inside a field or an extension is a DecodeError; a cut exactly at an
# extension boundary is a shorter valid message (extensions run to the end of the
# datagram, RFC 5944 section 1.8), so it must decode to the same message minus the
# extensions after the cut.


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(S.messages)
def test_every_truncation_of_a_message(message: Message) -> None:
    data, offsets = encode_with_offsets(message)
    if isinstance(message, TunnelData):
        for cut in range(len(data)):
            if cut < 4:
                with pytest.raises(DecodeError):
                    decode(data[:cut])
            else:
                assert decode(data[:cut]) == replace(message, payload=message.payload[: cut - 4])
        return
    header_length = offsets[0] if offsets else len(data)
    boundaries = {header_length: 0} | {
        offset: index for index, offset in enumerate(offsets) if offset > header_length
    }
    for cut in range(len(data)):
        if cut in boundaries:
            expected = replace(message, extensions=message.extensions[: boundaries[cut]])
            assert decode(data[:cut]) == expected
        else:
            with pytest.raises(DecodeError):
                decode(data[:cut])


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(S.icmp_messages)
def test_every_truncation_of_an_icmp_message(
    message: AgentAdvertisement | AgentSolicitation,
) -> None:
    data = encode_icmp(message)
    boundaries: dict[int, AgentAdvertisement] = {}
    if isinstance(message, AgentAdvertisement):
        for count in range(len(message.extensions)):
            shorter = replace(message, extensions=message.extensions[:count])
            boundaries[len(encode_icmp(shorter))] = shorter
    for cut in range(len(data)):
        truncated = data[:cut]
        # As received: the checksum nearly always catches it; if the cut removed only
        # bytes that sum to zero, it must decode to exactly what those bytes say.
        try:
            decoded = decode_icmp(truncated)
        except DecodeError:
            pass
        else:
            assert encode_icmp(decoded)[4:] == truncated[4:]
        # With the checksum repaired, the structure itself must be checked.
        repaired = _fix_checksum(truncated)
        if cut in boundaries:
            assert decode_icmp(repaired) == boundaries[cut]
        else:
            with pytest.raises(DecodeError):
                decode_icmp(repaired)


# ---------------------------------------------------------------------------
# Hostile input: only DecodeError, and whatever decodes re-encodes to a stable value.


def _decode_or_decode_error(data: bytes) -> Message | None:
    try:
        message = decode(data)
    except DecodeError:
        return None
    assert decode(encode(message)) == message
    return message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_into_decode(data: bytes) -> None:
    _decode_or_decode_error(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(MESSAGE_TYPES), st.binary(max_size=120))
def test_random_bodies_behind_a_valid_type(message_type: int, body: bytes) -> None:
    _decode_or_decode_error(bytes([message_type]) + body)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([1, 3]), st.binary(min_size=19, max_size=19), st.binary(max_size=100))
def test_random_extension_area(message_type: int, header: bytes, extension_area: bytes) -> None:
    # A well-formed fixed header followed by random extension bytes reaches every
    # extension decoder (reply header is 19 bytes after the Type; a request has 23).
    if message_type == 1:
        header += b"\x00\x00\x00\x00"
    _decode_or_decode_error(bytes([message_type]) + header + extension_area)


@settings(max_examples=300, deadline=None)
@given(S.messages, st.data())
def test_mutated_messages(message: Message, data: st.DataObject) -> None:
    encoded = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    _decode_or_decode_error(bytes(encoded))


def _decode_icmp_or_error(data: bytes) -> None:
    try:
        message = decode_icmp(data)
    except DecodeError:
        return
    assert decode_icmp(encode_icmp(message)) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_into_decode_icmp(data: bytes) -> None:
    _decode_icmp_or_error(data)
    _decode_icmp_or_error(_fix_checksum(data))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([9, 10]), st.binary(max_size=100))
def test_random_icmp_bodies_with_valid_checksum(icmp_type: int, body: bytes) -> None:
    _decode_icmp_or_error(_fix_checksum(bytes([icmp_type]) + body))


@settings(max_examples=300, deadline=None)
@given(S.agent_advertisements, st.data())
def test_mutated_advertisements(message: AgentAdvertisement, data: st.DataObject) -> None:
    encoded = bytearray(encode_icmp(message))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    _decode_icmp_or_error(bytes(encoded))
    _decode_icmp_or_error(_fix_checksum(bytes(encoded)))
