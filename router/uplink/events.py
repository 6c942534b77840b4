"""What the uplink drivers report: frozen dataclasses, pushed to one callback per driver.

Drivers observe and act; they decide nothing. Every change they see becomes one of these
events, handed to an ``emit`` callable (usually ``queue.put_nowait`` of the daemon's queue).
Every event names its uplink (``name`` from the config, e.g. "cell" or "wlan"), so one queue
can serve all drivers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The uplink carries IP: ``address`` is ours, ``gateway`` the next hop (PPP: the peer)."""

    name: str
    ifname: str
    address: str
    gateway: str | None
    dns: tuple[str, ...] = ()
    prefix_length: int = 32
    server_mac: str | None = None  # DHCP server / gateway MAC where known (history by MAC)


@dataclass(frozen=True, slots=True)
class LinkDown:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class SignalReport:
    """Signal in dBm where known; ``csq`` is the raw +CSQ rssi for 3G (99: unknown)."""

    name: str
    dbm: int | None
    csq: int | None = None
    bitrate_kbps: int | None = None


@dataclass(frozen=True, slots=True)
class Associated:
    name: str
    bssid: str
    ssid: str
    signal: int | None


@dataclass(frozen=True, slots=True)
class Disassociated:
    name: str
    reason: str
    bssid: str | None = None


@dataclass(frozen=True, slots=True)
class Bss:
    """One scan result row."""

    bssid: str
    ssid: str
    frequency: int
    signal: int
    flags: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    name: str
    networks: tuple[Bss, ...]


class Registration(enum.IntEnum):
    """3GPP TS 27.007 section 7.2 +CREG / 10.1.20 +CGREG <stat>."""

    NOT_SEARCHING = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5

    @property
    def registered(self) -> bool:
        return self in (Registration.HOME, Registration.ROAMING)


@dataclass(frozen=True, slots=True)
class ModemState:
    """The modem's view after init or a poll; ``problem`` is None when it could dial."""

    name: str
    sim: str  # "READY", "SIM PIN", "NOT INSERTED", ...
    registration: Registration | None  # circuit-switched (+CREG)
    packet_registration: Registration | None  # packet-switched (+CGREG): what data needs
    operator: str | None
    signal_dbm: int | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """An unsolicited +CREG / +CGREG / +CEREG (``kind`` is the prefix without '+')."""

    name: str
    kind: str
    registration: Registration


@dataclass(frozen=True, slots=True)
class ModemHung:
    """The modem did not answer ``command`` within the timeout."""

    name: str
    command: str


@dataclass(frozen=True, slots=True)
class ModemReset:
    name: str
    how: str  # "reopened", "AT+CFUN=1,1"
    answering: bool


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """A URC the driver has no specific event for (RING, +CMTI, ^MODE, ...)."""

    name: str
    line: str


@dataclass(frozen=True, slots=True)
class DialFailed:
    """One dial attempt failed; ``attempt`` counts consecutive failures."""

    name: str
    reason: str
    attempt: int
    retry_in: float | None


UplinkEvent = (
    LinkUp | LinkDown | SignalReport | Associated | Disassociated | ScanResult | ModemState
    | RegistrationChanged | ModemHung | ModemReset | Unsolicited | DialFailed
)
Emit = Callable[[UplinkEvent], None]
