"""Uplink choice: scenarios on a fake clock, health trackers driven by fake paths.

Each scenario is a world of fake uplink paths (RTT, alive, carrier, signal), one
``HealthTracker`` per uplink and one ``UplinkPolicy``; the loop jumps from event to event
(probe due, probe deadline, reply arrival, policy timer, scripted change), feeds snapshots to
the policy after every step and records the decisions. No sleeping, no wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from router.policy.health import HealthState, HealthTracker
from router.policy.uplink import (
    KeepUplink,
    NoUplink,
    PolicyConfigError,
    PolicySettings,
    StandbyWanted,
    SwitchUplink,
    UnknownUplink,
    UplinkPolicy,
    UplinkProfile,
)
from tests.unit.test_policy_health import FakePath

WLAN = UplinkProfile("wlan", "wlan", priority=10, metered=False, min_signal_dbm=-70)
CELL = UplinkProfile("cell", "3g", priority=50, metered=True)
RTT = {"wlan": 0.012, "cell": 0.080, "eth": 0.002, "hotspot": 0.030}

Action = Callable[["World", float], None]


@dataclass
class World:
    profiles: tuple[UplinkProfile, ...] = (WLAN, CELL)
    settings: PolicySettings = field(default_factory=PolicySettings)
    paths: dict[str, FakePath] = field(init=False)
    policy: UplinkPolicy = field(init=False)
    decisions: list[SwitchUplink | NoUplink | StandbyWanted | KeepUplink] = field(init=False, default_factory=list)
    signal: dict[str, float | None] = field(init=False, default_factory=dict)
    now: float = 0.0
    violations: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.paths = {}
        for profile in self.profiles:
            self.paths[profile.name] = FakePath(HealthTracker(profile.name, 0.0),
                                                rtt=_constant(RTT.get(profile.name, 0.010)))
        self.policy = UplinkPolicy(self.profiles, self.settings)

    # --- knobs -----------------------------------------------------------------------------

    def set_alive(self, name: str, alive: bool) -> None:
        self.paths[name].alive = alive

    def set_carrier(self, name: str, up: bool) -> None:
        self.paths[name].set_carrier(up, self.now)

    def set_signal(self, name: str, dbm: float | None) -> None:
        self.paths[name].tracker.signal(dbm, self.now)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, until: float, script: dict[float, Action] | None = None) -> None:
        script = dict(script or {})
        for _ in range(2_000_000):
            times = [t for t in (p.next_time() for p in self.paths.values()) if t is not None]
            timer = self.policy.get_timer()
            times += [t for t in (timer, *script) if t is not None]
            if not times or min(times) > until:
                break
            self.now = max(self.now, min(times))
            for at in sorted(a for a in script if a <= self.now):
                script.pop(at)(self, self.now)
            for path in self.paths.values():
                path.step(self.now)
            self.evaluate()
        else:  # pragma: no cover
            raise AssertionError("event loop did not converge")
        self.now = max(self.now, until)

    def evaluate(self) -> None:
        for path in self.paths.values():
            self.policy.observe(path.tracker.snapshot(), path.carrier, self.now)
        self.decisions += self.policy.evaluate(self.now)
        snaps = {name: p.tracker.snapshot() for name, p in self.paths.items()}
        usable = {n for n, s in snaps.items() if s.online and self.paths[n].carrier}
        if usable and self.policy.active not in usable:
            self.violations.append(f"{self.now:.3f}: active {self.policy.active}, usable {sorted(usable)}")

    # --- reading the record ------------------------------------------------------------------

    def switches(self, since: float = -math.inf, until: float = math.inf) -> list[SwitchUplink]:
        return [d for d in self.decisions if isinstance(d, SwitchUplink) and since <= d.at <= until]


def _constant(rtt: float) -> Callable[[int], float]:
    return lambda seq: rtt


def alive(name: str, value: bool) -> Action:
    return lambda world, now: world.set_alive(name, value)


def carrier(name: str, value: bool) -> Action:
    return lambda world, now: world.set_carrier(name, value)


def signal(name: str, dbm: float | None) -> Action:
    return lambda world, now: world.set_signal(name, dbm)


def prefer(name: str | None) -> Action:
    return lambda world, now: world.policy.prefer(name, now)


# --- table-driven scenarios ---------------------------------------------------------------------

HOLD = WLAN.failback_hold_down
DETECT = 1.0 + 0.5  # worst case: one idle probe interval + 2 RTO + 1 suspect interval


@dataclass(frozen=True)
class Scenario:
    name: str
    script: dict[float, Action]
    until: float
    # (from, to, planned, earliest, latest): the switches after start-up, in order, exactly.
    expect: list[tuple[str | None, str, bool, float, float]]
    profiles: tuple[UplinkProfile, ...] = (WLAN, CELL)


SCENARIOS = [
    Scenario("healthy wlan with standby cell stays", {}, 120.0,
             [(None, "wlan", False, 0.0, 1.0)]),
    Scenario("wlan probes stop: down, unplanned switch to cell",
             {20.0: alive("wlan", False)}, 40.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", False, 20.0, 20.0 + DETECT)]),
    Scenario("wlan disassociates: L2 trigger switches at once",
             {20.0: carrier("wlan", False)}, 40.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", False, 20.0, 20.0)]),
    Scenario("wlan returns: back only after the hold-down",
             {20.0: alive("wlan", False), 30.0: alive("wlan", True)}, 60.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", False, 20.0, 20.0 + DETECT),
              ("cell", "wlan", True, 30.0 + HOLD, 30.0 + HOLD + 1.5)]),
    Scenario("wlan signal fades below minimum: planned switch before it dies",
             {20.0: signal("wlan", -60), 22.0: signal("wlan", -66), 24.0: signal("wlan", -69),
              26.0: signal("wlan", -72), 28.0: signal("wlan", -80), 30.0: alive("wlan", False)},
             40.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", True, 26.0, 26.0)]),
    Scenario("faded wlan must clear min + hysteresis, then the hold-down",
             {20.0: signal("wlan", -72), 30.0: signal("wlan", -69),  # above min, inside margin
              40.0: signal("wlan", -66)},  # above min + 3 dB
             60.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", True, 20.0, 20.0),
              ("cell", "wlan", True, 40.0 + HOLD, 40.0 + HOLD)]),
    Scenario("operator prefers cell, cell dies, returns, override cleared",
             {10.0: prefer("cell"), 20.0: carrier("cell", False), 30.0: carrier("cell", True),
              50.0: prefer(None)}, 70.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", True, 10.0, 10.0),
              ("cell", "wlan", False, 20.0, 20.0),
              ("wlan", "cell", True, 30.0 + CELL.failback_hold_down, 30.0 + CELL.failback_hold_down + 1.0),
              ("cell", "wlan", True, 50.0, 50.0)]),
    Scenario("operator override of a dead uplink waits for it",
             {10.0: carrier("cell", False), 12.0: prefer("cell"), 20.0: carrier("cell", True)}, 30.0,
             [(None, "wlan", False, 0.0, 1.0), ("wlan", "cell", True, 20.0, 21.0)]),
    Scenario("metered tie-break: equal priority, unmetered wins after its hold-down",
             {}, 20.0,
             [(None, "cell", False, 0.0, 1.0), ("cell", "wlan", True, HOLD, HOLD + 1.0)],
             profiles=(UplinkProfile("wlan", "wlan", priority=20, metered=False),
                       UplinkProfile("cell", "3g", priority=20, metered=True))),
    Scenario("metered tie-break on failover: eth dies, unmetered hotspot over cell",
             {20.0: carrier("eth", False)}, 40.0,
             [(None, "eth", False, 0.0, 1.0), ("eth", "hotspot", False, 20.0, 20.0)],
             profiles=(UplinkProfile("eth", "ethernet", priority=5),
                       UplinkProfile("cell", "3g", priority=20, metered=True),
                       UplinkProfile("hotspot", "wlan", priority=20, metered=False))),
    Scenario("exact equals never trade places",
             {}, 60.0,
             [(None, "hotspot", False, 0.0, 1.0)],
             profiles=(UplinkProfile("wlan", "wlan", priority=20),
                       UplinkProfile("hotspot", "wlan", priority=20))),
]


def _metered_first_world(scenario: Scenario) -> World:
    world = World(profiles=scenario.profiles)
    if scenario.name.startswith("metered tie-break: equal"):
        world.paths["cell"].rtt = lambda seq: 0.002  # cell comes up first
        world.paths["wlan"].rtt = lambda seq: 0.030
    if scenario.name.startswith("exact equals"):
        world.paths["hotspot"].rtt = lambda seq: 0.002
        world.paths["wlan"].rtt = lambda seq: 0.020
    return world


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario: Scenario) -> None:
    world = _metered_first_world(scenario)
    world.run(scenario.until, scenario.script)
    got = world.switches()
    assert [(s.from_uplink, s.to_uplink, s.planned) for s in got] == [
        (f, t, p) for f, t, p, _, _ in scenario.expect
    ], "\n".join(str(s) for s in got)
    for switch, (_, _, _, earliest, latest) in zip(got, scenario.expect, strict=True):
        assert earliest - 1e-9 <= switch.at <= latest + 1e-9, str(switch)
        assert switch.reason  # every decision explains itself
    assert world.violations == []


# --- the reasons carry numbers ------------------------------------------------------------------


def test_failback_reason_has_the_numbers() -> None:
    world = World()
    world.run(60.0, {20.0: alive("wlan", False), 30.0: alive("wlan", True)})
    back = world.switches()[-1]
    assert back.to_uplink == "wlan"
    assert "priority 10<50" in back.reason
    assert "wlan UP score 6/6 rtt 12ms" in back.reason
    assert "hold-down 5.0s elapsed" in back.reason
    assert str(back).startswith("uplink cell -> wlan (planned): ")


def test_unplanned_reason_names_the_loss() -> None:
    world = World()
    world.run(40.0, {20.0: alive("wlan", False)})
    away = world.switches()[-1]
    assert "wlan DOWN" in away.reason and "3 probes lost in a row" in away.reason
    assert "cell UP score 6/6 rtt 80ms" in away.reason


def test_explain_says_why_we_stay_during_the_hold_down() -> None:
    world = World()
    world.run(33.0, {20.0: alive("wlan", False), 30.0: alive("wlan", True)})
    keep = world.policy.explain(world.now)
    assert isinstance(keep, KeepUplink) and keep.uplink == "cell"
    assert "wlan fit" in keep.reason and "of 5.0s hold-down" in keep.reason
    world.run(40.0)
    assert world.policy.active == "wlan"


# --- standby -------------------------------------------------------------------------------------


def test_standby_is_the_second_best_and_follows_the_switch() -> None:
    world = World()
    world.run(40.0, {20.0: carrier("wlan", False)})
    standby = [(d.name, d.at) for d in world.decisions if isinstance(d, StandbyWanted)]
    assert standby[0][0] == "cell"
    assert standby[-1] == ("wlan", 20.0)
    assert "keep it associated/dialled and pre-registered" in next(
        d.reason for d in world.decisions if isinstance(d, StandbyWanted)
    )


def test_nothing_usable_then_recovery() -> None:
    world = World()
    world.run(30.0, {10.0: carrier("wlan", False), 20.0: carrier("cell", False)})
    assert isinstance(world.decisions[-1], NoUplink) or any(
        isinstance(d, NoUplink) for d in world.decisions
    )
    assert world.policy.active is None
    world.run(40.0, {30.5: carrier("cell", True)})
    last = world.switches()[-1]
    assert (last.from_uplink, last.to_uplink, last.planned) == (None, "cell", False)


# --- anti-flap ----------------------------------------------------------------------------------


def flapping(name: str, start: float, stop: float, up_for: float, how: str) -> dict[float, Action]:
    """1 Hz: up for ``up_for`` of every second; ``how`` is 'carrier' (L2) or 'probes' (L3)."""
    knob = carrier if how == "carrier" else alive
    script: dict[float, Action] = {}
    t = start
    while t < stop:
        script[round(t, 6)] = knob(name, False)
        script[round(t + (1.0 - up_for), 6)] = knob(name, True)
        t += 1.0
    return script


@pytest.mark.parametrize("how", ["carrier", "probes"])
@pytest.mark.parametrize("up_for", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("hold_down", [0.0, 5.0])
def test_flapping_wlan_is_bounded(how: str, up_for: float, hold_down: float) -> None:
    wlan = UplinkProfile("wlan", "wlan", priority=10, failback_hold_down=hold_down)
    settings = PolicySettings()
    world = World(profiles=(wlan, CELL), settings=settings)
    world.run(40.0, flapping("wlan", 10.0, 40.0, up_for, how))
    during = world.switches(10.0, 40.0)
    # Every failback earns the wlan a penalty on its next failure; once the penalty reaches
    # suppress_at it is no longer a failback candidate, so failbacks <= failures_to_suppress - 1
    # and each failback costs at most two switches, plus the first loss.
    failures_to_suppress = math.ceil(settings.suppress_at / settings.flap_penalty)
    bound = 2 * (failures_to_suppress - 1) + 1
    assert len(during) <= bound, "\n".join(map(str, during))
    if how == "carrier":
        assert len(during) >= 1  # an L2 flap is always seen
    assert world.violations == []
    if hold_down >= 1.0:
        assert len(during) <= 1  # a 1 Hz flap never stays fit for the hold-down


def test_flapping_stops_and_wlan_comes_back_once_the_penalty_decays() -> None:
    wlan = UplinkProfile("wlan", "wlan", priority=10, failback_hold_down=0.0)
    settings = PolicySettings()
    world = World(profiles=(wlan, CELL), settings=settings)
    world.run(40.0, flapping("wlan", 10.0, 40.0, 0.8, "carrier"))
    penalty, suppressed = world.policy.penalty("wlan")
    assert suppressed and penalty >= settings.suppress_at
    world.run(200.0, {40.5: carrier("wlan", True)})
    back = world.switches(40.0)
    assert [(s.from_uplink, s.to_uplink) for s in back] == [("cell", "wlan")]
    # Suppressed for at most max_suppress seconds of usable time.
    assert back[0].at <= 40.5 + settings.max_suppress + 1.0
    assert "penalty" not in back[0].reason or "suppressed" not in back[0].reason


def test_switch_budget_alone_bounds_planned_switches() -> None:
    # Penalty effectively off: only the budget of planned switches per window limits failbacks.
    settings = PolicySettings(suppress_at=1e9, max_planned_switches=2, switch_window=60.0)
    wlan = UplinkProfile("wlan", "wlan", priority=10, failback_hold_down=0.0)
    world = World(profiles=(wlan, CELL), settings=settings)
    world.run(40.0, flapping("wlan", 10.0, 40.0, 0.8, "carrier"))
    during = world.switches(10.0, 40.0)
    planned = [s for s in during if s.planned]
    assert len(planned) <= settings.max_planned_switches
    assert len(during) <= 2 * settings.max_planned_switches + 1
    assert world.violations == []
    keep = world.policy.explain(world.now)
    assert "anti-flap: 2 planned switches in the last 60s" in keep.reason


# --- configuration and API errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: UplinkProfile("x", "5g"), "uplink x: kind: expected one of wlan, 3g, ethernet, got '5g'"),
        (lambda: UplinkProfile("x", "wlan", priority=-1), "uplink x: priority: expected an integer in 0..1000, got -1"),
        (lambda: UplinkProfile("x", "wlan", metered=1), "uplink x: metered: expected true or false, got 1"),  # type: ignore[arg-type]
        (lambda: UplinkProfile("x", "wlan", min_signal_dbm=10), "uplink x: min_signal_dbm: expected -120..0 dBm, got 10"),
        (lambda: UplinkProfile("x", "wlan", failback_hold_down=-1), "uplink x: failback_hold_down: expected a number >= 0, got -1"),
        (lambda: PolicySettings(reuse_below=2.0), "reuse_below: 2.0 must be below suppress_at 1.5"),
        (lambda: PolicySettings(max_planned_switches=0), "max_planned_switches: expected an integer >= 1, got 0"),
        (lambda: UplinkPolicy([]), "uplinks: at least one uplink profile is needed"),
        (lambda: UplinkPolicy([WLAN, WLAN]), "uplink wlan: duplicate name"),
    ],
)
def test_config_errors_are_named(make: Callable[[], object], message: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        make()
    assert str(caught.value) == message


def test_unknown_uplink_is_a_named_error() -> None:
    policy = UplinkPolicy([WLAN, CELL])
    with pytest.raises(UnknownUplink, match=r"unknown uplink 'lte' \(configured: wlan, cell\)"):
        policy.prefer("lte", 0.0)
    with pytest.raises(UnknownUplink):
        policy.observe(HealthTracker("lte", 0.0).snapshot(), True, 0.0)


def test_health_states_used_by_the_policy() -> None:
    # The policy treats DEGRADED as usable and UNKNOWN as not: a new uplink is never chosen
    # before it has answered `up` probes.
    policy = UplinkPolicy([WLAN])
    tracker = HealthTracker("wlan", 0.0)
    policy.observe(tracker.snapshot(), True, 0.0)
    assert policy.evaluate(0.0) == [] and policy.active is None
    assert tracker.state is HealthState.UNKNOWN


def test_escape_waits_for_the_switch_budget_and_explain_shows_the_pending_switch() -> None:
    settings = PolicySettings(max_planned_switches=1, switch_window=60.0)
    world = World(settings=settings)
    world.run(30.0)
    world.run(60.0, {31.0: carrier("wlan", False), 32.0: carrier("wlan", True)})
    # wlan failed over to cell and returned after its hold-down: the one planned switch.
    back = world.switches(30.0)
    assert [(s.to_uplink, s.planned) for s in back] == [("cell", False), ("wlan", True)]
    world.run(70.0, {65.0: signal("wlan", -80)})  # fades, but the budget is spent
    assert world.policy.active == "wlan"
    keep = world.policy.explain(world.now)
    assert isinstance(keep, KeepUplink)
    assert "wlan signal -80<-70dBm" in keep.reason and "but anti-flap: 1 planned switches" in keep.reason
    world.run(120.0)
    fade = world.switches(70.0)
    assert [(s.from_uplink, s.to_uplink, s.planned) for s in fade] == [("wlan", "cell", True)]
    assert fade[0].at == pytest.approx(back[1].at + settings.switch_window)


def test_explain_without_evaluate_shows_what_would_happen() -> None:
    world = World()
    world.run(10.0)
    world.paths["wlan"].set_carrier(False, 10.0)
    world.policy.observe(world.paths["wlan"].tracker.snapshot(), False, 10.0)
    pending = world.policy.explain(10.0)
    assert isinstance(pending, SwitchUplink) and not pending.planned
    assert world.policy.active == "wlan"  # explain changed nothing
    world.paths["cell"].set_carrier(False, 10.0)
    world.policy.observe(world.paths["cell"].tracker.snapshot(), False, 10.0)
    assert isinstance(world.policy.explain(10.0), NoUplink)


def test_cost_breaks_ties_between_unmetered_equals() -> None:
    cheap = UplinkProfile("wlan", "wlan", priority=20, cost=1)
    dear = UplinkProfile("hotspot", "wlan", priority=20, cost=5)
    world = World(profiles=(cheap, dear))
    world.paths["hotspot"].rtt = _constant(0.001)  # the dear one comes up first
    world.run(20.0)
    switches = world.switches()
    assert [(s.from_uplink, s.to_uplink) for s in switches] == [(None, "hotspot"), ("hotspot", "wlan")]
    assert "cost 1<5" in switches[1].reason


def test_a_single_uplink_has_no_standby() -> None:
    world = World(profiles=(WLAN,))
    world.run(10.0)
    assert world.policy.active == "wlan"
    assert not any(isinstance(d, StandbyWanted) for d in world.decisions)
