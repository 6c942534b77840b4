"""A mobile node and a home agent joined by an in-memory link on a fake clock.

The link carries datagrams both ways instantly (or drops them, when told); the
clock only moves when a test says so, jumping from timer to timer. No sockets,
no sleeps: every interval below is exact arithmetic on the fake clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.mip import homeagent as ha_mod
from router.mip import mobilenode as mn_mod
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.homeagent import HomeAgentConfig, HomeAgentLogic, MobileNodeEntry
from router.mip.identification import NTP_UNIX_OFFSET, ReplayMethod
from router.mip.mobilenode import MobileNodeConfig, RegistrationMachine, State

HOME = IPv4Address("10.10.0.50")
HA_ADDRESS = IPv4Address("10.10.0.1")
HOME_NET = IPv4Network("10.10.0.0/24")
MNP = IPv4Network("10.1.1.0/24")
COA_3G = IPv4Address("100.64.0.20")
COA_HOTSPOT = IPv4Address("198.51.100.33")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
WALL = 1_795_000_000 + NTP_UNIX_OFFSET  # 2026 in NTP seconds, at fake time 0


def deterministic_random(seed: int = 1) -> Callable[[int], bytes]:
    counter = itertools.count(seed * 1_000_003)

    def random_bytes(n: int) -> bytes:
        return (next(counter) * 2_654_435_761 % 2**32).to_bytes(4, "big")[:n].rjust(n, b"\0")

    return random_bytes


def make_sa(
    replay: ReplayMethod = ReplayMethod.TIMESTAMPS, key: bytes = KEY
) -> SecurityAssociation:
    return SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, key, replay)


def mn_config(**overrides: object) -> MobileNodeConfig:
    values: dict[str, object] = {
        "home_address": HOME,
        "home_agent": HA_ADDRESS,
        "security_association": make_sa(),
        "lifetime": 600,
        "mobile_networks": (MNP,),
        "clock_offset": WALL,
    }
    values.update(overrides)
    return MobileNodeConfig(**values)  # type: ignore[arg-type]


def ha_config(
    sa: SecurityAssociation | None = None,
    networks: tuple[IPv4Network, ...] = (MNP,),
    **overrides: object,
) -> HomeAgentConfig:
    entry = MobileNodeEntry(HOME, (sa or make_sa(),), networks)
    values: dict[str, object] = {
        "address": HA_ADDRESS,
        "home_network": HOME_NET,
        "mobile_nodes": (entry,),
        "max_lifetime": 1800,
        "clock_offset": WALL,
    }
    values.update(overrides)
    return HomeAgentConfig(**values)  # type: ignore[arg-type]


@dataclass
class Pair:
    """The two endpoints, the link between them and the fake clock."""

    mn: RegistrationMachine
    ha: HomeAgentLogic
    now: float = 0.0
    #: Decides per datagram whether it is lost: f(direction, index) -> lost.
    lose: Callable[[str, int], bool] = lambda direction, index: False
    #: Source address the home agent sees (a NAT may rewrite it).
    nat_source: str | None = None
    #: Source address of the home agent's replies (the address the request went to).
    ha_source: str = str(HA_ADDRESS)
    mn_port: int = 40000
    sent_by_mn: list[tuple[float, bytes]] = field(default_factory=list)
    sent_by_ha: list[tuple[float, bytes]] = field(default_factory=list)
    mn_events: list[object] = field(default_factory=list)
    ha_events: list[object] = field(default_factory=list)
    _count: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})

    @classmethod
    def build(
        cls,
        mn: MobileNodeConfig | None = None,
        ha: HomeAgentConfig | None = None,
        **kwargs: object,
    ) -> Pair:
        return cls(
            RegistrationMachine(mn or mn_config(), random_bytes=deterministic_random(1)),
            HomeAgentLogic(ha or ha_config(), random_bytes=deterministic_random(2)),
            **kwargs,  # type: ignore[arg-type]
        )

    def source_of_mn(self) -> str:
        if self.nat_source is not None:
            return self.nat_source
        pending = self.mn._pending  # the care-of address the request came from
        if pending is not None:
            return str(pending.care_of_address)
        return str(HOME)

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for data, addr in self.mn.datagrams_to_send(self.now):
                moved = True
                assert addr == (str(self.mn.config.home_agent), 434)
                self.sent_by_mn.append((self.now, data))
                index = self._count["up"]
                self._count["up"] += 1
                if not self.lose("up", index):
                    self.ha.receive_datagram(data, (self.source_of_mn(), self.mn_port), self.now)
            for data, _addr in self.ha.datagrams_to_send(self.now):
                moved = True
                self.sent_by_ha.append((self.now, data))
                index = self._count["down"]
                self._count["down"] += 1
                if not self.lose("down", index):
                    self.mn.receive_datagram(data, (self.ha_source, 434), self.now)
            self._drain()
            if not moved:
                return
        raise AssertionError("link never settled")

    def _drain(self) -> None:
        while (event := self.mn.next_event()) is not None:
            self.mn_events.append(event)
        while (event := self.ha.next_event()) is not None:
            self.ha_events.append(event)

    def run_until(self, until: float) -> None:
        """Advance the fake clock to ``until``, firing every timer on the way."""
        self.pump()
        for _ in range(10_000):
            timers = [t for t in (self.mn.get_timer(), self.ha.get_timer()) if t is not None]
            next_timer = min(timers) if timers else None
            if next_timer is None or next_timer > until:
                break
            self.now = max(self.now, next_timer)
            self.mn.handle_timer(self.now)
            self.ha.handle_timer(self.now)
            self.pump()
        else:
            raise AssertionError("timers never settled")
        self.now = max(self.now, until)

    def register(self, coa: IPv4Address = COA_3G) -> None:
        self.mn.register(coa, self.now)
        self.pump()

    def deregister(self) -> None:
        self.mn.deregister(self.now)
        self.pump()

    def events_of(self, kind: type, side: str = "mn") -> list:
        events = self.mn_events if side == "mn" else self.ha_events
        return [e for e in events if isinstance(e, kind)]


def assert_beliefs_agree(pair: Pair) -> None:
    """The home agent holds exactly the binding the mobile node believes in."""
    belief = pair.mn.binding
    bindings = pair.ha.bindings()
    if belief is None:
        assert HOME not in bindings, (pair.mn.state, bindings)
    else:
        assert HOME in bindings, (pair.mn.state, belief)
        assert bindings[HOME].care_of_address == belief.care_of_address
        assert bindings[HOME].mobile_networks == belief.mobile_networks


# ---------------------------------------------------------------------------


def test_registration() -> None:
    pair = Pair.build()
    pair.register()
    assert pair.mn.state is State.REGISTERED
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.care_of_address == COA_3G
    assert registered.lifetime == 600
    assert registered.mobile_networks_acked == (MNP,)
    assert registered.round_trip == 0.0
    assert not registered.renewal
    (added,) = pair.events_of(ha_mod.BindingAdded, "ha")
    assert added.binding.care_of_address == COA_3G
    assert added.binding.mobile_networks == (MNP,)
    assert added.binding.reverse_tunnel
    assert not added.binding.udp_tunnel
    assert_beliefs_agree(pair)


def test_renewal_before_lifetime_ends() -> None:
    pair = Pair.build()
    pair.register()
    pair.run_until(479.0)
    assert len(pair.sent_by_mn) == 1
    pair.run_until(481.0)
    # Renewal at 80 % of the granted 600 s.
    assert [t for t, _ in pair.sent_by_mn] == [0.0, 480.0]
    registered = pair.events_of(mn_mod.Registered)
    assert len(registered) == 2 and registered[1].renewal
    (renewed,) = pair.events_of(ha_mod.BindingRenewed, "ha")
    assert renewed.previous_care_of_address == COA_3G
    pair.run_until(5000.0)
    assert not pair.events_of(ha_mod.BindingExpired, "ha")
    assert not pair.events_of(mn_mod.BindingExpired)
    assert_beliefs_agree(pair)


def test_shorter_granted_lifetime_is_honoured() -> None:
    pair = Pair.build(ha=ha_config(max_lifetime=100))
    pair.register()
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.lifetime == 100
    assert pair.mn.binding is not None and pair.mn.binding.expires_at == 100.0
    pair.run_until(81.0)
    assert [t for t, _ in pair.sent_by_mn] == [0.0, 80.0]


def test_move_to_new_care_of_address() -> None:
    pair = Pair.build()
    pair.register(COA_3G)
    pair.now = 30.0
    pair.register(COA_HOTSPOT)
    assert pair.ha.bindings()[HOME].care_of_address == COA_HOTSPOT
    (renewed,) = pair.events_of(ha_mod.BindingRenewed, "ha")
    assert renewed.previous_care_of_address == COA_3G
    assert not pair.events_of(mn_mod.Registered)[-1].renewal
    assert_beliefs_agree(pair)


def test_deregistration() -> None:
    pair = Pair.build()
    pair.register()
    pair.now = 10.0
    pair.deregister()
    assert pair.mn.state is State.IDLE
    (deregistered,) = pair.events_of(mn_mod.Deregistered)
    assert deregistered.care_of_address == HOME  # §3.6.1.2: deregister all -> home address
    (removed,) = pair.events_of(ha_mod.BindingRemoved, "ha")
    assert removed.reason == "deregistered"
    assert pair.ha.bindings() == {}
    pair.run_until(10_000.0)
    assert len(pair.sent_by_mn) == 2  # nothing more once deregistered


def test_loss_and_retransmission_with_backoff() -> None:
    pair = Pair.build(
        mn=mn_config(max_retransmit=8.0, max_retransmissions=3),
        lose=lambda direction, index: direction == "up" and index < 6,
    )
    pair.register()
    pair.run_until(100.0)
    times = [t for t, _ in pair.sent_by_mn]
    # Initial 1 s, doubling, capped at 8 s (§3.6.3); the 7th request gets through.
    assert times[:7] == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0]
    assert [b - a for a, b in itertools.pairwise(times[:7])] == [1, 2, 4, 8, 8, 8]
    (timeout,) = pair.events_of(mn_mod.RegistrationTimeout)
    assert timeout.attempts == 4
    assert pair.mn.state is State.REGISTERED
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.round_trip == 0.0
    # Timestamps: every retransmission is a new registration with a new Identification.
    identifications = {data[16:24] for _, data in pair.sent_by_mn[:7]}
    assert len(identifications) == 7
    # Lifetime timed from the accepted request's transmission (§3.6.2.2).
    assert pair.mn.binding is not None and pair.mn.binding.expires_at == 31.0 + 600
    assert pair.mn.counters["retransmissions"] == 6
    assert_beliefs_agree(pair)


def test_lost_reply_then_retransmission_accepted() -> None:
    pair = Pair.build(lose=lambda direction, index: direction == "down" and index == 0)
    pair.register()
    assert pair.mn.state is State.REGISTERING
    assert HOME in pair.ha.bindings()  # the HA did bind; only the reply was lost
    pair.run_until(2.0)
    assert pair.mn.state is State.REGISTERED
    assert len(pair.events_of(ha_mod.BindingRenewed, "ha")) == 1
    assert_beliefs_agree(pair)


def test_nonce_mode_pair_syncs_then_registers() -> None:
    sa = make_sa(ReplayMethod.NONCES)
    pair = Pair.build(mn=mn_config(security_association=sa), ha=ha_config(sa))
    pair.register()
    # First request cannot carry the HA's nonce: 133, resync, retry at once.
    assert pair.mn.state is State.REGISTERED
    assert pair.mn.counters["resynchronised"] == 1
    assert not pair.events_of(mn_mod.RegistrationDenied)
    pair.run_until(481.0)
    assert len(pair.events_of(mn_mod.Registered)) == 2


def test_nonce_retransmission_is_unchanged_and_duplicate_is_answered() -> None:
    sa = make_sa(ReplayMethod.NONCES)
    # Lose the first accepting reply (reply #1; reply #0 is the 133).
    pair = Pair.build(
        mn=mn_config(security_association=sa),
        ha=ha_config(sa),
        lose=lambda direction, index: direction == "down" and index == 1,
    )
    pair.register()
    assert pair.mn.state is State.REGISTERING
    pair.run_until(1.5)
    # §3.6.3: with nonces the unanswered request is retransmitted unchanged ...
    assert pair.sent_by_mn[-1][1] == pair.sent_by_mn[-2][1]
    # ... and the HA answers it as a duplicate without extending the lifetime.
    assert pair.ha.counters["duplicate"] == 1
    assert pair.mn.state is State.REGISTERED
    assert_beliefs_agree(pair)


def test_resync_after_133_when_home_agent_clock_is_far_off() -> None:
    pair = Pair.build(ha=ha_config(clock_offset=WALL + 3 * 86400))
    pair.register()
    assert pair.mn.state is State.REGISTERED
    assert pair.ha.counters["denied_133"] == 1
    assert pair.mn.counters["resynchronised"] == 1
    assert not pair.events_of(mn_mod.RegistrationDenied)
    # Renewals keep working with the corrected clock.
    pair.run_until(1000.0)
    assert pair.ha.counters.get("denied_133") == 1
    assert len(pair.events_of(mn_mod.Registered)) == 3


def test_replayed_request_is_refused_and_changes_nothing() -> None:
    pair = Pair.build()
    pair.register(COA_3G)
    old_request = pair.sent_by_mn[0][1]
    pair.now = 2.0
    pair.register(COA_HOTSPOT)
    # An attacker replays the first (authentic) request, still inside the 7 s window.
    pair.now = 4.0
    pair.ha.receive_datagram(old_request, (str(COA_3G), 40000), pair.now)
    assert pair.ha.bindings()[HOME].care_of_address == COA_HOTSPOT
    assert pair.ha.counters["replay_not_increasing"] == 1
    ((reply, addr),) = pair.ha.datagrams_to_send(pair.now)
    assert reply[1] == 133 and addr == (str(COA_3G), 40000)
    # The same request much later is outside the clock window.
    pair.ha.receive_datagram(old_request, (str(COA_3G), 40000), 100.0)
    assert pair.ha.counters["replay_clock_skew"] == 1


def test_binding_expires_when_mobile_node_goes_silent() -> None:
    pair = Pair.build(ha=ha_config(max_lifetime=60))
    pair.register()
    pair.lose = lambda direction, index: True  # the uplink is gone
    pair.run_until(59.0)
    assert HOME in pair.ha.bindings()
    pair.run_until(60.0)
    (expired,) = pair.events_of(ha_mod.BindingExpired, "ha")
    assert expired.binding.care_of_address == COA_3G
    (mn_expired,) = pair.events_of(mn_mod.BindingExpired)
    assert mn_expired.care_of_address == COA_3G
    assert pair.ha.bindings() == {}
    assert pair.mn.binding is None
    assert pair.mn.state is State.REGISTERING  # keeps trying
    pair.lose = lambda direction, index: False
    pair.run_until(200.0)
    assert pair.mn.state is State.REGISTERED
    assert_beliefs_agree(pair)


def test_nemo_explicit_mode() -> None:
    second = IPv4Network("10.1.2.0/24")
    pair = Pair.build(
        mn=mn_config(mobile_networks=(MNP, second)),
        ha=ha_config(networks=(IPv4Network("10.1.0.0/16"),)),
    )
    pair.register()
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.mobile_networks_acked == (MNP, second)
    assert pair.ha.bindings()[HOME].mobile_networks == (MNP, second)


def test_nemo_explicit_mode_partly_unauthorised() -> None:
    rogue = IPv4Network("172.16.0.0/24")
    pair = Pair.build(mn=mn_config(mobile_networks=(MNP, rogue)))
    pair.register()
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.mobile_networks_acked == (MNP,)
    assert registered.mobile_networks_rejected == ((rogue, 2),)  # MOBNET_UNAUTHORIZED
    assert pair.ha.bindings()[HOME].mobile_networks == (MNP,)


def test_nemo_implicit_mode() -> None:
    pair = Pair.build(mn=mn_config(explicit_mode=False))
    pair.register()
    # No Mobile Network Request goes out; the HA acknowledges its Prefix Table entry.
    assert b"\x94" not in pair.sent_by_mn[0][1][24:26]
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.mobile_networks_acked == (MNP,)
    assert pair.ha.bindings()[HOME].mobile_networks == (MNP,)


def test_nemo_all_prefixes_refused_is_147_and_then_dropped() -> None:
    rogue = IPv4Network("172.16.0.0/24")
    pair = Pair.build(mn=mn_config(mobile_networks=(rogue,), denial_backoff=5.0))
    pair.register()
    (denied,) = pair.events_of(mn_mod.RegistrationDenied)
    assert denied.code == 147 and "HA_MOBNET_ERROR" in denied.reason
    assert pair.mn.mobile_networks_requested == ()  # RFC 5177 §5.1
    pair.run_until(5.0)
    # Retried without the refused prefix: implicit acknowledgement of the real one.
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.mobile_networks_acked == (MNP,)


def test_nemo_not_a_mobile_router_is_148() -> None:
    pair = Pair.build(ha=ha_config(networks=()), mn=mn_config(denial_backoff=5.0))
    pair.register()
    (denied,) = pair.events_of(mn_mod.RegistrationDenied)
    assert denied.code == 148
    assert pair.mn.mobile_networks_requested == ()
    pair.run_until(5.0)
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.mobile_networks_acked == ()


def test_wrong_key_draws_131_which_the_mobile_node_cannot_trust() -> None:
    pair = Pair.build(mn=mn_config(security_association=make_sa(key=b"wrong key 123456")))
    pair.register()
    # The HA replies 131 signed with the key it knows; the MN cannot verify it and
    # drops it (§3.6.2.1 b), counted as a bad authenticator. No binding anywhere.
    assert pair.ha.counters["denied_131"] == 1
    assert pair.mn.counters["bad_authenticator"] == 1
    assert pair.ha.bindings() == {}
    assert not pair.events_of(ha_mod.BindingAdded, "ha")


def test_forged_and_unsolicited_replies_are_dropped_and_counted() -> None:
    pair = Pair.build()
    pair.register()
    good_reply = pair.sent_by_ha[0][1]
    # Unsolicited: the same authentic reply again, nothing outstanding.
    pair.mn.receive_datagram(good_reply, (str(HA_ADDRESS), 434), 1.0)
    assert pair.mn.counters["unsolicited"] == 1
    # Forged: one byte changed.
    forged = bytearray(good_reply)
    forged[3] ^= 0xFF
    pair.mn.receive_datagram(bytes(forged), (str(HA_ADDRESS), 434), 1.0)
    assert pair.mn.counters["bad_authenticator"] == 1
    # Wrong source.
    pair.mn.receive_datagram(good_reply, ("192.0.2.99", 434), 1.0)
    assert pair.mn.counters["unexpected_source"] == 1
    # Garbage.
    pair.mn.receive_datagram(b"\x03\x00", (str(HA_ADDRESS), 434), 1.0)
    assert pair.mn.counters["malformed"] == 1
    assert pair.mn.state is State.REGISTERED
    assert len(pair.events_of(mn_mod.Registered)) == 1


def test_udp_tunnelling_behind_nat() -> None:
    pair = Pair.build(mn=mn_config(udp_tunnel=True), nat_source="203.0.113.9")
    pair.register()
    (registered,) = pair.events_of(mn_mod.Registered)
    assert registered.udp_tunnel
    binding = pair.ha.bindings()[HOME]
    assert binding.udp_tunnel
    assert binding.care_of_address == IPv4Address("203.0.113.9")
    assert binding.requested_care_of_address == COA_3G


def test_udp_tunnel_declined_without_nat() -> None:
    pair = Pair.build(mn=mn_config(udp_tunnel=True))
    pair.register()
    (registered,) = pair.events_of(mn_mod.Registered)
    assert not registered.udp_tunnel
    assert not pair.ha.bindings()[HOME].udp_tunnel


def test_udp_tunnel_behind_nat_but_not_permitted_is_129() -> None:
    pair = Pair.build(
        mn=mn_config(udp_tunnel=True), ha=ha_config(udp_tunnelling=False), nat_source="203.0.113.9"
    )
    pair.register()
    (denied,) = pair.events_of(mn_mod.RegistrationDenied)
    assert denied.code == 129


@pytest.mark.parametrize(
    ("code", "mn_overrides", "ha_overrides", "ha_source"),
    [
        # RFC 3024 §3.4: a home agent without reverse tunnelling denies the T bit.
        (137, {}, {"reverse_tunnelling": False}, str(HA_ADDRESS)),
        # RFC 5944 §3.8.2.1 / §3.6.2.3: the request names another home agent address
        # (one the home agent's host also answers on); the reply carries the right one.
        (136, {"home_agent": IPv4Address("10.10.0.2")}, {}, "10.10.0.2"),
    ],
    ids=["137-reverse-tunnel", "136-unknown-home-agent"],
)
def test_home_agent_denials_reach_the_mobile_node_as_events(
    code: int, mn_overrides: dict, ha_overrides: dict, ha_source: str
) -> None:
    pair = Pair.build(
        mn=mn_config(denial_backoff=10.0, **mn_overrides),
        ha=ha_config(**ha_overrides),
        ha_source=ha_source,
    )
    pair.register()
    (denied,) = pair.events_of(mn_mod.RegistrationDenied)
    assert denied.code == code and denied.retry_at == 10.0
    assert pair.ha.counters[f"denied_{code}"] == 1
    assert pair.mn.state is State.HELD_DOWN
    assert pair.ha.bindings() == {} and not pair.ha_events
    if code == 136:
        # §3.8.3.2: the Home Agent field of the denial is the home agent's own address.
        reply = pair.sent_by_ha[-1][1]
        assert reply[8:12] == HA_ADDRESS.packed
    # The same denial again after the back-off (doubled), and nothing sent in between.
    pair.run_until(29.9)
    assert [t for t, _ in pair.sent_by_mn] == [0.0, 10.0]
    assert [e.code for e in pair.events_of(mn_mod.RegistrationDenied)] == [code, code]
    assert pair.events_of(mn_mod.RegistrationDenied)[-1].retry_at == 30.0


def test_smoke_out_probe_draws_authenticated_131_and_no_binding() -> None:
    pair = Pair.build()
    probe = mn_mod.SmokeOutProbe.build(pair.mn.config, COA_3G, deterministic_random(9))
    assert probe.destination == (str(HA_ADDRESS), 434)
    pair.ha.receive_datagram(probe.datagram, (str(COA_3G), 40001), 0.0)
    ((reply, addr),) = pair.ha.datagrams_to_send(0.0)
    assert addr == (str(COA_3G), 40001)
    answer = probe.classify(pair.mn.config, reply, (str(HA_ADDRESS), 434))
    assert answer == mn_mod.SmokeOutAnswer(131, True, str(HA_ADDRESS))
    assert pair.ha.bindings() == {} and pair.ha.next_event() is None
    # Someone else answering, or an unrelated reply, is not our home agent's word.
    assert not probe.classify(pair.mn.config, reply, ("192.0.2.77", 434)).authenticated
    assert probe.classify(pair.mn.config, b"junk", (str(HA_ADDRESS), 434)) is None
    # The real machine registers afterwards as if nothing happened.
    pair.register()
    assert pair.mn.state is State.REGISTERED


# ---------------------------------------------------------------------------
# Property: random sequences of loss, time and commands never raise, and with a
# reliable link the home agent's binding is what the mobile node believes.

command = st.one_of(
    st.tuples(st.just("register"), st.sampled_from([COA_3G, COA_HOTSPOT])),
    st.tuples(st.just("deregister"), st.none()),
    st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=2000.0)),
    st.tuples(st.just("loss"), st.booleans()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    commands=st.lists(command, max_size=25),
    replay=st.sampled_from(list(ReplayMethod)),
    lifetime=st.sampled_from([5, 60, 600, 0xFFFF]),
)
def test_random_sequences(commands: list, replay: ReplayMethod, lifetime: int) -> None:
    sa = make_sa(replay)
    lossy = {"on": False}
    pair = Pair.build(
        mn=mn_config(security_association=sa, lifetime=lifetime),
        ha=ha_config(sa, max_lifetime=0xFFFF),
        lose=lambda direction, index: lossy["on"] and index % 2 == 0,
    )
    for name, argument in commands:
        if name == "register":
            pair.register(argument)
        elif name == "deregister":
            pair.deregister()
        elif name == "advance":
            pair.run_until(pair.now + argument)
        else:
            lossy["on"] = argument
        if not lossy["on"] and pair.mn.state in (State.REGISTERED, State.IDLE):
            # Nothing outstanding on a reliable link: the beliefs must agree now.
            assert_beliefs_agree(pair)
    # Heal the link, let everything settle, then compare beliefs.
    lossy["on"] = False
    pair.run_until(pair.now + 200.0)
    if pair.mn.state in (State.REGISTERED, State.IDLE):
        assert_beliefs_agree(pair)
    if not any(name == "loss" and argument for name, argument in commands):
        # A reliable link never leaves anything outstanding after settling.
        assert pair.mn.state in (State.REGISTERED, State.IDLE)
        assert_beliefs_agree(pair)
        assert not pair.events_of(mn_mod.RegistrationDenied)


@pytest.mark.parametrize("replay", list(ReplayMethod))
def test_lossy_link_eventually_registers(replay: ReplayMethod) -> None:
    sa = make_sa(replay)
    pair = Pair.build(
        mn=mn_config(security_association=sa),
        ha=ha_config(sa),
        lose=lambda direction, index: index % 3 != 2,
    )
    pair.register()
    pair.run_until(300.0)
    assert pair.mn.state is State.REGISTERED
    assert_beliefs_agree(pair)
