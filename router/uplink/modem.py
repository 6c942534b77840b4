"""The 3G modem's AT control channel over a serial tty (asyncio driver over ``at.AtChannel``).

Theory of operation
-------------------
:class:`Modem` opens the tty raw and non-blocking and reads it with ``loop.add_reader``; bytes
go through the sans-I/O :class:`~router.uplink.at.AtChannel`. ``command()`` writes one command
and awaits its final result code with a timeout; commands are serialised by a lock, because
V.250 allows one outstanding command. Unsolicited codes (+CREG, +CGREG, ^RSSI, RING, NO CARRIER
with no command outstanding) become events the moment they arrive, even in the middle of a
command's answer.

What the driver reports (``emit``): :class:`ModemState` after ``initialise()`` and whenever a
poll changes it, :class:`SignalReport` when the signal changes, :class:`RegistrationChanged`
for registration URCs, :class:`ModemHung` when a command got no answer in time,
:class:`ModemReset` after ``reset()``, :class:`Unsolicited` for everything else. It decides
nothing: whether to redial, reset or switch uplinks is the caller's business.

Errors are named: :class:`SimNotReady` (no SIM, PIN needed: permanent until someone acts),
:class:`NotRegistered` (CREG/CGREG stat 0, 2, 3, 4), :class:`ApnRejected`,
:class:`ModemHungError` (timeout), :class:`CommandFailed` (any other ERROR / +CME ERROR),
:class:`ModemGone` (the tty hung up or vanished, e.g. USB re-enumeration).

One line, two users: with a single tty (the lab, many USB dongles), pppd needs the line for
data. ``release()`` closes our descriptor (the modem keeps its state); after the call ends,
``acquire()`` reopens it. A modem with a separate AT port (ttyUSB2 beside the data port
ttyUSB0) keeps the control channel open throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from dataclasses import replace
from pathlib import Path

from . import at
from .events import (
    Emit,
    ModemHung,
    ModemReset,
    ModemState,
    Registration,
    RegistrationChanged,
    SignalReport,
    Unsolicited,
)

log = logging.getLogger(__name__)


class ModemError(Exception):
    """The modem cannot do what was asked; the message says why in a user's words."""


class ModemHungError(ModemError):
    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"modem did not answer {command!r} within {timeout:g}s")
        self.command = command


class ModemGone(ModemError):
    """The tty hung up, was closed under us, or does not exist."""


class CommandFailed(ModemError):
    def __init__(self, response: at.AtResponse) -> None:
        super().__init__(f"{response.command} failed: {response.final.describe()}")
        self.response = response


class SimNotReady(ModemError):
    def __init__(self, state: str) -> None:
        super().__init__(f"SIM not ready: {state}")
        self.state = state


class NotRegistered(ModemError):
    def __init__(self, kind: str, registration: Registration) -> None:
        super().__init__(f"not registered with the network ({kind} stat "
                         f"{int(registration)} {registration.name})")
        self.registration = registration


class ApnRejected(ModemError):
    def __init__(self, apn: str, detail: str) -> None:
        super().__init__(f"APN {apn!r} rejected: {detail}")
        self.apn = apn


# +CME ERROR codes (27.007 9.2.1) that AT+CPIN? answers with instead of a +CPIN: line.
SIM_STATES = {10: "NOT INSERTED", 11: "SIM PIN", 12: "SIM PUK", 13: "SIM FAILURE",
              14: "SIM BUSY", 15: "SIM WRONG"}

BAUD_RATES = {9600: termios.B9600, 57600: termios.B57600, 115200: termios.B115200,
              230400: termios.B230400, 460800: termios.B460800, 921600: termios.B921600}


