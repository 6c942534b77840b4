"""Properties of the uplink policy under random observation streams (Hypothesis)."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from router.policy.health import HealthState, HealthTracker, UplinkHealth
from router.policy.uplink import (
    Decision,
    NoUplink,
    PolicySettings,
    StandbyWanted,
    SwitchUplink,
    UplinkPolicy,
    UplinkProfile,
)

PROFILES = (
    UplinkProfile("eth", "ethernet", priority=5, failback_hold_down=1.0),
    UplinkProfile("wlan", "wlan", priority=10, min_signal_dbm=-70, failback_hold_down=2.0),
    UplinkProfile("hotspot", "wlan", priority=10, metered=True, min_signal_dbm=-75),
    UplinkProfile("cell", "3g", priority=50, metered=True, failback_hold_down=0.0),
)
NAMES = [p.name for p in PROFILES]
SETTINGS = PolicySettings(penalty_half_life=2.0, max_suppress=8.0, switch_window=5.0,
                          max_planned_switches=2, degraded_grace=0.5)

_dt = st.floats(0.0, 3.0, allow_nan=False)
_health_op = st.tuples(
    st.just("health"), st.sampled_from(NAMES), st.sampled_from(list(HealthState)),
    st.one_of(st.none(), st.integers(-100, -40)), st.booleans(), _dt,
)
_prefer_op = st.tuples(st.just("prefer"), st.one_of(st.none(), st.sampled_from(NAMES)), _dt)
_tick_op = st.tuples(st.just("tick"), _dt)
_ops = st.lists(st.one_of(_health_op, _health_op, _health_op, _prefer_op, _tick_op), max_size=60)


def _snapshot(name: str, state: HealthState, signal: int | None, now: float) -> UplinkHealth:
    online = state in (HealthState.UP, HealthState.DEGRADED)
    return UplinkHealth(name=name, state=state, score=6 if online else 0, score_max=6, since=now,
                        reason=f"test says {state}", signal_dbm=signal, srtt=0.02)


def _run(ops: Sequence[tuple[object, ...]]) -> list[Decision]:
    policy = UplinkPolicy(PROFILES, SETTINGS)
    seen: dict[str, tuple[HealthState, bool]] = {}
    out: list[Decision] = []
    now = 0.0
    for op in ops:
        now += float(op[-1])  # type: ignore[arg-type]
        if op[0] == "health":
            _, name, state, signal, available, _ = op
            assert isinstance(name, str) and isinstance(state, HealthState)
            policy.observe(_snapshot(name, state, signal, now), bool(available), now)  # type: ignore[arg-type]
            seen[name] = (state, bool(available))
        elif op[0] == "prefer":
            policy.prefer(op[1], now)  # type: ignore[arg-type]
        decisions = policy.evaluate(now)
        out += decisions
        _check(policy, seen, decisions, now)
    return out


def _check(policy: UplinkPolicy, seen: dict[str, tuple[HealthState, bool]],
           decisions: list[Decision], now: float) -> None:
    def usable(name: str | None) -> bool:
        if name is None or name not in seen:
            return False
        state, available = seen[name]
        return available and state in (HealthState.UP, HealthState.DEGRADED)

    any_usable = any(usable(n) for n in seen)
    any_up = any(s is HealthState.UP and a for s, a in seen.values())
    # The chosen uplink is always usable when one is, and never DOWN while another is UP.
    assert usable(policy.active) == any_usable, (policy.active, seen)
    if any_up and policy.active is not None:
        assert seen[policy.active][0] is not HealthState.DOWN
    for decision in decisions:
        assert decision.reason and decision.at == now
        if isinstance(decision, SwitchUplink):
            assert decision.to_uplink != decision.from_uplink
            assert usable(decision.to_uplink)
        elif isinstance(decision, NoUplink):
            assert not any_usable
        elif isinstance(decision, StandbyWanted):
            assert decision.name != policy.active
    timer = policy.get_timer()
    assert timer is None or timer > now


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_random_health_streams_choose_safely_and_deterministically(ops: list[tuple[object, ...]]) -> None:
    first = _run(ops)
    again = _run(ops)
    assert first == again
    assert [str(d) for d in first] == [str(d) for d in again]


# --- through real trackers: probes, carrier and signal in, decisions out -----------------------

_probe_op = st.tuples(
    st.sampled_from(["sent", "answered", "lost", "carrier", "signal", "timer", "prefer"]),
    st.sampled_from(["wlan", "cell"]),
    st.integers(0, 5),
    st.floats(0.0, 1.5, allow_nan=False),
)


def _run_trackers(ops: Sequence[tuple[str, str, int, float]]) -> list[Decision]:
    profiles = (PROFILES[1], PROFILES[3])
    policy = UplinkPolicy(profiles, SETTINGS)
    trackers = {p.name: HealthTracker(p.name, 0.0) for p in profiles}
    available = dict.fromkeys(trackers, True)
    out: list[Decision] = []
    now = 0.0
    for kind, name, number, dt in ops:
        now += dt
        tracker = trackers[name]
        if kind == "sent":
            tracker.probe_sent(number, now)
        elif kind == "answered":
            tracker.probe_answered(number, now)
        elif kind == "lost":
            tracker.probe_lost(number, now)
        elif kind == "carrier":
            available[name] = number % 2 == 0
            tracker.carrier(available[name], now)
        elif kind == "signal":
            tracker.signal(-50.0 - 6 * number, now)
        elif kind == "timer":
            for each in trackers.values():
                each.handle_timer(now)
        else:
            policy.prefer(name if number % 2 else None, now)
        for each_name, each in trackers.items():
            each.handle_timer(now)
            policy.observe(each.snapshot(), available[each_name], now)
        decisions = policy.evaluate(now)
        out += decisions
        seen = {n: (t.state, available[n]) for n, t in trackers.items()}
        _check(policy, seen, decisions, now)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(_probe_op, max_size=80))
def test_random_probe_streams_through_trackers(ops: list[tuple[str, str, int, float]]) -> None:
    assert _run_trackers(ops) == _run_trackers(ops)
