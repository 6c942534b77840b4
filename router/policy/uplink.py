"""Uplink choice: which uplink carries the traffic, which one stands by (pure, no I/O).

Theory of operation
-------------------
:class:`UplinkPolicy` holds one :class:`UplinkProfile` per uplink (priority, metered / cost,
minimum signal, failback hold-down) and :class:`PolicySettings` (signal hysteresis, degraded
grace, anti-flap). The daemon feeds it, always with ``now`` (monotonic seconds):

- ``observe(health, available, now)``: a :class:`~router.policy.health.UplinkHealth` snapshot
  of one uplink and whether it is associated / dialled (usable as a standby at all);
- ``prefer(name | None, now)``: the operator's override, until cleared with ``None``;

and pulls decisions with ``evaluate(now)`` (call it after each batch of observations and at
``get_timer()``). Decisions are data, each with a one-line ``reason`` carrying the numbers:

- :class:`SwitchUplink` ``(from_uplink, to_uplink, planned, reason)``: ``planned`` means the old
  uplink still works, so the switch can be make-before-break (route change after an acknowledged
  binding on the new one); unplanned means the active one died: switch now.
- :class:`NoUplink`: the active uplink died and nothing usable is left.
- :class:`StandbyWanted` ``(name, reason)``: keep this one associated / dialled and
  pre-registered; emitted when the choice changes.
- :class:`KeepUplink`: only from ``explain(now)``, which says why nothing would change.

Words
-----
*usable*: health UP or DEGRADED and available. *fit*: UP, available and, where the profile has
a minimum, signal at or above it (a candidate that is not active needs ``min_signal_dbm +
signal_hysteresis_db``, so a signal hovering at the threshold cannot bounce us). *rank*: the
operator's pick first, then lower ``priority``, then unmetered, then lower ``cost``; the name
only breaks exact ties, and an *upgrade* needs a strictly better rank.

Rules, in order
---------------
1. The active uplink is not usable (DOWN, carrier/association lost): switch at once, unplanned,
   to the best usable uplink (fit ones first, then not-suppressed, then rank); no hold-down, no
   rate limit. Nothing usable: :class:`NoUplink`. With no active uplink, the first usable one
   (same order) is taken.
2. The operator just said ``prefer NAME`` and NAME is usable: switch to it now (planned). Later
   returns to NAME follow the failback rule; while on NAME we stay as long as it is usable.
3. Escape: the active uplink still works but is unfit -- signal below its minimum (fading), or
   DEGRADED for ``degraded_grace`` seconds -- and some other uplink is fit: planned switch to the
   best fit one (this is the make-before-break case).
4. Upgrade / failback: a fit uplink of strictly better rank that has been fit for its own
   ``failback_hold_down`` seconds without a break, and is not suppressed: planned switch.
5. Otherwise keep.

Anti-flap (Sierra oMG style penalty plus a switch budget)
---------------------------------------------------------
Each time an uplink goes from usable to not usable it earns ``flap_penalty``. The penalty decays
with ``penalty_half_life`` but only while the uplink is usable again ("decays after recovery"),
and is capped so that suppression lasts at most ``max_suppress`` seconds of usable time. At or
above ``suppress_at`` the uplink is *suppressed*: no planned switch goes to it, and a failover
takes it only if nothing unsuppressed is usable; it is reused when the penalty has decayed below
``reuse_below``. Independently, planned switches (rules 3-4, not the operator's) are limited to
``max_planned_switches`` in any ``switch_window`` seconds. Unplanned switches are never delayed:
every one of them leaves an uplink we switched *to* earlier, so with two uplinks the number of
switches in any period is at most ``2 * planned + 1``.

Defaults: hold-down 5 s, hysteresis 3 dB, degraded grace 2 s, penalty 1.0 per failure,
suppress at 1.5 (a second failure within about one half-life), reuse below 0.5, half-life 15 s,
max suppression 60 s, at most 4 planned switches per 60 s.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from router.policy.health import HealthState, UplinkHealth

__all__ = [
    "UPLINK_KINDS",
    "Decision",
    "KeepUplink",
    "NoUplink",
    "PolicyConfigError",
    "PolicySettings",
    "StandbyWanted",
    "SwitchUplink",
    "UnknownUplink",
    "UplinkPolicy",
    "UplinkProfile",
]

UPLINK_KINDS = ("wlan", "3g", "ethernet")


class PolicyConfigError(ValueError):
    """An uplink profile or policy setting out of range: ``uplink NAME: field: problem``."""


class UnknownUplink(KeyError):
    """An observation or override names an uplink the policy was not configured with."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        super().__init__(f"unknown uplink {name!r} (configured: {', '.join(known)})")

    def __str__(self) -> str:
        return str(self.args[0])


