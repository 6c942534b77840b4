"""The dual-system coordinator: inner system, VPN and outer system as one pure state machine.

Theory of operation (seed, "Description of the method" and "Dual Client implementation";
DESIGN.md section 2; RFC 5265 section 3):

Three situations, one uplink at a time (X is the uplink's address, V the VPN's virtual
IP, T the outer home address):

==============  ======================  ===============  ======================  ==========
situation       inner registration      VPN              outer registration      LAN route
==============  ======================  ===============  ======================  ==========
INSIDE          direct, CoA = X         off              deregistered            direct
OUTSIDE         over the VPN, CoA = V   up, from T       CoA = X                 vpn
OUTER_HOME      over the VPN, CoA = V   up, from T       deregistered (at home)  vpn
==============  ======================  ===============  ======================  ==========

Driver contract: execute each intent and report its outcome as an event (echo
``RegisterInner.attempt``); a later intent of the same kind supersedes an earlier one.
A request never answered is treated as failed after ``request_timeout`` /
``vpn_timeout`` (and retried with backoff), an unacknowledged route switch is
commanded again after ``route_timeout``; so a lost event delays, never wedges.

The coordinator does no I/O. The daemon feeds it events (driver outcomes and
observations) with ``handle_event(event, now)``, calls ``handle_timer(now)`` when
``get_timer()`` says so, and pulls intents with ``next_intent()``; each intent
carries a one-line reason. Time is only ever the ``now`` argument.

The machine's *state* (:class:`State`) moves only through :data:`TRANSITIONS`, a
literal table of named triggers (``python3 -m router.policy.coordinator`` prints it);
a trigger the table does not allow raises :class:`IllegalTransition`, which is a
bug in this module, never a reaction to input. Events that do not fit the current
facts (stale, unsolicited, duplicated) are ignored with a logged, counted reason.

Inside the VPN-path states the coordinator *reconciles*: from the facts it holds
(uplink, outer binding, VPN, inner binding, LAN route) it emits the next step of the
plan: outer registration (or deregistration at the outer home network, seed figure
8), then the VPN from T, then the inner registration over the VPN with CoA = V, then
the LAN route onto the VPN. Failures back off exponentially.

Security (DESIGN.md section 8, RFC 5265 section 3.2):

- ``SwitchLanRoute(DIRECT)`` and ``TearVpnDown`` are emitted only while the
  coordinator holds a :class:`~router.policy.domain.Proof` for the *current* uplink:
  an ``InnerRegistered(direct=True)`` answering the coordinator's own direct attempt
  (matching ``attempt`` number and care-of address) since the last uplink change.
- Any uplink change voids the proof and, if the LAN was routed direct, holds it
  (RFC 5265 section 3.2.2: stop relaying until detection completes).
- Inside, the proof must be refreshed by a direct re-registration within
  ``t_monitor`` seconds (RFC 5265 section 3.2.4), else the LAN is held again.
- Conjectures only choose what to try first; when the VPN drops, the LAN is held
  (an inner tunnel without the VPN would leave in clear).

Outside -> inside: with a conjecture saying inside, the direct inner registration
is tried first while the VPN stays up and the LAN stays on it; only the
authenticated direct reply switches the route, and only after the route switch is
acknowledged is the VPN torn down and the outer system deregistered.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from router.mip.errors import LocalProtocolError
from router.policy.domain import (
    Attempt,
    Conjecture,
    DomainParams,
    Proof,
    SmokeOutOutcome,
    Verdict,
    combine,
    conjecture_from_address,
    conjecture_from_smoke_out,
    issue_proof,
    try_order,
    unknown,
)

__all__ = [
    "TRANSITIONS",
    "BringVpnUp",
    "ConjectureFormed",
    "Coordinator",
    "CoordinatorParams",
    "DeregisterOuter",
    "Event",
    "HandoverRecord",
    "IllegalTransition",
    "InnerDenied",
    "InnerLost",
    "InnerRegistered",
    "Intent",
    "LanRoute",
    "OuterDenied",
    "OuterDeregistered",
    "OuterRegistered",
    "Phase",
    "RecordContext",
    "RegisterInner",
    "RegisterOuter",
    "RoutesSwitched",
    "SmokeOut",
    "SmokeOutResult",
    "State",
    "SwitchLanRoute",
    "TearVpnDown",
    "Trigger",
    "UplinkChanged",
    "VpnDown",
    "VpnFailed",
    "VpnUp",
    "format_table",
]


class IllegalTransition(LocalProtocolError):
    """A trigger the transition table does not allow in the current state (a bug here)."""


# --- states and the table ----------------------------------------------------------------------


class State(enum.StrEnum):
    START = "start"  # no uplink yet
    DETECTING = "detecting"  # uplink, no VPN, no proof: smoke-out / direct attempt; LAN held
    GOING_INSIDE = "going_inside"  # proof held: LAN -> direct, then VPN down, outer deregistered
    INSIDE = "inside"
    GOING_OUTSIDE = "going_outside"  # outer (de)registration -> VPN from T -> inner over VPN -> LAN
    OUTSIDE = "outside"
    OUTER_HOME = "outer_home"
    ROAMING = "roaming"  # VPN up, LAN on VPN; only the outer registration follows the uplink


class Trigger(enum.StrEnum):
    UPLINK_UP = "uplink_up"
    UPLINK_CHANGED = "uplink_changed"  # includes loss (no address)
    PROVEN_INSIDE = "proven_inside"  # InnerRegistered(direct=True) for our attempt on this uplink
    INSIDE_LOST = "inside_lost"  # direct re-registration lost/denied or t_monitor expired
    GO_OUTSIDE = "go_outside"  # conjecture/smoke-out/deadline/direct failure: take the VPN path
    RESUME_VPN_PATH = "resume_vpn_path"  # uplink changed before the VPN was torn down
    RESTART_DETECTION = "restart_detection"  # uplink changed before any VPN was started
    VPN_LOST = "vpn_lost"
    INNER_LOST = "inner_lost"  # the inner binding over the VPN was lost
    OUTER_LOST = "outer_lost"
    SETTLED_OUTSIDE = "settled_outside"
    SETTLED_OUTER_HOME = "settled_outer_home"
    VPN_TORN_DOWN = "vpn_torn_down"  # LAN direct and VPN down: inside


S, T = State, Trigger

#: (state, trigger) -> next state. Anything missing is an IllegalTransition.
TRANSITIONS: dict[State, dict[Trigger, State]] = {
    S.START: {
        T.UPLINK_UP: S.DETECTING,
    },
    S.DETECTING: {
        T.UPLINK_CHANGED: S.DETECTING,
        T.PROVEN_INSIDE: S.GOING_INSIDE,
        T.GO_OUTSIDE: S.GOING_OUTSIDE,
    },
    S.GOING_INSIDE: {
        T.PROVEN_INSIDE: S.GOING_INSIDE,
        T.VPN_TORN_DOWN: S.INSIDE,
        T.VPN_LOST: S.GOING_INSIDE,
        T.INSIDE_LOST: S.DETECTING,
        T.UPLINK_CHANGED: S.DETECTING,
        T.RESUME_VPN_PATH: S.GOING_OUTSIDE,
    },
    S.INSIDE: {
        T.PROVEN_INSIDE: S.INSIDE,
        T.INSIDE_LOST: S.DETECTING,
        T.UPLINK_CHANGED: S.DETECTING,
    },
    S.GOING_OUTSIDE: {
        T.SETTLED_OUTSIDE: S.OUTSIDE,
        T.SETTLED_OUTER_HOME: S.OUTER_HOME,
        T.PROVEN_INSIDE: S.GOING_INSIDE,
        T.VPN_LOST: S.GOING_OUTSIDE,
        T.UPLINK_CHANGED: S.GOING_OUTSIDE,
        T.RESTART_DETECTION: S.DETECTING,
    },
    S.OUTSIDE: {
        T.PROVEN_INSIDE: S.GOING_INSIDE,
        T.VPN_LOST: S.GOING_OUTSIDE,
        T.INNER_LOST: S.GOING_OUTSIDE,
        T.OUTER_LOST: S.ROAMING,
        T.UPLINK_CHANGED: S.ROAMING,
    },
    S.OUTER_HOME: {
        T.PROVEN_INSIDE: S.GOING_INSIDE,
        T.VPN_LOST: S.GOING_OUTSIDE,
        T.INNER_LOST: S.GOING_OUTSIDE,
        T.UPLINK_CHANGED: S.ROAMING,
    },
    S.ROAMING: {
        T.SETTLED_OUTSIDE: S.OUTSIDE,
        T.SETTLED_OUTER_HOME: S.OUTER_HOME,
        T.PROVEN_INSIDE: S.GOING_INSIDE,
        T.VPN_LOST: S.GOING_OUTSIDE,
        T.INNER_LOST: S.GOING_OUTSIDE,
        T.UPLINK_CHANGED: S.ROAMING,
    },
}
del S, T

_SETTLED = (State.START, State.INSIDE, State.OUTSIDE, State.OUTER_HOME)
_VPN_PATH = (State.GOING_OUTSIDE, State.OUTSIDE, State.OUTER_HOME, State.ROAMING)


def format_table() -> str:
    """The transition table as aligned text: ``state  --trigger-->  next``."""
    width_state = max(len(s) for s in State)
    width_trigger = max(len(t) for t in Trigger)
    lines = []
    for state in State:
        for trigger, target in TRANSITIONS[state].items():
            lines.append(f"{state:<{width_state}}  --{trigger:-<{width_trigger}}-->  {target}")
    return "\n".join(lines)


# --- events (inputs) ---------------------------------------------------------------------------


class LanRoute(enum.StrEnum):
    HOLD = "hold"  # LAN traffic dropped/queued: neither path is trusted yet
    DIRECT = "direct"  # inner tunnel X -> S_HA, no VPN (inside only)
    VPN = "vpn"  # inner tunnel V -> S_HA through the VPN


@dataclass(frozen=True, slots=True)
class UplinkChanged:
    """The active uplink changed (or was lost: ``care_of_address`` None).

    Report every new attachment, a re-association with the same lease included: any
    change voids the proof (RFC 5265 section 3.2.2). ``hints`` are conjectures already
    known at attach time (history lookup, adverts) so the first plan can use them.
    """

    name: str
    care_of_address: IPv4Address | None
    gateway: IPv4Address | None
    kind: str
    hints: tuple[Conjecture, ...] = ()


@dataclass(frozen=True, slots=True)
class ConjectureFormed:
    """A conjecture the daemon formed (adverts, history) for one uplink attachment."""

    uplink: str
    care_of_address: IPv4Address | None
    conjecture: Conjecture


@dataclass(frozen=True, slots=True)
class SmokeOutResult:
    """The answer to a SmokeOut (``router.mip.mobilenode.SmokeOutProbe``), or its absence."""

    care_of_address: IPv4Address
    outcome: SmokeOutOutcome
    code: int | None = None
    responder: IPv4Address | None = None
    authenticated: bool = False  # SmokeOutAnswer.authenticated


@dataclass(frozen=True, slots=True)
class InnerRegistered:
    """The inner mobile node got an AUTHENTICATED registration reply (accepted).

    ``attempt`` echoes the ``RegisterInner.attempt`` the registration serves (renewals
    included); ``direct`` says it went over the uplink directly, not through the VPN.
    """

    care_of_address: IPv4Address
    direct: bool
    attempt: int


@dataclass(frozen=True, slots=True)
class InnerDenied:
    code: int
    attempt: int


@dataclass(frozen=True, slots=True)
class InnerLost:
    """No reply / lifetime ran out for the registration of ``attempt``."""

    attempt: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OuterRegistered:
    care_of_address: IPv4Address


@dataclass(frozen=True, slots=True)
class OuterDeregistered:
    pass


@dataclass(frozen=True, slots=True)
class OuterDenied:
    code: int | None = None  # None: no reply at all


@dataclass(frozen=True, slots=True)
class VpnUp:
    virtual_ip: IPv4Address


@dataclass(frozen=True, slots=True)
class VpnDown:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class VpnFailed:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RoutesSwitched:
    to: LanRoute


Event = (
    UplinkChanged
    | ConjectureFormed
    | SmokeOutResult
    | InnerRegistered
    | InnerDenied
    | InnerLost
    | OuterRegistered
    | OuterDeregistered
    | OuterDenied
    | VpnUp
    | VpnDown
    | VpnFailed
    | RoutesSwitched
)


# --- intents (outputs) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterInner:
    """Drive the inner mobile node to register S with this care-of address (supersedes any
    earlier RegisterInner). Echo ``attempt`` in the resulting Inner* events."""

    care_of_address: IPv4Address
    via_vpn: bool
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class RegisterOuter:
    care_of_address: IPv4Address
    reason: str


@dataclass(frozen=True, slots=True)
class DeregisterOuter:
    """Lifetime-0 registration with the outer HA: ``at_home`` on the outer home network
    (seed figure 8, RFC 5944 section 3.6.1.2), else from wherever we are (inside)."""

    at_home: bool
    reason: str


@dataclass(frozen=True, slots=True)
class BringVpnUp:
    local_address: IPv4Address  # T, the outer home address
    reason: str


@dataclass(frozen=True, slots=True)
class TearVpnDown:
    reason: str


@dataclass(frozen=True, slots=True)
class SwitchLanRoute:
    to: LanRoute
    reason: str


@dataclass(frozen=True, slots=True)
class SmokeOut:
    care_of_address: IPv4Address
    home_agent: IPv4Address
    reason: str


@dataclass(frozen=True, slots=True)
class RecordContext:
    """Remember this verdict for the uplink's network context (gateway/DHCP/BSSID MACs)."""

    uplink: str
    verdict: Verdict
    proven: bool
    reason: str


