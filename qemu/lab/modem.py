"""An emulated 3G modem: an AT-command responder on a tty (no software modem is packaged).

`AtInterpreter` is pure: one command line in, the reply lines out, plus whether the line is
now a data call. `ModemResponder` runs it on a tty in a thread; after `CONNECT` it hands the
line to a callback (the lab starts the operator's pppd there) and takes it back when that
returns, answering `NO CARRIER` as a real modem does when the call ends.

The lab changes the network's view of the subscriber through `ModemState`: signal (+CSQ
0-31, 99 = unknown), registration, SIM presence, and `hung` (the modem stops answering).
"""

from __future__ import annotations

import enum
import os
import re
import select
import termios
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field


class Registration(enum.IntEnum):
    """3GPP TS 27.007 +CREG/+CGREG <stat> values."""

    NOT_SEARCHING = 0
    HOME = 1
    SEARCHING = 2
    DENIED = 3
    UNKNOWN = 4
    ROAMING = 5


@dataclass(slots=True)
class ModemState:
    """What the network currently lets the modem see; the lab's knobs write it."""

    signal: int = 20
    registration: Registration = Registration.HOME
    sim_ready: bool = True
    hung: bool = False
    operator: str = "Lab Cell"

    def set_signal(self, rssi: int) -> None:
        if not (0 <= rssi <= 31 or rssi == 99):
            raise ValueError(f"+CSQ rssi must be 0..31 or 99, got {rssi}")
        self.signal = rssi

    @property
    def effective_registration(self) -> Registration:
        # Without a SIM the modem cannot even try to register.
        return self.registration if self.sim_ready else Registration.NOT_SEARCHING

    @property
    def can_dial(self) -> bool:
        registered = self.effective_registration in (Registration.HOME, Registration.ROAMING)
        return registered and self.signal not in (0, 99)


@dataclass(frozen=True, slots=True)
class AtReply:
    lines: tuple[str, ...]
    connect: bool = False


OK = "OK"
ERROR = "ERROR"
SIM_NOT_INSERTED = "+CME ERROR: 10"  # 3GPP TS 27.007 section 9.2.1
DIAL = re.compile(r"^ATD\*99(\*\*\*\d+)?#$")
CGDCONT_SET = re.compile(r'^AT\+CGDCONT=(\d+),"([A-Z0-9]+)","([^"]*)"')


@dataclass
class AtInterpreter:
    """The command set of DESIGN.md section 5, answered from a `ModemState`."""

    state: ModemState
    echo: bool = True
    contexts: dict[int, tuple[str, str]] = field(default_factory=dict)

    def handle(self, line: str) -> AtReply:
        command = line.strip().upper()
        if not command.startswith("AT"):
            return AtReply(())  # line noise between commands: a real modem ignores it
        simple = self._simple_reply(command)
        if simple is not None:
            return AtReply(simple)
        if CGDCONT_SET.match(command):
            return self._define_context(line.strip())
        if DIAL.match(command):
            return self._dial()
        return AtReply((ERROR,))

    def _simple_reply(self, command: str) -> tuple[str, ...] | None:
        state = self.state
        registration = int(state.effective_registration)
        if command in ("AT", "ATZ", "AT&F", "ATH", "ATH0", "ATQ0", "ATV1", "AT+CMEE=1"):
            return (OK,)
        if command in ("ATE0", "ATE1"):
            self.echo = command == "ATE1"
            return (OK,)
        if command in ("ATI", "AT+CGMI"):
            return ("Lab Modem 3G", OK)
        if command == "AT+CPIN?":
            return ("+CPIN: READY", OK) if state.sim_ready else (SIM_NOT_INSERTED,)
        if command == "AT+CSQ":
            return (f"+CSQ: {state.signal},99", OK)
        if command == "AT+CREG?":
            return (f"+CREG: 0,{registration}", OK)
        if command == "AT+CGREG?":
            return (f"+CGREG: 0,{registration}", OK)
        if command == "AT+COPS?":
            if state.effective_registration in (Registration.HOME, Registration.ROAMING):
                return (f'+COPS: 0,0,"{state.operator}",2', OK)
            return ("+COPS: 0", OK)
        if command == "AT+CGDCONT?":
            return (*(f'+CGDCONT: {cid},"{kind}","{apn}"'
                      for cid, (kind, apn) in sorted(self.contexts.items())), OK)
        return None

    def _define_context(self, line: str) -> AtReply:
        match = CGDCONT_SET.match(line.upper())
        assert match is not None
        # Keep the APN as typed (case matters to some operators).
        apn = line.split(",", 2)[2].strip().strip('"')
        self.contexts[int(match.group(1))] = (match.group(2), apn)
        return AtReply((OK,))

    def _dial(self) -> AtReply:
        if not self.state.sim_ready:
            return AtReply((SIM_NOT_INSERTED,))
        if not self.state.can_dial:
            return AtReply(("NO CARRIER",))
        return AtReply(("CONNECT 14400000",), connect=True)


def frame(lines: tuple[str, ...]) -> bytes:
    """Result codes as a modem in verbose mode sends them: each wrapped in CR LF."""
    return b"".join(f"\r\n{line}\r\n".encode() for line in lines)


class ModemResponder:
    """Serves `AtInterpreter` on an open tty fd in a background thread.

    `on_connect` is called (in the thread) after CONNECT was sent; the line belongs to it until
    it returns. While hung, input is read and dropped, so the other side sees silence.
    """

    def __init__(
        self,
        fd: int,
        state: ModemState,
        on_connect: Callable[[], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.fd = fd
        self.state = state
        self.on_connect = on_connect
        self.on_error = on_error
        self.interpreter = AtInterpreter(state)
        self.commands_seen: list[str] = []
        self.in_call = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="modem", daemon=True)

    def start(self) -> None:
        make_raw(self.fd)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        os.write(self._wake_write, b"x")
        self._thread.join(10)
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _serve(self) -> None:
        buffer = b""
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([self.fd, self._wake_read], [], [], 1.0)
                if self.fd not in readable:
                    continue
                chunk = os.read(self.fd, 512)
                if not chunk or self.state.hung:
                    buffer = b""
                    continue
                buffer = self._consume(buffer + chunk)
        except OSError as error:
            if not self._stopping.is_set() and self.on_error is not None:
                self.on_error(error)

    def _consume(self, buffer: bytes) -> bytes:
        """Answer every complete command line in `buffer`; return the unfinished rest."""
        while True:
            cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
            if cut < 0:
                return buffer
            raw, buffer = buffer[:cut], buffer[cut + 1 :]
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            self.commands_seen.append(line)
            reply = self.interpreter.handle(line)
            echo = f"{line}\r".encode() if self.interpreter.echo else b""
            os.write(self.fd, echo + frame(reply.lines))
            if reply.connect:
                self._hand_over_line()
                return b""

    def _hand_over_line(self) -> None:
        self.in_call.set()
        try:
            self.on_connect()
        finally:
            self.in_call.clear()
            make_raw(self.fd)
            termios.tcflush(self.fd, termios.TCIFLUSH)
            os.write(self.fd, frame(("NO CARRIER",)))


def make_raw(fd: int) -> None:
    """Raw 8-bit line, no echo by the tty itself: the responder echoes like a modem."""
    tty.setraw(fd)
    attributes = termios.tcgetattr(fd)
    attributes[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attributes)
