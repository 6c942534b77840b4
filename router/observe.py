"""Small readings of the running system for the status page: interface byte counters.

The counters come from ``/proc/net/dev``. That file shows the interfaces of the *reader's*
network namespace (``/proc/net`` is ``/proc/self/net``), whereas ``/sys/class/net`` shows the
namespace sysfs was mounted in; the router daemon may run in a namespace (the lab does
exactly that), so ``/proc/net/dev`` is the one that is always right, and it needs neither
netlink nor root. One read is a few dozen microseconds; :class:`CounterCache` still keeps a
reading for a second so that a burst of page requests costs one read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROC_NET_DEV = Path("/proc/net/dev")


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int


def parse_proc_net_dev(text: str) -> dict[str, InterfaceCounters]:
    """``/proc/net/dev``: two header lines, then ``name: rx(8 fields) tx(8 fields)`` per line.

    Receive fields: bytes packets errs drop fifo frame compressed multicast; transmit fields:
    bytes packets errs drop fifo colls carrier compressed. A line that does not parse is
    skipped (it is kernel output, but a status page must not fail on one odd line).
    """
    counters: dict[str, InterfaceCounters] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        if not colon or "|" in line:
            continue  # the two header lines contain '|'
        fields = rest.split()
        if len(fields) < 16 or not all(f.isdigit() for f in fields[:16]):
            continue
        counters[name.strip()] = InterfaceCounters(
            rx_bytes=int(fields[0]), tx_bytes=int(fields[8]), rx_packets=int(fields[1]), tx_packets=int(fields[9])
        )
    return counters


def read_interface_counters(path: Path = PROC_NET_DEV) -> dict[str, InterfaceCounters]:
    """Every interface's counters in this process's namespace; empty if the file is unreadable."""
    try:
        return parse_proc_net_dev(path.read_text())
    except OSError as exc:
        log.debug("interface counters: %s", exc)
        return {}


class CounterCache:
    """The last reading, refreshed when older than ``max_age_s`` (``clock`` is monotonic)."""

    def __init__(
        self, path: Path = PROC_NET_DEV, *, max_age_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self.clock = clock
        self.reads = 0
        self._reading: dict[str, InterfaceCounters] = {}
        self._at: float | None = None

    def get(self, interface: str) -> InterfaceCounters | None:
        now = self.clock()
        if self._at is None or now - self._at >= self.max_age_s:
            self._reading = read_interface_counters(self.path)
            self._at = now
            self.reads += 1
        return self._reading.get(interface)
