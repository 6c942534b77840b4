"""Uplink health tracker: score hysteresis, probe timing, L2 triggers, quality (fake clock only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.policy.health import (
    TRANSITIONS,
    HealthConfig,
    HealthConfigError,
    HealthState,
    HealthTracker,
    HealthTrigger,
    IllegalHealthTransition,
    csq_to_dbm,
    format_transitions,
)

UP, DEGRADED, DOWN, UNKNOWN = HealthState.UP, HealthState.DEGRADED, HealthState.DOWN, HealthState.UNKNOWN


# --- a fake path: answers the tracker's probes after an RTT, unless it is dead -------------


@dataclass
class FakePath:
    """One uplink's data path as the tracker's driver sees it; event-driven, no sleeping.

    ``rtt(seq)`` gives each probe's round trip; ``alive`` False drops probes silently (out of
    range, upstream cut); ``carrier`` False is the L2 trigger (reported to the tracker).
    """

    tracker: HealthTracker
    rtt: Callable[[int], float] = lambda seq: 0.005
    alive: bool = True
    carrier: bool = True
    pending: list[tuple[float, int]] = field(default_factory=list)
    seq: int = 0

    def next_time(self) -> float | None:
        times = [t for t in (self.tracker.next_probe_at(), self.tracker.get_timer()) if t is not None]
        times += [arrival for arrival, _ in self.pending]
        return min(times) if times else None

    def set_carrier(self, up: bool, now: float) -> None:
        self.carrier = up
        if not up:
            self.pending.clear()
        self.tracker.carrier(up, now)

    def step(self, now: float) -> None:
        for arrival, seq in sorted(self.pending):
            if arrival <= now:
                self.tracker.probe_answered(seq, arrival)
        self.pending = [(a, s) for a, s in self.pending if a > now]
        self.tracker.handle_timer(now)
        due = self.tracker.next_probe_at()
        if due is not None and due <= now:
            self.seq += 1
            self.tracker.probe_sent(self.seq, now)
            if self.alive and self.carrier:
                self.pending.append((now + self.rtt(self.seq), self.seq))


def run(path: FakePath, until: float, now: float = 0.0,
        script: dict[float, Callable[[float], None]] | None = None) -> float:
    """Advance the fake clock event by event to ``until``; ``script`` acts at given instants."""
    script = dict(script or {})
    for _ in range(1_000_000):
        times = [t for t in (path.next_time(), *script) if t is not None]
        if not times or min(times) > until:
            break
        t = min(times)
        if t > until:
            break
        now = max(now, t)
        for at in sorted(a for a in script if a <= now):
            script.pop(at)(now)
        path.step(now)
    else:  # pragma: no cover - a scheduling bug, not a test outcome
        raise AssertionError("event loop did not converge")
    return until


def first_change_to(tracker: HealthTracker, state: HealthState) -> float | None:
    while (event := tracker.next_event()) is not None:
        assert TRANSITIONS[(event.old, event.trigger)] is event.new
        if event.new is state:
            return event.at
    return None


# --- the transition table -------------------------------------------------------------------


def test_transition_table_prints_one_line_per_pair() -> None:
    text = format_transitions()
    lines = text.splitlines()
    assert len(lines) == len(TRANSITIONS)
    assert "UP       + PROBE_MISSED     -> DEGRADED" in lines
    assert all(line.count("->") == 1 for line in lines)


def test_carrier_loss_is_legal_from_every_state() -> None:
    for state in HealthState:
        assert TRANSITIONS[(state, HealthTrigger.CARRIER_LOST)] is DOWN


# --- cost and detection ----------------------------------------------------------------------


def test_healthy_idle_link_costs_one_probe_per_second() -> None:
    path = FakePath(HealthTracker("wlan", 0.0))
    run(path, 600.0)
    assert path.tracker.state is UP
    # ~2 probes of start-up at the recovery interval, then 1/s on average (dithered +-10%).
    assert 590 <= path.tracker.probes_sent <= 610


@pytest.mark.parametrize(
    ("name", "rtt"),
    [
        ("wlan", lambda seq: 0.004 + 0.002 * (seq % 3)),
        ("cell", lambda seq: 0.120 + 0.060 * (seq % 3)),  # 3G: 120..240 ms, jittery
    ],
)
def test_dead_path_is_declared_down_within_the_documented_bound(name: str, rtt: Callable[[int], float]) -> None:
    path = FakePath(HealthTracker(name, 0.0), rtt=rtt)
    run(path, 30.0)
    assert path.tracker.state is UP
    while path.tracker.next_event():
        pass
    rto = path.tracker.timeout()
    sent_before = path.seq
    path.alive = False
    run(path, 40.0, now=30.0)
    down_at = first_change_to(path.tracker, DOWN)
    assert down_at is not None
    config = path.tracker.config
    idle = config.interval_up * (1 + config.dither)  # the next healthy probe, at the latest
    bound = config.detection_time(rto)
    assert bound < 1.0
    assert down_at - 30.0 <= idle + bound + 1e-9
    assert path.seq - sent_before >= path.tracker.config.down  # it really probed


def test_dead_link_with_carrier_backs_off_to_one_probe_per_second_and_recovers_fast() -> None:
    path = FakePath(HealthTracker("cell", 0.0), rtt=lambda seq: 0.1)
    run(path, 10.0)
    path.alive = False
    run(path, 20.0, now=10.0)
    sent = path.seq
    run(path, 80.0, now=20.0)
    assert path.tracker.state is DOWN
    assert 55 <= path.seq - sent <= 61  # 1/s once long dead, not 4/s
    while path.tracker.next_event():
        pass
    path.alive = True
    run(path, 90.0, now=80.0)
    up_at = first_change_to(path.tracker, UP)
    assert up_at is not None and up_at <= 80.0 + 1.0 + 2 * 0.25 + 0.1 + 1e-9


def test_default_detection_math_matches_the_docstring() -> None:
    config = HealthConfig()
    assert config.detection_time() == pytest.approx(0.5)
    assert config.detection_time(0.35) == pytest.approx(0.8)


def test_probe_interval_follows_state() -> None:
    config = HealthConfig()
    tracker = HealthTracker("wlan", 0.0, config)
    assert tracker.next_probe_at() == 0.0  # unknown: probe at once
    tracker.probe_sent(1, 0.0)
    assert tracker.next_probe_at() == pytest.approx(config.recovery_interval)
    for seq, t in ((1, 0.01), (2, 0.25), (3, 0.5)):
        if seq > 1:
            tracker.probe_sent(seq, t - 0.005)
        tracker.probe_answered(seq, t)
    assert tracker.state is UP
    assert tracker.next_probe_at() == pytest.approx(0.495 + config.interval_up, abs=config.dither)
    tracker.probe_sent(4, 1.5)
    tracker.handle_timer(1.5 + tracker.timeout())
    assert tracker.state is DEGRADED
    assert tracker.next_probe_at() == pytest.approx(1.5 + config.failure_interval)


# --- score hysteresis (mwan3 semantics) -----------------------------------------------------


def feed(tracker: HealthTracker, outcomes: str, start: float, step: float = 0.1) -> float:
    """``outcomes``: 'o' answered, 'x' explicitly lost. Returns the clock after the last one."""
    t = start
    for index, outcome in enumerate(outcomes):
        key = ("p", start, index)
        tracker.probe_sent(key, t)
        if outcome == "o":
            tracker.probe_answered(key, t + 0.01)
        else:
            tracker.probe_lost(key, t + 0.01)
        t += step
    return t


@pytest.mark.parametrize(
    ("outcomes", "state", "score"),
    [
        ("", UNKNOWN, 0),
        ("oo", UNKNOWN, 2),
        ("ooo", UP, 6),
        ("ooxo", UNKNOWN, 1),  # a failure while offline resets the climb
        ("xxx", DOWN, 0),  # unknown -> down after `down` losses
        ("ooox", DEGRADED, 5),
        ("oooxx", DEGRADED, 4),
        ("oooxxx", DOWN, 0),
        ("oooxxo", UP, 6),  # one answer restores the full score
        ("oooxxoxxoxx", DEGRADED, 4),  # alternating loss never reaches `down` in a row
        ("oooxxxoo", DOWN, 2),
        ("oooxxxooo", UP, 6),
    ],
)
def test_score_hysteresis(outcomes: str, state: HealthState, score: int) -> None:
    tracker = HealthTracker("wlan", 0.0)
    feed(tracker, outcomes, 0.0)
    assert (tracker.state, tracker.score) == (state, score)


# --- L2 triggers ------------------------------------------------------------------------------


def test_carrier_loss_acts_at_once_and_recovery_needs_up_answers() -> None:
    path = FakePath(HealthTracker("wlan", 0.0))
    run(path, 10.0)
    assert path.tracker.state is UP
    path.set_carrier(False, 10.0)
    snap = path.tracker.snapshot()
    assert (snap.state, snap.score, snap.carrier) == (DOWN, 0, False)
    assert path.tracker.next_probe_at() is None
    assert path.tracker.get_timer() is None
    run(path, 20.0, now=10.0)
    assert path.tracker.state is DOWN  # no probing without carrier
    path.set_carrier(True, 20.0)
    assert path.tracker.next_probe_at() == 20.0
    while path.tracker.next_event():
        pass
    run(path, 22.0, now=20.0)
    up_at = first_change_to(path.tracker, UP)
    assert up_at is not None
    config = path.tracker.config
    assert up_at == pytest.approx(20.0 + (config.up - 1) * config.recovery_interval + 0.005)


# --- quality -----------------------------------------------------------------------------------


def test_rtt_statistics() -> None:
    tracker = HealthTracker("cell", 0.0)
    for seq, rtt in enumerate((0.100, 0.140, 0.120, 0.180)):
        t = float(seq)
        tracker.probe_sent(seq, t)
        tracker.probe_answered(seq, t + rtt)
    snap = tracker.snapshot()
    assert snap.rtt_min == pytest.approx(0.100)
    assert snap.rtt_max == pytest.approx(0.180)
    assert snap.jitter == pytest.approx((0.040 + 0.020 + 0.060) / 3)
    assert snap.srtt is not None and 0.100 < snap.srtt < 0.140
    assert snap.loss == 0.0
    assert "cell UP score 6/6 rtt" in snap.describe()


def test_steady_loss_degrades_and_hysteresis_recovers() -> None:
    tracker = HealthTracker("cell", 0.0)
    t = feed(tracker, "ooo" + "oooox" * 4, 0.0)  # 20% loss, never 3 in a row
    assert tracker.state is DEGRADED
    assert tracker.snapshot().loss == pytest.approx(0.2)
    # Recovery needs the loss at or under half the limit (10%): 2 losses in the last 20.
    t = feed(tracker, "o" * 9, t)
    assert tracker.state is DEGRADED
    assert tracker.snapshot().loss == pytest.approx(0.15)
    feed(tracker, "o", t)
    assert tracker.state is UP


def test_slow_path_degrades_when_an_rtt_limit_is_set() -> None:
    tracker = HealthTracker("cell", 0.0, HealthConfig(degraded_rtt=0.3))
    for seq in range(5):
        tracker.probe_sent(seq, float(seq))
        tracker.probe_answered(seq, seq + 0.5)
    assert tracker.state is DEGRADED
    assert "rtt 500ms" in tracker.reason


def test_late_and_unmatched_replies_are_counted_not_scored() -> None:
    tracker = HealthTracker("wlan", 0.0)
    feed(tracker, "ooo", 0.0)
    tracker.probe_sent("late", 1.0)
    tracker.handle_timer(3.0)
    assert tracker.state is DEGRADED
    tracker.probe_answered("late", 3.1)
    tracker.probe_answered("never-sent", 3.2)
    assert (tracker.score, tracker.late_replies, tracker.unmatched_replies) == (5, 1, 1)


def test_registration_round_trips_count_as_probes() -> None:
    tracker = HealthTracker("cell", 0.0)
    feed(tracker, "ooo", 0.0)
    # A registration request leaves at 5.0: the next active probe moves out accordingly.
    tracker.probe_sent(("registration", 0x1234), 5.0, timeout=1.0)
    assert tracker.next_probe_at() == pytest.approx(6.0, abs=tracker.config.dither)
    assert tracker.get_timer() == pytest.approx(6.0)  # its own timeout, not the 200 ms RTO
    tracker.probe_answered(("registration", 0x1234), 5.6)
    assert tracker.snapshot().rtt_max == pytest.approx(0.6)
    assert tracker.state is UP


def test_time_going_backwards_is_held_still() -> None:
    tracker = HealthTracker("wlan", 10.0)
    tracker.probe_sent(1, 5.0)
    tracker.probe_answered(1, 4.0)
    assert tracker.snapshot().rtt_min == 0.0


# --- helpers and config ------------------------------------------------------------------------


@pytest.mark.parametrize(("csq", "dbm"), [(0, -113), (1, -111), (15, -83), (31, -51), (99, None), (-1, None)])
def test_csq_to_dbm(csq: int, dbm: int | None) -> None:
    assert csq_to_dbm(csq) == dbm


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"up": 0}, "up: expected an integer >= 1, got 0"),
        ({"down": True}, "down: expected an integer >= 1, got True"),
        ({"failure_interval": 0}, "failure_interval: expected seconds > 0, got 0"),
        ({"timeout_min": 2.0}, "timeout_min: 2.0 is above timeout_max 1.0"),
        ({"min_samples": 30}, "min_samples: 30 is above window 20"),
        ({"degraded_loss": 1.5}, "degraded_loss: expected 0 < ratio <= 1, got 1.5"),
        ({"interval_up": math.inf}, "interval_up: expected seconds > 0, got inf"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(HealthConfigError) as caught:
        HealthConfig(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


# --- property: any observation sequence is safe ------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("sent"), st.integers(0, 7), st.floats(0, 2)),
    st.tuples(st.just("answered"), st.integers(0, 7), st.floats(0, 2)),
    st.tuples(st.just("lost"), st.integers(0, 7), st.floats(0, 2)),
    st.tuples(st.just("carrier"), st.booleans(), st.floats(0, 2)),
    st.tuples(st.just("signal"), st.one_of(st.none(), st.floats(-130, 0)), st.floats(0, 2)),
    st.tuples(st.just("timer"), st.none(), st.floats(0, 2)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=80))
def test_random_observations_keep_the_invariants(ops: list[tuple[str, object, float]]) -> None:
    tracker = HealthTracker("wlan", 0.0, HealthConfig(window=8, min_samples=4))
    now = 0.0
    for kind, arg, dt in ops:
        now += dt
        if kind == "sent":
            tracker.probe_sent(arg, now)
        elif kind == "answered":
            tracker.probe_answered(arg, now)
        elif kind == "lost":
            tracker.probe_lost(arg, now)
        elif kind == "carrier":
            tracker.carrier(bool(arg), now)
        elif kind == "signal":
            tracker.signal(arg, now)  # type: ignore[arg-type]
        else:
            tracker.handle_timer(now)
        snap = tracker.snapshot()
        assert 0 <= snap.score <= snap.score_max
        assert 0.0 <= snap.loss <= 1.0
        if snap.state is DOWN or snap.state is UNKNOWN:
            assert snap.score < tracker.config.up
        else:
            assert snap.score > tracker.config.up
        if tracker.carrier_up is False:
            assert snap.state is DOWN and tracker.next_probe_at() is None
        timer = tracker.get_timer()
        assert timer is None or timer > now
        while (event := tracker.next_event()) is not None:
            assert TRANSITIONS[(event.old, event.trigger)] is event.new
            assert event.old is not event.new


def test_outstanding_probes_are_bounded() -> None:
    tracker = HealthTracker("wlan", 0.0, HealthConfig(max_outstanding=4, timeout_initial=100.0))
    feed(tracker, "ooo", 0.0)
    for seq in range(6):
        tracker.probe_sent(seq, 1.0 + seq * 0.01)
    assert tracker.state is DEGRADED and tracker.score == 4  # two dropped as lost
    assert "dropped: over 4 outstanding" in tracker.reason


def test_an_illegal_transition_is_a_named_error() -> None:
    tracker = HealthTracker("wlan", 0.0)
    illegal = [(s, t) for s in HealthState for t in HealthTrigger if (s, t) not in TRANSITIONS]
    assert (DOWN, HealthTrigger.PROBE_MISSED) in illegal
    for state, trigger in illegal:
        tracker.state = state
        with pytest.raises(IllegalHealthTransition, match=f"uplink wlan: no transition from {state} on {trigger.name}"):
            tracker._fire(trigger, 0.0, "test")
