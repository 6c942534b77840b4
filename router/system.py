"""One Mobile IPv4 system as the router runs it: a registration machine and its socket.

The router runs two (inner and outer), each with its own security association, timers and
status. Requests leave from the care-of address (the socket is bound to it), so the
router's source-address rules (router.dataplane) pick the path: an uplink table for X,
the VPN table for V. A new care-of address gets a new socket; the old one is closed once
the machine no longer waits for a reply to it.

With RFC 3519 UDP tunnelling the socket belongs to the data path (``tunnel``, a
router.udptunnel ``MobileTunnel``): registrations and tunnel data then share the source port,
as §4.4 requires, and ``socket`` is what the daemon attaches the tunnel to.

Identification across restarts (RFC 5944 §5.7.1: each timestamp "MUST be greater than that
used in any previous Registration Request"): with ``state_path`` the last Identification the
machine handed out is written (atomically, router.lifecycle.write_state) before the request
carrying it leaves, and a new run starts from max(now, last + 1), even if the clock stepped
back meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from router.drive import MachineDriver, open_driver, udp_socket
from router.lifecycle import StateError, read_state, write_state
from router.mip import mobilenode as mn
from router.ratelog import RateLimitedLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """A registration machine event, tagged with the system and the attempt it serves."""

    system: str  # "inner" | "outer"
    event: mn.Event
    attempt: int
    via_vpn: bool


# Drop reasons of the registration machine that point at a misconfiguration (wrong key or
# SPI, wrong home agent): worth a warning with whatever the unverified reply claims.
AUTH_DROPS = ("bad_authenticator", "bad_authenticator_length", "unknown_spi", "no_auth_extension", "multiple_auth_extensions", "auth_extension_order")

# Every reply the machine drops is counted; these are also logged (DESIGN.md section 8: a
# replayed, forged or stray reply is dropped with a counted, logged reason).
LOGGED_DROPS = (*AUTH_DROPS, "unexpected_source", "not_a_reply", "unsolicited", "identification_mismatch",
                "wrong_home_address", "unknown_extension")
REGISTRATION_REPLY = 3  # RFC 5944 §3.4: Type


class LoggingMachine:
    """The registration machine, plus a log line for each reply it had to drop.

    With a wrong key the home agent's denial (131) cannot be authenticated, so the machine
    must discard it (RFC 5944 §3.6.2.1) and only its retransmission back-off remains; the
    operator still needs to read why, so the unverified code is logged (never acted on).
    """

    def __init__(
        self, name: str, machine: mn.RegistrationMachine, persist: Callable[[int], None] | None = None
    ) -> None:
        self.name = name
        self.machine = machine
        self.unverified_denials = 0
        self.limited = RateLimitedLog(log)  # a flood of stray replies: counted, not a log line each
        #: Called with a new last Identification before the datagrams carrying it are sent.
        self.persist = persist
        self.persisted = machine.last_identification

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        before = dict(self.machine.counters)
        self.machine.receive_datagram(data, addr, now)
        if self.machine.counters.get("resynchronised", 0) != before.get("resynchronised", 0):
            # RFC 5944 §5.7.1: a 133 carries the home agent's time of day; we adopted it.
            log.warning(
                "%s: denied 133 by %s:%d: identification resynchronised, clock correction %+.0f s",
                self.name, addr[0], addr[1], self.machine.clock_correction,
            )
        for reason, value in self.machine.counters.items():
            if value == before.get(reason, 0) or reason not in LOGGED_DROPS:
                continue
            claim = ""
            if len(data) >= 2 and data[0] == REGISTRATION_REPLY:
                code = data[1]
                text = mn.REPLY_CODE_TEXT.get(code, "unknown code")
                claim = f": unverified denial {code} ({text})" if code >= 64 else f": unverified code {code}"
                if code >= 64:
                    self.unverified_denials += 1
            hint = "; check the key and SPI" if reason in AUTH_DROPS else ""
            self.limited.warning(
                reason, "%s: reply from %s:%d dropped (%s)%s%s", self.name, addr[0], addr[1], reason.replace("_", " "), claim, hint
            )

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        out = self.machine.datagrams_to_send(now)
        last = self.machine.last_identification
        if out and self.persist is not None and last != self.persisted:
            self.persist(last)
            self.persisted = last
        return out

    def get_timer(self) -> float | None:
        return self.machine.get_timer()

    def handle_timer(self, now: float) -> None:
        self.machine.handle_timer(now)

    def next_event(self) -> mn.Event | None:
        return self.machine.next_event()


def load_last_identification(path: Path) -> int:
    """The last Identification a previous run persisted (0: none or unreadable)."""
    try:
        data = read_state(path)
    except StateError as exc:
        log.warning("identification state unreadable, starting from the clock: %s", exc)
        return 0
    value = data.get("last_identification") if data else None
    return value if isinstance(value, int) and 0 <= value < 2**64 else 0


class MobilitySystem:
    def __init__(
        self,
        name: str,
        config: mn.MobileNodeConfig,
        on_event: Callable[[SystemEvent], None],
        tunnel: Any = None,
        state_path: Path | None = None,
    ) -> None:
        self.name = name
        self.config = config
        #: router.udptunnel MobileTunnel owning the care-of address sockets (None: asyncio's)
        self.tunnel = tunnel
        #: Called (system name, care-of address) when a registration leaves: the daemon counts
        #: the exchange as a free health probe of the uplink it crossed.
        self.on_request: Callable[[str, IPv4Address], None] | None = None
        self.socket: socket.socket | None = None
        self.state_path = state_path
        last = load_last_identification(state_path) if state_path is not None else 0
        if last:
            log.info("%s: identification continues after %#x (persisted)", name, last)
        self.machine = mn.RegistrationMachine(config, last_identification=last)
        self._logging = LoggingMachine(name, self.machine, self._persist if state_path is not None else None)
        self._persist_failed = False
        self.on_event = on_event
        self._driver: MachineDriver | None = None
        self._bound: IPv4Address | None = None
        self.attempt = 0
        self.via_vpn = False
        self.last_event: mn.Event | None = None
        self.last_code: int | None = None
        self.last_round_trip: float | None = None
        self.smoke_outs = 0

    def reconfigure(self, config: mn.MobileNodeConfig) -> None:
        """A config reload (new key, SPI, algorithm or lifetime): a new machine that goes on
        counting from the old one's last Identification; the caller re-registers."""
        last = self.machine.last_identification
        self.close()
        self.config = config
        self.machine = mn.RegistrationMachine(config, last_identification=last)
        self._logging = LoggingMachine(self.name, self.machine, self._persist if self.state_path is not None else None)

    def _persist(self, last: int) -> None:
        assert self.state_path is not None
        try:
            write_state(self.state_path, {"last_identification": last, "home_agent": str(self.config.home_agent)})
        except OSError as exc:
            if not self._persist_failed:  # once: a read-only state dir must not flood the log
                log.warning("%s: cannot persist the identification (%s): replay state lost at restart", self.name, exc)
            self._persist_failed = True
        else:
            self._persist_failed = False

    def _deliver(self, event: Any) -> None:
        self.last_event = event
        if isinstance(event, mn.Registered):
            self.last_code = event.code
            self.last_round_trip = event.round_trip
        elif isinstance(event, mn.RegistrationDenied):
            self.last_code = event.code
        elif isinstance(event, mn.Deregistered):
            self.last_round_trip = event.round_trip
        log.info("%s: %s", self.name, describe(event))
        self.on_event(SystemEvent(self.name, event, self.attempt, self.via_vpn))

    async def _bind(self, care_of_address: IPv4Address) -> MachineDriver:
        if self._driver is not None and self._bound == care_of_address:
            return self._driver
        old = self._driver
        sock = udp_socket(str(care_of_address))
        if self.tunnel is not None:
            driver = MachineDriver(self._logging, self._deliver)
            driver.connection_made(self.tunnel.add_socket(sock, driver.datagram_received))
            self._driver = driver
        else:
            self._driver = await open_driver(self._logging, self._deliver, sock)
        self.socket = sock
        self._bound = care_of_address
        if old is not None:
            old.close()
        return self._driver

    async def register(self, care_of_address: IPv4Address, *, attempt: int = 0, via_vpn: bool = False) -> None:
        self.attempt = attempt
        self.via_vpn = via_vpn
        driver = await self._bind(care_of_address)
        self.machine.register(care_of_address, asyncio.get_running_loop().time())
        if self.on_request is not None:
            self.on_request(self.name, care_of_address)
        driver.poke()

    async def deregister(self, source: IPv4Address, care_of_address: IPv4Address | None = None) -> None:
        """Lifetime 0; at home the care-of address is the home address (RFC 5944 §3.6.1.2)."""
        driver = await self._bind(source)
        self.machine.deregister(asyncio.get_running_loop().time(), care_of_address)
        driver.poke()

    def cancel(self) -> None:
        self.machine.cancel()

    async def smoke_out(self, care_of_address: IPv4Address, timeout: float) -> mn.SmokeOutAnswer | None:
        """Send one deliberately unauthenticated request; return the answer or None on timeout.

        Uses its own socket so the real machine's replies and counters stay untouched.
        """
        self.smoke_outs += 1
        probe = mn.SmokeOutProbe.build(self.config, care_of_address)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[mn.SmokeOutAnswer] = loop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                result = probe.classify(config, data, (addr[0], addr[1]))
                if result is not None and not answer.done():
                    answer.set_result(result)

        config = self.config
        transport, _ = await loop.create_datagram_endpoint(Receiver, sock=udp_socket(str(care_of_address)))
        try:
            transport.sendto(probe.datagram, probe.destination)
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return None
        finally:
            transport.close()

    def status(self, now: float) -> dict[str, Any]:
        binding = self.machine.binding
        left = None
        if binding is not None and binding.expires_at is not None:
            left = max(0, round(binding.expires_at - now))
        return {
            "home_agent": str(self.config.home_agent),
            "home_address": str(self.config.home_address),
            "care_of_address": str(binding.care_of_address) if binding else None,
            "state": self.machine.state.name.lower(),
            "lifetime_left_s": left,
            "last_code": self.last_code,
            "last_message": describe(self.last_event) if self.last_event is not None else None,
            "round_trip_ms": round(self.last_round_trip * 1000, 1) if self.last_round_trip is not None else None,
            "via_vpn": self.via_vpn,
            "counters": dict(self.machine.counters),
        }

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
            self._bound = None
            self.socket = None


def describe(event: mn.Event | Any) -> str:
    if isinstance(event, mn.Registered):
        nets = ",".join(map(str, event.mobile_networks_acked)) or "-"
        kind = "renewed" if event.renewal else "registered"
        return f"{kind} coa {event.care_of_address} lifetime {event.lifetime} networks {nets} rtt {event.round_trip * 1000:.0f}ms"
    if isinstance(event, mn.Deregistered):
        return f"deregistered (coa {event.care_of_address}) rtt {event.round_trip * 1000:.0f}ms"
    if isinstance(event, mn.RegistrationDenied):
        return f"denied {event.code} ({event.reason}) coa {event.care_of_address}, retry in {event.retry_at:.0f}"
    if isinstance(event, mn.RegistrationTimeout):
        return f"no reply after {event.attempts} attempts (coa {event.care_of_address})"
    if isinstance(event, mn.BindingExpired):
        return f"binding expired (coa {event.care_of_address})"
    return repr(event)
