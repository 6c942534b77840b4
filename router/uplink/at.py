"""The AT command protocol of a cellular modem (3GPP TS 27.007 / ITU-T V.250), sans I/O.

Theory of operation
-------------------
:class:`AtChannel` turns bytes from the modem into *events* and commands into bytes, like h11:
the asyncio driver (``router.uplink.modem``) only moves bytes and keeps the clock.

- ``send(command) -> bytes``: at most one command is outstanding (V.250 5.2); a second ``send``
  before the first completed is our bug (:class:`AtBusy`).
- ``receive(data) -> [AtResponse | UnsolicitedLine]``: lines end in CR and/or LF (modems mix
  "\\r\\n", "\\r" and "\\n"); empty lines are dropped. While a command is outstanding, a line
  is, in this order of tests:

  1. the *echo* of the command (ATE1, or before ATE0 took effect): dropped;
  2. a *final result code* (OK, ERROR, +CME ERROR, +CMS ERROR, NO CARRIER, CONNECT, BUSY,
     NO ANSWER, NO DIALTONE): it completes an :class:`AtResponse`;
  3. a line with the command's own prefix ("+CSQ:" for AT+CSQ): information text;
  4. a line with a known *unsolicited* prefix (RING, +CREG:, +CGREG:, ^RSSI:, ...): an
     :class:`UnsolicitedLine`, delivered at once and never mistaken for the response;
  5. anything else: information text (free text as ATI answers it).

  With nothing outstanding every line is unsolicited, except a stray OK/ERROR, which is
  dropped (it is the late answer of a command we gave up on: see ``abandon``).
- ``CONNECT`` switches the channel to *data mode*: bytes after it are PPP, kept in
  ``data_after_connect``; ``receive`` refuses data until ``leave_data_mode()``.

The ``parse_*`` functions read one answer each and raise :class:`AtParseError` (with the line
and what was expected) on anything else; nothing else escapes them, whatever the modem sends.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from .events import Registration

MAX_LINE = 4096  # a line longer than this is line noise, not a modem answer


class AtParseError(ValueError):
    """A modem answer that does not have the expected shape."""

    def __init__(self, line: str, expected: str) -> None:
        super().__init__(f"cannot parse modem answer {line!r}: expected {expected}")
        self.line = line
        self.expected = expected


class AtBusy(RuntimeError):
    """Our bug: a command was sent while another was still outstanding, or in data mode."""


class FinalKind(enum.Enum):
    OK = "OK"
    CONNECT = "CONNECT"
    ERROR = "ERROR"
    CME_ERROR = "+CME ERROR"
    CMS_ERROR = "+CMS ERROR"
    NO_CARRIER = "NO CARRIER"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    NO_DIALTONE = "NO DIALTONE"


# 3GPP TS 27.007 section 9.2: the +CME ERROR codes a router meets, for readable errors.
CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    30: "no network service",
    31: "network timeout",
    100: "unknown",
    103: "illegal MS",
    106: "illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "location area not allowed",
    113: "roaming not allowed in this location area",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
    533: "missing or unknown APN",
}
SIM_ERRORS = frozenset({10, 11, 12, 13, 14, 15})
APN_ERRORS = frozenset({27, 132, 133, 149, 533})  # 27: the 24.008 cause "unknown APN"


@dataclass(frozen=True, slots=True)
class FinalResult:
    kind: FinalKind
    detail: str = ""  # CME/CMS code or text, CONNECT rate

    @property
    def success(self) -> bool:
        return self.kind in (FinalKind.OK, FinalKind.CONNECT)

    @property
    def error_code(self) -> int | None:
        if self.kind in (FinalKind.CME_ERROR, FinalKind.CMS_ERROR) and self.detail.isdigit():
            return int(self.detail)
        return None

    def describe(self) -> str:
        code = self.error_code
        if code is not None and self.kind is FinalKind.CME_ERROR:
            return f"+CME ERROR: {code} ({CME_ERRORS.get(code, 'unlisted')})"
        return f"{self.kind.value}: {self.detail}" if self.detail else self.kind.value


_FINAL = re.compile(
    r"^(OK|ERROR|NO CARRIER|BUSY|NO ANSWER|NO DIALTONE|NO DIAL TONE|CONNECT(?:\s+(.*))?"
    r"|\+CME ERROR:\s*(.*)|\+CMS ERROR:\s*(.*))$"
)


def parse_final(line: str) -> FinalResult | None:
    """The final result code in `line`, or None if it is not one (V.250 5.7.1)."""
    match = _FINAL.match(line.strip().upper())
    if match is None:
        return None
    word = match.group(1)
    if word.startswith("CONNECT"):
        return FinalResult(FinalKind.CONNECT, (match.group(2) or "").strip())
    if word.startswith("+CME"):
        return FinalResult(FinalKind.CME_ERROR, _original_detail(line))
    if word.startswith("+CMS"):
        return FinalResult(FinalKind.CMS_ERROR, _original_detail(line))
    if word == "NO DIAL TONE":
        return FinalResult(FinalKind.NO_DIALTONE)
    return FinalResult(FinalKind(word))


def _original_detail(line: str) -> str:
    # Keep the modem's own spelling of verbose errors (AT+CMEE=2: "+CME ERROR: SIM not inserted").
    return line.split(":", 1)[1].strip()


# Unsolicited result codes (27.007 and the vendor ones real modems send unasked).
UNSOLICITED_PREFIXES: tuple[str, ...] = (
    "RING", "+CRING:", "+CLIP:", "+CREG:", "+CGREG:", "+CEREG:", "+CMTI:", "+CMT:", "+CDS:",
    "+CBM:", "+CUSD:", "+CGEV:", "+CIEV:", "+CPIN:", "+PACSP", "+QIND:", "+QUSIM:", "RDY",
    "^RSSI:", "^HCSQ:", "^MODE:", "^BOOT:", "^SRVST:", "^SIMST:", "^SYSSTART", "^DSFLOWRPT:",
    "+ZDONR:", "+ZPASR:", "+STIN:", "+CSQN:", "+ECSQ:", "+NITZ:", "+CTZV:", "*PSNWID:",
)
_RESPONSE_PREFIX = re.compile(r"^AT([+^$%*][A-Z0-9]+)")


def response_prefix(command: str) -> str | None:
    """The prefix of the information lines `command` answers with: AT+CSQ -> "+CSQ:"."""
    match = _RESPONSE_PREFIX.match(command.strip().upper())
    return f"{match.group(1)}:" if match else None


def is_unsolicited_line(line: str) -> bool:
    upper = line.upper()
    return any(upper.startswith(prefix) for prefix in UNSOLICITED_PREFIXES)


@dataclass(frozen=True, slots=True)
class AtResponse:
    """The information lines and the final result code of one command."""

    command: str
    lines: tuple[str, ...]
    final: FinalResult

    @property
    def ok(self) -> bool:
        return self.final.success

    def line_with(self, prefix: str) -> str:
        for line in self.lines:
            if line.upper().startswith(prefix):
                return line
        raise AtParseError(" | ".join(self.lines), f"a line starting {prefix!r} in the answer "
                                                   f"to {self.command}")


@dataclass(frozen=True, slots=True)
class UnsolicitedLine:
    line: str


AtEvent = AtResponse | UnsolicitedLine


@dataclass
class AtChannel:
    """One AT command line's protocol state; see the module docstring."""

    pending: str | None = None
    data_mode: bool = False
    data_after_connect: bytes = b""
    dropped_lines: int = 0
    _buffer: bytes = b""
    _lines: list[str] = field(default_factory=list)
    _discarding: bool = False

    def send(self, command: str) -> bytes:
        if self.data_mode:
            raise AtBusy(f"cannot send {command!r}: the line is in data mode")
        if self.pending is not None:
            raise AtBusy(f"cannot send {command!r}: {self.pending!r} is still outstanding")
        if any(char in command for char in "\r\n"):
            raise AtBusy(f"a command is one line, got {command!r}")
        self.pending = command.strip()
        self._lines = []
        return f"{self.pending}\r".encode()

    def abandon(self) -> None:
        """The outstanding command timed out: forget it; its late final answer is dropped."""
        if self.pending is not None:
            self._discarding = True
        self.pending = None
        self._lines = []

    def reset(self) -> None:
        """Forget everything (the line was reopened or the modem restarted)."""
        self.pending, self.data_mode, self._discarding = None, False, False
        self._buffer, self._lines, self.data_after_connect = b"", [], b""

    def leave_data_mode(self) -> None:
        self.data_mode = False
        self.data_after_connect = b""
        self._buffer = b""

    def receive(self, data: bytes) -> list[AtEvent]:
        if self.data_mode:
            self.data_after_connect += data
            return []
        self._buffer += data
        events: list[AtEvent] = []
        while not self.data_mode:
            cut = _line_end(self._buffer)
            if cut < 0:
                if len(self._buffer) > MAX_LINE:
                    self._buffer = b""
                    self.dropped_lines += 1
                break
            raw, self._buffer = self._buffer[:cut], self._buffer[cut + 1 :]
            line = raw.decode("latin-1").strip()
            if line:
                events.extend(self._line(line))
        if self.data_mode:
            # CONNECT's line ends in CR LF; the LF left in the buffer is not PPP's.
            rest = self._buffer[1:] if self._buffer.startswith(b"\n") else self._buffer
            self.data_after_connect, self._buffer = rest, b""
        return events

    def _line(self, line: str) -> list[AtEvent]:
        pending = self.pending
        if pending is None:
            final = parse_final(line)
            if final is not None and final.kind is not FinalKind.NO_CARRIER:
                # A stray OK/ERROR: the late answer of an abandoned command.
                self._discarding = False
                self.dropped_lines += 1
                return []
            if self._discarding and not is_unsolicited_line(line) and final is None:
                self.dropped_lines += 1
                return []
            return [UnsolicitedLine(line)]
        if line.upper() == pending.upper():
            return []  # echo
        final = parse_final(line)
        if final is not None:
            response = AtResponse(pending, tuple(self._lines), final)
            self.pending, self._lines = None, []
            if final.kind is FinalKind.CONNECT:
                self.data_mode = True
            return [response]
        prefix = response_prefix(pending)
        if (prefix is None or not line.upper().startswith(prefix)) and is_unsolicited_line(line):
            return [UnsolicitedLine(line)]
        self._lines.append(line)
        return []


