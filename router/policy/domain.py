"""Domain detection: is this uplink inside the secure domain, outside, or on the outer home network?

Theory of operation (seed, "Domain detection"; RFC 5265 section 3):

The only evidence that may change the router's security state is a *proof*: an
authenticated registration reply from the inner home agent received over the
direct path of the current uplink (RFC 5265 section 3.2.3). Everything else is
a *conjecture*: fast, side-effect free, and forgeable by a rogue network. A
conjecture only decides what to try first (a direct inner registration, a
smoke-out, or the VPN path); the brute-force path corrects a wrong one.

The four fast conjectures of the seed, each a pure function of observations:

(a) :func:`conjecture_from_address`: the uplink's address and gateway against the
    configured inside prefixes and the outer home network;
(b) :func:`conjecture_from_advertisements`: agent advertisements heard on the link
    (RFC 5944 section 2.1), from the inner or the outer home agent, or a foreign agent;
(c) :func:`conjecture_from_smoke_out`: a registration to the inner home agent with a
    deliberately wrong authenticator; code 131 (RFC 5944 section 3.4, "mobile node
    failed authentication") means the inner home agent is directly reachable and no
    binding was created; silence means probably outside;
(d) :func:`conjecture_from_history`: network context history (gateway MAC, DHCP
    server MAC, BSSID -> last verdict and when), with decay. The sqlite store is a
    driver (``router.store.history``); :func:`merge_context` is its pure rule.

:func:`combine` merges conjectures (noisy-or per verdict, minus the best rival), and
:func:`try_order` turns the result into the order of attempts.

Confidence is in [0, 1]; the constants below are judgement, chosen so that no
single forgeable hint reaches :data:`DIRECT_FIRST_CONFIDENCE` on its own except
the smoke-out (which is still only a reason to *try* the direct registration).

:class:`Proof` is a different type from :class:`Conjecture` on purpose: nothing here
turns a conjecture into a proof, and the coordinator switches the VPN off only
while it holds a proof issued for the current uplink.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from router.mip.advert import AdvertisementFlags, AgentAdvertisement

__all__ = [
    "CONTEXT_KINDS",
    "DIRECT_FIRST_CONFIDENCE",
    "AdvertisementHeard",
    "Attempt",
    "Conjecture",
    "ContextRecord",
    "DomainParams",
    "Proof",
    "SmokeOutOutcome",
    "Source",
    "Verdict",
    "combine",
    "conjecture_from_address",
    "conjecture_from_advertisements",
    "conjecture_from_history",
    "conjecture_from_smoke_out",
    "history_confidence",
    "issue_proof",
    "merge_context",
    "normalise_mac",
    "try_order",
    "unknown",
]

#: A combined INSIDE conjecture at least this confident makes the direct inner
#: registration the first thing tried; below it, a smoke-out goes first.
DIRECT_FIRST_CONFIDENCE = 0.5
#: A combined OUTSIDE/OUTER_HOME conjecture at least this confident starts the VPN path at once.
VPN_FIRST_CONFIDENCE = 0.5

#: Registration reply code 131: "mobile node failed authentication" (RFC 5944 section 3.4).
CODE_MN_FAILED_AUTHENTICATION = 131

CONTEXT_KINDS = ("gateway", "dhcp_server", "bssid")


class Verdict(enum.StrEnum):
    """Where a conjecture (or proof) places the current uplink; values match the history store."""

    INSIDE = "inside"
    OUTSIDE = "outside"
    OUTER_HOME = "outer_home"
    UNKNOWN = "unknown"


class Source(enum.StrEnum):
    """Which observation a conjecture comes from."""

    ADDRESS = "address"
    ADVERTISEMENT = "advertisement"
    SMOKE_OUT = "smoke_out"
    HISTORY = "history"
    COMBINED = "combined"


@dataclass(frozen=True, slots=True)
class Conjecture:
    """A hint about the domain: never proof, never enough to switch the VPN off."""

    verdict: Verdict
    confidence: float
    reason: str
    source: Source = Source.COMBINED

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0 or math.isnan(self.confidence):
            raise ValueError(f"confidence {self.confidence!r} is outside [0, 1]")


def unknown(reason: str, source: Source = Source.COMBINED) -> Conjecture:
    return Conjecture(Verdict.UNKNOWN, 0.0, reason, source)


@dataclass(frozen=True, slots=True)
class DomainParams:
    """What domain detection needs from the config (``[inner]`` and ``[outer]``)."""

    inner_home_agent: IPv4Address
    outer_home_agent: IPv4Address | None = None
    inside_prefixes: tuple[IPv4Network, ...] = ()
    outer_home_network: IPv4Network | None = None
    #: history confidence halves every this many seconds without a new sighting
    history_half_life: float = 7 * 24 * 3600.0


# --- (a) addresses ---------------------------------------------------------------------------


def _inside(address: IPv4Address, params: DomainParams) -> bool:
    return any(address in prefix for prefix in params.inside_prefixes)


def _outer_home(address: IPv4Address, params: DomainParams) -> bool:
    return params.outer_home_network is not None and address in params.outer_home_network


def conjecture_from_address(
    address: IPv4Address | None, gateway: IPv4Address | None, params: DomainParams
) -> Conjecture:
    """(a) The uplink's address (and gateway) against the inside prefixes and outer home network.

    Any DHCP server can hand out an inside-looking address, so this stays a weak hint.
    """
    src = Source.ADDRESS
    if address is None:
        return unknown("no address on the uplink", src)
    if _outer_home(address, params):
        if gateway is not None and _outer_home(gateway, params):
            return Conjecture(
                Verdict.OUTER_HOME,
                0.6,
                f"{address} and gateway {gateway} in outer home network",
                src,
            )
        return Conjecture(Verdict.OUTER_HOME, 0.5, f"{address} in outer home network", src)
    if _inside(address, params):
        if gateway is None or _inside(gateway, params):
            return Conjecture(Verdict.INSIDE, 0.4, f"{address} in an inside prefix", src)
        return Conjecture(
            Verdict.INSIDE, 0.2, f"{address} in an inside prefix but gateway {gateway} is not", src
        )
    return Conjecture(Verdict.OUTSIDE, 0.6, f"{address} outside every inside prefix", src)


# --- (b) agent advertisements ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdvertisementHeard:
    """One agent advertisement (ICMP router advertisement + extension 16) seen on the uplink."""

    source: IPv4Address
    home_agent: bool  # the 'H' bit
    foreign_agent: bool  # the 'F' bit
    at: float

    @classmethod
    def from_advert(
        cls, source: IPv4Address, advert: AgentAdvertisement, at: float
    ) -> AdvertisementHeard | None:
        """From a decoded advertisement (``router.mip.advert``); None for a plain router advert."""
        mobility = advert.mobility
        if mobility is None:
            return None
        flags = mobility.flags
        return cls(
            source, bool(flags & AdvertisementFlags.H), bool(flags & AdvertisementFlags.F), at
        )


def conjecture_from_advertisements(
    adverts: Iterable[AdvertisementHeard], params: DomainParams
) -> Conjecture:
    """(b) Advertisements are unauthenticated ICMP: anyone on the link can forge them."""
    src = Source.ADVERTISEMENT
    parts: list[Conjecture] = []
    for advert in adverts:
        if advert.source == params.inner_home_agent and advert.home_agent:
            parts.append(
                Conjecture(Verdict.INSIDE, 0.45, f"inner home agent {advert.source} advertises", src)
            )
        elif params.outer_home_agent is not None and advert.source == params.outer_home_agent:
            parts.append(
                Conjecture(
                    Verdict.OUTER_HOME, 0.6, f"outer home agent {advert.source} advertises", src
                )
            )
        elif advert.foreign_agent and _inside(advert.source, params):
            parts.append(
                Conjecture(Verdict.INSIDE, 0.3, f"foreign agent {advert.source} is inside", src)
            )
        elif advert.foreign_agent:
            parts.append(
                Conjecture(Verdict.OUTSIDE, 0.3, f"foreign agent {advert.source} is outside", src)
            )
    if not parts:
        return unknown("no agent advertisement heard", src)
    return combine(parts, source=src)


# --- (c) smoke-out -----------------------------------------------------------------------------


class SmokeOutOutcome(enum.StrEnum):
    REPLIED = "replied"  # a registration reply came back (see its code)
    TIMEOUT = "timeout"  # nothing within the driver's wait
    UNREACHABLE = "unreachable"  # ICMP unreachable / no route


def conjecture_from_smoke_out(
    outcome: SmokeOutOutcome,
    code: int | None,
    responder: IPv4Address | None,
    params: DomainParams,
    *,
    authenticated: bool = False,
) -> Conjecture:
    """(c) A deliberately unauthenticated registration to the inner home agent.

    Code 131 from the inner home agent means it is directly reachable (RFC 5944
    section 3.8.2.1: failed authentication creates no binding). Our home agent signs
    its 131 with the real SA (``router.mip.mobilenode.SmokeOutProbe.classify`` says
    ``authenticated``), which makes the hint strong; it still only earns a direct
    registration attempt, never the switch itself (RFC 5265 section 3.2.3).
    """
    src = Source.SMOKE_OUT
    if outcome is SmokeOutOutcome.TIMEOUT:
        return Conjecture(
            Verdict.OUTSIDE, 0.5, "smoke-out: no reply from the inner home agent", src
        )
    if outcome is SmokeOutOutcome.UNREACHABLE:
        return Conjecture(Verdict.OUTSIDE, 0.6, "smoke-out: inner home agent unreachable", src)
    if responder != params.inner_home_agent:
        return unknown(f"smoke-out: reply from {responder}, not the inner home agent", src)
    if code == CODE_MN_FAILED_AUTHENTICATION and authenticated:
        return Conjecture(
            Verdict.INSIDE, 0.85, "smoke-out: inner home agent answered code 131 (signed)", src
        )
    if code == CODE_MN_FAILED_AUTHENTICATION:
        return Conjecture(Verdict.INSIDE, 0.6, "smoke-out: inner home agent answered code 131", src)
    return Conjecture(Verdict.INSIDE, 0.3, f"smoke-out: inner home agent answered code {code}", src)


# --- (d) network context history -------------------------------------------------------------


def normalise_mac(mac: str) -> str:
    """``AA-BB-CC-00-11-22`` -> ``aa:bb:cc:00:11:22``; ValueError for anything else."""
    parts = mac.replace("-", ":").lower().split(":")
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts
    ):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(parts)


@dataclass(frozen=True, slots=True)
class ContextRecord:
    """One network context (same fields as ``router.store.history.ContextRecord``)."""

    kind: str  # one of CONTEXT_KINDS
    mac: str
    verdict: Verdict
    proven: bool  # an authenticated registration established the verdict
    first_seen: float
    last_seen: float
    times_seen: int


def merge_context(
    old: ContextRecord | None, kind: str, mac: str, verdict: Verdict, now: float, *, proven: bool
) -> ContextRecord:
    """The store's update rule: a proven verdict always wins; an unproven one never replaces a
    proven one (a rogue network imitating a known gateway cannot rewrite history)."""
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"unknown context kind {kind!r}")
    if verdict is Verdict.UNKNOWN:
        raise ValueError("history records verdicts, not 'unknown'")
    mac = normalise_mac(mac)
    if old is None:
        return ContextRecord(kind, mac, verdict, proven, now, now, 1)
    if proven or not old.proven:
        return ContextRecord(kind, mac, verdict, proven, old.first_seen, now, old.times_seen + 1)
    return ContextRecord(
        kind, mac, old.verdict, old.proven, old.first_seen, now, old.times_seen + 1
    )


def history_confidence(record: ContextRecord, now: float, half_life: float) -> float:
    """0.7 (proven) or 0.35 (unproven), halved every ``half_life`` seconds since last seen."""
    base = 0.7 if record.proven else 0.35
    age = max(0.0, now - record.last_seen)
    return base * 0.5 ** (age / half_life) if half_life > 0 else 0.0


def conjecture_from_history(
    records: Iterable[ContextRecord], now: float, params: DomainParams
) -> Conjecture:
    """(d) What the gateway / DHCP server / BSSID seen now were last known as, decayed by age."""
    src = Source.HISTORY
    parts = [
        Conjecture(
            record.verdict,
            history_confidence(record, now, params.history_half_life),
            f"{record.kind} {record.mac} last {record.verdict}"
            f"{' (proven)' if record.proven else ''} {max(0.0, now - record.last_seen):.0f}s ago",
            src,
        )
        for record in records
        if record.verdict is not Verdict.UNKNOWN
    ]
    if not parts:
        return unknown("no network context history", src)
    return combine(parts, source=src)


# --- combining and ordering --------------------------------------------------------------------

_ORDER = (Verdict.INSIDE, Verdict.OUTER_HOME, Verdict.OUTSIDE)


def combine(conjectures: Iterable[Conjecture], source: Source = Source.COMBINED) -> Conjecture:
    """Noisy-or per verdict; the result is the best verdict minus its strongest rival.

    Deterministic: ties break INSIDE < OUTER_HOME < OUTSIDE in that order of preference
    (trying the direct registration first is harmless, the VPN stays up regardless).
    """
    confidences: dict[Verdict, list[float]] = {v: [] for v in _ORDER}
    reasons: dict[Verdict, list[str]] = {v: [] for v in _ORDER}
    for conjecture in conjectures:
        if conjecture.verdict is Verdict.UNKNOWN or conjecture.confidence <= 0.0:
            continue
        confidences[conjecture.verdict].append(conjecture.confidence)
        reasons[conjecture.verdict].append(conjecture.reason)
    # Multiply in sorted order: floating-point products depend on the order of their factors,
    # and a last-bit difference must not turn a tie into a different verdict.
    scores = {v: 1.0 - math.prod(1.0 - c for c in sorted(confidences[v])) for v in _ORDER}
    best = max(_ORDER, key=lambda v: (scores[v], -_ORDER.index(v)))
    rival = max((scores[v] for v in _ORDER if v is not best), default=0.0)
    confidence = max(0.0, min(1.0, scores[best] - rival))
    if confidence <= 0.0:
        if any(scores.values()):
            return unknown(
                "conflicting hints: " + "; ".join(r for v in _ORDER for r in reasons[v]), source
            )
        return unknown("no hints", source)
    return Conjecture(best, round(confidence, 6), "; ".join(reasons[best]), source)


class Attempt(enum.StrEnum):
    """What to try, in order (the seed: conjectures choose what to try first)."""

    DIRECT_INNER = "direct_inner"  # register with the inner HA directly, CoA = X (can prove inside)
    SMOKE_OUT = "smoke_out"  # unauthenticated probe of the inner HA
    VPN_PATH = "vpn_path"  # outer registration (or home deregistration), VPN, inner over VPN


def try_order(conjecture: Conjecture) -> tuple[Attempt, ...]:
    """Every order ends with the VPN path: the safe default when nothing proves inside."""
    if conjecture.verdict is Verdict.INSIDE and conjecture.confidence >= DIRECT_FIRST_CONFIDENCE:
        return (Attempt.DIRECT_INNER, Attempt.VPN_PATH)
    if conjecture.verdict in (Verdict.OUTSIDE, Verdict.OUTER_HOME) and (
        conjecture.confidence >= VPN_FIRST_CONFIDENCE
    ):
        return (Attempt.VPN_PATH,)
    return (Attempt.SMOKE_OUT, Attempt.DIRECT_INNER, Attempt.VPN_PATH)


# --- proof -------------------------------------------------------------------------------------

_PROOF_KEY = object()


@dataclass(frozen=True, slots=True)
class Proof:
    """An authenticated inner registration over the direct path of one uplink attachment.

    Only :func:`issue_proof` makes one (the constructor refuses a missing key), and
    the coordinator calls it only for an ``InnerRegistered(direct=True)`` event that
    answers its own direct attempt on the current uplink. A proof names the uplink
    ``epoch`` it was earned on; any uplink change makes it stale.
    """

    uplink: str
    epoch: int
    care_of_address: IPv4Address
    at: float
    _key: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._key is not _PROOF_KEY:
            raise TypeError("a Proof is issued only from an authenticated direct registration")

    def holds_for(self, epoch: int, care_of_address: IPv4Address | None) -> bool:
        return self.epoch == epoch and self.care_of_address == care_of_address


def issue_proof(uplink: str, epoch: int, care_of_address: IPv4Address, at: float) -> Proof:
    return Proof(uplink, epoch, care_of_address, at, _PROOF_KEY)
