"""The 3G data link: pppd with a chat script, supervised from asyncio.

Theory of operation
-------------------
:class:`PppLink` runs one pppd per data call (``nodetach``, ``maxfail 1``): we do the redialling
ourselves, so that every attempt and every failure is an event with its reason. pppd's own log
(``logfd 1``, read from a pipe; the chat script's ``-v -s`` output lands there too) gives the
IPCP results and the reasons for failures; rtnetlink gives the interface: ``LinkUp`` is emitted
when pppd has logged IPCP's addresses *and* netlink shows the address on ``ppp<unit>``, and
``LinkDown`` the moment netlink sees the address or the link go (an L2 trigger: the daemon
acts at once), with the best reason pppd logged so far (LCP terminated by peer, no answer to
LCP echoes, modem hang-up). pppd never touches routes (``nodefaultroute``) nor resolv.conf
(its ip-up/ip-down scripts are replaced by /bin/true): routing and DNS are the daemon's.

``run()`` supervises: dial; on failure emit :class:`DialFailed` and wait an exponential
backoff; after ``reset_after`` consecutive failures reset the modem (close/reopen, AT+CFUN=1,1).
A call that came up and later dropped is redialled at once.

With a :class:`~router.uplink.modem.Modem` on the same tty (the lab; many USB dongles), each
attempt checks the modem first (SIM, registration: named errors, no dial), releases the line
to pppd, and takes it back when pppd exits. With a separate AT port, the modem stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

from . import at
from .events import DialFailed, Emit, LinkDown, LinkUp
from .modem import Modem, ModemError
from .netlink import InterfaceSnapshot, InterfaceWatch

log = logging.getLogger(__name__)

# pppd(8) EXIT STATUS.
PPPD_EXIT: dict[int, str] = {
    0: "pppd ended",
    1: "pppd fatal error",
    2: "pppd option error",
    3: "pppd not run as root",
    4: "kernel has no PPP support",
    5: "pppd stopped by a signal",
    6: "serial port lock failed",
    7: "serial port could not be opened",
    8: "connect script failed",
    10: "PPP negotiation failed",
    11: "peer failed to authenticate",
    12: "idle timeout",
    13: "connect time limit",
    15: "link dead: no answer to LCP echo requests",
    16: "modem hung up",
    17: "serial loopback detected",
    18: "init script failed",
    19: "authentication to the peer failed (wrong APN credentials?)",
}


LOG_GRACE = 0.05  # seconds a netlink "down" waits for pppd's log line saying why


class DialError(Exception):
    """One dial attempt failed; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures (1 -> initial)."""
        return float(min(self.maximum, self.initial * self.factor ** max(failures - 1, 0)))


def chat_script(apn: str, cid: int = 1, dial: str = "ATD*99#", timeout: int = 15) -> str:
    """The chat(8) script: abort on any failure code, define the context, dial."""
    command = at.define_context_command(apn, cid)
    return "\n".join([
        'ABORT "NO CARRIER"', 'ABORT "ERROR"', 'ABORT "+CME ERROR"', 'ABORT "BUSY"',
        'ABORT "NO DIALTONE"', 'ABORT "NO ANSWER"', f"TIMEOUT {timeout}",
        '"" AT', "OK ATE0", f"OK '{command}'", f"OK {dial}", 'CONNECT ""', "",
    ])


def pppd_arguments(tty: str, name: str, unit: int, chat_file: Path, *, pppd: str = "pppd",
                   chat: str = "chat", baudrate: int = 115200,
                   line_options: tuple[str, ...] = ("local", "nocrtscts", "nolock"),
                   lcp_echo_interval: int = 1, lcp_echo_failure: int = 3,
                   extra_options: tuple[str, ...] = ()) -> list[str]:
    return [
        pppd, tty, str(baudrate), *line_options,
        "nodetach", "maxfail", "1", "noauth", "noipdefault", "nodefaultroute", "usepeerdns",
        "ipparam", name, "unit", str(unit), "linkname", name,
        "lcp-echo-interval", str(lcp_echo_interval),
        "lcp-echo-failure", str(lcp_echo_failure),
        "ip-up-script", "/bin/true", "ip-down-script", "/bin/true",
        "connect", f"{chat} -v -s -f {chat_file}",
        "logfd", "1",
        *extra_options,
    ]


# -- pppd's log, read as facts (pure) -----------------------------------------------------------

_IP = r"(\d{1,3}(?:\.\d{1,3}){3})"
_LOG_FACTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"^local\s+IP address {_IP}"), "local"),
    (re.compile(rf"^remote IP address {_IP}"), "remote"),
    (re.compile(rf"^(?:primary|secondary)\s+DNS address {_IP}"), "dns"),
    (re.compile(r"^Using interface (\S+)"), "interface"),
    (re.compile(r"(\+CME ERROR:?\s*\d+)"), "failure"),
    # chat -v logs "abort on (X)" when the script *declares* X; it logs "Failed (X)" when X
    # came, and "alarm" then "Failed" on a timeout.
    (re.compile(r"^Failed \((.+)\)"), "failure"),
    (re.compile(r"^(LCP terminated by peer.*)"), "reason"),
    (re.compile(r"^(No response to \d+ echo-requests)"), "reason"),
    (re.compile(r"^(Modem hangup)"), "reason"),
    (re.compile(r"^(Serial link appears to be disconnected)"), "reason"),
    (re.compile(r"^(Connect script failed)"), "reason"),
    (re.compile(r"^((?:LCP|IPCP): timeout sending Config-Requests)"), "reason"),
    (re.compile(r"^(\S+ authentication failed.*)"), "reason"),
    (re.compile(r"^(Failed to open \S+.*)"), "reason"),
    (re.compile(r"^(alarm)$"), "failure"),
)


def parse_pppd_line(line: str) -> tuple[str, str] | None:
    """One line of pppd's (or chat's) log -> (fact, value), or None if it says nothing we use."""
    text = line.strip()
    # chat -v prefixes nothing with -s; some builds prefix "chat:  ".
    text = re.sub(r"^chat:\s+", "", text)
    for pattern, fact in _LOG_FACTS:
        match = pattern.search(text)
        if match:
            value = match.group(1)
            if fact == "failure" and value == "alarm":
                value = "modem did not answer the chat script (timeout)"
            return fact, value
    return None


@dataclass
class CallLog:
    """What pppd said about one call."""

    local: str | None = None
    remote: str | None = None
    dns: list[str] = field(default_factory=list)
    interface: str | None = None
    failure: str | None = None  # the chat script's
    reason: str | None = None  # the link's

    def feed(self, line: str) -> bool:
        """Take one log line; True if it changed anything."""
        fact = parse_pppd_line(line)
        if fact is None:
            return False
        key, value = fact
        if key == "dns":
            if value in self.dns:
                return False
            self.dns.append(value)
        elif key == "failure":
            # Keep the most specific: "+CME ERROR: 533" beats "abort on (+CME ERROR)".
            if self.failure is None or not re.search(r"\d", self.failure):
                self.failure = value
        elif key == "reason" and self.reason is not None:
            return False  # the first reason is the cause; "Modem hangup" etc. follow from it
        else:
            setattr(self, key, value)
        return True

    def explain(self, exit_code: int | None, modem_checked: bool, was_up: bool = False) -> str:
        if was_up and self.reason is not None:
            return self.reason
        if self.failure is not None:
            text = self.failure
            digits = re.sub(r"\D", "", text)
            if text.startswith("+CME") and digits:
                code = int(digits)
                text = f"{text} ({at.CME_ERRORS.get(code, 'unlisted')})"
                if code in at.APN_ERRORS:
                    text += ": check the APN"
            elif text == "NO CARRIER" and modem_checked:
                text += " after dialling although registered: APN or subscription refused?"
            return f"dial failed: {text}"
        if self.reason is not None:
            return self.reason
        if exit_code is not None:
            return PPPD_EXIT.get(exit_code, f"pppd exited with status {exit_code}")
        return "pppd ended"


# -- the driver -----------------------------------------------------------------------------------


class PppLink:
    """One 3G uplink: modem (optional) + pppd on ``ppp<unit>``; see the module docstring."""

    def __init__(self, name: str, tty: str | Path, apn: str, emit: Emit, *, run_dir: Path,
                 unit: int = 0, modem: Modem | None = None, pppd: str = "pppd",
                 chat: str = "chat", line_options: tuple[str, ...] = ("local", "nocrtscts",
                                                                     "nolock"),
                 lcp_echo_interval: int = 1, lcp_echo_failure: int = 3,
                 connect_timeout: float = 45.0, backoff: Backoff | None = None,
                 reset_after: int = 3, extra_options: tuple[str, ...] = ()) -> None:
        self.name = name
        self.tty = str(tty)
        self.apn = at.check_apn(apn)
        self.emit = emit
        self.unit = unit
        self.ifname = f"ppp{unit}"
        self.modem = modem
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self.reset_after = reset_after
        self.failures = 0
        run_dir.mkdir(parents=True, exist_ok=True)
        self.chat_file = run_dir / f"chat-{name}"
        self.chat_file.write_text(chat_script(self.apn))
        self.argv = pppd_arguments(self.tty, name, unit, self.chat_file, pppd=pppd, chat=chat,
                                   line_options=line_options,
                                   lcp_echo_interval=lcp_echo_interval,
                                   lcp_echo_failure=lcp_echo_failure,
                                   extra_options=extra_options)
        self.log_lines: list[str] = []  # this call's pppd log, for diagnostics
        self.link: LinkUp | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._session: asyncio.Task[str] | None = None
        self._up: asyncio.Future[LinkUp] | None = None
        self._down: asyncio.Event = asyncio.Event()
        self._call = CallLog()
        self._snapshot = InterfaceSnapshot(self.ifname)
        self._grace: asyncio.TimerHandle | None = None

    @property
    def shares_line(self) -> bool:
        return self.modem is not None and str(self.modem.tty_path) == self.tty

    # -- one call -----------------------------------------------------------------------------

    async def dial(self) -> LinkUp:
        """One attempt: returns the LinkUp (also emitted) or raises DialError with the reason."""
        if self._session is not None and not self._session.done():
            raise DialError("already dialled")
        if not Path(self.tty).exists():
            raise DialError(f"{self.tty}: no such device (modem unplugged?)")
        modem_checked = False
        if self.modem is not None:
            try:
                await self.modem.open()
                await self.modem.check_ready()
                modem_checked = True
                if self.shares_line:
                    await self.modem.release()
            except (ModemError, at.AtParseError) as error:
                raise DialError(str(error)) from error
        loop = asyncio.get_running_loop()
        self._up = loop.create_future()
        self._down = asyncio.Event()
        self._call = CallLog()
        self.log_lines = []
        self.link = None
        watch = InterfaceWatch(self.ifname, self._interface_changed)
        await watch.start()
        self._snapshot = watch.snapshot
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            await watch.stop()
            await self._give_line_back()
            raise DialError(f"cannot start pppd: {error}") from error
        log.info("uplink %s: dialling on %s (pppd pid %d)", self.name, self.tty,
                 self._process.pid)
        self._session = asyncio.create_task(self._supervise(self._process, watch,
                                                            modem_checked),
                                            name=f"pppd {self.name}")
        up = self._up
        try:
            waiting: set[asyncio.Future[object]] = {up, self._session}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(waiting, timeout=self.connect_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.hang_up()
            raise
        if up in done:
            return up.result()
        if self._session in done:
            raise DialError(self._session.result())
        await self.hang_up()
        raise DialError(f"no IPCP within {self.connect_timeout:g}s: "
                        f"{self._call.explain(None, modem_checked)}")

    async def _supervise(self, process: asyncio.subprocess.Process, watch: InterfaceWatch,
                         modem_checked: bool) -> str:
        """Read pppd's log until it exits; return the reason the call ended."""
        assert process.stdout is not None
        try:
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip()
                self.log_lines.append(line)
                log.debug("pppd %s: %s", self.name, line)
                if self._call.feed(line):
                    self._maybe_up()
            code = await process.wait()
        finally:
            await watch.stop()
        reason = self._call.explain(code, modem_checked, was_up=self.link is not None)
        if self.link is not None:
            self._link_down(reason)
        await self._give_line_back()
        return reason

    async def _give_line_back(self) -> None:
        if self.modem is not None and self.shares_line:
            with contextlib.suppress(ModemError):
                await self.modem.acquire()

    def _interface_changed(self, snapshot: InterfaceSnapshot) -> None:
        self._snapshot = snapshot
        if self.link is not None:
            if not snapshot.present:
                self._soon_down(f"{self.ifname} went away")
            elif not any(a.local == self.link.address for a in snapshot.addresses):
                self._soon_down(f"{self.ifname} lost its address")
            return
        self._maybe_up()

    def _soon_down(self, fallback: str) -> None:
        """pppd logs why (LCP terminated, echo timeout) before it takes the interface down,
        but its pipe and our netlink socket are two streams: give the log a moment."""
        if self._down.is_set() or self._grace is not None:
            return

        def fire() -> None:
            self._grace = None
            self._link_down(self._call.reason or fallback)

        self._grace = asyncio.get_running_loop().call_later(LOG_GRACE, fire)

    def _maybe_up(self) -> None:
        call, snapshot = self._call, self._snapshot
        if self.link is not None:
            if call.dns and tuple(call.dns) != self.link.dns:  # DNS lines came after
                self.link = LinkUp(self.name, self.ifname, self.link.address,
                                   self.link.gateway, tuple(call.dns))
                self.emit(self.link)
            return
        if call.local is None or call.remote is None:
            return
        if not any(a.local == call.local for a in snapshot.addresses):
            return
        self.link = LinkUp(self.name, self.ifname, call.local, call.remote, tuple(call.dns))
        log.info("uplink %s: up on %s, %s peer %s", self.name, self.ifname, call.local,
                 call.remote)
        self.emit(self.link)
        if self._up is not None and not self._up.done():
            self._up.set_result(self.link)

    def _link_down(self, reason: str) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._down.is_set():
            return
        self._down.set()
        log.info("uplink %s: down: %s", self.name, reason)
        self.emit(LinkDown(self.name, reason))

    async def wait_down(self) -> str:
        """Wait until the current call ends (pppd exited); return why."""
        if self._session is None:
            return "not dialled"
        return await asyncio.shield(self._session)

    async def hang_up(self, timeout: float = 5.0) -> None:
        """End the call: SIGTERM (pppd sends LCP terminate), SIGKILL after `timeout`."""
        process, session = self._process, self._session
        if process is None or session is None:
            return
        if process.returncode is None:
            self._call.reason = self._call.reason or "hung up by us"
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(session), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        with contextlib.suppress(Exception):
            await session

    # -- supervision --------------------------------------------------------------------------

    async def run(self) -> None:
        """Dial, and redial whenever the call ends or fails, until cancelled."""
        try:
            while True:
                try:
                    await self.dial()
                except DialError as error:
                    await self._failed(str(error))
                    continue
                self.failures = 0
                await self.wait_down()
        finally:
            await self.hang_up()

    async def _failed(self, reason: str) -> None:
        self.failures += 1
        reset = self.modem is not None and self.failures % self.reset_after == 0
        delay = self.backoff.delay(self.failures)
        log.info("uplink %s: dial attempt %d failed: %s; retry in %.1fs%s", self.name,
                 self.failures, reason, delay, " after a modem reset" if reset else "")
        self.emit(DialFailed(self.name, reason, self.failures, delay))
        if reset and self.modem is not None:
            await self.modem.reset()
        await asyncio.sleep(delay)
