"""Home agent binding logic with crafted requests (RFC 5944 §3.8, RFC 5177 §6, RFC 3519 §4.6)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.mip.auth import AuthAlgorithm, SecurityAssociation, sign, verify
from router.mip.errors import LocalProtocolError
from router.mip.extensions import (
    ForeignHomeAuth,
    MobileNetworkAck,
    MobileNetworkRequest,
    UDPTunnelReply,
    UDPTunnelRequest,
    UnknownExtension,
)
from router.mip.homeagent import (
    BindingAdded,
    BindingExpired,
    BindingRemoved,
    BindingRenewed,
    HomeAgentConfig,
    HomeAgentLogic,
    MobileNodeEntry,
)
from router.mip.identification import NTP_UNIX_OFFSET, ReplayMethod, high32, low32
from router.mip.messages import RegistrationReply, RegistrationRequest, RequestFlags, encode

HOME = IPv4Address("10.10.0.50")
OTHER_HOME = IPv4Address("10.10.0.60")
HA = IPv4Address("10.10.0.1")
COA = IPv4Address("100.64.0.20")
SOURCE = (str(COA), 40000)
MNP = IPv4Network("10.1.1.0/24")
WALL = 1_795_000_000 + NTP_UNIX_OFFSET
SA = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"k" * 16, ReplayMethod.TIMESTAMPS)
SA_OTHER = SecurityAssociation(300, AuthAlgorithm.HMAC_SHA256, b"o" * 32, ReplayMethod.TIMESTAMPS)


def home_agent(**overrides: object) -> HomeAgentLogic:
    values: dict[str, object] = {
        "address": HA,
        "home_network": IPv4Network("10.10.0.0/24"),
        "mobile_nodes": (
            MobileNodeEntry(HOME, (SA,), (MNP,)),
            MobileNodeEntry(OTHER_HOME, (SA_OTHER,)),
        ),
        "max_lifetime": 1800,
        "clock_offset": WALL,
    }
    values.update(overrides)
    return HomeAgentLogic(HomeAgentConfig(**values))  # type: ignore[arg-type]


_sequence = [0]


def ident(now: float) -> int:
    _sequence[0] += 1
    return ((int(WALL + now) & 0xFFFFFFFF) << 32) | _sequence[0]


def request(
    now: float = 0.0,
    *,
    lifetime: int = 600,
    home: IPv4Address = HOME,
    care_of: IPv4Address = COA,
    home_agent_field: IPv4Address = HA,
    flags: RequestFlags = RequestFlags.D | RequestFlags.T,
    extensions: tuple = (MobileNetworkRequest(MNP),),
    identification: int | None = None,
    sa: SecurityAssociation = SA,
    trailing: tuple = (),
) -> bytes:
    message = RegistrationRequest(
        flags,
        lifetime,
        home,
        home_agent_field,
        care_of,
        ident(now) if identification is None else identification,
        extensions,
    )
    signed = sign(encode(message), sa)
    if trailing:
        tail = encode(RegistrationRequest(flags, 0, home, HA, home, 0, trailing))[24:]
        signed += tail
    return signed


def replies(
    ha: HomeAgentLogic, sa: SecurityAssociation = SA
) -> list[tuple[RegistrationReply, tuple]]:
    out = []
    for data, addr in ha.datagrams_to_send(0.0):
        result = verify(data, lambda _m, spi: sa if spi == sa.spi else None)
        assert result.ok, result.failure  # every reply is signed (§3.5.2)
        assert isinstance(result.message, RegistrationReply)
        # Keep only the covered extensions, so tests compare what the MN may act on.
        out.append((dataclasses.replace(result.message, extensions=result.covered), addr))
    return out


def the_reply(ha: HomeAgentLogic, sa: SecurityAssociation = SA) -> RegistrationReply:
    ((reply, _addr),) = replies(ha, sa)
    return reply


def events(ha: HomeAgentLogic) -> list[object]:
    out = []
    while (event := ha.next_event()) is not None:
        out.append(event)
    return out


# -- acceptance -------------------------------------------------------------


def test_accept_creates_binding_and_signed_reply_to_source() -> None:
    ha = home_agent()
    data = request(1.0)
    ha.receive_datagram(data, SOURCE, 1.0)
    ((reply, addr),) = replies(ha)
    assert addr == SOURCE  # §3.8.3.1
    assert reply.code == 0 and reply.lifetime == 600
    assert reply.home_address == HOME and reply.home_agent == HA
    assert reply.extensions[0] == MobileNetworkAck(0, MNP, implicit=False)
    (added,) = events(ha)
    assert isinstance(added, BindingAdded)
    binding = ha.bindings()[HOME]
    assert binding.care_of_address == COA and binding.expires_at == 601.0
    assert binding.reverse_tunnel and binding.mobile_networks == (MNP,)
    assert ha.get_timer() == 601.0


def test_lifetime_capped_at_max_lifetime() -> None:
    ha = home_agent(max_lifetime=120)
    ha.receive_datagram(request(lifetime=600), SOURCE, 0.0)
    assert the_reply(ha).lifetime == 120
    assert ha.bindings()[HOME].lifetime == 120


def test_per_node_lifetime_cap_and_infinity() -> None:
    node = MobileNodeEntry(HOME, (SA,), (MNP,), max_lifetime=30)
    ha = home_agent(mobile_nodes=(node,))
    ha.receive_datagram(request(lifetime=0xFFFF), SOURCE, 0.0)
    assert the_reply(ha).lifetime == 30
    ha = home_agent(max_lifetime=0xFFFF)
    ha.receive_datagram(request(lifetime=0xFFFF), SOURCE, 0.0)
    assert the_reply(ha).lifetime == 0xFFFF
    assert ha.bindings()[HOME].expires_at is None and ha.get_timer() is None


def test_s_bit_draws_code_1() -> None:
    ha = home_agent()
    ha.receive_datagram(request(flags=RequestFlags.S | RequestFlags.D), SOURCE, 0.0)
    assert the_reply(ha).code == 1


def test_renewal_and_move_events() -> None:
    ha = home_agent()
    ha.receive_datagram(request(0.0), SOURCE, 0.0)
    ha.receive_datagram(request(1.0), SOURCE, 1.0)
    new_coa = IPv4Address("198.51.100.9")
    ha.receive_datagram(request(2.0, care_of=new_coa), (str(new_coa), 40000), 2.0)
    added, renewed, moved = events(ha)
    assert isinstance(added, BindingAdded)
    assert isinstance(renewed, BindingRenewed) and renewed.previous_care_of_address == COA
    assert isinstance(moved, BindingRenewed) and moved.binding.care_of_address == new_coa
    assert len(ha.bindings()) == 1


def test_expiry_by_timer() -> None:
    ha = home_agent(max_lifetime=60)
    ha.receive_datagram(request(0.0), SOURCE, 0.0)
    ha.receive_datagram(request(30.0), SOURCE, 30.0)  # renewed: old deadline is stale
    events(ha)
    assert len(ha.datagrams_to_send(30.0)) == 2
    assert ha.get_timer() == 90.0
    ha.handle_timer(60.0)
    assert HOME in ha.bindings() and events(ha) == []
    ha.handle_timer(90.0)
    (expired,) = events(ha)
    assert isinstance(expired, BindingExpired) and expired.binding.home_address == HOME
    assert ha.bindings() == {} and ha.get_timer() is None
    assert ha.datagrams_to_send(90.0) == []  # §3.8: no Reply on expiry


def test_deregistration_all_and_specific() -> None:
    ha = home_agent()
    ha.receive_datagram(request(0.0), SOURCE, 0.0)
    ha.receive_datagram(request(1.0, lifetime=0, care_of=IPv4Address("1.2.3.4")), SOURCE, 1.0)
    assert HOME in ha.bindings()  # a CoA we do not hold: nothing removed
    ha.receive_datagram(request(2.0, lifetime=0, care_of=HOME), (str(HOME), 40000), 2.0)
    replies_ = replies(ha)
    assert [r.code for r, _ in replies_] == [0, 0, 0]
    assert replies_[-1][0].lifetime == 0
    assert replies_[-1][0].extensions == ()  # RFC 5177 §6.7: prefixes ignored
    assert ha.bindings() == {}
    assert isinstance(events(ha)[-1], BindingRemoved)


def test_deregistration_says_whether_the_node_is_back_home() -> None:
    """§4.6 needs to know: a node back home deregisters all bindings (CoA = home address)
    from its home address (§3.6.1.1); the same request from a care-of address, or a
    deregistration of one care-of address, is not a return home."""
    cases = [
        (HOME, (str(HOME), 434), True),
        (HOME, SOURCE, False),  # all bindings, but sent from away (the router when inside)
        (COA, (str(HOME), 434), False),  # only this care-of address
    ]
    for care_of, source, at_home in cases:
        ha = home_agent()
        ha.receive_datagram(request(0.0), SOURCE, 0.0)
        events(ha)
        ha.receive_datagram(request(1.0, lifetime=0, care_of=care_of), source, 1.0)
        (removed,) = events(ha)
        assert isinstance(removed, BindingRemoved) and removed.reason == "deregistered"
        assert removed.at_home is at_home, (care_of, source)


def test_implicit_mode_uses_prefix_table() -> None:
    ha = home_agent()
    ha.receive_datagram(request(extensions=()), SOURCE, 0.0)
    assert the_reply(ha).extensions == (MobileNetworkAck(0, MNP, implicit=True),)
    assert ha.bindings()[HOME].mobile_networks == (MNP,)


def test_duplicate_request_is_answered_without_extending() -> None:
    ha = home_agent()
    data = request(0.0)
    ha.receive_datagram(data, SOURCE, 0.0)
    ha.receive_datagram(data, SOURCE, 5.0)
    first, second = replies(ha)
    assert second[0].identification == first[0].identification
    assert second[0].lifetime == 595  # §3.8.2.2: not beyond the original grant
    assert ha.bindings()[HOME].expires_at == 600.0
    assert ha.counters["duplicate"] == 1


def test_nonce_mode_issues_fresh_nonce_in_every_reply() -> None:
    sa = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"k" * 16, ReplayMethod.NONCES)
    ha = home_agent(mobile_nodes=(MobileNodeEntry(HOME, (sa,), (MNP,)),))
    ha.receive_datagram(request(identification=(0 << 32) | 77, sa=sa), SOURCE, 0.0)
    first = the_reply(ha, sa)
    assert first.code == 133 and low32(first.identification) == 77
    nonce = high32(first.identification)
    ha.receive_datagram(request(identification=(nonce << 32) | 78, sa=sa), SOURCE, 1.0)
    second = the_reply(ha, sa)
    assert second.code == 0 and low32(second.identification) == 78
    assert high32(second.identification) != nonce


# -- denials ---------------------------------------------------------------


def test_131_smoke_out_creates_no_binding_and_no_state() -> None:
    ha = home_agent()
    wrong = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"not the key 1234")
    probe = request(0.0, sa=wrong)
    ha.receive_datagram(probe, SOURCE, 0.0)
    reply = the_reply(ha)  # signed with the real SA (§3.8.2.1 a)
    assert reply.code == 131
    assert ha.bindings() == {} and events(ha) == []
    # The replay window did not move: an authentic request with an older
    # timestamp than the probe's is still accepted.
    ha.receive_datagram(request(0.0), SOURCE, 0.0)
    assert the_reply(ha).code == 0


def test_131_for_unknown_spi_of_known_node() -> None:
    ha = home_agent()
    ha.receive_datagram(
        request(sa=SecurityAssociation(999, AuthAlgorithm.HMAC_MD5, b"k" * 16)), SOURCE, 0.0
    )
    assert the_reply(ha).code == 131
    assert ha.counters["unknown_spi"] == 1


def test_unknown_mobile_node_is_silently_discarded() -> None:
    ha = home_agent()
    stranger = SecurityAssociation(4000, AuthAlgorithm.HMAC_MD5, b"s" * 16)
    ha.receive_datagram(request(home=IPv4Address("10.10.0.99"), sa=stranger), SOURCE, 0.0)
    assert ha.datagrams_to_send(0.0) == []
    assert ha.counters["unknown_mobile_node"] == 1


def test_known_node_claiming_foreign_home_address_is_129() -> None:
    ha = home_agent()
    ha.receive_datagram(request(home=IPv4Address("10.10.0.99")), SOURCE, 0.0)
    reply = the_reply(ha)
    assert reply.code == 129 and reply.home_address == IPv4Address("10.10.0.99")
    assert ha.bindings() == {}


def test_identification_mismatch_133_carries_home_agent_time() -> None:
    ha = home_agent()
    skewed = ((int(WALL - 3600) & 0xFFFFFFFF) << 32) | 0xABCDEF
    ha.receive_datagram(request(identification=skewed), SOURCE, 0.0)
    reply = the_reply(ha)
    assert reply.code == 133
    assert low32(reply.identification) == 0xABCDEF  # §5.7.1: low 32 bits copied
    assert high32(reply.identification) == int(WALL) & 0xFFFFFFFF
    assert ha.bindings() == {}


def test_wrong_home_agent_field_is_136_with_our_address() -> None:
    ha = home_agent()
    ha.receive_datagram(request(home_agent_field=IPv4Address("10.10.0.255")), SOURCE, 0.0)
    reply = the_reply(ha)
    assert reply.code == 136 and reply.home_agent == HA
    assert ha.bindings() == {}


def test_udp_tunnel_request_without_d_bit_is_134() -> None:
    ha = home_agent()
    ha.receive_datagram(
        request(flags=RequestFlags.T, extensions=(UDPTunnelRequest(),)), SOURCE, 0.0
    )
    assert the_reply(ha).code == 134


def test_udp_tunnel_assent_behind_nat() -> None:
    ha = home_agent(udp_keepalive_interval=20)
    ha.receive_datagram(request(extensions=(UDPTunnelRequest(),)), ("203.0.113.9", 61000), 0.0)
    reply = the_reply(ha)
    assert reply.code == 0
    assert UDPTunnelReply(0, False, 20) in reply.extensions
    binding = ha.bindings()[HOME]
    assert binding.udp_tunnel and binding.care_of_address == IPv4Address("203.0.113.9")
    assert binding.source == ("203.0.113.9", 61000)


def test_forced_udp_tunnel_not_permitted_is_129() -> None:
    ha = home_agent(udp_tunnelling=False)
    ha.receive_datagram(request(extensions=(UDPTunnelRequest(force=True),)), SOURCE, 0.0)
    assert the_reply(ha).code == 129


def test_reverse_tunnel_not_offered_is_137() -> None:
    ha = home_agent(reverse_tunnelling=False)
    ha.receive_datagram(request(), SOURCE, 0.0)
    assert the_reply(ha).code == 137


def test_nemo_codes() -> None:
    ha = home_agent()
    rogue = IPv4Network("172.16.0.0/24")
    ha.receive_datagram(request(extensions=(MobileNetworkRequest(rogue),)), SOURCE, 0.0)
    reply = the_reply(ha)
    assert reply.code == 147
    assert reply.extensions == (MobileNetworkAck(2, rogue),)
    ha.receive_datagram(
        request(1.0, extensions=(MobileNetworkRequest(IPv4Network("0.0.0.0/0")),)), SOURCE, 1.0
    )
    reply = the_reply(ha)
    assert reply.code == 147 and reply.extensions[0].code == 1  # MOBNET_INVALID_PREFIX_LEN
    # A node with no prefixes in the table is not a mobile router: 148.
    ha.receive_datagram(
        request(home=OTHER_HOME, sa=SA_OTHER, extensions=(MobileNetworkRequest(MNP),)),
        SOURCE,
        2.0,
    )
    assert the_reply(ha, SA_OTHER).code == 148
    assert ha.bindings() == {}


def test_silent_discards() -> None:
    ha = home_agent()
    cases = {
        "malformed": b"\x01\x00\x00",
        "not_a_request": sign(encode(RegistrationReply(0, 0, HOME, HA, 1)), SA),
        "unknown_extension": request(extensions=(UnknownExtension(99, b"x"),)),
        "no_auth_extension": encode(
            RegistrationRequest(RequestFlags.D, 600, HOME, HA, COA, ident(0.0))
        ),
        "foreign_home_auth": request(trailing=(ForeignHomeAuth(500, b"\x00" * 16),)),
    }
    for reason, data in cases.items():
        ha.receive_datagram(data, SOURCE, 0.0)
        assert ha.counters.get(reason) == 1, reason
    assert ha.datagrams_to_send(0.0) == [] and ha.bindings() == {}


@pytest.mark.parametrize(
    ("extension", "discarded"),
    [
        # RFC 5944 §1.8: an unrecognised type 0-127 -> the Request "MUST be silently
        # discarded" (no 134: §1.8 names the treatment, §3.8.2.3's 134 is for reserved
        # fields); 128-255 are skipped. A known type with an unknown sub-type is not
        # recognised either.
        (UnknownExtension(1, b"z"), True),
        (UnknownExtension(127, b""), True),
        (UnknownExtension(44, b"\x07\x00"), True),  # UDP Tunnel Reply, unknown sub-type
        (UnknownExtension(128, b""), False),
        (UnknownExtension(148, b"\x07"), False),  # Mobile Network, unknown sub-type
    ],
)
@pytest.mark.parametrize("where", ["covered", "after-authentication"])
def test_unknown_extension_in_a_request(
    extension: UnknownExtension, discarded: bool, where: str
) -> None:
    ha = home_agent()
    if where == "covered":
        data = request(extensions=(MobileNetworkRequest(MNP), extension))
    else:
        data = request(trailing=(extension,))
    ha.receive_datagram(data, SOURCE, 0.0)
    if discarded:
        assert ha.counters == {"unknown_extension": 1}
        assert ha.datagrams_to_send(0.0) == [] and ha.bindings() == {}
        assert events(ha) == []
        assert ha.replay_version == 0  # not even the replay window moved
    else:
        assert the_reply(ha).code == 0
        assert HOME in ha.bindings()


def test_skippable_unknown_extension_is_ignored() -> None:
    ha = home_agent()
    ha.receive_datagram(request(extensions=(UnknownExtension(200, b"x"),)), SOURCE, 0.0)
    assert the_reply(ha).code == 0


def test_config_validation() -> None:
    with pytest.raises(LocalProtocolError):
        MobileNodeEntry(HOME, ())
    with pytest.raises(LocalProtocolError):
        home_agent(mobile_nodes=(MobileNodeEntry(HOME, (SA,)), MobileNodeEntry(HOME, (SA,))))
    with pytest.raises(LocalProtocolError):
        home_agent(max_lifetime=0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.floats(min_value=0, max_value=1e6))
def test_hostile_bytes_never_raise(data: bytes, now: float) -> None:
    ha = home_agent()
    ha.receive_datagram(data, SOURCE, now)
    ha.handle_timer(now)
    assert ha.bindings() == {}
