"""The 3G path: a serial line made by socat, the emulated modem on the operator's end, pppd on
both ends once the router dials.

    router: pppd --chat--> <run>/ttyUSB2 ==socat== <run>/modem-line <-- ModemResponder (AT)
                                                                     <-- pppd server in `cell`

The lab also keeps one descriptor open on each end of the line: a pty whose last user closes
it makes socat's master read fail and socat exit, which would end the line at every hang-up.
"""

from __future__ import annotations

import os
import signal
import termios
import threading
from pathlib import Path

from . import plan
from .modem import ModemResponder, ModemState
from .shell import Daemon, LabError, run, wait_until

CHAT_SCRIPT = f"""ABORT "NO CARRIER"
ABORT "ERROR"
ABORT "+CME ERROR"
TIMEOUT 10
"" AT
OK ATE0
OK 'AT+CGDCONT=1,"IP","{plan.CELL_APN}"'
OK ATD*99#
CONNECT ""
"""

# Both pppd ends: no compression (keeps the link byte-exact for captures), quick LCP keepalive
# so a dead peer ends the session in seconds, and no locking or modem lines on a pty.
COMMON_PPP_OPTIONS = [
    "115200", "nodetach", "local", "nocrtscts", "nolock", "noauth",
    "noccp", "novj", "nobsdcomp", "nodeflate",
    "lcp-echo-interval", "1", "lcp-echo-failure", "5",
]


class CellularLine:
    """socat + modem responder + operator pppd; the modem knobs act on `state`."""

    def __init__(self, cell_namespace: str, router_namespace: str, run_dir: Path) -> None:
        self.cell_namespace = cell_namespace
        self.router_namespace = router_namespace
        self.run_dir = run_dir
        self.router_tty = run_dir / "ttyUSB2"
        self.modem_tty = run_dir / "modem-line"
        self.state = ModemState()
        self.errors: list[BaseException] = []
        self.socat = Daemon(
            "modem-line",
            ["socat", "-d", f"pty,raw,echo=0,link={self.router_tty}",
             f"pty,raw,echo=0,link={self.modem_tty}"],
            run_dir / "socat.log", cell_namespace,
            ready=lambda: self.router_tty.exists() and self.modem_tty.exists(),
        )
        self.operator_pppd = Daemon(
            "pppd-cell",
            ["pppd", str(self.modem_tty), *COMMON_PPP_OPTIONS, "unit", "100",
             f"{plan.CELL_GATEWAY_ADDRESS}:{plan.CELL_SUBSCRIBER_ADDRESS}",
             "ms-dns", plan.CELL_GATEWAY_ADDRESS, "nodefaultroute",
             "logfd", "1"],
            run_dir / "pppd-cell.log", cell_namespace,
        )
        self.calls = 0
        self._call_lock = threading.Lock()
        self._responder: ModemResponder | None = None
        self._descriptors: list[int] = []

    @property
    def running(self) -> bool:
        return self.socat.running and self._responder is not None

    def start(self) -> float:
        seconds = self.socat.start()
        flags = os.O_RDWR | os.O_NOCTTY
        modem_fd = os.open(self.modem_tty, flags)
        self._descriptors = [modem_fd, os.open(self.router_tty, flags)]
        self._responder = ModemResponder(modem_fd, self.state, self._data_call,
                                         on_error=self.errors.append)
        self._responder.start()
        return seconds

    def stop(self) -> None:
        """Unplug the modem: the router's tty disappears and its pppd sees a hang-up."""
        # An unplugged modem says no LCP goodbye (and SIGTERM would wait 3 s for its ack).
        self.operator_pppd.stop(signal.SIGKILL)
        if self._responder is not None:
            self._responder.stop()
            self._responder = None
        for fd in self._descriptors:
            os.close(fd)
        self._descriptors = []
        self.socat.stop()

    def restart(self) -> float:
        self.stop()
        return self.start()

    def detach(self) -> None:
        """The network ends the data call (LCP terminate towards the router)."""
        self.operator_pppd.stop(signal.SIGTERM)

    def commands_seen(self) -> list[str]:
        return list(self._responder.commands_seen) if self._responder else []

    def flush_router_side(self) -> None:
        """Drop modem output nobody read (a NO CARRIER from the last call) before a dial."""
        if self._descriptors:
            termios.tcflush(self._descriptors[1], termios.TCIOFLUSH)

    def _data_call(self) -> None:
        with self._call_lock:
            self.calls += 1
            self.operator_pppd.start()
            assert self.operator_pppd.process is not None
            self.operator_pppd.process.wait()


class Dialer:
    """The router-side pppd with a chat script (the product's modem driver replaces it)."""

    def __init__(self, line: CellularLine, namespace: str, run_dir: Path) -> None:
        self.line = line
        self.namespace = namespace
        self.interface = "ppp0"
        chat = run_dir / "chat-internet"
        chat.write_text(CHAT_SCRIPT)
        self.daemon = Daemon(
            "pppd-router",
            ["pppd", str(line.router_tty), *COMMON_PPP_OPTIONS, "unit", "0",
             "noipdefault", "nodefaultroute", "maxfail", "1",
             "connect", f"/usr/sbin/chat -v -s -f {chat}",
             "logfd", "1"],
            run_dir / "pppd-router.log", namespace,
            ready=self.has_address, ready_timeout=30,
        )

    def address(self) -> str | None:
        # `up`: pppd sets the address a moment before it brings the link up.
        result = run(["ip", "-n", self.namespace, "-4", "-o", "addr", "show", "dev",
                      self.interface, "up"], check=False)
        for word_index, word in enumerate(words := result.stdout.split()):
            if word == "inet":
                return words[word_index + 1].split("/")[0]
        return None

    def has_address(self) -> bool:
        return self.address() is not None

    def dial(self) -> tuple[str, float]:
        """Dial *99#; return ppp0's address and the seconds from start to IPCP up."""
        if not self.line.running:
            raise LabError("cannot dial: the modem is unplugged")
        self.line.flush_router_side()
        seconds = self.daemon.start()
        address = self.address()
        assert address is not None
        return address, seconds

    def hang_up(self, timeout: float = 10.0) -> None:
        self.daemon.stop(timeout=timeout)
        wait_until(lambda: not self.has_address(), timeout, "ppp0 to go away")


def ask_modem(tty_path: Path, command: str, timeout: float = 2.0) -> str:
    """Send one AT command on the router's end of the line; return what came back (may be '')
    once a final result code arrived or `timeout` passed. Only while no pppd owns the line."""
    import select
    import time

    fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        termios.tcflush(fd, termios.TCIOFLUSH)
        os.write(fd, command.encode() + b"\r")
        received = b""
        deadline = time.monotonic() + timeout
        while not any(code in received for code in (b"OK\r\n", b"ERROR", b"NO CARRIER",
                                                     b"CONNECT")):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                received += os.read(fd, 512)
        return received.decode(errors="replace")
    finally:
        os.close(fd)
