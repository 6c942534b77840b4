"""Agent advertisement listener: datagram handling, rate limits, solicitation pacing (no root).

The datagrams are built here by hand from RFC 791 section 3.1 (IPv4 header) and RFC 5944
section 2.1.1 (extension 16), not with the product's encoder, except where the encoder is
the convenient way to make a *valid* message to then damage.
"""

from __future__ import annotations

import itertools
import socket
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.mip._wire import internet_checksum
from router.mip.advert import (
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentAdvertisement,
    RouterAddress,
    UnknownExtension,
    encode_icmp,
)
from router.policy.domain import AdvertisementHeard
from router.uplink import adverts
from router.uplink.adverts import (
    MAX_DATAGRAM,
    MAX_DATAGRAMS_PER_WAKEUP,
    AdvertListener,
    AdvertRateLimit,
    Drop,
    SolicitationPacer,
    advert_from_datagram,
    parse_datagram,
)

A = IPv4Address
AGENT = A("10.10.0.1")

# RFC 5944 section 2.1.1 flag bits, written out rather than imported.
H_BIT, F_BIT, R_BIT, RESERVED_BITS = 0x2000, 0x1000, 0x8000, 0x001F


def checksummed(icmp: bytes) -> bytes:
    """Fill in the ICMP checksum (bytes 2-3) of a message built with a zero checksum."""
    return icmp[:2] + struct.pack("!H", internet_checksum(icmp)) + icmp[4:]


def agent_advert_icmp(flags: int, *, lifetime: int = 1800, care_of: tuple[str, ...] = ()) -> bytes:
    """Router advertisement with one router address and a Mobility Agent Advertisement."""
    body = struct.pack("!BBHBBH", 9, 0, 0, 1, 2, lifetime)  # type, code, cksum, n, size, life
    body += A("10.10.0.1").packed + struct.pack("!i", 0)
    ext = struct.pack("!HHH", 7, 600, flags) + b"".join(A(a).packed for a in care_of)
    body += struct.pack("!BB", 16, len(ext)) + ext
    return checksummed(body)


def plain_router_advert_icmp() -> bytes:
    return checksummed(struct.pack("!BBHBBH", 9, 0, 0, 1, 2, 1800) + A("10.10.0.1").packed + bytes(4))


def ipv4(
    payload: bytes,
    *,
    source: str = str(AGENT),
    destination: str = "224.0.0.1",
    protocol: int = 1,
    ttl: int = 1,
    options: bytes = b"",
    fragment: int = 0,
    version: int = 4,
    total_length: int | None = None,
) -> bytes:
    ihl = (20 + len(options)) // 4
    length = 20 + len(options) + len(payload) if total_length is None else total_length
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | ihl,
        0,
        length,
        0x1234,
        fragment,
        ttl,
        protocol,
        0,
        A(source).packed,
        A(destination).packed,
    )
    header += options
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + payload


# --- the pure datagram function --------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "home_agent", "foreign_agent"),
    [(H_BIT, True, False), (F_BIT, False, True), (H_BIT | F_BIT | R_BIT, True, True), (0, False, False)],
)
def test_agent_advertisement_is_heard_with_source_and_flags(
    flags: int, home_agent: bool, foreign_agent: bool
) -> None:
    heard = advert_from_datagram(ipv4(agent_advert_icmp(flags)), 42.5)
    assert heard == AdvertisementHeard(AGENT, home_agent, foreign_agent, 42.5)


def test_reserved_flag_bits_are_ignored_not_discarded() -> None:
    # RFC 5944 section 2.4: "MUST ignore reserved bits ... as opposed to discarding".
    heard = advert_from_datagram(ipv4(agent_advert_icmp(H_BIT | RESERVED_BITS)), 1.0)
    assert heard == AdvertisementHeard(AGENT, True, False, 1.0)


def test_source_comes_from_the_ip_header_not_the_router_address_list() -> None:
    # The advert lists 10.10.0.1 as router address; the IP source is what was heard.
    heard = advert_from_datagram(ipv4(agent_advert_icmp(F_BIT), source="192.0.2.7"), 0.0)
    assert heard is not None and heard.source == A("192.0.2.7")


