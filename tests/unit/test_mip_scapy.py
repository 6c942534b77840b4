"""scapy as an independent oracle for the fixed headers (scapy.layers.mobileip, ICMP).

scapy models no Mobile IP extensions (DESIGN.md section 6), so extensions ride
as Raw bytes; scapy also crafts hostile input here. scapy is imported by tests
only, never by the daemon.
"""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.mip.advert import AgentAdvertisement, AgentSolicitation, decode_icmp, encode_icmp
from router.mip.errors import DecodeError
from router.mip.extensions import MobileHomeAuth, MobileNetworkRequest, MobileNodeNAI
from router.mip.messages import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    TunnelData,
    decode,
    encode,
)
from tests.unit import strategies_mip as S

scapy_inet = pytest.importorskip("scapy.layers.inet")
scapy_mobileip = pytest.importorskip("scapy.layers.mobileip")
scapy_packet = pytest.importorskip("scapy.packet")

IP, UDP, ICMP = scapy_inet.IP, scapy_inet.UDP, scapy_inet.ICMP
MobileIP = scapy_mobileip.MobileIP
MobileIPRRQ = scapy_mobileip.MobileIPRRQ
MobileIPRRP = scapy_mobileip.MobileIPRRP
MobileIPTunnelData = scapy_mobileip.MobileIPTunnelData
Raw = scapy_packet.Raw

EXTENSIONS = (
    MobileNodeNAI("mr@example"),
    MobileNetworkRequest(IPv4Network("10.1.1.0/24")),
    MobileHomeAuth(256, bytes(range(16))),
)


def _extension_bytes() -> bytes:
    # Our own encoding of the extensions, appended as Raw: scapy has no model for them.
    empty = RegistrationReply(0, 0, IPv4Address(0), IPv4Address(0), 0)
    full = RegistrationReply(0, 0, IPv4Address(0), IPv4Address(0), 0, EXTENSIONS)
    return encode(full)[len(encode(empty)) :]


def _udp_payload(packet: object) -> bytes:
    """Serialise IP/UDP/... with scapy, parse it back and return the UDP payload."""
    parsed = IP(bytes(packet))
    assert parsed[UDP].dport == 434
    return bytes(parsed[UDP].payload)


@settings(max_examples=60, deadline=None)
@given(S.u8, S.u16, S.addresses, S.addresses, S.addresses, S.u64)
def test_we_decode_requests_scapy_builds(
    flags: int,
    lifetime: int,
    home: IPv4Address,
    agent: IPv4Address,
    care_of: IPv4Address,
    ident: int,
) -> None:
    packet = (
        IP(src=str(care_of), dst=str(agent))
        / UDP(sport=434, dport=434)
        / MobileIP(type=1)
        / MobileIPRRQ(
            flags=flags,
            lifetime=lifetime,
            homeaddr=str(home),
            haaddr=str(agent),
            coaddr=str(care_of),
            id=ident,
        )
        / Raw(_extension_bytes())
    )
    message = decode(_udp_payload(packet))
    assert message == RegistrationRequest(
        RequestFlags(flags), lifetime, home, agent, care_of, ident, EXTENSIONS
    )


@settings(max_examples=60, deadline=None)
@given(S.u8, S.u16, S.addresses, S.addresses, S.u64)
def test_we_decode_replies_scapy_builds(
    code: int, lifetime: int, home: IPv4Address, agent: IPv4Address, ident: int
) -> None:
    packet = (
        IP(src=str(agent), dst=str(home))
        / UDP(sport=434, dport=434)
        / MobileIP(type=3)
        / MobileIPRRP(code=code, lifetime=lifetime, homeaddr=str(home), haaddr=str(agent), id=ident)
    )
    message = decode(_udp_payload(packet))
    assert message == RegistrationReply(code, lifetime, home, agent, ident)


@settings(max_examples=60, deadline=None)
@given(S.registration_requests)
def test_scapy_reads_our_requests(request: RegistrationRequest) -> None:
    data = encode(request)
    parsed = MobileIP(data)
    assert parsed.type == 1
    rrq = parsed[MobileIPRRQ]
    assert rrq.flags == int(request.flags)
    assert rrq.lifetime == request.lifetime
    assert rrq.homeaddr == str(request.home_address)
    assert rrq.haaddr == str(request.home_agent)
    assert rrq.coaddr == str(request.care_of_address)
    assert rrq.id == request.identification
    # Everything after scapy's fixed header is our extension area, byte for byte.
    assert bytes(rrq.payload) == data[24:]


@settings(max_examples=60, deadline=None)
@given(S.registration_replies)
def test_scapy_reads_our_replies(reply: RegistrationReply) -> None:
    data = encode(reply)
    parsed = MobileIP(data)
    assert parsed.type == 3
    rrp = parsed[MobileIPRRP]
    assert rrp.code == reply.code
    assert rrp.lifetime == reply.lifetime
    assert rrp.homeaddr == str(reply.home_address)
    assert rrp.haaddr == str(reply.home_agent)
    assert rrp.id == reply.identification
    assert bytes(rrp.payload) == data[20:]


def test_tunnel_data_both_ways() -> None:
    inner = bytes(IP(src="10.1.1.10", dst="10.20.0.10") / UDP(sport=1, dport=2))
    ours = TunnelData(next_header=4, payload=inner)
    parsed = MobileIP(encode(ours))
    assert parsed.type == 4
    assert parsed[MobileIPTunnelData].nexthdr == 4
    assert bytes(parsed[MobileIPTunnelData].payload) == inner
    built = bytes(MobileIP(type=4) / MobileIPTunnelData(nexthdr=4) / Raw(inner))
    assert decode(built) == ours


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 31), st.binary(max_size=40))
def test_hostile_packets_crafted_with_scapy(cut: int, junk: bytes) -> None:
    # A truncated fixed header, then arbitrary junk where the extensions would be.
    rrq = bytes(MobileIP(type=1) / MobileIPRRQ(lifetime=600, id=7))
    try:
        decode(rrq[:cut])
    except DecodeError:
        pass
    else:  # only the complete header (24 bytes) decodes
        assert cut >= 24
    with contextlib.suppress(DecodeError):
        decode(rrq + junk)


@settings(max_examples=60, deadline=None)
@given(S.icmp_messages)
def test_scapy_agrees_with_our_icmp_header_and_checksum(
    message: AgentAdvertisement | AgentSolicitation,
) -> None:
    data = encode_icmp(message)
    parsed = ICMP(data)
    # scapy recomputes the checksum when building with chksum=None: it must equal ours.
    rebuilt = ICMP(type=parsed.type, code=parsed.code, unused=parsed.unused) / Raw(
        bytes(parsed.payload)
    )
    assert bytes(rebuilt) == data
    if isinstance(message, AgentSolicitation):
        assert (parsed.type, parsed.code) == (10, 0)
        return
    assert (parsed.type, parsed.code) == (9, message.code)
    # The 32 bits scapy calls "unused" are Num Addrs, Addr Entry Size, Lifetime (RFC 1256).
    assert parsed.unused >> 24 == len(message.router_addresses)
    assert (parsed.unused >> 16) & 0xFF == 2
    assert parsed.unused & 0xFFFF == message.lifetime
    assert decode_icmp(bytes(rebuilt)) == message
