"""The lab's emulated 3G modem: the AT interpreter, and the responder over a real pty."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from qemu.lab.modem import (
    AtInterpreter,
    ModemResponder,
    ModemState,
    Registration,
    make_raw,
)


def answer(interpreter: AtInterpreter, line: str) -> tuple[str, ...]:
    return interpreter.handle(line).lines


def test_basic_commands_answer_ok() -> None:
    modem = AtInterpreter(ModemState())
    for command in ("AT", "ATZ", "ATE0", "at", 'AT+CGDCONT=1,"IP","internet"'):
        assert answer(modem, command)[-1] == "OK", command
    assert modem.echo is False
    assert answer(modem, "AT+CGDCONT?") == ('+CGDCONT: 1,"IP","internet"', "OK")


def test_unknown_command_is_error_and_noise_is_ignored() -> None:
    modem = AtInterpreter(ModemState())
    assert answer(modem, "AT+FOO") == ("ERROR",)
    assert answer(modem, "hello") == ()


def test_signal_follows_state() -> None:
    state = ModemState()
    modem = AtInterpreter(state)
    state.set_signal(7)
    assert answer(modem, "AT+CSQ") == ("+CSQ: 7,99", "OK")
    state.set_signal(99)
    assert answer(modem, "AT+CSQ") == ("+CSQ: 99,99", "OK")
    with pytest.raises(ValueError):
        state.set_signal(32)


@pytest.mark.parametrize(
    ("registration", "stat", "operator"),
    [
        (Registration.HOME, 1, '+COPS: 0,0,"Lab Cell",2'),
        (Registration.SEARCHING, 2, "+COPS: 0"),
        (Registration.DENIED, 3, "+COPS: 0"),
        (Registration.ROAMING, 5, '+COPS: 0,0,"Lab Cell",2'),
    ],
)
def test_registration_answers(registration: Registration, stat: int, operator: str) -> None:
    modem = AtInterpreter(ModemState(registration=registration))
    assert answer(modem, "AT+CREG?") == (f"+CREG: 0,{stat}", "OK")
    assert answer(modem, "AT+CGREG?") == (f"+CGREG: 0,{stat}", "OK")
    assert answer(modem, "AT+COPS?") == (operator, "OK")


def test_sim_absent() -> None:
    modem = AtInterpreter(ModemState(sim_ready=False))
    assert answer(modem, "AT+CPIN?") == ("+CME ERROR: 10",)
    assert answer(modem, "AT+CREG?") == ("+CREG: 0,0", "OK")
    assert answer(modem, "ATD*99#") == ("+CME ERROR: 10",)


@pytest.mark.parametrize(
    ("state", "connects"),
    [
        (ModemState(), True),
        (ModemState(registration=Registration.ROAMING), True),
        (ModemState(registration=Registration.SEARCHING), False),
        (ModemState(registration=Registration.DENIED), False),
        (ModemState(signal=0), False),
        (ModemState(signal=99), False),
    ],
)
def test_dial_needs_registration_and_signal(state: ModemState, connects: bool) -> None:
    reply = AtInterpreter(state).handle("ATD*99#")
    assert reply.connect is connects
    assert reply.lines == (("CONNECT 14400000",) if connects else ("NO CARRIER",))
    assert AtInterpreter(state).handle("ATD*99***1#").connect is connects


# -- over a pty: the test holds the master, the responder the slave --------------------------


class Line:
    """The router's end of the serial line, as a chat script sees it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.received = b""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode() + b"\r")

    def expect(self, token: str, timeout: float = 3.0) -> str:
        deadline = time.monotonic() + timeout
        while token.encode() not in self.received:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.fd], [], [], max(remaining, 0))
            if not readable:
                raise AssertionError(f"no {token!r} within {timeout}s; got {self.received!r}")
            self.received += os.read(self.fd, 512)
        text = self.received.decode()
        self.received = b""
        return text

    def silent_for(self, seconds: float) -> bool:
        readable, _, _ = select.select([self.fd], [], [], seconds)
        return not readable


@pytest.fixture
def modem_on_pty() -> Iterator[tuple[Line, ModemState, threading.Event, ModemResponder]]:
    master, slave = os.openpty()
    make_raw(master)
    state = ModemState()
    call_started = threading.Event()
    call_may_end = threading.Event()

    def data_call() -> None:
        call_started.set()
        call_may_end.wait(5)

    responder = ModemResponder(slave, state, on_connect=data_call)
    responder.start()
    try:
        yield Line(master), state, call_may_end, responder
    finally:
        call_may_end.set()
        responder.stop()
        os.close(master)
        os.close(slave)


def test_pty_dialogue_with_echo_then_without(modem_on_pty) -> None:
    line, state, _, _ = modem_on_pty
    line.send("AT")
    assert line.expect("OK") == "AT\r\r\nOK\r\n"  # echo on, as modems start
    line.send("ATE0")
    line.expect("OK")
    line.send("AT+CSQ")
    assert line.expect("OK") == "\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    state.set_signal(5)
    line.send("AT+CSQ")
    assert "+CSQ: 5,99" in line.expect("OK")


def test_pty_hang_means_silence_and_recovery(modem_on_pty) -> None:
    line, state, _, _ = modem_on_pty
    state.hung = True
    line.send("AT")
    assert line.silent_for(0.5)
    state.hung = False
    line.send("AT")
    line.expect("OK")


def test_pty_dial_hands_over_the_line_and_takes_it_back(modem_on_pty) -> None:
    line, _, call_may_end, responder = modem_on_pty
    line.send("ATE0")
    line.expect("OK")
    line.send("ATD*99#")
    line.expect("CONNECT")
    assert responder.in_call.wait(2)
    line.send("AT")  # while in the call, the line is not the responder's
    assert line.silent_for(0.3)
    call_may_end.set()
    line.expect("NO CARRIER")
    line.send("AT")
    line.expect("OK")
    assert responder.commands_seen[:2] == ["ATE0", "ATD*99#"]