def _line_end(buffer: bytes) -> int:
    ends = [index for index in (buffer.find(b"\r"), buffer.find(b"\n")) if index >= 0]
    return min(ends) if ends else -1


# -- parsers of single answers ------------------------------------------------------------------


def _parameters(line: str, prefix: str) -> list[str]:
    if not line.upper().startswith(prefix):
        raise AtParseError(line, f"a line starting {prefix!r}")
    body = line[len(prefix) :].strip()
    return [part.strip() for part in _split_commas(body)] if body else []


def _split_commas(body: str) -> list[str]:
    """Split on commas outside double quotes (operator names may contain commas)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _integer(text: str, line: str, what: str) -> int:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise AtParseError(line, what)
    return int(text)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


@dataclass(frozen=True, slots=True)
class SignalQuality:
    rssi: int  # 0..31, 99 unknown (27.007 8.5)
    ber: int  # 0..7, 99 unknown

    @property
    def dbm(self) -> int | None:
        return csq_to_dbm(self.rssi)


def csq_to_dbm(rssi: int) -> int | None:
    """27.007 section 8.5: 0 -> -113 dBm or less, 31 -> -51 dBm or more, 99 unknown."""
    return -113 + 2 * rssi if 0 <= rssi <= 31 else None


def parse_csq(line: str) -> SignalQuality:
    """``+CSQ: <rssi>,<ber>``; some modems omit <ber> or pad with spaces."""
    values = _parameters(line, "+CSQ:")
    if not 1 <= len(values) <= 2:
        raise AtParseError(line, "+CSQ: <rssi>,<ber>")
    rssi = _integer(values[0], line, "+CSQ rssi 0..31 or 99")
    ber = _integer(values[1], line, "+CSQ ber 0..7 or 99") if len(values) == 2 else 99
    if not (rssi <= 31 or rssi == 99) or not (ber <= 7 or ber == 99):
        raise AtParseError(line, "+CSQ rssi 0..31 or 99, ber 0..7 or 99")
    return SignalQuality(rssi, ber)


def parse_huawei_rssi(line: str) -> SignalQuality:
    """Huawei's unsolicited ``^RSSI:<rssi>`` (same scale as +CSQ)."""
    values = _parameters(line, "^RSSI:")
    if len(values) != 1:
        raise AtParseError(line, "^RSSI:<rssi>")
    rssi = _integer(values[0], line, "^RSSI rssi 0..31 or 99")
    if not (rssi <= 31 or rssi == 99):
        raise AtParseError(line, "^RSSI rssi 0..31 or 99")
    return SignalQuality(rssi, 99)


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    kind: str  # "CREG", "CGREG", "CEREG"
    stat: Registration
    lac: str | None = None
    cell_id: str | None = None
    access_technology: int | None = None


