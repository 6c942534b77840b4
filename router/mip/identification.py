"""Registration Identification: replay protection by timestamps or nonces (RFC 5944 §5.7).

Theory of operation
-------------------
The 64-bit Identification field does two jobs: it matches a Reply to its Request
(the low-order 32 bits, which every agent copies unchanged, §5.7) and it proves
freshness to the home agent (the high-order 32 bits, interpreted according to
the replay method of the Mobility Security Association).

*Timestamps* (§5.7.1, mandatory): the mobile node writes an NTP-format time of
day (high 32 bits: seconds since 1900; low 32 bits: fraction, which we fill with
random bits because our clock source gives whole seconds only). The home agent
accepts a value that is within ``tolerance`` seconds of its own clock **and**
greater than every value it accepted before from that mobile node. Otherwise it
replies 133 with its own seconds in the high bits, which the mobile node uses to
correct its clock offset.

*Nonces* (§5.7.2, optional): the home agent puts a fresh random nonce into the
high 32 bits of every Reply; the mobile node must echo it in the high 32 bits of
its next Request and chooses a fresh random low half itself. The protocol is
self-synchronising: a mismatch draws a 133 that carries the next nonce.

Both sides here are pure: ``now`` is a monotonic float supplied by the caller;
the wall-clock link is an offset the caller provides (``clock_offset`` such that
``now + clock_offset`` is seconds since the NTP epoch, 1900-01-01). Randomness
is injected as ``random_bytes(n) -> bytes``.

Era rollover (NTP era 1 begins in 2036) is not handled: identifications are
compared as plain 64-bit integers, as the RFC's "greater than" reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from enum import IntEnum

__all__ = [
    "DEFAULT_TIMESTAMP_TOLERANCE",
    "NTP_UNIX_OFFSET",
    "HomeAgentReplayState",
    "IdentificationGenerator",
    "ReplayMethod",
    "ReplayVerdict",
    "high32",
    "low32",
    "ntp_seconds",
]

RandomBytes = Callable[[int], bytes]

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
#: A caller computes ``clock_offset = time.time() - time.monotonic() + NTP_UNIX_OFFSET``.
NTP_UNIX_OFFSET = 2_208_988_800

#: RFC 5944 §5.7.1: "a default value of 7 seconds MAY be used" (and SHOULD be > 3 s).
DEFAULT_TIMESTAMP_TOLERANCE = 7.0

_MASK32 = 0xFFFF_FFFF
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


class ReplayMethod(IntEnum):
    """The style of replay protection; part of the Mobility Security Association (§5.7)."""

    TIMESTAMPS = 0
    NONCES = 1


class ReplayVerdict(IntEnum):
    """The home agent's judgement of a Request's Identification."""

    FRESH = 0
    #: Timestamp not greater than one already accepted (delayed duplicate or replay).
    NOT_INCREASING = 1
    #: Timestamp too far from the home agent's clock (§5.7.1 tolerance).
    CLOCK_SKEW = 2
    #: High 32 bits are not the nonce the home agent issued last (§5.7.2).
    NONCE_MISMATCH = 3


def high32(identification: int) -> int:
    return (identification >> 32) & _MASK32


def low32(identification: int) -> int:
    return identification & _MASK32


def ntp_seconds(now: float, clock_offset: float) -> int:
    """Whole NTP seconds (high 32 bits of an NTP timestamp) for monotonic ``now``."""
    return int(now + clock_offset) & _MASK32


def _random32(random_bytes: RandomBytes) -> int:
    return int.from_bytes(random_bytes(4), "big")


class IdentificationGenerator:
    """Mobile node side: chooses Identification values and resynchronises after 133.

    One instance per Mobility Security Association (so per home agent).
    """

    def __init__(
        self,
        method: ReplayMethod,
        *,
        clock_offset: float = 0.0,
        random_bytes: RandomBytes = secrets.token_bytes,
        last: int = 0,
    ) -> None:
        self.method = method
        self._clock_offset = clock_offset
        # Correction learnt from a home agent's 133 reply (timestamps only).
        self._correction = 0.0
        self._random_bytes = random_bytes
        # Floor for the next timestamp: §5.7.1 "MUST be greater than that used in any
        # previous Registration Request". ``last`` carries it across a restart (the caller
        # persists ``last_identification``), so a clock stepped back cannot repeat a value.
        self._last = last & _MASK64
        # The nonce the home agent handed us last (§5.7.2); 0 until we hear from it.
        self._home_agent_nonce = 0
        self._last_low = -1

    @property
    def last_identification(self) -> int:
        """The last timestamp Identification handed out (0: none yet); persist it."""
        return self._last

    @property
    def clock_correction(self) -> float:
        """Seconds added to our clock after the last timestamp resynchronisation."""
        return self._correction

    def next_identification(self, now: float) -> int:
        """A new Identification for a new Request (never equal to the previous one, §5.7)."""
        if self.method is ReplayMethod.TIMESTAMPS:
            seconds = ntp_seconds(now, self._clock_offset + self._correction)
            candidate = (seconds << 32) | _random32(self._random_bytes)
            if candidate <= self._last:
                # Two requests within the same second, or our clock stepped back:
                # keep the sequence strictly increasing as the home agent demands.
                candidate = self._last + 1
            self._last = candidate & _MASK64
            return self._last
        low = self._fresh_low()
        return (self._home_agent_nonce << 32) | low

    def _fresh_low(self) -> int:
        # §5.7.2: the low-order value "SHOULD differ from [its] previous value".
        low = _random32(self._random_bytes)
        while low == self._last_low:
            low = _random32(self._random_bytes)
        self._last_low = low
        return low

    def reply_matches(self, request_identification: int, reply_identification: int) -> bool:
        """§3.6.2.1 / §5.7: only the low-order 32 bits must match, for both methods."""
        return low32(request_identification) == low32(reply_identification)

    def accept_reply(self, reply_identification: int) -> None:
        """Note an authenticated, matching Reply (any code).

        With nonces the home agent's new nonce is in the high half of every Reply and
        becomes the high half of our next Request (§5.7.2). With timestamps there is
        nothing to learn from a normal reply.
        """
        if self.method is ReplayMethod.NONCES:
            self._home_agent_nonce = high32(reply_identification)

    def resynchronise(self, reply_identification: int, now: float) -> None:
        """Adjust after a 133 (or 136) Reply, already authenticated and matched (§3.6.2.3).

        Timestamps: the high half is the home agent's time of day in NTP seconds; we
        adopt the difference to our own clock. The floor for the next value is reset
        to the home agent's clock, since its "greater than previously accepted" rule
        is what matters, not what we sent (our old values may have been far in its
        future). Nonces: the high half is the nonce to echo next.
        """
        if self.method is ReplayMethod.NONCES:
            self._home_agent_nonce = high32(reply_identification)
            return
        home_agent_seconds = high32(reply_identification)
        our_seconds = now + self._clock_offset
        self._correction = home_agent_seconds - our_seconds
        self._last = home_agent_seconds << 32


class HomeAgentReplayState:
    """Home agent side: the replay state for one mobile node (one security context).

    ``check`` judges a Request's Identification; ``consume`` records a fresh one so
    it can never be accepted again; ``reply_identification`` builds the
    Identification of the Reply per §5.7.1 / §5.7.2.
    """

    __slots__ = (
        "_clock_offset",
        "_last_accepted",
        "_nonce",
        "_random_bytes",
        "method",
        "tolerance",
    )

    def __init__(
        self,
        method: ReplayMethod,
        *,
        tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE,
        clock_offset: float = 0.0,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        self.method = method
        self.tolerance = tolerance
        self._clock_offset = clock_offset
        self._random_bytes = random_bytes
        self._last_accepted = -1
        # No nonce issued yet: the mobile node's first request cannot match and draws a
        # 133 carrying one (the protocol is self-synchronising, §5.7.2). -1 never
        # equals a 32-bit value.
        self._nonce = -1

    @property
    def last_accepted(self) -> int:
        return self._last_accepted

    def raise_floor(self, identification: int) -> None:
        """Treat ``identification`` as already accepted (timestamps only): restores the
        replay state a home agent persisted before a restart (§5.7.1 "greater than")."""
        if self.method is ReplayMethod.TIMESTAMPS:
            self._last_accepted = max(self._last_accepted, identification & _MASK64)

    def cap_floor(self, identification: int) -> None:
        """Lower the "previously accepted" floor to at most ``identification`` (timestamps):
        after our clock stepped back, values accepted in the stepped-forward era would lock
        every node out until the clock caught up again."""
        if self.method is ReplayMethod.TIMESTAMPS:
            self._last_accepted = min(self._last_accepted, identification & _MASK64)

    @property
    def clock_offset(self) -> float:
        return self._clock_offset

    @clock_offset.setter
    def clock_offset(self, value: float) -> None:
        # The caller follows a stepped wall clock (``now + clock_offset`` = NTP seconds).
        self._clock_offset = value

    def check(self, identification: int, now: float) -> ReplayVerdict:
        if self.method is ReplayMethod.NONCES:
            if high32(identification) != self._nonce:
                return ReplayVerdict.NONCE_MISMATCH
            return ReplayVerdict.FRESH
        # §5.7.1: close enough to our clock AND greater than all previously accepted.
        our_time = now + self._clock_offset
        their_time = high32(identification) + low32(identification) / 2**32
        if abs(their_time - our_time) > self.tolerance:
            return ReplayVerdict.CLOCK_SKEW
        if identification <= self._last_accepted:
            return ReplayVerdict.NOT_INCREASING
        return ReplayVerdict.FRESH

    def consume(self, identification: int) -> None:
        """Record an identification that passed ``check`` so it cannot be used again."""
        if self.method is ReplayMethod.TIMESTAMPS:
            self._last_accepted = identification
        else:
            # The nonce is single use: the next Request must echo the one in our Reply.
            self._nonce = -1

    def unauthenticated_reply_identification(self, request_identification: int) -> int:
        """Identification for a Reply to a Request that failed authentication (131).

        Such a Request proves nothing, so it must not move our replay state: an
        attacker could otherwise churn nonces and lock the real mobile node out. With
        nonces the current nonce (not secret: every Reply shows it) is repeated.
        """
        if self.method is ReplayMethod.TIMESTAMPS:
            return request_identification
        nonce = self._nonce if self._nonce >= 0 else 0
        return (nonce << 32) | low32(request_identification)

    def reply_identification(self, request_identification: int, valid: bool, now: float) -> int:
        """Identification for the Reply to ``request_identification``.

        Timestamps (§5.7.1): a valid one is copied whole; otherwise the low 32 bits
        are copied and the high 32 bits are our own time of day, so the mobile node
        can resynchronise. Nonces (§5.7.2): every Reply carries a fresh nonce in the
        high 32 bits and the Request's low 32 bits.
        """
        low = low32(request_identification)
        if self.method is ReplayMethod.TIMESTAMPS:
            if valid:
                return request_identification
            return (ntp_seconds(now, self._clock_offset) << 32) | low
        nonce = _random32(self._random_bytes)
        while nonce == self._nonce:
            nonce = _random32(self._random_bytes)
        self._nonce = nonce
        return (nonce << 32) | low