Intent = (
    RegisterInner
    | RegisterOuter
    | DeregisterOuter
    | BringVpnUp
    | TearVpnDown
    | SwitchLanRoute
    | SmokeOut
    | RecordContext
)


# --- parameters, handover records --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoordinatorParams:
    domain: DomainParams
    outer_home_address: IPv4Address  # T: the VPN's local endpoint
    detect_timeout: float = 1.0  # no proof by then: take the VPN path (the direct try goes on)
    direct_attempt_timeout: float = 1.5
    smoke_out_timeout: float = 0.8
    t_monitor: float = 60.0  # RFC 5265 section 3.2.4
    monitor_grace: float = 10.0  # re-register inside at t_monitor - grace ("T_MONITOR - N")
    retry_initial: float = 1.0
    retry_max: float = 30.0
    # A driver that never reports an outcome must not wedge the plan: after these, the
    # request counts as failed (and is retried with backoff) or the command is repeated.
    request_timeout: float = 10.0  # outer registration, inner registration over the VPN
    vpn_timeout: float = 30.0  # IKE SA up / torn down
    route_timeout: float = 2.0  # SwitchLanRoute acknowledged

    def __post_init__(self) -> None:
        for name in (
            "detect_timeout", "direct_attempt_timeout", "smoke_out_timeout", "t_monitor",
            "retry_initial", "retry_max", "request_timeout", "vpn_timeout", "route_timeout",
        ):  # fmt: skip
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name}: expected a number of seconds > 0, got {value!r}")
        if not 0 <= self.monitor_grace < self.t_monitor:
            raise ValueError(
                f"monitor_grace: expected 0 <= grace < t_monitor {self.t_monitor}, got {self.monitor_grace}"
            )