_REGISTRATION = re.compile(r"^\+(CREG|CGREG|CEREG):")


def parse_registration(line: str) -> RegistrationInfo:
    """+CREG/+CGREG/+CEREG, both as the answer to the read command and unsolicited.

    The read answer is ``<n>,<stat>[,<lac>,<ci>[,<AcT>]]``, the unsolicited code
    ``<stat>[,<lac>,<ci>[,<AcT>]]`` (27.007 7.2). They are told apart by shape: in the read
    answer the location (quoted hex) starts at the third field, in the URC at the second.
    Some modems (Huawei) leave the location unquoted; then 2 or 4+ plain fields are the read
    form, 1 or 3 the URC form.
    """
    match = _REGISTRATION.match(line.strip().upper())
    if match is None:
        raise AtParseError(line, "+CREG:, +CGREG: or +CEREG:")
    kind = match.group(1)
    values = _parameters(line.strip(), f"+{kind}:")
    if not values:
        raise AtParseError(line, f"+{kind}: <stat>")
    quoted = [value.startswith('"') for value in values]
    if len(values) >= 2 and quoted[1]:
        read_form = False
    elif len(values) >= 3 and quoted[2]:
        read_form = True
    else:
        read_form = len(values) in (2, 4, 5)
    fields = values[1:] if read_form else values
    if read_form:
        _integer(values[0], line, f"+{kind} <n>")
    stat_number = _integer(fields[0], line, f"+{kind} <stat> 0..5")
    try:
        stat = Registration(stat_number)
    except ValueError:
        # 27.007 added 6..11 (SMS-only, emergency, CSFB): none of them carries our data.
        if stat_number > 11:
            raise AtParseError(line, f"+{kind} <stat> 0..11") from None
        stat = Registration.UNKNOWN
    lac = _unquote(fields[1]) if len(fields) > 1 else None
    cell = _unquote(fields[2]) if len(fields) > 2 else None
    technology = None
    if len(fields) > 3 and fields[3]:
        technology = _integer(fields[3], line, f"+{kind} <AcT>")
    return RegistrationInfo(kind, stat, lac or None, cell or None, technology)


