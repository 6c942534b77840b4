"""The mobile node's keepalive and peer-silence rules (RFC 3519 §4.9, §4.10), pure.

- Send a keepalive (a UDP-encapsulated ICMP echo request to the home agent) when nothing was
  sent to the home agent for K seconds (§4.9 MUST; K = the Keepalive Interval of the UDP Tunnel
  Reply, default 110 s, never below 10 s, §4.10).
- Also send one when nothing was *received* for K seconds: two-way keepalives exist so that a
  lost NAT mapping is noticed (§4.9 rationale 1), and a node that only uploads would otherwise
  never probe.
- An unanswered keepalive is retransmitted every ``retransmit`` seconds; after ``attempts``
  transmissions without anything received from the home agent the peer is SILENT, reported
  once (§4.10: the mobile node SHOULD then re-register, which is the daemon's decision). Any
  datagram from the home agent (data, keepalive reply, registration reply) means ALIVE again.

The data path stamps ``last_sent``/``last_received`` once per batch, not per packet; this
machine only reads them when its timer fires. Time is a parameter (``now``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_INTERVAL", "MIN_INTERVAL", "KeepaliveAction", "KeepaliveMonitor"]

DEFAULT_INTERVAL = 110.0  # RFC 3519 §4.9: K defaults to 110 seconds
MIN_INTERVAL = 10.0  # §4.10: "the mobile node MUST NOT use a keepalive less than 10 seconds"


class KeepaliveAction(enum.Enum):
    SEND = "send"  # send a keepalive now
    SILENT = "silent"  # the home agent stopped answering (send one more too)
    ALIVE = "alive"  # it answers again after a SILENT


@dataclass(slots=True)
class KeepaliveMonitor:
    interval: float = DEFAULT_INTERVAL
    retransmit: float = 2.0
    attempts: int = 3
    #: Lab and tests only may go below the RFC's 10 s floor.
    floor: float = MIN_INTERVAL
    outstanding: int = 0  # keepalives sent since we last heard from the home agent
    silent: bool = False
    _retry_at: float | None = None
    _probe_started: float = 0.0

    def __post_init__(self) -> None:
        self.set_interval(self.interval)

    def set_interval(self, seconds: float) -> None:
        """From the UDP Tunnel Reply: 0 = use the default (§3.2); never below the floor."""
        value = DEFAULT_INTERVAL if seconds <= 0 else float(seconds)
        self.interval = max(value, self.floor)

    def reset(self, now: float) -> None:
        """A new binding (re-registration): forget outstanding probes and silence."""
        self.outstanding = 0
        self.silent = False
        self._retry_at = None
        self._probe_started = now

    def next_deadline(self, last_sent: float, last_received: float) -> float:
        if self._retry_at is not None:
            return self._retry_at
        return min(last_sent, last_received) + self.interval

    def poll(self, now: float, last_sent: float, last_received: float) -> list[KeepaliveAction]:
        """What to do at ``now``; call when ``next_deadline`` passes (early calls are harmless)."""
        actions: list[KeepaliveAction] = []
        if self.outstanding and last_received >= self._probe_started:
            self.outstanding = 0
            self._retry_at = None
            if self.silent:
                self.silent = False
                actions.append(KeepaliveAction.ALIVE)
        if self.outstanding:
            if self._retry_at is not None and now >= self._retry_at:
                if self.outstanding >= self.attempts and not self.silent:
                    self.silent = True
                    actions.append(KeepaliveAction.SILENT)
                self._send(now, actions)
            return actions
        if now - last_sent >= self.interval or now - last_received >= self.interval:
            self._probe_started = now
            self._send(now, actions)
        return actions

    def _send(self, now: float, actions: list[KeepaliveAction]) -> None:
        self.outstanding += 1
        # Once silent, probe at the keepalive interval rather than hammering a dead path.
        self._retry_at = now + (self.interval if self.silent else self.retransmit)
        actions.append(KeepaliveAction.SEND)