class Phase(enum.StrEnum):
    DETECT = "detect"
    CONJECTURE = "conjecture"
    SMOKE_OUT = "smoke_out"
    DIRECT_TRY = "direct_try"
    INNER_REGISTERED = "inner_registered"
    OUTER_REGISTERED = "outer_registered"
    OUTER_DEREGISTERED = "outer_deregistered"
    VPN_UP = "vpn_up"
    VPN_DOWN = "vpn_down"
    ROUTES_SWITCHED = "routes_switched"
    SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class HandoverRecord:
    """One planned transition with the first time each phase happened."""

    number: int
    from_state: State
    to_state: State | None  # None while in progress
    uplink: str | None
    care_of_address: IPv4Address | None
    reason: str
    phases: tuple[tuple[Phase, float], ...]

    def at(self, phase: Phase) -> float | None:
        return next((t for p, t in self.phases if p is phase), None)

    @property
    def duration(self) -> float | None:
        end = self.at(Phase.SETTLED)
        return None if end is None else end - self.phases[0][1]

    def as_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "from": str(self.from_state),
            "to": None if self.to_state is None else str(self.to_state),
            "uplink": self.uplink,
            "care_of_address": None if self.care_of_address is None else str(self.care_of_address),
            "reason": self.reason,
            "phases": {str(p): t for p, t in self.phases},
        }


@dataclass(slots=True)
class _Handover:
    number: int
    from_state: State
    uplink: str | None
    care_of_address: IPv4Address | None
    reason: str
    phases: list[tuple[Phase, float]] = field(default_factory=list)
    to_state: State | None = None

    def mark(self, phase: Phase, now: float) -> None:
        if all(p is not phase for p, _ in self.phases):
            self.phases.append((phase, now))

    def freeze(self) -> HandoverRecord:
        return HandoverRecord(
            self.number, self.from_state, self.to_state, self.uplink, self.care_of_address,
            self.reason, tuple(self.phases),
        )  # fmt: skip


@dataclass(slots=True)
class _Backoff:
    initial: float
    maximum: float
    failures: int = 0
    not_before: float = 0.0

    def fail(self, now: float) -> float:
        self.failures += 1
        delay = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 30))
        self.not_before = now + delay
        return delay

    def reset(self) -> None:
        self.failures = 0
        self.not_before = 0.0


class _Vpn(enum.Enum):
    DOWN = "down"
    STARTING = "starting"
    UP = "up"
    STOPPING = "stopping"


