"""The mobile node's registration machine against a scripted home agent (no network, no sleep)."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

import pytest

from router.mip.auth import AuthAlgorithm, SecurityAssociation, sign
from router.mip.errors import LocalProtocolError
from router.mip.extensions import (
    MobileNetworkAck,
    MobileNetworkRequest,
    MobileNodeNAI,
    UDPTunnelReply,
    UDPTunnelRequest,
    UnknownExtension,
)
from router.mip.identification import NTP_UNIX_OFFSET, ReplayMethod, high32, low32
from router.mip.messages import (
    RegistrationReply,
    RegistrationRequest,
    ReplyCode,
    RequestFlags,
    decode,
    encode,
)
from router.mip.mobilenode import (
    REPLY_CODE_TEXT,
    TRANSITIONS,
    BindingExpired,
    Deregistered,
    IllegalTransition,
    Input,
    MobileNodeConfig,
    Registered,
    RegistrationDenied,
    RegistrationMachine,
    RegistrationTimeout,
    State,
    format_transitions,
)

HOME = IPv4Address("10.10.0.50")
HA = IPv4Address("10.10.0.1")
HA_ADDR = (str(HA), 434)
COA = IPv4Address("100.64.0.20")
MNP = IPv4Network("10.1.1.0/24")
SA = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"k" * 16, ReplayMethod.TIMESTAMPS)
WALL = 1_795_000_000 + NTP_UNIX_OFFSET


def machine(**overrides: object) -> RegistrationMachine:
    values: dict[str, object] = {
        "home_address": HOME,
        "home_agent": HA,
        "security_association": SA,
        "lifetime": 600,
        "mobile_networks": (MNP,),
        "clock_offset": WALL,
    }
    values.update(overrides)
    return RegistrationMachine(MobileNodeConfig(**values))  # type: ignore[arg-type]


def sent_request(m: RegistrationMachine, now: float = 0.0) -> RegistrationRequest:
    ((datagram, addr),) = m.datagrams_to_send(now)
    assert addr == HA_ADDR
    message = decode(datagram)
    assert isinstance(message, RegistrationRequest)
    return message


def reply_to(
    request: RegistrationRequest,
    code: int = 0,
    lifetime: int | None = None,
    extensions: tuple = (),
    identification: int | None = None,
    sa: SecurityAssociation = SA,
    home_address: IPv4Address | None = None,
) -> bytes:
    reply = RegistrationReply(
        code=code,
        lifetime=request.lifetime if lifetime is None else lifetime,
        home_address=home_address or request.home_address,
        home_agent=HA,
        identification=request.identification if identification is None else identification,
        extensions=extensions,
    )
    return sign(encode(reply), sa)


def events(m: RegistrationMachine) -> list[object]:
    out = []
    while (event := m.next_event()) is not None:
        out.append(event)
    return out


# -- the table ------------------------------------------------------------


def test_transition_table_is_printable_from_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "router.mip.mobilenode"], capture_output=True, text=True, check=True
    )
    assert "REGISTERING    ACCEPTED         REGISTERED" in result.stdout
    assert result.stdout.count("\n") >= len(TRANSITIONS)
    assert format_transitions().splitlines()[0].split() == ["state", "input", "next", "state"]


def test_every_state_is_reachable_and_can_cancel() -> None:
    targets = {State.IDLE} | set(TRANSITIONS.values())
    assert targets == set(State)
    for state in State:
        assert TRANSITIONS[(state, Input.CANCEL)] is State.IDLE


def test_every_missing_pair_of_the_table_is_illegal() -> None:
    for state in State:
        for event in Input:
            m = machine()
            m.state = state
            if (state, event) in TRANSITIONS:
                m._transition(event)
                assert m.state is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(IllegalTransition):
                    m._transition(event)


def test_illegal_transition_is_a_named_error() -> None:
    m = machine()
    with pytest.raises(IllegalTransition) as info:
        m._transition(Input.ACCEPTED)
    assert info.value.state is State.IDLE and info.value.input is Input.ACCEPTED
    assert isinstance(info.value, LocalProtocolError)


# -- requests -------------------------------------------------------------


def test_request_fields_and_extension_order() -> None:
    m = machine(nai="router@example.net", udp_tunnel=True)
    m.register(COA, 0.0)
    request = sent_request(m)
    assert request.lifetime == 600
    assert request.home_address == HOME and request.home_agent == HA
    assert request.care_of_address == COA
    assert request.flags == RequestFlags.D | RequestFlags.T
    kinds = [type(e) for e in request.extensions]
    # RFC 5177 §10 / RFC 3519 §4.4 / RFC 2794: all before the MN-HA auth extension.
    assert kinds[:3] == [MobileNetworkRequest, UDPTunnelRequest, MobileNodeNAI]
    assert kinds[-1].__name__ == "MobileHomeAuth"
    assert high32(request.identification) == (WALL & 0xFFFFFFFF)


def test_optional_flags() -> None:
    m = machine(simultaneous_bindings=True, reverse_tunnel=False, gre_encapsulation=True)
    m.register(COA, 0.0)
    assert sent_request(m).flags == RequestFlags.S | RequestFlags.D | RequestFlags.G


def test_deregistration_uses_home_address_and_no_prefixes() -> None:
    m = machine()
    m.deregister(5.0)
    request = sent_request(m, 5.0)
    assert request.lifetime == 0
    assert request.care_of_address == HOME  # §3.6.1.2 / Appendix C.3
    assert not any(isinstance(e, MobileNetworkRequest) for e in request.extensions)
    m.receive_datagram(reply_to(request), HA_ADDR, 5.5)
    (deregistered,) = events(m)
    assert isinstance(deregistered, Deregistered) and deregistered.round_trip == 0.5
    assert m.state is State.IDLE


def test_deregister_a_specific_care_of_address() -> None:
    m = machine()
    m.deregister(0.0, care_of_address=COA)
    assert sent_request(m).care_of_address == COA


def test_config_validation() -> None:
    with pytest.raises(LocalProtocolError):
        machine(initial_retransmit=0.5)  # §3.6.3: >= 1 s
    with pytest.raises(LocalProtocolError):
        machine(lifetime=0)
    with pytest.raises(LocalProtocolError):
        machine(udp_tunnel=True, colocated_care_of_address=False)


# -- replies --------------------------------------------------------------


def test_accept_and_granted_lifetime_rules() -> None:
    m = machine()
    m.register(COA, 10.0)
    request = sent_request(m, 10.0)
    # A reply granting more than requested: the request's lifetime is used (§3.4).
    m.receive_datagram(
        reply_to(request, lifetime=9000, extensions=(MobileNetworkAck(0, MNP),)), HA_ADDR, 10.25
    )
    (registered,) = events(m)
    assert isinstance(registered, Registered)
    assert registered.lifetime == 600 and registered.round_trip == 0.25
    assert registered.mobile_networks_acked == (MNP,)
    assert m.binding is not None and m.binding.expires_at == 610.0
    assert m.get_timer() == 10.0 + 480.0


def test_infinite_lifetime_means_no_renewal() -> None:
    m = machine(lifetime=0xFFFF)
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m)), HA_ADDR, 0.1)
    (registered,) = events(m)
    assert registered.lifetime is None
    assert m.get_timer() is None


def test_home_agent_without_nemo_support_is_reported() -> None:
    m = machine()
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m)), HA_ADDR, 0.1)
    (registered,) = events(m)
    assert registered.mobile_networks_unsupported  # RFC 5177 §5.1
    assert registered.mobile_networks_acked == ()


def test_udp_tunnel_only_on_assent() -> None:
    for code, expected in ((0, True), (64, False)):
        m = machine(udp_tunnel=True)
        m.register(COA, 0.0)
        reply = reply_to(sent_request(m), extensions=(UDPTunnelReply(code, keepalive_interval=25),))
        m.receive_datagram(reply, HA_ADDR, 0.1)
        (registered,) = events(m)
        assert registered.udp_tunnel is expected


@pytest.mark.parametrize("code", sorted(c for c in REPLY_CODE_TEXT if c not in (0, 1, 133)))
def test_every_denial_code_is_an_event_with_back_off(code: int) -> None:
    m = machine(denial_backoff=10.0, max_denial_backoff=40.0)
    m.register(COA, 0.0)
    request = sent_request(m)
    m.receive_datagram(reply_to(request, code=code, lifetime=0), HA_ADDR, 0.5)
    (denied,) = events(m)
    assert isinstance(denied, RegistrationDenied)
    assert denied.code == code and denied.reason == REPLY_CODE_TEXT[code]
    assert denied.retry_at == 10.5 and not denied.deregistration
    assert m.state is State.HELD_DOWN
    # No flooding: calling register() again does not send during the hold-down.
    m.register(COA, 1.0)
    assert m.datagrams_to_send(1.0) == []
    assert m.get_timer() == 10.5
    m.handle_timer(10.5)
    retry = sent_request(m, 10.5)
    assert m.state is State.REGISTERING
    # Consecutive denials double the back-off, up to its cap.
    m.receive_datagram(reply_to(retry, code=code, lifetime=0), HA_ADDR, 11.0)
    assert events(m)[0].retry_at == 31.0
    m.handle_timer(31.0)
    third = sent_request(m, 31.0)
    m.receive_datagram(reply_to(third, code=code, lifetime=0), HA_ADDR, 31.0)
    m.handle_timer(71.0)
    fourth = sent_request(m, 71.0)
    m.receive_datagram(reply_to(fourth, code=code, lifetime=0), HA_ADDR, 71.0)
    assert [e.retry_at for e in events(m)] == [71.0, 111.0]


def test_every_reply_code_we_know_has_its_rfc_text() -> None:
    # So the parametrised denial test above covers every code of RFC 5944 §3.4 (64-88 from
    # foreign agents, 128-136 from home agents) and its extensions (RFC 3024, 2794, 4721,
    # 3519, 5177 NEMO 147/148).
    assert set(ReplyCode) <= set(REPLY_CODE_TEXT)


def test_unknown_denial_code_is_an_event_too() -> None:
    m = machine()
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m), code=200), HA_ADDR, 0.1)
    (denied,) = events(m)
    assert denied.code == 200 and denied.reason == "code 200"


def test_133_resyncs_and_retries_once() -> None:
    m = machine()
    m.register(COA, 0.0)
    request = sent_request(m)
    ha_seconds = (WALL + 86400) & 0xFFFFFFFF
    resync = (ha_seconds << 32) | low32(request.identification)
    m.receive_datagram(reply_to(request, code=133, identification=resync), HA_ADDR, 0.2)
    assert events(m) == []
    retry = sent_request(m, 0.2)
    assert high32(retry.identification) == ha_seconds
    assert m.state is State.REGISTERING
    # A second 133 in the same attempt is a denial with back-off (no ping-pong).
    resync2 = (ha_seconds << 32) | low32(retry.identification)
    m.receive_datagram(reply_to(retry, code=133, identification=resync2), HA_ADDR, 0.3)
    (denied,) = events(m)
    assert isinstance(denied, RegistrationDenied) and denied.code == 133
    assert m.counters["resynchronised"] == 2


def test_69_lowers_the_requested_lifetime() -> None:
    m = machine(denial_backoff=1.0)
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m), code=69, lifetime=300), HA_ADDR, 0.1)
    m.handle_timer(1.1)
    assert sent_request(m, 1.1).lifetime == 300


def test_148_stops_prefixes_147_removes_named_ones() -> None:
    other = IPv4Network("10.1.2.0/24")
    m = machine(mobile_networks=(MNP, other), denial_backoff=1.0)
    m.register(COA, 0.0)
    request = sent_request(m)
    m.receive_datagram(
        reply_to(request, code=147, extensions=(MobileNetworkAck(2, other),)), HA_ADDR, 0.1
    )
    assert m.mobile_networks_requested == (MNP,)
    m.handle_timer(1.1)
    retry = sent_request(m, 1.1)
    assert [e.prefix for e in retry.extensions if isinstance(e, MobileNetworkRequest)] == [MNP]
    m.receive_datagram(reply_to(retry, code=148), HA_ADDR, 1.2)
    assert m.mobile_networks_requested == ()


def test_denied_renewal_keeps_belief_until_expiry() -> None:
    m = machine(lifetime=100, denial_backoff=50.0)
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m)), HA_ADDR, 0.0)
    events(m)
    m.handle_timer(80.0)  # renewal
    renewal = sent_request(m, 80.0)
    m.receive_datagram(reply_to(renewal, code=130), HA_ADDR, 80.1)
    assert m.binding is not None and m.state is State.HELD_DOWN
    m.handle_timer(100.0)
    denied, expired = events(m)
    assert isinstance(denied, RegistrationDenied) and denied.code == 130
    assert isinstance(expired, BindingExpired)
    assert m.binding is None and m.state is State.HELD_DOWN


def test_moving_during_hold_down_waits_only_one_second() -> None:
    m = machine(denial_backoff=100.0)
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m), code=129), HA_ADDR, 0.0)
    m.register(IPv4Address("198.51.100.3"), 5.0)
    assert m.get_timer() == 6.0
    m.handle_timer(6.0)
    assert sent_request(m, 6.0).care_of_address == IPv4Address("198.51.100.3")


def test_timeout_event_then_keeps_retrying_at_cap() -> None:
    m = machine(max_retransmit=4.0, max_retransmissions=2)
    m.register(COA, 0.0)
    times = [0.0]
    m.datagrams_to_send(0.0)
    now = 0.0
    for _ in range(6):
        now = m.get_timer()
        m.handle_timer(now)
        assert len(m.datagrams_to_send(now)) == 1
        times.append(now)
    assert times == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]
    (timeout,) = events(m)
    assert isinstance(timeout, RegistrationTimeout) and timeout.attempts == 3


def test_retransmission_cap_never_exceeds_requested_lifetime() -> None:
    m = machine(lifetime=3, max_retransmit=32.0)
    m.register(COA, 0.0)
    deadlines = []
    for _ in range(5):
        deadline = m.get_timer()
        deadlines.append(deadline)
        m.handle_timer(deadline)
    assert [b - a for a, b in zip([0.0, *deadlines], deadlines, strict=False)] == [1, 2, 3, 3, 3]


# -- drops ----------------------------------------------------------------


def test_drops_are_counted_never_raised() -> None:
    m = machine()
    m.register(COA, 0.0)
    request = sent_request(m)
    good = reply_to(request)
    other_sa = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, b"x" * 16)
    cases = {
        "unexpected_source": (good, ("10.10.0.2", 434)),
        "bad_authenticator": (reply_to(request, sa=other_sa), HA_ADDR),
        "unknown_spi": (
            reply_to(request, sa=SecurityAssociation(999, AuthAlgorithm.HMAC_MD5, b"k" * 16)),
            HA_ADDR,
        ),
        "identification_mismatch": (
            reply_to(request, identification=request.identification ^ 1),
            HA_ADDR,
        ),
        "wrong_home_address": (reply_to(request, home_address=IPv4Address("10.10.0.51")), HA_ADDR),
        "not_a_reply": (sign(encode(request), SA), HA_ADDR),
        "malformed": (b"\x03", HA_ADDR),
        "no_auth_extension": (
            encode(decode(good).__class__(0, 600, HOME, HA, request.identification)),
            HA_ADDR,
        ),
        "unknown_extension": (
            reply_to(request, extensions=(UnknownExtension(99, b"zz"),)),
            HA_ADDR,
        ),
    }
    for reason, (data, addr) in cases.items():
        m.receive_datagram(data, addr, 0.1)
        assert m.counters.get(reason) == 1, reason
    assert m.state is State.REGISTERING and events(m) == []
    m.receive_datagram(good, HA_ADDR, 0.2)
    assert m.state is State.REGISTERED
    m.receive_datagram(good, HA_ADDR, 0.3)
    assert m.counters["unsolicited"] == 1


UNKNOWN_EXTENSION_CASES = [
    # (extension, the reply is discarded): RFC 5944 §1.8, types 0-127 discard the message,
    # 128-255 are skipped. A known type with a sub-type we do not know is not recognised.
    (UnknownExtension(1, b"z"), True),
    (UnknownExtension(127, b""), True),  # the highest non-skippable type
    (UnknownExtension(44, b"\x07\x00"), True),  # UDP Tunnel Reply, unknown sub-type 7
    (UnknownExtension(128, b""), False),  # the lowest skippable type
    (UnknownExtension(148, b"\x07"), False),  # Mobile Network, unknown sub-type 7
]


@pytest.mark.parametrize(("extension", "discarded"), UNKNOWN_EXTENSION_CASES)
@pytest.mark.parametrize("where", ["covered", "after-authentication"])
def test_unknown_extension_in_a_reply(
    extension: UnknownExtension, discarded: bool, where: str
) -> None:
    m = machine()
    m.register(COA, 0.0)
    request = sent_request(m)
    if where == "covered":
        data = reply_to(request, extensions=(extension,))
    else:
        # Appended after the Mobile-Home Authentication Extension (not covered by it).
        tail = encode(RegistrationReply(0, 0, HOME, HA, 0, (extension,)))[20:]
        data = reply_to(request) + tail
    m.receive_datagram(data, HA_ADDR, 0.1)
    if discarded:
        assert m.counters == {"requests_sent": 1, "unknown_extension": 1}
        assert m.state is State.REGISTERING and events(m) == []
    else:
        assert "unknown_extension" not in m.counters
        assert m.state is State.REGISTERED
        assert isinstance(events(m)[0], Registered)


def test_reply_to_an_older_retransmission_is_dropped() -> None:
    # §3.6.2.1: compare with the most recent request only (timestamps change per try).
    m = machine()
    m.register(COA, 0.0)
    first = sent_request(m)
    m.handle_timer(1.0)
    second = sent_request(m, 1.0)
    assert first.identification != second.identification
    m.receive_datagram(reply_to(first), HA_ADDR, 1.1)
    assert m.counters["identification_mismatch"] == 1
    m.receive_datagram(reply_to(second), HA_ADDR, 1.2)
    assert m.state is State.REGISTERED


def test_expiry_after_a_long_pause_reregisters() -> None:
    m = machine(lifetime=100)
    m.register(COA, 0.0)
    m.receive_datagram(reply_to(sent_request(m)), HA_ADDR, 0.0)
    events(m)
    m.handle_timer(500.0)  # the process was suspended past renewal and expiry
    (expired,) = events(m)
    assert isinstance(expired, BindingExpired)
    assert m.state is State.REGISTERING
    assert len(m.datagrams_to_send(500.0)) == 1


def test_cancel_forgets_everything() -> None:
    m = machine()
    m.register(COA, 0.0)
    m.cancel()
    assert m.state is State.IDLE and m.get_timer() is None
    m.datagrams_to_send(0.0)
    m.handle_timer(100.0)
    assert m.datagrams_to_send(100.0) == []


def test_two_machines_are_independent() -> None:
    inner = machine()
    outer = machine(home_address=IPv4Address("192.0.2.50"), home_agent=IPv4Address("192.0.2.1"))
    inner.register(COA, 0.0)
    assert outer.datagrams_to_send(0.0) == []
    assert outer.state is State.IDLE


def test_repeated_register_calls_do_not_flood() -> None:
    m = machine()
    m.register(COA, 0.0)
    m.register(COA, 0.1)
    m.register(COA, 0.2)
    assert len(m.datagrams_to_send(0.2)) == 1
    assert m.get_timer() == 1.0
    m.deregister(0.3)
    m.deregister(0.4)
    assert len(m.datagrams_to_send(0.4)) == 1
    assert m.counters["register_coalesced"] == 2 and m.counters["deregister_coalesced"] == 1