def test_unicast_and_broadcast_destinations_are_accepted() -> None:
    for destination in ("255.255.255.255", "10.10.0.99"):
        assert advert_from_datagram(ipv4(agent_advert_icmp(H_BIT), destination=destination), 0.0)


def test_ip_options_are_skipped_by_ihl() -> None:
    options = bytes([0x94, 4, 0, 0])  # Router Alert (RFC 2113), one 32-bit word
    parsed = parse_datagram(ipv4(agent_advert_icmp(H_BIT), options=options), 3.0)
    assert parsed.heard == AdvertisementHeard(AGENT, True, False, 3.0)


def test_link_padding_after_total_length_is_ignored() -> None:
    packet = ipv4(agent_advert_icmp(F_BIT)) + bytes(18)
    assert advert_from_datagram(packet, 0.0) == AdvertisementHeard(AGENT, False, True, 0.0)


def test_product_encoder_output_is_heard() -> None:
    advert = AgentAdvertisement(
        lifetime=9000,
        router_addresses=(RouterAddress(AGENT, 0),),
        extensions=(
            MobilityAgentAdvertisement(1, 600, AdvertisementFlags.F | AdvertisementFlags.T, (A("10.10.0.1"),)),
        ),
    )
    assert advert_from_datagram(ipv4(encode_icmp(advert)), 0.0) == AdvertisementHeard(AGENT, False, True, 0.0)


def test_plain_router_advertisement_without_extension_16_is_dropped() -> None:
    parsed = parse_datagram(ipv4(plain_router_advert_icmp()), 0.0)
    assert parsed.heard is None and parsed.drop is Drop.PLAIN_ROUTER_ADVERTISEMENT


def test_wrong_checksum_is_malformed() -> None:
    icmp = bytearray(agent_advert_icmp(H_BIT))
    icmp[2] ^= 0x01
    parsed = parse_datagram(ipv4(bytes(icmp)), 0.0)
    assert parsed.heard is None and parsed.drop is Drop.MALFORMED
    assert "Checksum" in parsed.detail


def test_flipped_flag_bit_without_new_checksum_is_malformed() -> None:
    # A forged H bit over a captured advert must come with a right checksum, or it is dropped.
    icmp = bytearray(agent_advert_icmp(F_BIT))
    icmp[-2] |= 0x20  # H
    assert parse_datagram(ipv4(bytes(icmp)), 0.0).drop is Drop.MALFORMED


@pytest.mark.parametrize(
    ("packet", "drop"),
    [
        (b"", Drop.SHORT),
        (b"\x45" + bytes(18), Drop.SHORT),
        (ipv4(agent_advert_icmp(H_BIT), version=6), Drop.NOT_IPV4),
        (ipv4(agent_advert_icmp(H_BIT), protocol=17), Drop.NOT_ICMP),
        (ipv4(agent_advert_icmp(H_BIT), fragment=0x2000), Drop.FRAGMENT),  # MF
        (ipv4(agent_advert_icmp(H_BIT), fragment=0x0003), Drop.FRAGMENT),  # offset
        (ipv4(agent_advert_icmp(H_BIT), total_length=19), Drop.SHORT),
        (ipv4(agent_advert_icmp(H_BIT), total_length=2000), Drop.SHORT),
        (ipv4(agent_advert_icmp(H_BIT), source="0.0.0.0"), Drop.BAD_SOURCE),
        (ipv4(agent_advert_icmp(H_BIT), source="224.0.0.1"), Drop.BAD_SOURCE),
        (ipv4(agent_advert_icmp(H_BIT), source="127.0.0.1"), Drop.BAD_SOURCE),
        (ipv4(agent_advert_icmp(H_BIT), source="255.255.255.255"), Drop.BAD_SOURCE),
        (ipv4(agent_advert_icmp(H_BIT), source="240.0.0.1"), Drop.BAD_SOURCE),
        (ipv4(encode_icmp(AgentSolicitation())), Drop.NOT_ADVERTISEMENT),
        (ipv4(checksummed(struct.pack("!BBHHH", 0, 0, 0, 1, 1))), Drop.NOT_ADVERTISEMENT),
        (ipv4(b""), Drop.NOT_ADVERTISEMENT),
        (bytes(MAX_DATAGRAM + 1), Drop.OVERSIZED),
    ],
)
def test_hostile_datagrams_are_dropped_with_a_reason(packet: bytes, drop: Drop) -> None:
    parsed = parse_datagram(packet, 0.0)
    assert (parsed.heard, parsed.drop) == (None, drop), parsed.detail


