"""The WLAN uplink: wpa_supplicant over its control socket, rtnetlink carrier, DHCP.

Theory of operation
-------------------
:class:`WpaControl` is our own small client of wpa_supplicant's control interface (a UNIX
datagram socket per interface, ``ctrl_interface=DIR`` -> ``DIR/wlan0``): one request, one reply
datagram. A second connection sends ``ATTACH`` and then receives the unsolicited events
("<3>CTRL-EVENT-CONNECTED - Connection to 02:.. completed [id=0 id_str=]"). Parsers of the
replies and events are pure functions below.

:class:`WlanUplink` turns those into events: ``CTRL-EVENT-CONNECTED`` -> STATUS + SIGNAL_POLL ->
:class:`Associated` and DHCP starts; the lease -> address applied -> :class:`LinkUp`;
``CTRL-EVENT-DISCONNECTED`` (or carrier loss seen on rtnetlink, whichever comes first) ->
:class:`Disassociated` + :class:`LinkDown` (an L2 trigger: the daemon acts at once);
``CTRL-EVENT-SCAN-RESULTS`` -> :class:`ScanResult`; ``CTRL-EVENT-SIGNAL-CHANGE`` and a
SIGNAL_POLL every ``signal_interval`` while associated -> :class:`SignalReport` when the
signal moved by ``signal_step`` dB or more. Commands (select a network, pin a BSSID, roam,
reconnect, scan) are methods; which network to use is the caller's decision.

PSKs and passwords never reach a log line: :func:`redact` masks them in every command logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from . import netlink
from .dhcp import DhcpClient, DhcpLease
from .events import (
    Associated,
    Bss,
    Disassociated,
    Emit,
    LinkDown,
    LinkUp,
    ScanResult,
    SignalReport,
)

log = logging.getLogger(__name__)


class WpaError(Exception):
    """wpa_supplicant refused a command, did not answer, or is not there."""


class WpaParseError(ValueError):
    """A control-interface reply of the wrong shape."""


# -- the control protocol, pure -------------------------------------------------------------------

_SECRET = re.compile(r"^(SET_NETWORK\s+\d+\s+(?:psk|password|wep_key\d|sae_password)\s+)(.*)$"
                     r"|^((?:PASSPHRASE|PASSWORD|PIN|WPS_PIN)\S*\s+)(.*)$", re.IGNORECASE)


def redact(command: str) -> str:
    match = _SECRET.match(command)
    if match is None:
        return command
    head = match.group(1) or match.group(3)
    return f"{head}<redacted>"


def parse_key_values(reply: str) -> dict[str, str]:
    """STATUS / SIGNAL_POLL: ``key=value`` lines."""
    values = {}
    for line in reply.splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise WpaParseError(f"expected key=value, got {line!r}")
        key, value = line.split("=", 1)
        values[key] = value
    return values


def parse_scan_results(reply: str) -> tuple[Bss, ...]:
    """``bssid / frequency / signal level / flags / ssid`` header, then tab-separated rows."""
    lines = reply.splitlines()
    if not lines or not lines[0].startswith("bssid"):
        raise WpaParseError(f"SCAN_RESULTS without its header: {reply[:80]!r}")
    rows = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) < 4:
            raise WpaParseError(f"scan row with {len(fields)} fields: {line!r}")
        try:
            frequency, signal = int(fields[1]), int(fields[2])
        except ValueError as error:
            raise WpaParseError(f"scan row with non-numeric fields: {line!r}") from error
        rows.append(Bss(fields[0].lower(), fields[4] if len(fields) > 4 else "", frequency,
                        signal, fields[3]))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class Network:
    id: int
    ssid: str
    bssid: str
    flags: str

    @property
    def current(self) -> bool:
        return "[CURRENT]" in self.flags

    @property
    def disabled(self) -> bool:
        return "[DISABLED]" in self.flags


def parse_list_networks(reply: str) -> tuple[Network, ...]:
    lines = reply.splitlines()
    if not lines or not lines[0].startswith("network id"):
        raise WpaParseError(f"LIST_NETWORKS without its header: {reply[:80]!r}")
    networks = []
    for line in lines[1:]:
        fields = line.split("\t")
        # isascii(): str.isdigit() accepts '²', which int() refuses.
        if len(fields) < 3 or not (fields[0].isascii() and fields[0].isdigit()):
            raise WpaParseError(f"network row: {line!r}")
        networks.append(Network(int(fields[0]), fields[1], fields[2],
                                fields[3] if len(fields) > 3 else ""))
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class WpaEvent:
    level: int
    name: str  # CTRL-EVENT-CONNECTED, ...
    text: str  # the rest of the line
    fields: dict[str, str]

    def __hash__(self) -> int:
        return hash((self.level, self.name, self.text))


_EVENT = re.compile(r"^<(\d)>(?:IFNAME=\S+ )?(\S+)\s?(.*)$", re.DOTALL)
_MAC = re.compile(r"([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})")


def parse_event(message: str) -> WpaEvent:
    """An unsolicited message: ``<level>NAME rest`` with ``key=value`` words in the rest."""
    match = _EVENT.match(message.strip())
    if match is None:
        raise WpaParseError(f"not an event: {message[:80]!r}")
    level, name, rest = int(match.group(1)), match.group(2), match.group(3)
    fields = {}
    for word in rest.replace("[", " ").replace("]", " ").split():
        if "=" in word:
            key, value = word.split("=", 1)
            fields[key] = value
    if name == "CTRL-EVENT-CONNECTED" and "bssid" not in fields:
        mac = _MAC.search(rest)  # "- Connection to 02:00:00:00:01:00 completed"
        if mac:
            fields["bssid"] = mac.group(1).lower()
    return WpaEvent(level, name, rest, fields)


# IEEE 802.11 reason codes (Table 9-49) a router meets.
REASONS = {1: "unspecified", 2: "previous authentication no longer valid",
           3: "deauthenticated: AP is leaving", 4: "inactivity", 5: "AP overloaded",
           6: "class 2 frame from nonauthenticated station",
           7: "class 3 frame from nonassociated station", 8: "disassociated: station leaving",
           15: "4-way handshake timeout", 16: "group key handshake timeout",
           23: "IEEE 802.1X authentication failed"}


def describe_disconnect(event: WpaEvent) -> str:
    code = event.fields.get("reason", "")
    known = code.isascii() and code.isdigit()
    text = REASONS.get(int(code), f"reason {code}") if known else "no reason given"
    if event.fields.get("locally_generated") == "1":
        text += " (locally generated)"
    return text


# -- the control socket ---------------------------------------------------------------------------

_counter = itertools.count()


class WpaControl:
    """One connection to wpa_supplicant's control socket."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._local: str | None = None
        self._lock = asyncio.Lock()

    def open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        local = os.path.join(tempfile.gettempdir(),
                             f"wpa_ctrl_router_{os.getpid()}-{next(_counter)}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local)
        try:
            sock.bind(local)
            sock.connect(self.path)
        except OSError as error:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
            raise WpaError(f"cannot reach wpa_supplicant at {self.path}: {error}") from error
        sock.setblocking(False)
        self._socket, self._local = sock, local

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._local is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._local)
            self._local = None

    async def request(self, command: str, timeout: float | None = None) -> str:
        async with self._lock:
            sock = self._socket
            if sock is None:
                raise WpaError("control socket is closed")
            loop = asyncio.get_running_loop()
            log.debug("wpa> %s", redact(command))
            await loop.sock_sendall(sock, command.encode())
            try:
                while True:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536),
                                                  timeout or self.timeout)
                    reply = data.decode(errors="replace")
                    if not reply.startswith("<"):  # an event on an attached socket: not ours
                        return reply
            except TimeoutError:
                raise WpaError(f"wpa_supplicant did not answer {redact(command)!r}") from None

    async def ok(self, command: str) -> None:
        reply = (await self.request(command)).strip()
        if reply != "OK":
            raise WpaError(f"{redact(command)!r} -> {reply!r}")

    async def attach(self) -> None:
        await self.ok("ATTACH")

    async def events(self) -> AsyncIterator[str]:
        """Unsolicited messages on an ATTACHed connection (do not mix with requests)."""
        sock = self._socket
        if sock is None:
            raise WpaError("control socket is closed")
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 65536)
            yield data.decode(errors="replace")