def open_serial(path: str | Path, baudrate: int = 115200) -> int:
    """Open a tty raw, 8N1, non-blocking, not as our controlling terminal."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd)
        attributes = termios.tcgetattr(fd)
        attributes[2] |= termios.CLOCAL | termios.CREAD  # cflag: ignore DCD for the AT port
        attributes[3] &= ~termios.ECHO
        speed = BAUD_RATES[baudrate]
        attributes[4] = attributes[5] = speed
        termios.tcsetattr(fd, termios.TCSANOW, attributes)
        termios.tcflush(fd, termios.TCIOFLUSH)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Modem:
    """The AT control channel of one modem (see the module docstring)."""

    def __init__(self, name: str, tty_path: str | Path, apn: str, emit: Emit, *,
                 command_timeout: float = 3.0, baudrate: int = 115200, cid: int = 1) -> None:
        self.name = name
        self.tty_path = Path(tty_path)
        self.apn = at.check_apn(apn)
        self.emit = emit
        self.command_timeout = command_timeout
        self.baudrate = baudrate
        self.cid = cid
        self.channel = at.AtChannel()
        self.state: ModemState | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._waiter: asyncio.Future[at.AtResponse] | None = None
        self._last_signal: int | None = None

    # -- the line -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    async def open(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = open_serial(self.tty_path, self.baudrate)
        except OSError as error:
            raise ModemGone(f"cannot open {self.tty_path}: {error.strerror}") from error
        self._fd = fd
        self.channel.reset()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)
        self._fail_waiter(ModemGone(f"{self.tty_path} closed"))

    async def release(self) -> None:
        """Give the line to pppd: wait for any command to finish, then close our end."""
        async with self._lock:
            self.close()

    async def acquire(self) -> None:
        """Take the line back after the data call (pppd exited)."""
        async with self._lock:
            await self.open()

    async def __aenter__(self) -> Modem:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as error:  # EIO: the other end hung up (pty closed, USB unplugged)
            data, reason = b"", error.strerror or "I/O error"
        else:
            reason = "end of file"
        if not data:
            self.close()
            self._fail_waiter(ModemGone(f"{self.tty_path}: {reason}"))
            return
        for event in self.channel.receive(data):
            if isinstance(event, at.AtResponse):
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(event)
            else:
                self._unsolicited(event.line)

    def _fail_waiter(self, error: ModemError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def _unsolicited(self, line: str) -> None:
        upper = line.upper()
        try:
            if upper.startswith(("+CREG:", "+CGREG:", "+CEREG:")):
                info = at.parse_registration(line)
                self.emit(RegistrationChanged(self.name, info.kind, info.stat))
                return
            if upper.startswith("^RSSI:"):
                self._report_signal(at.parse_huawei_rssi(line).rssi, force=False)
                return
        except at.AtParseError as error:
            log.info("modem %s: unreadable unsolicited code: %s", self.name, error)
        self.emit(Unsolicited(self.name, line))

    # -- commands -----------------------------------------------------------------------------

    async def command(self, command: str, timeout: float | None = None) -> at.AtResponse:
        """Send one command; return its answer (whatever the final result code)."""
        async with self._lock:
            return await self._command(command, timeout)

    async def _command(self, command: str, timeout: float | None) -> at.AtResponse:
        fd = self._fd
        if fd is None:
            raise ModemGone(f"{self.tty_path} is not open")
        timeout = self.command_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            await self._write(fd, self.channel.send(command))
            return await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
        except TimeoutError:
            self.channel.abandon()
            self.emit(ModemHung(self.name, command))
            raise ModemHungError(command, timeout) from None
        finally:
            if self.channel.pending is not None and not self._waiter.done():
                self.channel.abandon()
            self._waiter = None

    async def _write(self, fd: int, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        while data:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
                continue
            except OSError as error:
                raise ModemGone(f"{self.tty_path}: {error.strerror}") from error
            data = data[written:]

    async def expect_ok(self, command: str, timeout: float | None = None) -> at.AtResponse:
        response = await self.command(command, timeout)
        if not response.ok:
            raise CommandFailed(response)
        return response

    # -- the init sequence and the polls -------------------------------------------------------

    async def initialise(self) -> ModemState:
        """AT, ATE0, AT+CMEE=1, PIN, signal, registration, operator, APN; emit ModemState.

        Raises :class:`SimNotReady` (after emitting the state) when the SIM is absent or
        locked, :class:`ModemHungError` if the modem does not answer. Missing registration is
        reported in ``problem``, not raised: it usually comes by itself (a URC will say).
        """
        await self.open()
        await self._synchronise()
        await self.expect_ok("ATE0")
        await self.command("AT+CMEE=1")  # numeric +CME ERROR; some modems refuse: harmless
        sim = await self.read_sim()
        if sim != "READY":
            state = ModemState(self.name, sim, None, None, None, None,
                               problem=f"SIM not ready: {sim}")
            self._publish(state)
            raise SimNotReady(sim)
        state = await self.read_state(sim)
        await self.define_context()
        return state

    async def _synchronise(self) -> None:
        """A first AT; the answer to a half-typed line from before we opened may be an ERROR,
        and a modem that just woke up may eat the first command: one retry."""
        try:
            response = await self.command("AT")
        except ModemHungError:
            response = await self.command("AT")
        if not response.ok:
            await self.expect_ok("AT")

    async def read_sim(self) -> str:
        response = await self.command("AT+CPIN?")
        if response.ok:
            return at.parse_cpin(response.line_with("+CPIN:"))
        code = response.final.error_code
        if code is not None and code in SIM_STATES:
            return SIM_STATES[code]
        if response.final.kind is at.FinalKind.CME_ERROR:
            return response.final.detail.upper()  # verbose form, e.g. "SIM NOT INSERTED"
        raise CommandFailed(response)

    async def read_signal(self, only_changes: bool = False) -> SignalReport:
        """AT+CSQ; the SignalReport is emitted always, or only when it changed."""
        response = await self.expect_ok("AT+CSQ")
        quality = at.parse_csq(response.line_with("+CSQ:"))
        return self._report_signal(quality.rssi, force=not only_changes)

    def _report_signal(self, rssi: int, force: bool) -> SignalReport:
        report = SignalReport(self.name, at.csq_to_dbm(rssi), rssi)
        if force or rssi != self._last_signal:
            self.emit(report)
        self._last_signal = rssi
        return report

    async def read_registration(self, command: str) -> at.RegistrationInfo | None:
        """AT+CREG? / AT+CGREG?; None if the modem does not know the command."""
        response = await self.command(command)
        if not response.ok:
            return None
        return at.parse_registration(response.line_with(at.response_prefix(command) or ""))

    async def read_operator(self) -> str | None:
        response = await self.command("AT+COPS?")
        if not response.ok:
            return None
        return at.parse_cops(response.line_with("+COPS:"))

    async def read_state(self, sim: str = "READY") -> ModemState:
        """Signal, registration and operator; emits ModemState when it changed."""
        signal = await self.read_signal(only_changes=True)
        circuit = await self.read_registration("AT+CREG?")
        packet = await self.read_registration("AT+CGREG?")
        operator = await self.read_operator()
        registrations = [info for info in (packet, circuit) if info is not None]
        problem = None
        if not registrations:
            problem = "modem answers neither AT+CREG? nor AT+CGREG?"
        elif not registrations[0].stat.registered:
            info = registrations[0]
            problem = f"not registered ({info.kind} stat {int(info.stat)} {info.stat.name})"
        elif signal.dbm is None:
            problem = "no signal (+CSQ 99)"
        state = ModemState(self.name, sim, circuit.stat if circuit else None,
                           packet.stat if packet else None, operator, signal.dbm, problem)
        self._publish(state)
        return state

    def _publish(self, state: ModemState) -> None:
        previous, self.state = self.state, state
        if previous is None or replace(previous, signal_dbm=None) != replace(state,
                                                                           signal_dbm=None):
            self.emit(state)

    async def define_context(self) -> None:
        command = at.define_context_command(self.apn, self.cid)
        response = await self.command(command)
        if response.ok:
            return
        code = response.final.error_code
        if code in at.APN_ERRORS or response.final.kind is at.FinalKind.ERROR:
            raise ApnRejected(self.apn, response.final.describe())
        raise CommandFailed(response)

    async def check_ready(self) -> ModemState:
        """Raise the named error that stops a dial now (no SIM, not registered); else the
        fresh state."""
        sim = await self.read_sim()
        if sim != "READY":
            raise SimNotReady(sim)
        state = await self.read_state(sim)
        stat = state.packet_registration if state.packet_registration is not None \
            else state.registration
        if stat is None or not stat.registered:
            kind = "CGREG" if state.packet_registration is not None else "CREG"
            raise NotRegistered(kind, stat if stat is not None else Registration.UNKNOWN)
        return state

    async def poll(self, interval: float) -> None:
        """Read the state every `interval` seconds while the line is ours; until cancelled.
        A hung modem is reported (ModemHung) and the polls go on: the caller decides."""
        while True:
            if self.is_open:
                with contextlib.suppress(ModemHungError, ModemGone, at.AtParseError):
                    await self.read_state()
            await asyncio.sleep(interval)

    # -- reset --------------------------------------------------------------------------------

    async def reset(self, reappear_timeout: float = 30.0) -> bool:
        """Close and reopen the line; if the modem answers, restart it with AT+CFUN=1,1 and
        wait for it to answer again (a USB modem's tty vanishes meanwhile). Emits ModemReset;
        returns whether the modem answers afterwards."""
        async with self._lock:
            self.close()
            with contextlib.suppress(ModemGone):
                await self.open()
        answering = await self._answers()
        how = "reopened"
        if answering:
            try:
                response = await self.command("AT+CFUN=1,1", timeout=10.0)
            except (ModemHungError, ModemGone):
                response = None
            if response is not None and response.ok:
                how = "AT+CFUN=1,1"
                answering = await self._wait_reappear(reappear_timeout)
        self.emit(ModemReset(self.name, how, answering))
        return answering

    async def _answers(self) -> bool:
        if not self.is_open:
            return False
        try:
            return (await self.command("AT", timeout=min(self.command_timeout, 2.0))).ok
        except (ModemHungError, ModemGone):
            return False

    async def _wait_reappear(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.sleep(1.0)  # the restart takes the tty away a moment after OK
        while loop.time() < deadline:
            async with self._lock:
                self.close()
                with contextlib.suppress(ModemGone):
                    await self.open()
            if await self._answers():
                return True
            await asyncio.sleep(1.0)
        return False