def test_oversized_but_well_formed_advertisement_is_dropped() -> None:
    advert = AgentAdvertisement(
        lifetime=1,
        extensions=(
            MobilityAgentAdvertisement(1, 1, AdvertisementFlags.H),
            *(UnknownExtension(200, bytes(250)) for _ in range(6)),
        ),
    )
    packet = ipv4(encode_icmp(advert))
    assert len(packet) > MAX_DATAGRAM
    assert parse_datagram(packet, 0.0).drop is Drop.OVERSIZED


def test_every_truncation_of_the_datagram_is_dropped() -> None:
    packet = ipv4(agent_advert_icmp(H_BIT, care_of=("10.10.0.1",)))
    for n in range(len(packet)):
        parsed = parse_datagram(packet[:n], 0.0)
        assert parsed.heard is None and parsed.drop is not None, n


def test_every_truncated_icmp_message_with_a_valid_checksum_is_dropped() -> None:
    # Fix the checksum and IP length after cutting, so the codec's structure checks are hit.
    icmp = agent_advert_icmp(H_BIT, care_of=("10.10.0.1",))
    outcomes = set()
    for n in range(len(icmp)):
        cut = icmp[:2] + b"\x00\x00" + icmp[4:n] if n >= 4 else icmp[:n]
        parsed = parse_datagram(ipv4(checksummed(cut) if n >= 4 else cut), 0.0)
        assert parsed.heard is None and parsed.drop is not None, n
        outcomes.add(parsed.drop)
    # Cut right after the router address: a plain router advertisement; elsewhere malformed.
    assert outcomes >= {Drop.MALFORMED, Drop.PLAIN_ROUTER_ADVERTISEMENT}


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=MAX_DATAGRAM + 10))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parsed = parse_datagram(data, 0.0)
    assert (parsed.heard is None) == (parsed.drop is not None)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=300))
def test_arbitrary_icmp_behind_a_good_ip_header_never_raises(icmp: bytes) -> None:
    for payload in (icmp, checksummed(icmp[:2] + b"\x00\x00" + icmp[4:]) if len(icmp) >= 4 else icmp):
        parsed = parse_datagram(ipv4(payload), 0.0)
        assert (parsed.heard is None) == (parsed.drop is not None)


# --- rate limiting ----------------------------------------------------------------------------