# -- the driver -----------------------------------------------------------------------------------


class WlanUplink:
    """One WLAN uplink (see the module docstring)."""

    def __init__(self, name: str, ifname: str, control_dir: str | Path, emit: Emit, *,
                 run_dir: Path, dhcp: bool = True, signal_interval: float = 1.0,
                 signal_step: int = 2,
                 dhcp_command: tuple[str, ...] = ("busybox", "udhcpc")) -> None:
        self.name = name
        self.ifname = ifname
        self.emit = emit
        self.control = WpaControl(Path(control_dir) / ifname)
        self.monitor = WpaControl(Path(control_dir) / ifname)
        self.dhcp = DhcpClient(ifname, run_dir, self._lease_changed, dhcp_command) \
            if dhcp else None
        self.signal_interval = signal_interval
        self.signal_step = signal_step
        self.associated: Associated | None = None
        self.link: LinkUp | None = None
        self._last_signal: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watch = netlink.InterfaceWatch(ifname, self._interface_changed)
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.control.open()
        self.monitor.open()
        await self.monitor.attach()
        await self._watch.start()
        self._tasks = [asyncio.create_task(self._events(), name=f"wpa events {self.name}"),
                       asyncio.create_task(self._signal_loop(), name=f"signal {self.name}")]
        # Already associated when we start (daemon restart): report it as if it just happened.
        status = await self.status()
        if status.get("wpa_state") == "COMPLETED":
            await self._connected(status.get("bssid"))

    async def stop(self) -> None:
        for task in [*self._tasks, *self._pending]:
            task.cancel()
        for task in [*self._tasks, *self._pending]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.dhcp is not None:
            await self.dhcp.stop()
        await self._watch.stop()
        with contextlib.suppress(WpaError):
            await self.monitor.request("DETACH", timeout=1.0)
        self.monitor.close()
        self.control.close()

    async def __aenter__(self) -> WlanUplink:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- commands -----------------------------------------------------------------------------

    async def status(self) -> dict[str, str]:
        return parse_key_values(await self.control.request("STATUS"))

    async def networks(self) -> tuple[Network, ...]:
        return parse_list_networks(await self.control.request("LIST_NETWORKS"))

    async def network_id(self, ssid: str) -> int:
        for network in await self.networks():
            if network.ssid == ssid:
                return network.id
        raise WpaError(f"wpa_supplicant has no network for SSID {ssid!r}")

    async def select_network(self, network_id: int, bssid: str | None = None) -> None:
        """Use this network only (SELECT_NETWORK disables the others); optionally pinned to
        one BSS. Associated / Disassociated events follow."""
        await self.control.ok(f"SET_NETWORK {network_id} bssid {bssid or 'any'}")
        await self.control.ok(f"SELECT_NETWORK {network_id}")

    async def enable_network(self, network_id: int | str = "all") -> None:
        await self.control.ok(f"ENABLE_NETWORK {network_id}")

    async def roam(self, bssid: str) -> None:
        """Move to another BSS of the current network (same SSID)."""
        await self.control.ok(f"ROAM {bssid}")

    async def reconnect(self) -> None:
        await self.control.ok("RECONNECT")

    async def disconnect(self) -> None:
        await self.control.ok("DISCONNECT")

    async def scan(self) -> None:
        """Ask for a scan; the results arrive as a ScanResult event."""
        reply = (await self.control.request("SCAN")).strip()
        if reply not in ("OK", "FAIL-BUSY"):  # busy: a scan is running, results will come
            raise WpaError(f"SCAN -> {reply!r}")

    async def scan_results(self) -> tuple[Bss, ...]:
        return parse_scan_results(await self.control.request("SCAN_RESULTS"))

    async def read_signal(self) -> SignalReport | None:
        """SIGNAL_POLL (RSSI dBm, LINKSPEED Mbit/s); None when not associated."""
        reply = await self.control.request("SIGNAL_POLL")
        if reply.strip().startswith("FAIL"):
            return None
        values = parse_key_values(reply)
        try:
            rssi = int(values["RSSI"])
            speed = int(values["LINKSPEED"]) * 1000 if "LINKSPEED" in values else None
        except (KeyError, ValueError) as error:
            raise WpaParseError(f"SIGNAL_POLL: {reply!r}") from error
        return SignalReport(self.name, rssi, None, speed)

    async def station(self) -> netlink.StationInfo | None:
        """nl80211 station info of the AP we are associated with (signal average, bitrates,
        retries, failures, inactivity): more than SIGNAL_POLL says. None when not associated."""
        stations = await netlink.station_info(self.ifname)
        return stations[0] if stations else None

    # -- events -------------------------------------------------------------------------------

    async def _events(self) -> None:
        async for message in self.monitor.events():
            try:
                event = parse_event(message)
            except WpaParseError as error:
                log.info("wlan %s: %s", self.name, error)
                continue
            try:
                await self._event(event)
            except (WpaError, WpaParseError, OSError) as error:
                log.warning("wlan %s: handling %s failed: %s", self.name, event.name, error)

    async def _event(self, event: WpaEvent) -> None:
        if event.name == "CTRL-EVENT-CONNECTED":
            await self._connected(event.fields.get("bssid"))
        elif event.name == "CTRL-EVENT-DISCONNECTED":
            await self._disconnected(describe_disconnect(event), event.fields.get("bssid"))
        elif event.name == "CTRL-EVENT-SCAN-RESULTS":
            self.emit(ScanResult(self.name, await self.scan_results()))
        elif event.name == "CTRL-EVENT-SIGNAL-CHANGE" and "signal" in event.fields:
            with contextlib.suppress(ValueError):
                rate = event.fields.get("txrate", "")
                self._report_signal(SignalReport(
                    self.name, int(event.fields["signal"]), None,
                    int(rate) * 100 if rate.isdigit() else None), force=False)

    async def _connected(self, bssid: str | None) -> None:
        status = await self.status()
        bssid = (status.get("bssid") or bssid or "").lower()
        if self.associated is not None and self.associated.bssid != bssid:
            # A roam: the old association ended (no DISCONNECTED is sent for it).
            await self._disconnected(f"roamed to {bssid}", self.associated.bssid)
        signal = await self.read_signal()
        self.associated = Associated(self.name, bssid, status.get("ssid", ""),
                                     signal.dbm if signal else None)
        log.info("wlan %s: associated with %s (%s), signal %s", self.name,
                 self.associated.ssid, bssid, self.associated.signal)
        self.emit(self.associated)
        if signal is not None:
            self._report_signal(signal, force=True)
        if self.dhcp is not None:
            await self.dhcp.start()

    async def _disconnected(self, reason: str, bssid: str | None) -> None:
        if self.associated is None:
            return
        old = self.associated
        self.associated = None
        self._last_signal = None
        log.info("wlan %s: disassociated from %s: %s", self.name, old.bssid, reason)
        self.emit(Disassociated(self.name, reason, bssid or old.bssid))
        if self.link is not None:
            self.link = None
            self.emit(LinkDown(self.name, f"disassociated: {reason}"))
        if self.dhcp is not None:
            await self.dhcp.stop()
            with contextlib.suppress(OSError, LookupError):
                await netlink.flush_ipv4(self.ifname)

    def _interface_changed(self, snapshot: netlink.InterfaceSnapshot) -> None:
        # Carrier loss can beat wpa_supplicant's event: act on whichever comes first.
        if self.associated is not None and not snapshot.carrier:
            task = asyncio.create_task(self._disconnected("carrier lost", None))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _lease_changed(self, lease: DhcpLease | None) -> None:
        task = asyncio.create_task(self._apply_lease(lease))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _apply_lease(self, lease: DhcpLease | None) -> None:
        if lease is None:
            if self.link is not None:
                self.link = None
                self.emit(LinkDown(self.name, "DHCP lease lost"))
            return
        if self.associated is None:
            return
        await netlink.set_ipv4_address(self.ifname, lease.address, lease.prefix_length)
        mac = None
        for neighbour in (lease.server, lease.gateway):
            if neighbour and mac is None:
                with contextlib.suppress(OSError, LookupError):
                    mac = await netlink.neighbour_mac(self.ifname, neighbour)
        link = LinkUp(self.name, self.ifname, lease.address, lease.gateway, lease.dns,
                      lease.prefix_length, mac)
        if link != self.link:
            self.link = link
            log.info("wlan %s: lease %s/%d gateway %s", self.name, lease.address,
                     lease.prefix_length, lease.gateway)
            self.emit(link)

    # -- signal ---------------------------------------------------------------------------------

    def _report_signal(self, report: SignalReport, force: bool) -> None:
        if report.dbm is None:
            return
        last = self._last_signal
        if force or last is None or abs(report.dbm - last) >= self.signal_step:
            self._last_signal = report.dbm
            self.emit(report)

    async def _signal_loop(self) -> None:
        while True:
            await asyncio.sleep(self.signal_interval)
            association = self.associated
            if association is None:
                continue
            try:
                report = await self.read_signal()
            except (WpaError, WpaParseError) as error:
                log.info("wlan %s: SIGNAL_POLL failed: %s", self.name, error)
                continue
            # The association may have ended (or changed) while we asked: a late answer
            # must not follow a Disassociated.
            if report is not None and self.associated is association:
                self._report_signal(report, force=False)
