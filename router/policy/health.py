"""Health of one uplink, mwan3track-style: probes in, a state and a score out (pure, no I/O).

Theory of operation
-------------------
One :class:`HealthTracker` per uplink. Drivers feed it observations, always with ``now``
(monotonic float seconds); the tracker never reads a clock, opens a socket or sleeps.

*Probes.* Anything the daemon already does on the uplink that has a request and a reply is a
probe and costs nothing extra: a registration request/reply (key it by its identification), a
tunnel keepalive, an ICMP echo or a UDP probe to a configured target. Call
``probe_sent(key, now)`` when the request leaves and ``probe_answered(key, now)`` when the reply
comes back (any hashable key; keys must be unique among outstanding probes). ``probe_lost(key,
now)`` reports an explicit failure (ICMP unreachable, send error). A probe still unanswered one
retransmission timeout (RTO) after it was sent is lost; ``get_timer()`` says when the next such
deadline falls and ``handle_timer(now)`` expires it. Every input also expires overdue probes, so a
driver that only feeds probes never misses a loss. A reply that arrives after its probe was
declared lost is ignored (counted in ``late_replies``).

*When to probe.* ``next_probe_at()`` says when the driver should send the next active probe, or
``None`` when probing is pointless (carrier down). The interval depends on the state: healthy
(``interval_up``, ~1 probe/s idle, dithered +-10% by a deterministic pseudo-random sequence
so that probing cannot phase-lock with a periodic outage), suspect (score below full: ``failure_interval``), recovering
or unknown (``recovery_interval``). Any probe sent (a registration, too) restarts the interval, so
an uplink that carries keepalives needs no extra probes.

*Score* (mwan3track semantics). The score runs from 0 to ``up + down``. Online (UP or DEGRADED)
it starts full; each failure takes one off, each success restores it to full; when it falls to
``up`` -- that is after ``down`` consecutive failures -- the uplink is DOWN and the score drops to
0. Offline (UNKNOWN or DOWN) each success adds one and each failure resets it to 0; at ``up``
consecutive successes the uplink is UP with a full score. ``down`` consecutive failures also
take an UNKNOWN uplink to DOWN (so the policy learns that it failed, not only that it is new).

*L2 triggers.* ``carrier(False, now)`` (carrier loss, WLAN disassociation, ppp down) takes the
uplink to DOWN at once with score 0 and drops all outstanding probes; no probing until
``carrier(True, now)``, after which the uplink recovers through ``up`` good probes at the
recovery interval (the first one due at once).

*Quality.* Over a sliding window of the last ``window`` probe results: loss ratio, RTT min / max
/ mean, jitter (mean absolute difference of consecutive RTTs, RFC 3550 section 6.4.1 in spirit).
The smoothed RTT and its variance follow RFC 6298 (alpha 1/8, beta 1/4) and set the probe
timeout: ``RTO = clamp(srtt + 4 * rttvar, timeout_min, timeout_max)`` (``timeout_initial``
before the first sample). Once the window holds ``min_samples`` results, a loss ratio of
``degraded_loss`` or more (or a smoothed RTT above ``degraded_rtt``, if set) makes an online
uplink DEGRADED; it is UP again when the loss is at most half of that (hysteresis) and the RTT
is back under the limit. The loss window is cleared on entering DOWN and losses while offline
stay out of it: the down period is the state machine's business, and a recovered link is
judged on what it does after it came back (else it would stay DEGRADED for a whole window).
Signal (dBm; for 3G from ``AT+CSQ`` through :func:`csq_to_dbm`) is carried for the policy,
which owns the per-uplink minimum.

Driving it (the asyncio side lives in ``router/uplink``; this is its whole shape)::

    tracker = HealthTracker("wlan", loop.time())
    while True:
        wake = min(t for t in (tracker.next_probe_at(), tracker.get_timer(), policy.get_timer(),
                               loop.time() + 1.0) if t is not None)
        await wait_for_reply_or_link_event(until=wake)   # replies -> probe_answered, L2 -> carrier
        now = loop.time()
        tracker.handle_timer(now)
        if (due := tracker.next_probe_at()) is not None and due <= now:
            tracker.probe_sent(send_echo(), now)
        policy.observe(tracker.snapshot(), associated, now)   # router.policy.uplink
        for decision in policy.evaluate(now):
            log.info("%s", decision); execute(decision)

Defaults and the detection math
-------------------------------
``up = 3``, ``down = 3``, ``interval_up = 1.0 s``, ``failure_interval = 0.1 s``,
``recovery_interval = 0.25 s`` (``slow_recovery_interval = 1.0 s`` after 12 losses while down),
``timeout_min = 0.2 s``, ``timeout_max = 1.0 s``, ``timeout_initial = 0.5 s``.

Probes stop answering; let the first unanswered probe leave at ``s``. It is lost at ``s + RTO``;
the uplink is now suspect (DEGRADED) and probes every ``failure_interval``, the first at once.
The ``down``-th consecutive loss is the probe sent at ``s + RTO + (down - 2) * failure_interval``,
lost one RTO later::

    detect = 2 * RTO + (down - 2) * failure_interval
           = 2 * 0.2 + 1 * 0.1 = 0.5 s      (WLAN/Ethernet: RTT of a few ms, RTO at its floor)
           = 2 * 0.35 + 0.1   = 0.8 s       (3G, srtt 150 ms and rttvar 50 ms: RTO 350 ms)

counted from the first unanswered probe. An idle healthy uplink sends one probe per
``interval_up`` (+-10%), so the worst case from the moment of failure adds up to 1.1 s
(0.5 s on average) unless traffic that counts as a probe (registrations, keepalives) was in
flight. An L2 trigger (carrier, disassociation, ppp down) skips all of this: DOWN at once.
Recovery after the path comes back: ``up`` answers at ``recovery_interval``, about
``(up - 1) * 0.25 s + RTT`` = ~0.5 s. Cost: 1 probe/s healthy, 10/s while suspect (at most ~0.5 s),
4/s for the first ``slow_recovery_after`` (12) losses while down with carrier, then
``slow_recovery_interval`` (1/s), none without carrier.

States
------
UNKNOWN (no verdict yet), UP (online, full score, quality fine), DEGRADED (online but suspect or
lossy/slow: still usable), DOWN (offline). The transitions are the table :data:`TRANSITIONS`;
``print(format_transitions())`` shows it. A pair not in the table is an
:class:`IllegalHealthTransition` (a bug in this module, never the driver's input).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise

__all__ = [
    "TRANSITIONS",
    "HealthChanged",
    "HealthConfig",
    "HealthConfigError",
    "HealthState",
    "HealthTracker",
    "HealthTrigger",
    "IllegalHealthTransition",
    "UplinkHealth",
    "csq_to_dbm",
    "format_transitions",
]


class HealthState(Enum):
    UNKNOWN = "UNKNOWN"
    UP = "UP"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"

    def __str__(self) -> str:
        return self.value


class HealthTrigger(Enum):
    PROBES_RECOVERED = "up consecutive answers"
    PROBES_FAILED = "down consecutive losses"
    PROBE_MISSED = "one probe lost"
    QUALITY_POOR = "loss or rtt over limit"
    HEALTHY = "full score, quality fine"
    CARRIER_LOST = "carrier lost"
    CARRIER_BACK = "carrier back"

    def __str__(self) -> str:
        return self.name


def _unit(n: int) -> float:
    """A deterministic pseudo-random number in [0, 1) from ``n`` (splitmix64's finaliser)."""
    z = (n * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


_U, _G, _D, _K = HealthState.UP, HealthState.DEGRADED, HealthState.DOWN, HealthState.UNKNOWN
_T = HealthTrigger

#: (state, trigger) -> next state. Self-loops are listed so that every reachable pair is legal.
TRANSITIONS: dict[tuple[HealthState, HealthTrigger], HealthState] = {
    (_K, _T.PROBES_RECOVERED): _U,
    (_K, _T.PROBES_FAILED): _D,
    (_K, _T.CARRIER_LOST): _D,
    (_K, _T.CARRIER_BACK): _K,
    (_U, _T.PROBE_MISSED): _G,
    (_U, _T.QUALITY_POOR): _G,
    (_U, _T.HEALTHY): _U,
    (_U, _T.PROBES_FAILED): _D,  # only when down == 1
    (_U, _T.CARRIER_LOST): _D,
    (_U, _T.CARRIER_BACK): _U,
    (_G, _T.PROBE_MISSED): _G,
    (_G, _T.QUALITY_POOR): _G,
    (_G, _T.HEALTHY): _U,
    (_G, _T.PROBES_FAILED): _D,
    (_G, _T.CARRIER_LOST): _D,
    (_G, _T.CARRIER_BACK): _G,
    (_D, _T.PROBES_RECOVERED): _U,
    (_D, _T.CARRIER_LOST): _D,
    (_D, _T.CARRIER_BACK): _D,
}


def format_transitions() -> str:
    """The transition table as aligned text, one ``state + trigger -> state`` per line."""
    width_state = max(len(s.value) for s in HealthState)
    width_trigger = max(len(t.name) for t in HealthTrigger)
    return "\n".join(
        f"{old.value:<{width_state}} + {trigger.name:<{width_trigger}} -> {new.value}"
        for (old, trigger), new in TRANSITIONS.items()
    )


class IllegalHealthTransition(Exception):
    """A (state, trigger) pair outside :data:`TRANSITIONS`: a bug in the tracker."""

    def __init__(self, name: str, state: HealthState, trigger: HealthTrigger) -> None:
        self.state = state
        self.trigger = trigger
        super().__init__(f"uplink {name}: no transition from {state} on {trigger.name}")


class HealthConfigError(ValueError):
    """A health parameter out of range: names the field and what was expected."""


def csq_to_dbm(csq: int) -> int | None:
    """3GPP TS 27.007 section 8.5 ``+CSQ: <rssi>``: 0 -> -113 dBm ... 31 -> -51 dBm; 99 unknown."""
    if 0 <= csq <= 31:
        return -113 + 2 * csq
    return None


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Tracker parameters; see the module docstring for what the defaults buy."""

    up: int = 3
    down: int = 3
    interval_up: float = 1.0
    failure_interval: float = 0.1
    recovery_interval: float = 0.25
    slow_recovery_after: int = 12  # offline losses in a row (~3 s), then probe more slowly
    slow_recovery_interval: float = 1.0
    timeout_initial: float = 0.5
    timeout_min: float = 0.2
    timeout_max: float = 1.0
    window: int = 20
    min_samples: int = 10
    degraded_loss: float = 0.2
    degraded_rtt: float | None = None
    max_outstanding: int = 64
    dither: float = 0.1  # healthy interval varies by +-10% (deterministically)

    def __post_init__(self) -> None:
        for name in ("up", "down", "window", "min_samples", "max_outstanding", "slow_recovery_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HealthConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        for name in ("interval_up", "failure_interval", "recovery_interval", "slow_recovery_interval",
                     "timeout_initial", "timeout_min", "timeout_max"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise HealthConfigError(f"{name}: expected seconds > 0, got {value!r}")
        if self.timeout_min > self.timeout_max:
            raise HealthConfigError(
                f"timeout_min: {self.timeout_min} is above timeout_max {self.timeout_max}"
            )
        if self.min_samples > self.window:
            raise HealthConfigError(f"min_samples: {self.min_samples} is above window {self.window}")
        if not 0.0 < self.degraded_loss <= 1.0:
            raise HealthConfigError(f"degraded_loss: expected 0 < ratio <= 1, got {self.degraded_loss!r}")
        if not 0.0 <= self.dither < 1.0:
            raise HealthConfigError(f"dither: expected 0 <= ratio < 1, got {self.dither!r}")
        if self.degraded_rtt is not None and not self.degraded_rtt > 0:
            raise HealthConfigError(f"degraded_rtt: expected seconds > 0, got {self.degraded_rtt!r}")

    @property
    def score_max(self) -> int:
        return self.up + self.down

    def detection_time(self, rto: float | None = None) -> float:
        """Seconds from the first unanswered probe to DOWN (module docstring, the math)."""
        rto = self.timeout_min if rto is None else rto
        return 2 * rto + max(self.down - 2, 0) * self.failure_interval if self.down > 1 else rto


@dataclass(frozen=True, slots=True)
class UplinkHealth:
    """A snapshot of one uplink's health, as the policy and the status page see it."""

    name: str
    state: HealthState
    score: int
    score_max: int
    since: float  # when the state last changed
    reason: str  # why it changed, one line
    carrier: bool | None = None  # None: the driver never said
    signal_dbm: float | None = None
    srtt: float | None = None  # seconds
    rtt_min: float | None = None
    rtt_max: float | None = None
    jitter: float | None = None
    loss: float = 0.0  # ratio over the window
    samples: int = 0  # results in the window

    @property
    def online(self) -> bool:
        return self.state in (HealthState.UP, HealthState.DEGRADED)

    def describe(self) -> str:
        """``wlan UP score 6/6 rtt 12ms loss 0% signal -40dBm``"""
        parts = [f"{self.name} {self.state} score {self.score}/{self.score_max}"]
        if self.srtt is not None:
            parts.append(f"rtt {self.srtt * 1000:.0f}ms")
        if self.samples:
            parts.append(f"loss {self.loss * 100:.0f}%")
        if self.signal_dbm is not None:
            parts.append(f"signal {self.signal_dbm:.0f}dBm")
        if self.carrier is False:
            parts.append("no carrier")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """The tracker moved from ``old`` to ``new`` (one log line: ``str(event)``)."""

    name: str
    old: HealthState
    new: HealthState
    trigger: HealthTrigger
    at: float
    reason: str

    def __str__(self) -> str:
        return f"health {self.name} {self.old} -> {self.new}: {self.reason}"


@dataclass(slots=True)
class _Outstanding:
    sent_at: float
    deadline: float


@dataclass(slots=True)
class HealthTracker:
    """Health of one uplink (see the module docstring). All inputs take ``now``."""

    name: str
    now: float
    config: HealthConfig = field(default_factory=HealthConfig)

    state: HealthState = field(init=False, default=HealthState.UNKNOWN)
    score: int = field(init=False, default=0)
    since: float = field(init=False)
    reason: str = field(init=False, default="no probe yet")
    carrier_up: bool | None = field(init=False, default=None)
    signal_dbm: float | None = field(init=False, default=None)
    srtt: float | None = field(init=False, default=None)
    rttvar: float | None = field(init=False, default=None)
    late_replies: int = field(init=False, default=0)
    unmatched_replies: int = field(init=False, default=0)
    probes_sent: int = field(init=False, default=0)
    _offline_failures: int = field(init=False, default=0)
    _outstanding: dict[Hashable, _Outstanding] = field(init=False, default_factory=dict)
    _window: deque[float | None] = field(init=False)
    _last_sent: float | None = field(init=False, default=None)
    _probe_epoch: float = field(init=False)
    _quality_poor: bool = field(init=False, default=False)
    _events: deque[HealthChanged] = field(init=False, default_factory=deque)
    _expired: deque[Hashable] = field(init=False)  # recent lost keys, to tell late from stray

    def __post_init__(self) -> None:
        self.since = self.now
        self._probe_epoch = self.now
        self._window = deque(maxlen=self.config.window)
        self._expired = deque(maxlen=self.config.max_outstanding)

    # --- inputs ---------------------------------------------------------------------------

    def probe_sent(self, key: Hashable, now: float, timeout: float | None = None) -> None:
        """A request that expects a reply left on this uplink (probe, registration, keepalive).

        ``timeout`` overrides the RTO for this one probe: a registration through the home agent
        (and, outside, the VPN) may legitimately take longer than an ICMP echo.
        """
        now = self._tick(now)
        if self.carrier_up is False:
            return  # nothing can come back; do not count it against the link twice
        self._outstanding.pop(key, None)
        wait = self.timeout() if timeout is None or not timeout > 0 else timeout
        self._outstanding[key] = _Outstanding(now, now + wait)
        self._last_sent = now
        self.probes_sent += 1
        while len(self._outstanding) > self.config.max_outstanding:
            oldest = next(iter(self._outstanding))
            del self._outstanding[oldest]
            self._failure(now, f"probe {oldest!r} dropped: over {self.config.max_outstanding} outstanding")

    def probe_answered(self, key: Hashable, now: float) -> None:
        """The reply to ``key`` arrived: one success, and an RTT sample."""
        probe = self._outstanding.get(key)
        in_time = probe is not None and now <= probe.deadline
        if in_time:
            del self._outstanding[key]  # a reply right at the deadline still counts
        now = self._tick(now)  # expires the rest, a late reply's probe included
        if probe is None or not in_time:
            if probe is not None or key in self._expired:
                self.late_replies += 1
            else:
                self.unmatched_replies += 1
            return
        rtt = now - probe.sent_at
        self._rtt_sample(rtt)
        self._success(now, rtt)

    def probe_lost(self, key: Hashable, now: float) -> None:
        """``key`` failed for sure (ICMP unreachable, send error): a failure now."""
        now = self._tick(now)
        if self._outstanding.pop(key, None) is not None:
            self._failure(now, f"probe {key!r} failed")

    def carrier(self, up: bool, now: float) -> None:
        """L2 trigger: carrier / association / ppp state. Loss acts at once."""
        now = self._tick(now)
        was = self.carrier_up
        self.carrier_up = up
        if not up:
            self._outstanding.clear()
            self.score = 0
            self._offline_failures = 0
            self._fire(HealthTrigger.CARRIER_LOST, now, "carrier lost (L2)")
        elif was is False:
            self._probe_epoch = now
            self._last_sent = None
            self._fire(HealthTrigger.CARRIER_BACK, now, "carrier back (L2), recovering")

    def signal(self, dbm: float | None, now: float) -> None:
        """Signal strength in dBm (WLAN: nl80211 signal; 3G: :func:`csq_to_dbm`); None: unknown."""
        self._tick(now)
        self.signal_dbm = dbm if dbm is None or math.isfinite(dbm) else None

    def handle_timer(self, now: float) -> None:
        """Expire probes whose RTO has passed (call at ``get_timer()``; harmless at any time)."""
        self._tick(now)

    # --- outputs --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next probe-loss deadline, or None when no probe is outstanding."""
        if not self._outstanding:
            return None
        return min(p.deadline for p in self._outstanding.values())

    def next_probe_at(self) -> float | None:
        """When the driver should send the next active probe; None while the carrier is down."""
        if self.carrier_up is False:
            return None
        if self._last_sent is None:
            return self._probe_epoch
        return self._last_sent + self.probe_interval()

    def probe_interval(self) -> float:
        if self.state in (HealthState.UNKNOWN, HealthState.DOWN):
            if self._offline_failures >= self.config.slow_recovery_after:
                return self.config.slow_recovery_interval  # long dead: do not burn a metered link
            return self.config.recovery_interval
        if self.score < self.config.score_max:
            return self.config.failure_interval
        # Dither (+-dither, pseudo-random but deterministic): a strict 1 Hz prober phase-locks
        # with a periodic outage and never sees it; a random walk of the phase does.
        spread = 2.0 * _unit(self.probes_sent) - 1.0
        return self.config.interval_up * (1.0 + self.config.dither * spread)

    def timeout(self) -> float:
        """Current RTO (RFC 6298 section 2, clamped to the configured range)."""
        if self.srtt is None or self.rttvar is None:
            return self.config.timeout_initial
        rto = self.srtt + 4 * self.rttvar
        return min(max(rto, self.config.timeout_min), self.config.timeout_max)

    def next_event(self) -> HealthChanged | None:
        return self._events.popleft() if self._events else None

    def snapshot(self) -> UplinkHealth:
        rtts = [r for r in self._window if r is not None]
        jitter = None
        if len(rtts) >= 2:
            jitter = sum(abs(b - a) for a, b in pairwise(rtts)) / (len(rtts) - 1)
        return UplinkHealth(
            name=self.name,
            state=self.state,
            score=self.score,
            score_max=self.config.score_max,
            since=self.since,
            reason=self.reason,
            carrier=self.carrier_up,
            signal_dbm=self.signal_dbm,
            srtt=self.srtt,
            rtt_min=min(rtts) if rtts else None,
            rtt_max=max(rtts) if rtts else None,
            jitter=jitter,
            loss=self._loss(),
            samples=len(self._window),
        )

    # --- internals ------------------------------------------------------------------------

    def _tick(self, now: float) -> float:
        # A monotonic clock never goes back; if a driver's does, hold time still rather than
        # let deadlines run backwards.
        now = max(now, self.now)
        self.now = now
        while self._outstanding:
            key, probe = min(self._outstanding.items(), key=lambda item: item[1].deadline)
            if probe.deadline > now:
                break
            del self._outstanding[key]
            self._expired.append(key)
            self._failure(probe.deadline, f"probe {key!r} unanswered after {self._ms(probe.deadline - probe.sent_at)}")
        return now

    def _rtt_sample(self, rtt: float) -> None:
        # RFC 6298 section 2.2 / 2.3.
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def _loss(self) -> float:
        if not self._window:
            return 0.0
        return sum(1 for r in self._window if r is None) / len(self._window)

    def _quality_check(self) -> bool:
        """True when quality is poor, with hysteresis on the loss ratio."""
        cfg = self.config
        if len(self._window) < cfg.min_samples:
            poor = False
        else:
            loss = self._loss()
            limit = cfg.degraded_loss / 2 if self._quality_poor else cfg.degraded_loss
            poor = loss > limit if self._quality_poor else loss >= limit
        if cfg.degraded_rtt is not None and self.srtt is not None and self.srtt > cfg.degraded_rtt:
            poor = True
        self._quality_poor = poor
        return poor

    def _quality_text(self) -> str:
        text = f"loss {self._loss() * 100:.0f}% of {len(self._window)}"
        if self.srtt is not None:
            text += f", rtt {self._ms(self.srtt)}"
        return text

    def _success(self, now: float, rtt: float) -> None:
        cfg = self.config
        self._window.append(rtt)
        if self.state in (HealthState.UNKNOWN, HealthState.DOWN):
            self._offline_failures = 0
            self.score += 1
            if self.score >= cfg.up:
                self.score = cfg.score_max
                self._fire(HealthTrigger.PROBES_RECOVERED, now,
                           f"{cfg.up} probes answered in a row, rtt {self._ms(rtt)}")
                if self._quality_check():
                    self._fire(HealthTrigger.QUALITY_POOR, now, self._quality_text())
            return
        self.score = cfg.score_max
        if self._quality_check():
            self._fire(HealthTrigger.QUALITY_POOR, now, self._quality_text())
        else:
            self._fire(HealthTrigger.HEALTHY, now, f"probe answered, {self._quality_text()}")

    def _failure(self, now: float, what: str) -> None:
        cfg = self.config
        if self.state in (HealthState.UNKNOWN, HealthState.DOWN):
            # Offline losses stay out of the window: they are the state machine's business.
            self.score = 0
            self._offline_failures += 1
            if self.state is HealthState.UNKNOWN and self._offline_failures >= cfg.down:
                self._fire(HealthTrigger.PROBES_FAILED, now, f"{cfg.down} probes lost in a row: {what}")
            return
        self._window.append(None)
        self.score -= 1
        if self.score <= cfg.up:
            self.score = 0
            self._fire(HealthTrigger.PROBES_FAILED, now, f"{cfg.down} probes lost in a row: {what}")
        else:
            self._fire(HealthTrigger.PROBE_MISSED, now,
                       f"{what}, score {self.score}/{cfg.score_max}")

    def _fire(self, trigger: HealthTrigger, now: float, reason: str) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise IllegalHealthTransition(self.name, self.state, trigger)
        old = self.state
        if new is old:
            return
        if new is HealthState.DOWN:
            self._window.clear()
            self._quality_poor = False
            self._offline_failures = 0
        self.state = new
        self.since = now
        self.reason = reason
        self._events.append(HealthChanged(self.name, old, new, trigger, now, reason))

    @staticmethod
    def _ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f}ms"