def test_per_source_bucket_allows_a_burst_then_the_rate() -> None:
    limit = AdvertRateLimit(per_source=2.0, source_burst=3.0, total=1000.0, total_burst=1000.0)
    assert [limit.allow(AGENT, 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limit.allow(AGENT, 0.5) is True  # one token back after 0.5 s at 2/s
    assert limit.allow(AGENT, 0.5) is False
    assert limit.allow(A("10.0.0.2"), 0.5) is True  # another source has its own bucket


def test_overall_bucket_bounds_many_sources() -> None:
    limit = AdvertRateLimit(per_source=100.0, source_burst=100.0, total=1.0, total_burst=5.0)
    allowed = [limit.allow(A(f"10.0.{i // 250}.{i % 250 + 1}"), 0.0) for i in range(50)]
    assert allowed.count(True) == 5


def test_source_table_is_bounded() -> None:
    limit = AdvertRateLimit(max_sources=8)
    for i in range(1000):
        limit.allow(A(f"10.{i // 250}.0.{i % 250 + 1}"), float(i))
    assert len(limit._sources) == 8


# --- the listener's handling, without a socket ------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _listener(clock: FakeClock, **kwargs: object) -> tuple[AdvertListener, list[AdvertisementHeard]]:
    heard: list[AdvertisementHeard] = []
    return AdvertListener("wlan0", heard.append, clock=clock, **kwargs), heard  # type: ignore[arg-type]


def test_listener_reports_adverts_and_counts_drops_without_raising() -> None:
    clock = FakeClock()
    listener, heard = _listener(clock)
    bad = bytearray(ipv4(agent_advert_icmp(H_BIT)))
    bad[-1] ^= 0xFF
    for packet in (ipv4(agent_advert_icmp(H_BIT)), bytes(bad), ipv4(plain_router_advert_icmp()), b"\x45"):
        listener.handle_datagram(packet)
    assert heard == [AdvertisementHeard(AGENT, True, False, 100.0)]
    assert listener.counters == {
        "heard": 1,
        "malformed": 1,
        "plain_router_advertisement": 1,
        "short": 1,
    }


def test_flood_from_one_source_is_cut_to_its_bucket() -> None:
    clock = FakeClock()
    listener, heard = _listener(clock, rate_limit=AdvertRateLimit(per_source=1.0, source_burst=4.0))
    packet = ipv4(agent_advert_icmp(F_BIT))
    for _ in range(1000):
        listener.handle_datagram(packet)
    assert len(heard) == 4 and listener.counters["rate_limited"] == 996
    listener.handle_datagram(ipv4(agent_advert_icmp(H_BIT), source="10.10.0.2"))
    assert heard[-1].source == A("10.10.0.2")  # an honest agent still gets through
    clock.now += 1.0
    listener.handle_datagram(packet)
    assert len(heard) == 6


def test_one_wakeup_reads_a_bounded_number_of_datagrams() -> None:
    clock = FakeClock()
    listener, heard = _listener(clock, rate_limit=AdvertRateLimit(source_burst=1e9, total_burst=1e9))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        ours.setblocking(False)
        listener._sock = ours  # what open() would have made; the reader only recv()s
        packet = ipv4(agent_advert_icmp(H_BIT))
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP + 5):
            theirs.send(packet)
        listener._readable()
        assert len(heard) == MAX_DATAGRAMS_PER_WAKEUP
        listener._readable()
        assert len(heard) == MAX_DATAGRAMS_PER_WAKEUP + 5
        listener._readable()  # nothing left: returns on EAGAIN
        assert len(heard) == MAX_DATAGRAMS_PER_WAKEUP + 5
    finally:
        listener._sock = None
        ours.close()
        theirs.close()


def test_receive_reads_one_byte_more_than_the_limit_so_oversize_is_seen() -> None:
    clock = FakeClock()
    listener, heard = _listener(clock)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        ours.setblocking(False)
        listener._sock = ours
        theirs.send(ipv4(agent_advert_icmp(H_BIT)) + bytes(MAX_DATAGRAM))
        listener._readable()
        assert heard == [] and listener.counters["oversized"] == 1
    finally:
        listener._sock = None
        ours.close()
        theirs.close()


def test_closed_listener_does_not_solicit_and_close_is_idempotent() -> None:
    listener, _ = _listener(FakeClock())
    assert listener.solicit() is False
    listener.close()
    listener.close()
    assert not listener.is_open


# --- solicitation pacing (RFC 5944 section 2.4) ---------------------------------------------


def test_pacer_three_at_one_per_second_then_exponential_backoff_capped() -> None:
    pacer = SolicitationPacer()
    sent = [t for t in range(0, 400) if pacer.allow(float(t))]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert sent[:3] == [0, 1, 2]
    assert gaps[:8] == [1, 1, 2, 4, 8, 16, 32, 60]
    assert set(gaps[7:]) == {60}


def test_pacer_refuses_a_second_solicitation_within_the_second() -> None:
    pacer = SolicitationPacer()
    assert pacer.allow(10.0) and not pacer.allow(10.5) and pacer.allow(11.0)


def test_pacer_reset_on_a_new_link_restarts_the_fast_phase() -> None:
    pacer = SolicitationPacer()
    for t in range(0, 200):
        pacer.allow(float(t))
    assert not pacer.allow(200.0)
    pacer.reset()
    assert pacer.allow(200.0) and pacer.allow(201.0)


def test_solicitation_on_the_wire_is_an_icmp_router_solicitation() -> None:
    # RFC 1256 section 3: type 10, code 0, checksum, 4 reserved bytes.
    data = encode_icmp(AgentSolicitation())
    assert len(data) == 8 and data[0] == 10 and data[1] == 0 and internet_checksum(data) == 0
    assert A("224.0.0.2") == adverts.ALL_ROUTERS
