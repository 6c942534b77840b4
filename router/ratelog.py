"""Log lines about outside input, rate-limited per kind: a flood of forged or stray packets
must cost a counter step each, not a log line each (DESIGN.md section 8: every rejection is
counted and logged, and the daemon stays responsive).

    limited = RateLimitedLog(log)
    limited.warning("bad_authenticator", "reply from %s dropped (%s)", addr, reason)

Per key, ``burst`` lines pass; after that one line per ``interval`` seconds, carrying how many
similar lines were held back since the last one. Counters elsewhere keep the exact numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0


class RateLimitedLog:
    MAX_KEYS = 256  # kinds of line, not senders: a forger cannot grow this by varying sources

    def __init__(self, logger: logging.Logger, *, burst: int = 5, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log unless this key is over its rate; True when the line was written."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) / self.interval)
        bucket.updated = now
        if bucket.tokens < 1.0:
            bucket.suppressed += 1
            return False
        bucket.tokens -= 1.0
        if bucket.suppressed:
            message += " (%d similar line(s) held back)"
            args = (*args, bucket.suppressed)
            bucket.suppressed = 0
        self.logger.warning(message, *args)
        return True