class _Outer(enum.Enum):
    UNKNOWN = "unknown"  # at boot: a binding may linger
    NONE = "none"
    REGISTERED = "registered"
    AT_HOME = "at_home"


@dataclass(slots=True)
class _DirectTry:
    attempt: int
    care_of_address: IPv4Address
    sent_at: float
    failed: bool = False


# --- the coordinator ---------------------------------------------------------------------------


class Coordinator:
    """Pure dual-system coordinator; see the module docstring."""

    def __init__(self, params: CoordinatorParams, now: float = 0.0) -> None:
        self.params = params
        self.state = State.START
        self._now = now
        self._intents: deque[Intent] = deque()
        self._decisions: deque[str] = deque(maxlen=500)
        self.ignored: dict[str, int] = {}
        # uplink and detection round
        self.uplink: UplinkChanged | None = None
        self.epoch = 0
        self._round_started = now
        self._conjectures: list[Conjecture] = []
        self.conjecture: Conjecture = unknown("no uplink")
        self._smoke_sent_at: float | None = None
        self._smoke_done = False
        self._smoke_verdict = Verdict.UNKNOWN
        self._direct: _DirectTry | None = None
        self._attempts = 0
        # facts
        self.proof: Proof | None = None
        self._proof_attempt: int | None = None
        self._refreshed_for: float | None = None  # proof.at a monitor re-registration was sent for
        self._vpn = _Vpn.DOWN
        self.virtual_ip: IPv4Address | None = None
        self._vpn_backoff = _Backoff(params.retry_initial, params.retry_max)
        self._outer = _Outer.UNKNOWN
        self._outer_coa: IPv4Address | None = None
        # outstanding: ("register", X), ("deregister", X) at home, ("deregister", None) from inside
        self._outer_pending: tuple[str, IPv4Address | None] | None = None
        self._outer_backoff = _Backoff(params.retry_initial, params.retry_max)
        self._inner_via_vpn: tuple[int, IPv4Address] | None = None  # registered (attempt, V)
        self._inner_pending_vpn: tuple[int, IPv4Address] | None = None
        self._inner_backoff = _Backoff(params.retry_initial, params.retry_max)
        self._inner_target: tuple[int, bool] | None = None  # last RegisterInner: (attempt, via_vpn)
        self.route = LanRoute.HOLD  # acknowledged by the driver
        self.route_target = LanRoute.HOLD  # last commanded
        # when the outstanding outer request / inner request / VPN command / route command began
        self._outer_since = self._inner_since = self._vpn_since = self._route_since = now
        # handovers
        self._handovers: list[HandoverRecord] = []
        self._handover: _Handover | None = None
        self._handover_count = 0

    # -- public API ------------------------------------------------------------------------

    def handle_event(self, event: Event, now: float) -> None:
        self._now = now = max(now, self._now)
        match event:
            case UplinkChanged():
                self._on_uplink(event, now)
            case ConjectureFormed():
                self._on_conjecture(event, now)
            case SmokeOutResult():
                self._on_smoke_out(event, now)
            case InnerRegistered():
                self._on_inner_registered(event, now)
            case InnerDenied() | InnerLost():
                self._on_inner_failed(event, now)
            case OuterRegistered():
                self._on_outer_registered(event, now)
            case OuterDeregistered():
                self._on_outer_deregistered(now)
            case OuterDenied():
                self._on_outer_denied(event, now)
            case VpnUp():
                self._on_vpn_up(event, now)
            case VpnDown() | VpnFailed():
                self._on_vpn_down(event, now)
            case RoutesSwitched():
                self._on_routes_switched(event, now)
            case _:
                raise TypeError(f"not a coordinator event: {event!r}")
        self._advance(now)

    def handle_timer(self, now: float) -> None:
        self._now = now = max(now, self._now)
        self._advance(now)

    def get_timer(self) -> float | None:
        """The earliest time ``handle_timer`` has something to do, or None."""
        times: list[float] = []
        if self.state is State.DETECTING and self.uplink and self.uplink.care_of_address:
            times.append(self._round_started + self.params.detect_timeout)
        if self._smoke_sent_at is not None and not self._smoke_done:
            times.append(self._smoke_sent_at + self.params.smoke_out_timeout)
        if self._direct is not None and not self._direct.failed and self.proof is None:
            times.append(self._direct.sent_at + self.params.direct_attempt_timeout)
        if self.proof is not None:
            times.append(self.proof.at + self.params.t_monitor)
            if self.state is State.INSIDE and self._refreshed_for != self.proof.at:
                times.append(self.proof.at + self.params.t_monitor - self.params.monitor_grace)
        times += self._deadlines()
        for backoff in (self._vpn_backoff, self._outer_backoff, self._inner_backoff):
            if backoff.failures and backoff.not_before > self._now:
                times.append(backoff.not_before)
        future = [t for t in times if t > self._now]
        return min(future) if future else None

    def next_intent(self) -> Intent | None:
        return self._intents.popleft() if self._intents else None

    def intents(self) -> Iterator[Intent]:
        while self._intents:
            yield self._intents.popleft()

    def decisions(self) -> tuple[str, ...]:
        """Recent one-line decisions, oldest first (for the log and the status page)."""
        return tuple(self._decisions)

    def handover_log(self) -> tuple[HandoverRecord, ...]:
        """Finished handovers, then the one in progress (``to_state`` None), if any."""
        current = () if self._handover is None else (self._handover.freeze(),)
        return (*self._handovers, *current)

    @property
    def vpn_state(self) -> str:
        return self._vpn.value

    @property
    def outer_state(self) -> str:
        return self._outer.value

    def snapshot(self) -> dict[str, object]:
        """What the status page shows: plain values only."""
        return {
            "state": str(self.state),
            "uplink": self.uplink.name if self.uplink else None,
            "care_of_address": str(self._x()) if self._x() else None,
            "virtual_ip": str(self.virtual_ip) if self.virtual_ip else None,
            "vpn": self._vpn.value,
            "outer": self._outer.value,
            "lan_route": str(self.route),
            "lan_route_target": str(self.route_target),
            "proven_inside": self.proof_is_current(),
            "conjecture": {
                "verdict": str(self.conjecture.verdict),
                "confidence": self.conjecture.confidence,
                "reason": self.conjecture.reason,
            },
        }

    def proof_is_current(self) -> bool:
        x = self.uplink.care_of_address if self.uplink else None
        return self.proof is not None and self.proof.holds_for(self.epoch, x)

    # -- helpers ---------------------------------------------------------------------------

    def _emit(self, intent: Intent) -> None:
        self._intents.append(intent)
        self._decisions.append(
            f"{self._now:.3f} {self.state}: {type(intent).__name__}: {intent.reason}"
        )

    def _ignore(self, event: object, why: str) -> None:
        name = type(event).__name__
        self.ignored[name] = self.ignored.get(name, 0) + 1
        self._decisions.append(f"{self._now:.3f} {self.state}: ignored {name}: {why}")

    def _fire(self, trigger: Trigger, now: float, reason: str) -> None:
        allowed = TRANSITIONS[self.state]
        if trigger not in allowed:
            raise IllegalTransition(f"{trigger} is not allowed in state {self.state}")
        old, new = self.state, allowed[trigger]
        self.state = new
        if old != new:
            self._decisions.append(f"{now:.3f} {old} -> {new}: {trigger}: {reason}")
        if old in _SETTLED and new not in _SETTLED and self._handover is None:
            self._handover_count += 1
            x = self.uplink.care_of_address if self.uplink else None
            name = self.uplink.name if self.uplink else None
            self._handover = _Handover(self._handover_count, old, name, x, reason)
            self._handover.mark(Phase.DETECT, now)
        if new in _SETTLED and old != new and self._handover is not None:
            self._handover.to_state = new
            self._handover.mark(Phase.SETTLED, now)
            self._handovers.append(self._handover.freeze())
            self._handover = None

    def _mark(self, phase: Phase, now: float) -> None:
        if self._handover is not None:
            self._handover.mark(phase, now)

    def _route(self, to: LanRoute, reason: str) -> None:
        if self.route_target is not to:
            if to is LanRoute.DIRECT and not self.proof_is_current():
                raise IllegalTransition("LAN route direct without a current proof")
            self.route_target = to
            self._route_since = self._now
            self._emit(SwitchLanRoute(to, reason))

    def _hold_if_direct(self, reason: str) -> None:
        if self.route_target is LanRoute.DIRECT:
            self._route(LanRoute.HOLD, reason)

    def _x(self) -> IPv4Address | None:
        return self.uplink.care_of_address if self.uplink else None

    def _new_round(self, now: float) -> None:
        """A new detection round: new epoch, any proof void, fresh smoke-out/direct state."""
        self.epoch += 1
        self._round_started = now
        self.proof = None
        self._proof_attempt = None
        self._smoke_sent_at = None
        self._smoke_done = False
        self._smoke_verdict = Verdict.UNKNOWN
        self._direct = None

    def _recombine(self) -> None:
        self.conjecture = combine(self._conjectures)

    def _desired_outer(self) -> _Outer:
        x = self._x()
        home = self.params.domain.outer_home_network
        return (
            _Outer.AT_HOME
            if x is not None and home is not None and x in home
            else _Outer.REGISTERED
        )

    def _vpn_ready(self) -> bool:
        return self._vpn is _Vpn.UP and self.virtual_ip is not None

    # -- event handlers --------------------------------------------------------------------

    def _on_uplink(self, event: UplinkChanged, now: float) -> None:
        previous = self.uplink
        self.uplink = event
        self._new_round(now)
        self._hold_if_direct(f"uplink now {event.name} {event.care_of_address}: proof void")
        self._conjectures = [
            conjecture_from_address(event.care_of_address, event.gateway, self.params.domain),
            *event.hints,
        ]
        self._recombine()
        why = f"uplink {previous.name if previous else None} -> {event.name} ({event.care_of_address})"
        if self.state is State.START:
            if event.care_of_address is not None:
                self._fire(Trigger.UPLINK_UP, now, why)
        elif self.state is State.GOING_INSIDE and self._vpn in (_Vpn.UP, _Vpn.STARTING):
            self._fire(Trigger.RESUME_VPN_PATH, now, why)
        elif self.state is State.GOING_OUTSIDE and self._vpn in (_Vpn.DOWN, _Vpn.STOPPING):
            # Nothing built yet on the VPN path: the new uplink may be inside, detect again.
            self._fire(Trigger.RESTART_DETECTION, now, f"{why}, no VPN yet")
        else:
            self._fire(Trigger.UPLINK_CHANGED, now, why)
        self._mark(Phase.DETECT, now)
        self._mark(Phase.CONJECTURE, now)

    def _on_conjecture(self, event: ConjectureFormed, now: float) -> None:
        if self.uplink is None or (event.uplink, event.care_of_address) != (
            self.uplink.name,
            self.uplink.care_of_address,
        ):
            self._ignore(
                event, f"for {event.uplink} {event.care_of_address}, not the current uplink"
            )
            return
        self._conjectures.append(event.conjecture)
        self._recombine()
        self._mark(Phase.CONJECTURE, now)

    def _on_smoke_out(self, event: SmokeOutResult, now: float) -> None:
        if self._smoke_sent_at is None or self._smoke_done or event.care_of_address != self._x():
            self._ignore(event, "no smoke-out outstanding from this address")
            return
        self._smoke_done = True
        smoke = conjecture_from_smoke_out(
            event.outcome,
            event.code,
            event.responder,
            self.params.domain,
            authenticated=event.authenticated,
        )
        self._smoke_verdict = smoke.verdict
        self._conjectures.append(smoke)
        self._recombine()
        self._mark(Phase.SMOKE_OUT, now)

    def _on_inner_registered(self, event: InnerRegistered, now: float) -> None:
        x = self._x()
        if event.direct:
            d = self._direct
            if (
                self.uplink is None
                or d is None
                or event.attempt != d.attempt
                or self._inner_target != (d.attempt, False)  # superseded by a later RegisterInner
                or event.care_of_address != d.care_of_address
                or event.care_of_address != x
            ):
                self._ignore(event, "not our direct attempt on this uplink: no proof")
                return
            first = self.proof is None
            self.proof = issue_proof(self.uplink.name, self.epoch, event.care_of_address, now)
            self._proof_attempt = d.attempt
            self._inner_via_vpn = None
            self._inner_pending_vpn = None
            d.failed = False
            self._mark(Phase.INNER_REGISTERED, now)
            if first:
                self._emit(
                    RecordContext(
                        self.uplink.name,
                        Verdict.INSIDE,
                        True,
                        "authenticated direct inner registration",
                    )
                )
            self._fire(Trigger.PROVEN_INSIDE, now, f"inner HA accepted CoA {x} directly")
            return
        pending = self._inner_pending_vpn
        registered = self._inner_via_vpn
        key = (event.attempt, event.care_of_address)
        if key == pending and self._vpn_ready() and event.care_of_address == self.virtual_ip:
            self._inner_via_vpn = pending
            self._inner_pending_vpn = None
            self._inner_backoff.reset()
            self._mark(Phase.INNER_REGISTERED, now)
        elif key == registered:
            pass  # a renewal over the VPN
        else:
            self._ignore(event, "not the current registration over the VPN")

    def _on_inner_failed(self, event: InnerDenied | InnerLost, now: float) -> None:
        what = f"code {event.code}" if isinstance(event, InnerDenied) else f"lost ({event.reason})"
        d = self._direct
        if self._proof_attempt is not None and event.attempt == self._proof_attempt:
            self.proof = None
            self._proof_attempt = None
            self._hold_if_direct(f"inner registration {what}: no longer proven inside")
            if self.state in (State.INSIDE, State.GOING_INSIDE):
                self._new_round(now)
                self._fire(Trigger.INSIDE_LOST, now, f"inner registration {what}")
            return
        if d is not None and event.attempt == d.attempt:
            if d.failed:
                self._ignore(event, "direct attempt already failed")
                return
            d.failed = True
            self._decisions.append(
                f"{now:.3f} {self.state}: direct inner attempt {d.attempt} {what}"
            )
            return
        if self._inner_pending_vpn is not None and event.attempt == self._inner_pending_vpn[0]:
            self._inner_pending_vpn = None
            delay = self._inner_backoff.fail(now)
            self._decisions.append(
                f"{now:.3f} {self.state}: inner over VPN {what}, retry in {delay:.1f}s"
            )
            return
        if self._inner_via_vpn is not None and event.attempt == self._inner_via_vpn[0]:
            self._inner_via_vpn = None
            self._inner_backoff.fail(now)
            if self.state in (State.OUTSIDE, State.OUTER_HOME, State.ROAMING):
                self._fire(Trigger.INNER_LOST, now, f"inner binding over the VPN {what}")
            return
        self._ignore(event, f"attempt {event.attempt} is not current")

    def _on_outer_registered(self, event: OuterRegistered, now: float) -> None:
        if self._outer_pending == ("register", event.care_of_address):
            # The binding is a fact even if the uplink moved meanwhile; the plan re-registers.
            self._outer, self._outer_coa, self._outer_pending = (
                _Outer.REGISTERED,
                event.care_of_address,
                None,
            )
            self._outer_backoff.reset()
            self._mark(Phase.OUTER_REGISTERED, now)
        elif self._outer is _Outer.REGISTERED and self._outer_coa == event.care_of_address:
            pass  # renewal
        else:
            self._ignore(event, f"not registering the outer system with {event.care_of_address}")

    def _on_outer_deregistered(self, now: float) -> None:
        if self._outer_pending is None or self._outer_pending[0] != "deregister":
            self._ignore(OuterDeregistered(), "no outer deregistration outstanding")
            return
        at_home = self._outer_pending[1] is not None
        self._outer = _Outer.AT_HOME if at_home else _Outer.NONE
        self._outer_coa, self._outer_pending = None, None
        self._outer_backoff.reset()
        self._mark(Phase.OUTER_DEREGISTERED, now)

    def _on_outer_denied(self, event: OuterDenied, now: float) -> None:
        if self._outer_pending is not None:
            kind = self._outer_pending[0]
            self._outer_pending = None
            if kind == "deregister" and self.state in (State.INSIDE, State.GOING_INSIDE):
                # From inside the outer HA may be unreachable: let the binding expire.
                self._outer = _Outer.NONE
                return
            delay = self._outer_backoff.fail(now)
            self._decisions.append(
                f"{now:.3f} {self.state}: outer {kind} denied ({event.code}), retry in {delay:.1f}s"
            )
        elif self._outer is _Outer.REGISTERED:
            self._outer, self._outer_coa = _Outer.NONE, None
            self._outer_backoff.fail(now)
            if self.state is State.OUTSIDE:
                self._fire(Trigger.OUTER_LOST, now, f"outer binding lost ({event.code})")
        else:
            self._ignore(event, "no outer registration outstanding")

    def _on_vpn_up(self, event: VpnUp, now: float) -> None:
        if self._vpn is _Vpn.STARTING or (
            self._vpn is _Vpn.UP and self.virtual_ip != event.virtual_ip
        ):
            self._vpn, self.virtual_ip = _Vpn.UP, event.virtual_ip
            self._vpn_backoff.reset()
            self._mark(Phase.VPN_UP, now)
        else:
            self._ignore(event, f"VPN is {self._vpn.value}")

    def _on_vpn_down(self, event: VpnDown | VpnFailed, now: float) -> None:
        if self._vpn is _Vpn.DOWN:
            self._ignore(event, "VPN already down")
            return
        was = self._vpn
        self._vpn, self.virtual_ip = _Vpn.DOWN, None
        self._inner_via_vpn = None
        self._inner_pending_vpn = None
        if was is _Vpn.STOPPING:
            self._mark(Phase.VPN_DOWN, now)
            return
        delay = self._vpn_backoff.fail(now)
        why = f"VPN {'failed' if isinstance(event, VpnFailed) else 'down'} ({event.reason}), retry in {delay:.1f}s"
        if self.route_target is LanRoute.VPN:
            self._route(LanRoute.HOLD, why)
        else:
            self._decisions.append(f"{now:.3f} {self.state}: {why}")
        self._fire(Trigger.VPN_LOST, now, why)

    def _on_routes_switched(self, event: RoutesSwitched, now: float) -> None:
        if event.to is not self.route_target:
            self._ignore(event, f"route {event.to} is not the target {self.route_target}")
            return
        self.route = event.to
        if event.to is not LanRoute.HOLD:
            self._mark(Phase.ROUTES_SWITCHED, now)

    # -- the plan ----------------------------------------------------------------------------

    def _direct_pending(self, now: float) -> bool:
        d = self._direct
        return (
            d is not None and not d.failed and now < d.sent_at + self.params.direct_attempt_timeout
        )

    def _deadlines(self) -> list[float]:
        p = self.params
        times = []
        if self._outer_pending is not None:
            times.append(self._outer_since + p.request_timeout)
        if self._inner_pending_vpn is not None:
            times.append(self._inner_since + p.request_timeout)
        if self._vpn in (_Vpn.STARTING, _Vpn.STOPPING):
            times.append(self._vpn_since + p.vpn_timeout)
        if self.route is not self.route_target:
            times.append(self._route_since + p.route_timeout)
        return times

    def _expire_requests(self, now: float) -> None:
        p = self.params
        if self._outer_pending is not None and now >= self._outer_since + p.request_timeout:
            self._on_outer_denied(OuterDenied(None), now)
        if self._inner_pending_vpn is not None and now >= self._inner_since + p.request_timeout:
            self._on_inner_failed(InnerLost(self._inner_pending_vpn[0], "no answer"), now)
        if self._vpn is _Vpn.STARTING and now >= self._vpn_since + p.vpn_timeout:
            self._on_vpn_down(VpnFailed(f"not up within {p.vpn_timeout:.0f}s"), now)
        elif self._vpn is _Vpn.STOPPING and now >= self._vpn_since + p.vpn_timeout:
            self._vpn_since = now
            self._emit(TearVpnDown("VPN teardown not confirmed: again"))
        if self.route is not self.route_target and now >= self._route_since + p.route_timeout:
            if self.route_target is LanRoute.DIRECT and not self.proof_is_current():
                raise IllegalTransition("LAN route direct without a current proof")
            self._route_since = now
            self._emit(SwitchLanRoute(self.route_target, "route switch not acknowledged: again"))

    def _expire(self, now: float) -> None:
        # The proof first: nothing below may act on a proof that ran out this instant.
        if self.state in (State.INSIDE, State.GOING_INSIDE):
            self._plan_inside(now)
        self._expire_requests(now)
        d = self._direct
        if (
            d is not None
            and not d.failed
            and self.proof is None
            and now >= d.sent_at + self.params.direct_attempt_timeout
        ):
            d.failed = True
            self._decisions.append(
                f"{now:.3f} {self.state}: direct inner attempt {d.attempt} timed out"
            )
        if (
            self._smoke_sent_at is not None
            and not self._smoke_done
            and now >= self._smoke_sent_at + self.params.smoke_out_timeout
        ):
            self._smoke_done = True
            self._conjectures.append(
                conjecture_from_smoke_out(SmokeOutOutcome.TIMEOUT, None, None, self.params.domain)
            )
            self._recombine()
            self._mark(Phase.SMOKE_OUT, now)

    def _try_inside(self, now: float) -> None:
        """Direct attempt or smoke-out as the conjecture orders them (once per round)."""
        x = self._x()
        if x is None or self.proof is not None:
            return
        order = try_order(self.conjecture)
        # try_order: the direct registration comes first, or right after a smoke-out that
        # found the inner home agent (even if other hints still disagree).
        smoked_out = order[0] is Attempt.SMOKE_OUT and self._smoke_verdict is Verdict.INSIDE
        if (order[0] is Attempt.DIRECT_INNER or smoked_out) and self._direct is None:
            self._attempts += 1
            self._direct = _DirectTry(self._attempts, x, now)
            self._inner_target = (self._attempts, False)
            self._inner_pending_vpn = None  # superseded: re-issued once the direct try resolves
            self._mark(Phase.DIRECT_TRY, now)
            self._emit(RegisterInner(x, False, self._attempts, f"conjecture {self.conjecture.verdict} "
                                     f"{self.conjecture.confidence:.2f}: {self.conjecture.reason}"))  # fmt: skip
        elif order[0] is Attempt.SMOKE_OUT and self._smoke_sent_at is None and self._direct is None:
            self._smoke_sent_at = now
            self._emit(
                SmokeOut(
                    x,
                    self.params.domain.inner_home_agent,
                    f"domain unclear: {self.conjecture.reason}",
                )
            )

    def _advance(self, now: float) -> None:
        self._expire(now)
        for _ in range(8):  # each pass may fire one trigger; the plan converges in a few
            before = self.state
            if self.state is State.DETECTING:
                self._plan_detecting(now)
            elif self.state is State.GOING_INSIDE:
                self._plan_going_inside(now)
            elif self.state is State.INSIDE:
                self._plan_inside(now)
            elif self.state in _VPN_PATH:
                self._plan_vpn_path(now)
            if self.state is before:
                break

    def _plan_detecting(self, now: float) -> None:
        if self._x() is None:
            return
        if self._vpn in (_Vpn.UP, _Vpn.STARTING):
            # Still on the VPN (proof lost before it was torn down): keep using it meanwhile.
            self._fire(Trigger.GO_OUTSIDE, now, "the VPN is still up")
            return
        self._try_inside(now)
        order = try_order(self.conjecture)
        d = self._direct
        reason = ""
        if d is not None and d.failed:
            reason = "direct inner registration failed"
        elif self._direct_pending(now):
            return
        elif order[0] is Attempt.VPN_PATH:
            reason = f"conjecture {self.conjecture.verdict} {self.conjecture.confidence:.2f}: {self.conjecture.reason}"
        elif order[0] is Attempt.SMOKE_OUT and self._smoke_done:
            reason = f"smoke-out inconclusive: {self.conjecture.reason}"
        elif now >= self._round_started + self.params.detect_timeout:
            reason = f"no proof of inside within {self.params.detect_timeout:.1f}s"
        if reason:
            self._fire(Trigger.GO_OUTSIDE, now, reason)

    def _plan_inside(self, now: float) -> None:
        p = self.proof
        if p is None or now >= p.at + self.params.t_monitor:
            self._hold_if_direct("no direct re-registration within t_monitor")
            self._new_round(now)
            self._fire(Trigger.INSIDE_LOST, now, "t_monitor expired")
            return
        # RFC 5265 section 3.2.4: re-register every T_MONITOR - N seconds while inside,
        # whatever the binding lifetime; the reply refreshes the proof.
        due = p.at + self.params.t_monitor - self.params.monitor_grace
        if (
            self.state is State.INSIDE
            and now >= due
            and self._refreshed_for != p.at
            and self._proof_attempt is not None
        ):
            self._refreshed_for = p.at
            self._emit(
                RegisterInner(
                    p.care_of_address,
                    False,
                    self._proof_attempt,
                    f"re-registration within t_monitor {self.params.t_monitor:.0f}s",
                )
            )

    def _plan_going_inside(self, now: float) -> None:
        if not self.proof_is_current():
            raise IllegalTransition("going inside without a current proof")
        self._route(LanRoute.DIRECT, "authenticated direct inner registration on this uplink")
        if self.route is not LanRoute.DIRECT:
            return
        if self._vpn in (_Vpn.UP, _Vpn.STARTING):
            self._vpn, self._vpn_since = _Vpn.STOPPING, now
            self._emit(TearVpnDown("proven inside and LAN routed direct"))
        registering = self._outer_pending is not None and self._outer_pending[0] == "register"
        if (self._outer in (_Outer.REGISTERED, _Outer.UNKNOWN) or registering) and (
            self._outer_pending != ("deregister", None)
        ):
            self._outer_pending, self._outer_since = ("deregister", None), now
            self._emit(DeregisterOuter(False, "inside: the outer system is not in use"))
        if self._vpn is _Vpn.DOWN:
            self._fire(Trigger.VPN_TORN_DOWN, now, "LAN direct, VPN down")

    def _plan_vpn_path(self, now: float) -> None:
        x = self._x()
        self._try_inside(now)
        if x is None:
            return
        # 1. outer system: registered with CoA X, or deregistered at the outer home network
        desired = self._desired_outer()
        # Any outstanding request (an older care-of, a deregistration from inside) leaves the
        # outer binding uncertain until it is answered or superseded.
        outer_ok = (
            self._outer is desired
            and (desired is _Outer.AT_HOME or self._outer_coa == x)
            and self._outer_pending is None
        )
        wanted = ("deregister", x) if desired is _Outer.AT_HOME else ("register", x)
        postpone = self._direct_pending(now)  # RFC 5265 section 3.5: believed inside, x-HA may wait
        if (
            not (outer_ok or postpone)
            and self._outer_pending != wanted
            and now >= self._outer_backoff.not_before
        ):
            # A newer request supersedes any outstanding one (older care-of, from inside).
            self._outer_pending, self._outer_since = wanted, now
            if desired is _Outer.AT_HOME:
                self._emit(DeregisterOuter(True, f"{x} is on the outer home network"))
            else:
                self._emit(RegisterOuter(x, f"outside: outer care-of address {x}"))
        # 2. the VPN from T: only once the outer system carries T (or we are at home)
        if self._vpn is _Vpn.DOWN and outer_ok and now >= self._vpn_backoff.not_before:
            self._vpn, self._vpn_since = _Vpn.STARTING, now
            self._emit(BringVpnUp(self.params.outer_home_address, "outer system ready: VPN from T"))
        # 3. the inner system over the VPN, CoA = V (once the VPN can carry it, after any direct try)
        v = self.virtual_ip
        if self._vpn_ready() and v is not None and outer_ok and not self._direct_pending(now):
            registered = self._inner_via_vpn is not None and self._inner_via_vpn[1] == v
            # The inner machine follows the last RegisterInner: re-point it at V after a direct try.
            retarget = self._inner_target is None or not self._inner_target[1]
            if (
                self._inner_pending_vpn is None
                and now >= self._inner_backoff.not_before
                and (not registered or retarget)
            ):
                self._attempts += 1
                self._inner_pending_vpn, self._inner_since = (self._attempts, v), now
                self._inner_target = (self._attempts, True)
                why = "restore the binding over the VPN" if registered else "VPN up"
                self._emit(
                    RegisterInner(v, True, self._attempts, f"{why}: inner care-of address {v}")
                )
            # 4. the LAN onto the VPN
            if registered:
                self._route(LanRoute.VPN, "inner registered over the VPN")
        # 5. settled?
        if (
            self.state is not State.OUTSIDE
            and self.state is not State.OUTER_HOME
            and outer_ok
            and self._vpn_ready()
            and self._inner_via_vpn is not None
            and self._inner_via_vpn[1] == v
            and self.route is LanRoute.VPN
            and self.route_target is LanRoute.VPN
            and not self._direct_pending(now)  # about to learn we are inside: not settled yet
        ):
            at_home = desired is _Outer.AT_HOME
            verdict = Verdict.OUTER_HOME if at_home else Verdict.OUTSIDE
            if self.uplink is not None:
                self._emit(RecordContext(self.uplink.name, verdict, at_home, "VPN path settled"))
            trigger = Trigger.SETTLED_OUTER_HOME if at_home else Trigger.SETTLED_OUTSIDE
            self._fire(
                trigger, now, f"VPN {v} up, inner over VPN, outer {'at home' if at_home else x}"
            )


def main() -> None:
    print(format_table())


if __name__ == "__main__":
    main()
