"""Hypothesis: random worlds, answer orders, losses and stray events against the coordinator.

A small fake world answers the coordinator's intents the way the drivers would (the inner
home agent answers directly only from inside; a rogue network forges smoke-out replies but
cannot forge an authenticated registration). Random steps move the router, answer or drop
the next outstanding intent, advance the clock, or inject stale and stray events. After
every step the security invariants must hold; at the end, a calm period must converge.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.policy.coordinator import (
    BringVpnUp,
    ConjectureFormed,
    Coordinator,
    CoordinatorParams,
    DeregisterOuter,
    Event,
    InnerDenied,
    InnerLost,
    InnerRegistered,
    Intent,
    LanRoute,
    OuterDenied,
    OuterDeregistered,
    OuterRegistered,
    RecordContext,
    RegisterInner,
    RegisterOuter,
    RoutesSwitched,
    SmokeOut,
    SmokeOutResult,
    State,
    SwitchLanRoute,
    TearVpnDown,
    UplinkChanged,
    VpnDown,
    VpnFailed,
    VpnUp,
)
from router.policy.domain import Conjecture, DomainParams, SmokeOutOutcome, Source, Verdict

A = IPv4Address
INNER_HA = A("10.10.0.1")
T_ADDR = A("192.0.2.50")
PARAMS = CoordinatorParams(
    domain=DomainParams(
        inner_home_agent=INNER_HA,
        outer_home_agent=A("192.0.2.1"),
        inside_prefixes=(IPv4Network("10.0.0.0/8"),),
        outer_home_network=IPv4Network("192.0.2.0/24"),
    ),
    outer_home_address=T_ADDR,
)

# (uplink event, what the network really is)
NETWORKS = {
    "corp": (UplinkChanged("wlan", A("10.30.0.5"), A("10.30.0.1"), "wlan"), "inside"),
    "corp2": (UplinkChanged("eth", A("10.40.0.9"), A("10.40.0.1"), "ethernet"), "inside"),
    "cell": (UplinkChanged("cell", A("100.64.0.7"), A("100.64.0.1"), "3g"), "outside"),
    "hotspot": (UplinkChanged("wlan", A("198.51.100.9"), A("198.51.100.1"), "wlan"), "outside"),
    "ext": (UplinkChanged("wlan", A("192.0.2.77"), A("192.0.2.1"), "wlan"), "outer_home"),
    # imitates corp: same SSID, same lease, forged adverts and smoke-out replies
    "rogue": (UplinkChanged("wlan", A("10.30.0.5"), A("10.30.0.1"), "wlan"), "rogue"),
    "lost": (UplinkChanged("wlan", None, None, "wlan"), "none"),
}
SAFE_NETWORKS = [n for n, (_, kind) in NETWORKS.items() if kind != "inside"]
ADDRESSES = [
    A("10.30.0.5"),
    A("100.64.0.7"),
    A("198.51.100.9"),
    A("192.0.2.77"),
    A("10.99.0.3"),
    A("10.99.0.4"),
]


@dataclass
class World:
    """Drivers and peers: answers intents in order, as the network really behaves."""

    c: Coordinator = field(default_factory=lambda: Coordinator(PARAMS, 0.0))
    now: float = 0.0
    network: str = "none"
    uplink: UplinkChanged | None = None
    vpn_up: bool = False
    vpn_count: int = 0
    outstanding: deque[Intent] = field(default_factory=deque)
    intents: list[Intent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # oracle: direct attempts asked for, and authenticated direct replies seen, since the last move
    direct_asked: set[tuple[int, IPv4Address]] = field(default_factory=set)
    direct_proven: set[tuple[int, IPv4Address]] = field(default_factory=set)
    forge_direct: bool = True

    def feed(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, UplinkChanged):
            self.direct_asked.clear()
            self.direct_proven.clear()
        if isinstance(event, InnerRegistered) and event.direct:
            self.direct_proven.add((event.attempt, event.care_of_address))
        self.c.handle_event(event, self.now)
        self.collect()

    def collect(self) -> None:
        for intent in self.c.intents():
            self.check_intent(intent)
            self.intents.append(intent)
            if isinstance(intent, RegisterInner) and not intent.via_vpn:
                self.direct_asked.add((intent.attempt, intent.care_of_address))
            if not isinstance(intent, RecordContext):
                self.outstanding.append(intent)
        self.check_state()

    # -- invariants --

    def proof_witnessed(self) -> bool:
        """Independent of the coordinator's bookkeeping: an authenticated direct reply to one
        of its own direct attempts, for the current address, since the last uplink change."""
        x = self.uplink.care_of_address if self.uplink else None
        return any(key[1] == x and key in self.direct_asked for key in self.direct_proven)

    def check_intent(self, intent: Intent) -> None:
        if isinstance(intent, TearVpnDown) or (
            isinstance(intent, SwitchLanRoute) and intent.to is LanRoute.DIRECT
        ):
            assert self.c.proof_is_current(), intent
            assert self.proof_witnessed(), (intent, self.direct_asked, self.direct_proven)
        if isinstance(intent, BringVpnUp):
            assert intent.local_address == T_ADDR
        if isinstance(intent, RegisterInner) and intent.via_vpn:
            assert intent.care_of_address == self.c.virtual_ip
        assert intent.reason

    def check_state(self) -> None:
        c = self.c
        if c.route_target is LanRoute.DIRECT:
            assert c.proof_is_current()
        if c.state is State.INSIDE:
            assert c.proof_is_current() and c.vpn_state == "down"
        timer = c.get_timer()
        assert timer is None or timer > self.now

    # -- steps --

    def move(self, name: str) -> None:
        self.uplink, self.network = NETWORKS[name]
        self.feed(self.uplink)

    def tick(self, dt: float) -> None:
        until = self.now + dt
        while (t := self.c.get_timer()) is not None and t <= until:
            self.now = t
            self.c.handle_timer(self.now)
            self.collect()
        self.now = until
        self.c.handle_timer(self.now)
        self.collect()

    def answer(self, ok: bool) -> None:
        if not self.outstanding:
            return
        intent = self.outstanding.popleft()
        x = self.uplink.care_of_address if self.uplink else None
        reply: Event | None = None
        match intent:
            case RegisterInner(care_of_address=coa, via_vpn=False, attempt=n):
                if self.network == "inside" and coa == x:
                    reply = InnerRegistered(coa, True, n) if ok else InnerDenied(133, n)
                elif not ok:
                    reply = InnerLost(n, "no reply")
            case RegisterInner(care_of_address=coa, via_vpn=True, attempt=n):
                if self.vpn_up:
                    reply = InnerRegistered(coa, False, n) if ok else InnerDenied(136, n)
            case RegisterOuter(care_of_address=coa):
                if x is not None:
                    reply = OuterRegistered(coa) if ok else OuterDenied(None)
            case DeregisterOuter():
                reply = OuterDeregistered() if ok else OuterDenied(None)
            case BringVpnUp():
                if ok and x is not None:
                    self.vpn_up, self.vpn_count = True, self.vpn_count + 1
                    reply = VpnUp(A("10.99.0.3") if self.vpn_count % 2 else A("10.99.0.4"))
                else:
                    reply = VpnFailed("timeout")
            case TearVpnDown():
                self.vpn_up = False
                reply = VpnDown("deleted")
            case SwitchLanRoute(to=to):
                reply = RoutesSwitched(to)
            case SmokeOut(care_of_address=coa):
                if self.network in ("inside", "rogue"):  # a rogue forges the code-131 reply
                    signed = self.network == "inside"  # only our HA can sign it
                    reply = SmokeOutResult(coa, SmokeOutOutcome.REPLIED, 131, INNER_HA, signed)
                elif not ok:
                    reply = SmokeOutResult(coa, SmokeOutOutcome.TIMEOUT)
        if reply is not None:
            self.feed(reply)

    def drop(self) -> None:
        if self.outstanding:
            self.outstanding.popleft()

    def run(self, step: tuple[object, ...]) -> None:
        kind = step[0]
        if kind == "move":
            self.move(str(step[1]))
        elif kind == "answer":
            self.answer(bool(step[1]))
        elif kind == "drop":
            self.drop()
        elif kind == "binding_lost":
            # a renewal that went unanswered until the binding ran out (mobilenode BindingExpired)
            inner = [i for i in self.intents if isinstance(i, RegisterInner)]
            if step[1] and inner:
                self.feed(InnerLost(inner[-1].attempt, "binding expired"))
            elif not step[1]:
                self.feed(OuterDenied(None))
        elif kind == "settle":
            self.settle(rounds=3)
        elif kind == "tick":
            self.tick(float(step[1]))  # type: ignore[arg-type]
        elif kind == "raw":
            event = step[1]
            if isinstance(event, InnerRegistered) and event.direct and not self.forge_direct:
                return
            if isinstance(event, VpnDown | VpnFailed):
                self.vpn_up = False
            elif isinstance(event, VpnUp):
                self.vpn_up = True  # the world agrees with what its driver reports
            self.feed(event)  # type: ignore[arg-type]

    def settle(self, rounds: int = 60) -> None:
        """A calm period: everything answered, timers fired."""
        for _ in range(rounds):
            while self.outstanding:
                self.answer(True)
            if self.c.state in (State.INSIDE, State.OUTSIDE, State.OUTER_HOME):
                break
            self.tick(31.0)  # past the longest backoff


addresses = st.sampled_from(ADDRESSES)
attempts = st.integers(0, 8)
raw_events = st.one_of(
    st.builds(InnerRegistered, addresses, st.booleans(), attempts),
    st.builds(InnerDenied, st.sampled_from([131, 133, 136]), attempts),
    st.builds(InnerLost, attempts),
    st.builds(OuterRegistered, addresses),
    st.just(OuterDeregistered()),
    st.builds(OuterDenied, st.none() | st.just(71)),
    st.builds(VpnUp, addresses),
    st.builds(VpnDown, st.just("dpd")),
    st.builds(VpnFailed, st.just("auth")),
    st.builds(RoutesSwitched, st.sampled_from(list(LanRoute))),
    st.builds(
        SmokeOutResult,
        addresses,
        st.sampled_from(list(SmokeOutOutcome)),
        st.none() | st.just(131),
        st.none() | st.just(INNER_HA),
    ),
    st.builds(
        ConjectureFormed,
        st.sampled_from(["wlan", "cell", "eth"]),
        addresses,
        st.builds(
            Conjecture,
            st.sampled_from(list(Verdict)),
            st.floats(0, 1),
            st.just("x"),
            st.just(Source.HISTORY),
        ),
    ),
)


def steps(networks: list[str]) -> st.SearchStrategy[list[tuple[object, ...]]]:
    step = st.one_of(
        st.tuples(st.just("move"), st.sampled_from(networks)),
        st.tuples(st.just("answer"), st.booleans()),
        st.tuples(st.just("answer"), st.just(True)),
        st.tuples(st.just("drop")),
        st.tuples(st.just("binding_lost"), st.booleans()),  # the inner (True) or outer binding
        st.tuples(st.just("settle")),  # reach a situation quickly, then keep roaming
        st.tuples(st.just("settle")),
        st.tuples(st.just("tick"), st.sampled_from([0.05, 0.5, 1.0, 2.0, 40.0, 61.0])),
        st.tuples(st.just("raw"), raw_events),
    )
    return st.lists(step, max_size=60)


# POLICY_FUZZ_EXAMPLES=5000 for a long hunt; the default keeps the unit suite quick.
EXAMPLES = int(os.environ.get("POLICY_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(steps(list(NETWORKS)), st.sampled_from(["corp", "cell", "hotspot", "ext", "rogue"]))
def test_random_runs_keep_the_invariants_and_converge(
    plan: list[tuple[object, ...]], final: str
) -> None:
    world = World()
    for step in plan:
        world.run(step)
    # liveness: after any history, a calm period on one network reaches its situation
    world.forge_direct = False
    world.move(final)
    world.settle()
    expected = {
        "corp": State.INSIDE,
        "cell": State.OUTSIDE,
        "hotspot": State.OUTSIDE,
        "ext": State.OUTER_HOME,
        "rogue": State.OUTSIDE,
    }[final]
    assert world.c.state is expected, world.c.decisions()[-15:]
    assert world.c.route_target is (LanRoute.DIRECT if final == "corp" else LanRoute.VPN)
    log = world.c.handover_log()
    assert log and log[-1].to_state is expected


@SETTINGS
@given(steps(SAFE_NETWORKS))
def test_never_inside_means_vpn_never_dropped(plan: list[tuple[object, ...]]) -> None:
    """Rogue networks, forged adverts/conjectures/smoke-outs, stale replies: without an
    authenticated direct reply, the VPN is never torn down and the LAN never routed direct."""
    world = World(forge_direct=False)
    for step in plan:
        world.run(step)
    world.settle()
    assert not any(isinstance(i, TearVpnDown) for i in world.intents)
    assert not any(isinstance(i, SwitchLanRoute) and i.to is LanRoute.DIRECT for i in world.intents)


@settings(max_examples=max(1, EXAMPLES // 3), deadline=None)
@given(steps(list(NETWORKS)))
def test_intent_stream_is_deterministic(plan: list[tuple[object, ...]]) -> None:
    runs = []
    for _ in range(2):
        world = World()
        for step in plan:
            world.run(step)
        runs.append((world.intents, world.c.decisions(), world.c.handover_log(), world.c.state))
    assert runs[0] == runs[1]


def test_the_tour() -> None:
    """DESIGN.md section 5's tour, answered by the fake world: each step's intents and log."""
    world = World(forge_direct=False)
    expected_steps = [
        ("corp", State.INSIDE, ["SmokeOut", "RegisterInner", "SwitchLanRoute", "DeregisterOuter"]),
        ("cell", State.OUTSIDE, ["SwitchLanRoute", "RegisterOuter", "BringVpnUp", "RegisterInner", "SwitchLanRoute"]),
        ("hotspot", State.OUTSIDE, ["RegisterOuter"]),
        ("ext", State.OUTER_HOME, ["DeregisterOuter"]),
        ("corp", State.INSIDE, ["SmokeOut", "RegisterOuter", "RegisterInner", "SwitchLanRoute", "TearVpnDown", "DeregisterOuter"]),
    ]  # fmt: skip
    for name, situation, kinds in expected_steps:
        before = len(world.intents)
        world.tick(5.0)
        world.move(name)
        world.settle()
        assert world.c.state is situation, (name, world.c.decisions()[-10:])
        new = [type(i).__name__ for i in world.intents[before:] if not isinstance(i, RecordContext)]
        assert new == kinds, name
    log = world.c.handover_log()
    assert [(h.from_state, h.to_state) for h in log] == [
        (State.START, State.INSIDE),
        (State.INSIDE, State.OUTSIDE),
        (State.OUTSIDE, State.OUTSIDE),
        (State.OUTSIDE, State.OUTER_HOME),
        (State.OUTER_HOME, State.INSIDE),
    ]
    # RecordContext: what the history store is told, proven only where authenticated
    records = [
        (i.uplink, i.verdict, i.proven) for i in world.intents if isinstance(i, RecordContext)
    ]
    assert records == [
        ("wlan", Verdict.INSIDE, True),
        ("cell", Verdict.OUTSIDE, False),
        ("wlan", Verdict.OUTSIDE, False),
        ("wlan", Verdict.OUTER_HOME, True),
        ("wlan", Verdict.INSIDE, True),
    ]