def _seconds(owner: str, name: str, value: object, *, positive: bool = False) -> None:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        want = "> 0" if positive else ">= 0"
        raise PolicyConfigError(f"{owner}{name}: expected a number {want}, got {value!r}")


@dataclass(frozen=True, slots=True)
class UplinkProfile:
    """What the policy knows about one uplink from the config."""

    name: str
    kind: str
    priority: int = 50  # lower is preferred
    metered: bool = False
    cost: int = 0  # among equal priority and metering, lower is preferred
    min_signal_dbm: float | None = None
    failback_hold_down: float = 5.0  # seconds fit before we return to it

    def __post_init__(self) -> None:
        owner = f"uplink {self.name}: "
        if not isinstance(self.name, str) or not self.name:
            raise PolicyConfigError(f"name: expected a non-empty string, got {self.name!r}")
        if self.kind not in UPLINK_KINDS:
            raise PolicyConfigError(f"{owner}kind: expected one of {', '.join(UPLINK_KINDS)}, got {self.kind!r}")
        for name, low, high in (("priority", 0, 1000), ("cost", 0, 1_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise PolicyConfigError(f"{owner}{name}: expected an integer in {low}..{high}, got {value!r}")
        if not isinstance(self.metered, bool):
            raise PolicyConfigError(f"{owner}metered: expected true or false, got {self.metered!r}")
        if self.min_signal_dbm is not None:
            value = self.min_signal_dbm
            if isinstance(value, bool) or not isinstance(value, int | float) or not -120 <= value <= 0:
                raise PolicyConfigError(f"{owner}min_signal_dbm: expected -120..0 dBm, got {value!r}")
        _seconds(owner, "failback_hold_down", self.failback_hold_down)

    @property
    def rank(self) -> tuple[int, bool, int]:
        return (self.priority, self.metered, self.cost)


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Policy-wide knobs; see the module docstring for the defaults' intent."""

    signal_hysteresis_db: float = 3.0
    degraded_grace: float = 2.0
    flap_penalty: float = 1.0
    suppress_at: float = 1.5
    reuse_below: float = 0.5
    penalty_half_life: float = 15.0
    max_suppress: float = 60.0
    max_planned_switches: int = 4
    switch_window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("signal_hysteresis_db", "degraded_grace", "flap_penalty"):
            _seconds("", name, getattr(self, name))
        for name in ("suppress_at", "reuse_below", "penalty_half_life", "max_suppress", "switch_window"):
            _seconds("", name, getattr(self, name), positive=True)
        if self.reuse_below >= self.suppress_at:
            raise PolicyConfigError(
                f"reuse_below: {self.reuse_below} must be below suppress_at {self.suppress_at}"
            )
        value = self.max_planned_switches
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PolicyConfigError(f"max_planned_switches: expected an integer >= 1, got {value!r}")

    @property
    def max_penalty(self) -> float:
        """Cap so that decay from the cap to ``reuse_below`` takes ``max_suppress`` seconds."""
        return self.reuse_below * 2 ** (self.max_suppress / self.penalty_half_life)


# --- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwitchUplink:
    from_uplink: str | None
    to_uplink: str
    planned: bool
    reason: str
    at: float

    def __str__(self) -> str:
        kind = "planned" if self.planned else "unplanned"
        return f"uplink {self.from_uplink or '-'} -> {self.to_uplink} ({kind}): {self.reason}"


@dataclass(frozen=True, slots=True)
class NoUplink:
    from_uplink: str
    reason: str
    at: float

    def __str__(self) -> str:
        return f"uplink {self.from_uplink} -> none: {self.reason}"


@dataclass(frozen=True, slots=True)
class StandbyWanted:
    name: str
    reason: str
    at: float

    def __str__(self) -> str:
        return f"standby {self.name}: {self.reason}"


@dataclass(frozen=True, slots=True)
class KeepUplink:
    uplink: str | None
    reason: str
    at: float

    def __str__(self) -> str:
        return f"uplink {self.uplink or '-'} kept: {self.reason}"


Decision = SwitchUplink | NoUplink | StandbyWanted | KeepUplink


# --- state per uplink ----------------------------------------------------------------------


@dataclass(slots=True)
class _Link:
    profile: UplinkProfile
    health: UplinkHealth | None = None
    available: bool = False
    fit_since: float | None = None  # as a candidate (with the hysteresis margin)
    degraded_since: float | None = None
    penalty: float = 0.0
    penalty_at: float = 0.0
    suppressed: bool = False
    failures: int = 0

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def usable(self) -> bool:
        return self.available and self.health is not None and self.health.online

    def signal_ok(self, margin: float) -> bool:
        minimum = self.profile.min_signal_dbm
        if minimum is None or self.health is None or self.health.signal_dbm is None:
            return True
        return self.health.signal_dbm >= minimum + margin

    def fit(self, margin: float) -> bool:
        return (
            self.usable
            and self.health is not None
            and self.health.state is HealthState.UP
            and self.signal_ok(margin)
        )

    def describe(self) -> str:
        if self.health is None:
            return f"{self.name} no health yet"
        text = self.health.describe()
        if not self.available:
            text += ", not available"
        if self.suppressed:
            text += f", suppressed (penalty {self.penalty:.2f})"
        return text


@dataclass(frozen=True, slots=True)
class _Plan:
    to: str | None  # None with switch=True: NoUplink
    switch: bool
    planned: bool
    reason: str
    is_override: bool = False


class UplinkPolicy:
    """The uplink chooser (module docstring). Deterministic: same inputs, same decisions."""

    def __init__(self, profiles: list[UplinkProfile] | tuple[UplinkProfile, ...],
                 settings: PolicySettings | None = None) -> None:
        if not profiles:
            raise PolicyConfigError("uplinks: at least one uplink profile is needed")
        self.settings = settings if settings is not None else PolicySettings()
        self._links: dict[str, _Link] = {}
        for profile in profiles:
            if not isinstance(profile, UplinkProfile):
                raise PolicyConfigError(f"uplinks: expected UplinkProfile, got {profile!r}")
            if profile.name in self._links:
                raise PolicyConfigError(f"uplink {profile.name}: duplicate name")
            self._links[profile.name] = _Link(profile)
        self.active: str | None = None
        self.standby: str | None = None
        self.override: str | None = None
        self._override_fresh = False
        self._planned_at: deque[float] = deque()
        self._now = -math.inf
        self.switches = 0

    # --- inputs ---------------------------------------------------------------------------

    def update_profile(self, profile: UplinkProfile) -> None:
        """A config reload: new priority, metering or minimum signal for a known uplink.
        Health, penalties and the active choice stay; the next ``evaluate`` ranks anew."""
        link = self._link(profile.name)
        if profile.kind != link.profile.kind:
            raise PolicyConfigError(f"uplink {profile.name}: kind cannot change ({link.profile.kind} -> {profile.kind})")
        link.profile = profile
        if not link.fit(self.settings.signal_hysteresis_db):
            link.fit_since = None
        elif link.fit_since is None:
            link.fit_since = self._now

    def observe(self, health: UplinkHealth, available: bool, now: float) -> None:
        """The latest health of one uplink and whether it is associated / dialled."""
        link = self._link(health.name)
        now = self._tick(now)
        was_usable = link.usable
        link.health = health
        link.available = available
        if was_usable and not link.usable:
            s = self.settings
            link.failures += 1
            link.penalty = min(link.penalty + s.flap_penalty, s.max_penalty)
            link.penalty_at = now
            if link.penalty >= s.suppress_at:
                link.suppressed = True
        elif link.usable and not was_usable:
            link.penalty_at = now  # decay restarts on recovery
        if link.fit(self.settings.signal_hysteresis_db):
            if link.fit_since is None:
                link.fit_since = now
        else:
            link.fit_since = None
        if link.usable and health.state is HealthState.DEGRADED:
            if link.degraded_since is None:
                link.degraded_since = now
        else:
            link.degraded_since = None

    def prefer(self, name: str | None, now: float) -> None:
        """Operator override: use NAME whenever it is usable, until ``prefer(None)``."""
        if name is not None:
            self._link(name)
        self._tick(now)
        self.override = name
        self._override_fresh = name is not None

    # --- outputs --------------------------------------------------------------------------

    def evaluate(self, now: float) -> list[Decision]:
        """Apply the rules; return the decisions taken now (often none)."""
        now = self._tick(now)
        plan = self._plan(now)
        out: list[Decision] = []
        if plan.switch:
            old = self.active
            if plan.to is None:
                assert old is not None
                out.append(NoUplink(old, plan.reason, now))
            else:
                out.append(SwitchUplink(old, plan.to, plan.planned, plan.reason, now))
                self.switches += 1
                if plan.planned and not plan.is_override:
                    self._planned_at.append(now)
            if plan.is_override:
                self._override_fresh = False
            self.active = plan.to
        elif self._override_fresh and self.active == self.override:
            self._override_fresh = False
        standby, reason = self._standby() if self.active is not None else (None, "")
        if standby is not None and standby != self.standby:
            out.append(StandbyWanted(standby, reason, now))
        self.standby = standby
        return out

    def explain(self, now: float) -> Decision:
        """What ``evaluate`` would do now, without doing it; :class:`KeepUplink` if nothing."""
        now = max(now, self._now)
        self._decay_all(now)
        plan = self._plan(now)
        if not plan.switch:
            return KeepUplink(self.active, plan.reason, now)
        if plan.to is None:
            assert self.active is not None
            return NoUplink(self.active, plan.reason, now)
        return SwitchUplink(self.active, plan.to, plan.planned, plan.reason, now)

    def get_timer(self) -> float | None:
        """The next instant at which ``evaluate`` could decide differently with no new input."""
        s = self.settings
        times: list[float] = []
        for link in self._links.values():
            if link.fit_since is not None and link.name != self.active:
                times.append(link.fit_since + link.profile.failback_hold_down)
            if link.degraded_since is not None and link.name == self.active:
                times.append(link.degraded_since + s.degraded_grace)
            if link.suppressed and link.usable and link.penalty > 0:
                ratio = link.penalty / s.reuse_below
                times.append(link.penalty_at + s.penalty_half_life * math.log2(max(ratio, 1.0)))
        if len(self._planned_at) >= s.max_planned_switches:
            times.append(self._planned_at[0] + s.switch_window)
        future = [t for t in times if t > self._now]
        return min(future) if future else None

    def links(self) -> dict[str, UplinkHealth | None]:
        return {name: link.health for name, link in self._links.items()}

    def penalty(self, name: str) -> tuple[float, bool]:
        """(current penalty, suppressed) for the status page and tests."""
        link = self._link(name)
        return link.penalty, link.suppressed

    # --- the rules ------------------------------------------------------------------------

    def _plan(self, now: float) -> _Plan:
        s = self.settings
        margin = s.signal_hysteresis_db
        active = self._links.get(self.active) if self.active is not None else None

        # Rule 1: no active uplink, or it died.
        if active is None or not active.usable:
            best = self._best_usable(exclude=active.name if active else None)
            if best is None:
                if active is None:
                    return _Plan(None, False, False, "no usable uplink")
                return _Plan(None, True, False, f"{active.describe()}; no other usable uplink")
            if active is None:
                return _Plan(best.name, True, False, f"first usable: {best.describe()}")
            return _Plan(best.name, True, False,
                         f"{active.describe()}: {self._health_reason(active)}; {best.describe()}")

        # Rule 2: the operator's fresh pick.
        if self.override is not None and self.override != active.name:
            pick = self._links[self.override]
            if self._override_fresh and pick.usable:
                return _Plan(pick.name, True, True,
                             f"operator prefers {pick.name}: {pick.describe()}", is_override=True)
        if self.override == active.name:
            return _Plan(None, False, False, f"operator prefers {active.name}: {active.describe()}")

        budget_ok, budget = self._budget(now)

        # Rule 3: escape from an active uplink that still works but is unfit.
        unfit = self._unfit_reason(active, now)
        if unfit is not None:
            fit = [link for link in self._links.values()
                   if link is not active and link.fit(margin)]
            if fit:
                best = min(fit, key=self._choice_key)
                why = f"{active.name} {unfit}; {best.describe()}"
                if budget_ok:
                    return _Plan(best.name, True, True, why)
                return _Plan(None, False, False, f"{why}; but {budget}")
            return _Plan(None, False, False, f"{active.name} {unfit}, but no other uplink is fit")

        # Rule 4: upgrade / failback to a strictly better ranked, fit, held-down uplink.
        waiting: list[str] = []
        for link in sorted(self._links.values(), key=self._choice_key):
            if link is active or self._rank(link) >= self._rank(active):
                continue
            if not link.fit(margin):
                waiting.append(f"{link.name} not fit: {self._unfit_text(link)}")
                continue
            hold = link.profile.failback_hold_down
            assert link.fit_since is not None
            fit_for = now - link.fit_since
            if link.suppressed:
                waiting.append(f"{link.name} suppressed (penalty {link.penalty:.2f}"
                               f" >= reuse {s.reuse_below})")
                continue
            if fit_for < hold:
                waiting.append(f"{link.name} fit {fit_for:.1f}s of {hold:.1f}s hold-down")
                continue
            why = (f"{self._rank_text(link, active)}, {link.describe()}, "
                   f"hold-down {hold:.1f}s elapsed")
            if not budget_ok:
                waiting.append(f"{link.name} ready but {budget}")
                continue
            return _Plan(link.name, True, True, why)
        text = f"{active.describe()}"
        if waiting:
            text += "; " + "; ".join(waiting)
        return _Plan(None, False, False, text)

    def _unfit_reason(self, link: _Link, now: float) -> str | None:
        assert link.health is not None
        minimum = link.profile.min_signal_dbm
        if not link.signal_ok(0.0) and minimum is not None and link.health.signal_dbm is not None:
            return f"signal {link.health.signal_dbm:.0f}<{minimum:.0f}dBm"
        if link.degraded_since is not None and now - link.degraded_since >= self.settings.degraded_grace:
            return (f"DEGRADED for {now - link.degraded_since:.1f}s"
                    f" ({link.health.reason})")
        return None

    def _unfit_text(self, link: _Link) -> str:
        if link.health is None:
            return "no health yet"
        if not link.available:
            return "not associated/dialled"
        if link.health.state is not HealthState.UP:
            return f"{link.health.state}"
        minimum = link.profile.min_signal_dbm
        margin = self.settings.signal_hysteresis_db
        return f"signal {link.health.signal_dbm:.0f}<{minimum:.0f}+{margin:.0f}dBm"

    def _best_usable(self, exclude: str | None) -> _Link | None:
        usable = [link for link in self._links.values() if link.usable and link.name != exclude]
        if not usable:
            return None
        return min(usable, key=self._choice_key)

    def _choice_key(self, link: _Link) -> tuple[bool, bool, tuple[int, int, bool, int], int, str]:
        score = link.health.score if link.health is not None else 0
        return (not link.fit(self.settings.signal_hysteresis_db), link.suppressed,
                self._rank(link), -score, link.name)

    def _rank(self, link: _Link) -> tuple[int, int, bool, int]:
        first = 0 if self.override == link.name else 1
        return (first, *link.profile.rank)

    def _rank_text(self, better: _Link, worse: _Link) -> str:
        a, b = better.profile, worse.profile
        if self.override == better.name:
            return f"operator prefers {better.name}"
        if a.priority != b.priority:
            return f"priority {a.priority}<{b.priority}"
        if a.metered != b.metered:
            return f"{a.name} unmetered, {b.name} metered"
        return f"cost {a.cost}<{b.cost}"

    def _standby(self) -> tuple[str | None, str]:
        others = [link for link in self._links.values() if link.name != self.active]
        if not others:
            return None, ""
        best = min(others, key=lambda link: (not link.usable, link.suppressed,
                                             self._rank(link), link.name))
        return best.name, (f"second best after {self.active or 'none'}: {best.describe()};"
                           " keep it associated/dialled and pre-registered")

    def _budget(self, now: float) -> tuple[bool, str]:
        s = self.settings
        while self._planned_at and self._planned_at[0] <= now - s.switch_window:
            self._planned_at.popleft()
        used = len(self._planned_at)
        if used < s.max_planned_switches:
            return True, ""
        free_in = self._planned_at[0] + s.switch_window - now
        return False, (f"anti-flap: {used} planned switches in the last {s.switch_window:.0f}s"
                       f" (max {s.max_planned_switches}), next allowed in {free_in:.1f}s")

    @staticmethod
    def _health_reason(link: _Link) -> str:
        if link.health is not None and not link.health.online:
            return link.health.reason
        return "not associated/dialled" if not link.available else "unusable"

    # --- time -----------------------------------------------------------------------------

    def _tick(self, now: float) -> float:
        now = max(now, self._now)
        self._decay_all(now)
        self._now = now
        return now

    def _decay_all(self, now: float) -> None:
        s = self.settings
        for link in self._links.values():
            if link.penalty <= 0 or not link.usable:
                continue  # the penalty decays only after recovery
            elapsed = now - link.penalty_at
            if elapsed > 0:
                link.penalty *= 2 ** (-elapsed / s.penalty_half_life)
                link.penalty_at = now
            if link.suppressed and link.penalty < s.reuse_below:
                link.suppressed = False
            if link.penalty < 1e-6:
                link.penalty = 0.0

    def _link(self, name: str) -> _Link:
        link = self._links.get(name)
        if link is None:
            raise UnknownUplink(name, tuple(self._links))
        return link