def parse_cpin(line: str) -> str:
    """``+CPIN: READY`` / ``SIM PIN`` / ``SIM PUK`` ... -> the code, upper case."""
    values = _parameters(line.strip(), "+CPIN:")
    if len(values) != 1 or not values[0]:
        raise AtParseError(line, "+CPIN: <code>")
    return _unquote(values[0]).upper()


def parse_cops(line: str) -> str | None:
    """``+COPS: <mode>[,<format>,<oper>[,<AcT>]]``: the operator, None when not registered."""
    values = _parameters(line.strip(), "+COPS:")
    if not values:
        raise AtParseError(line, "+COPS: <mode>[,<format>,<oper>]")
    _integer(values[0], line, "+COPS <mode>")
    if len(values) == 1:
        return None
    if len(values) < 3:
        raise AtParseError(line, "+COPS: <mode>,<format>,<oper>")
    return _unquote(values[2]) or None


def parse_cgdcont(lines: tuple[str, ...] | list[str]) -> dict[int, tuple[str, str]]:
    """``+CGDCONT: <cid>,"<PDP type>","<APN>",...`` lines -> {cid: (type, apn)}."""
    contexts = {}
    for line in lines:
        values = _parameters(line.strip(), "+CGDCONT:")
        if len(values) < 3:
            raise AtParseError(line, '+CGDCONT: <cid>,"<type>","<apn>"')
        cid = _integer(values[0], line, "+CGDCONT <cid>")
        contexts[cid] = (_unquote(values[1]).upper(), _unquote(values[2]))
    return contexts


_APN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")


def check_apn(apn: str) -> str:
    """An APN is labels of letters, digits and hyphens (3GPP TS 23.003 9.1); anything else
    would break the quoting of AT+CGDCONT, so it is refused before it reaches the modem."""
    if not _APN.match(apn) or ".." in apn or apn.endswith((".", "-")):
        raise ValueError(f"invalid APN {apn!r}: letters, digits, '-' and '.' only")
    return apn


def define_context_command(apn: str, cid: int = 1, pdp_type: str = "IP") -> str:
    return f'AT+CGDCONT={cid},"{pdp_type}","{check_apn(apn)}"'
