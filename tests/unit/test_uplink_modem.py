"""The modem driver over a real pty: against the lab's AT responder (qemu/lab/modem.py), and
against a scripted modem that answers the way real ones do (echo, URCs mid-answer, silence)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from qemu.lab.modem import ModemResponder, make_raw
from qemu.lab.modem import ModemState as LabModemState
from qemu.lab.modem import Registration as LabRegistration
from router.uplink import events as ev
from router.uplink.modem import (
    ApnRejected,
    Modem,
    ModemGone,
    ModemHungError,
    NotRegistered,
    SimNotReady,
)


@dataclass
class Recorder:
    events: list[ev.UplinkEvent] = field(default_factory=list)

    def __call__(self, event: ev.UplinkEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [event for event in self.events if isinstance(event, kind)]


@dataclass
class LabLine:
    path: str
    state: LabModemState
    responder: ModemResponder


@pytest.fixture
def lab_modem() -> Iterator[LabLine]:
    """The lab's responder holds the pty master; the driver opens the slave by its path.
    The test keeps one slave descriptor open so the pty survives the driver's reopenings."""
    master, slave = os.openpty()
    state = LabModemState()
    responder = ModemResponder(master, state, on_connect=lambda: None)
    responder.start()
    try:
        yield LabLine(os.ttyname(slave), state, responder)
    finally:
        responder.stop()
        os.close(master)
        os.close(slave)


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coroutine(), 30))


def test_initialise_against_the_lab_modem(lab_modem: LabLine) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", lab_modem.path, "internet", recorder) as modem:
            state = await modem.initialise()
            assert state == ev.ModemState("cell", "READY", ev.Registration.HOME,
                                          ev.Registration.HOME, "Lab Cell", -73, None)
            lab_modem.state.set_signal(5)
            report = await modem.read_signal()
            assert report == ev.SignalReport("cell", -103, 5)
            ready = await modem.check_ready()
            assert ready.problem is None

    run(scenario)
    seen = lab_modem.responder.commands_seen
    assert seen[:3] == ["AT", "ATE0", "AT+CMEE=1"]
    assert 'AT+CGDCONT=1,"IP","internet"' in seen
    assert lab_modem.responder.interpreter.contexts == {1: ("IP", "internet")}
    assert recorder.of(ev.ModemState)[0].operator == "Lab Cell"
    assert [r.csq for r in recorder.of(ev.SignalReport)] == [20, 5]  # check_ready: no change


def test_no_sim_is_a_named_error(lab_modem: LabLine) -> None:
    lab_modem.state.sim_ready = False
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", lab_modem.path, "internet", recorder) as modem:
            with pytest.raises(SimNotReady, match="NOT INSERTED"):
                await modem.initialise()

    run(scenario)
    [state] = recorder.of(ev.ModemState)
    assert state.problem == "SIM not ready: NOT INSERTED"


@pytest.mark.parametrize("registration", [LabRegistration.SEARCHING, LabRegistration.DENIED,
                                          LabRegistration.NOT_SEARCHING])
def test_not_registered_is_reported_then_refused_at_dial(lab_modem: LabLine,
                                                         registration: LabRegistration) -> None:
    lab_modem.state.registration = registration
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", lab_modem.path, "internet", recorder) as modem:
            state = await modem.initialise()
            assert state.problem is not None and "not registered" in state.problem
            assert state.packet_registration == ev.Registration(int(registration))
            assert state.operator is None
            with pytest.raises(NotRegistered) as error:
                await modem.check_ready()
            assert error.value.registration == ev.Registration(int(registration))
            lab_modem.state.registration = LabRegistration.ROAMING
            assert (await modem.check_ready()).packet_registration is ev.Registration.ROAMING

    run(scenario)
    states = recorder.of(ev.ModemState)
    assert states[-1].problem is None  # the change was published


def test_hung_modem_then_reset(lab_modem: LabLine) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", lab_modem.path, "internet", recorder,
                         command_timeout=1.0) as modem:
            await modem.initialise()
            lab_modem.state.hung = True
            with pytest.raises(ModemHungError, match="AT\\+CSQ"):
                await modem.read_signal()
            assert not await modem.reset(reappear_timeout=1.0)
            lab_modem.state.hung = False
            # The lab modem refuses AT+CFUN=1,1 (ERROR): a reopen is all the reset it gets.
            assert await modem.reset(reappear_timeout=1.0)
            assert (await modem.read_signal()).csq == 20

    run(scenario)
    assert recorder.of(ev.ModemHung)[0] == ev.ModemHung("cell", "AT+CSQ")
    assert recorder.of(ev.ModemReset) == [ev.ModemReset("cell", "reopened", False),
                                          ev.ModemReset("cell", "reopened", True)]


def test_release_and_acquire_the_shared_line(lab_modem: LabLine) -> None:
    async def scenario() -> None:
        modem = Modem("cell", lab_modem.path, "internet", Recorder())
        await modem.initialise()
        await modem.release()
        assert not modem.is_open
        with pytest.raises(ModemGone):
            await modem.command("AT")
        await modem.acquire()
        assert (await modem.command("AT")).ok
        modem.close()

    run(scenario)


# -- a scripted modem: answers as the test says ---------------------------------------------------


@pytest.fixture
def scripted_line() -> Iterator[tuple[str, int]]:
    master, slave = os.openpty()
    make_raw(master)
    try:
        yield os.ttyname(slave), master
    finally:
        os.close(master)
        os.close(slave)


async def serve(master: int, answers: dict[str, bytes], seen: list[str]) -> None:
    """Answer each command line with the scripted bytes (default: echo + OK)."""
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(master, lambda done=ready: done.done() or done.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(master)
        buffer += os.read(master, 1024)
        while b"\r" in buffer:
            line, buffer = buffer.split(b"\r", 1)
            command = line.decode().strip()
            if not command:
                continue
            seen.append(command)
            os.write(master, answers.get(command, line + b"\r\r\nOK\r\n"))


def test_real_modem_oddities(scripted_line: tuple[str, int]) -> None:
    path, master = scripted_line
    answers = {
        # Echo still on (ATE0 not yet applied), a boot URC in the middle.
        "ATE0": b"ATE0\r\r\n^BOOT:20189473,0,0,0,72\r\nOK\r\n",
        "AT+CMEE=1": b"\r\nERROR\r\n",  # some modems refuse it: harmless
        "AT+CPIN?": b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
        "AT+CSQ": b"\r\n+CREG: 1,\"00C3\",\"A1B2\"\r\n+CSQ: 99,99\r\n\r\nOK\r\n",
        "AT+CREG?": b"\r\n+CREG: 2,1,\"00C3\",\"0000A1B2\",2\r\n\r\nOK\r\n",
        "AT+CGREG?": b"\r\n^RSSI:17\r\n+CGREG: 2,5,\"00C3\",\"0000A1B2\",2\r\nOK\r\n",
        "AT+COPS?": b"\r\n+COPS: 0,0,\"Vodafone, UK\",2\r\n\r\nOK\r\n\r\nRING\r\n",
        'AT+CGDCONT=1,"IP","internet"': b"\r\nOK\r\n",
    }
    recorder = Recorder()
    seen: list[str] = []

    async def scenario() -> None:
        server = asyncio.create_task(serve(master, answers, seen))
        try:
            async with Modem("cell", path, "internet", recorder) as modem:
                state = await modem.initialise()
                await asyncio.sleep(0)  # let the trailing RING be read
                for _ in range(50):
                    if recorder.of(ev.Unsolicited)[-1:] == [ev.Unsolicited("cell", "RING")]:
                        break
                    await asyncio.sleep(0.02)
        finally:
            server.cancel()
        assert state == ev.ModemState("cell", "READY", ev.Registration.HOME,
                                      ev.Registration.ROAMING, "Vodafone, UK", None,
                                      "no signal (+CSQ 99)")

    run(scenario)
    assert ev.RegistrationChanged("cell", "CREG", ev.Registration.HOME) in recorder.events
    assert ev.SignalReport("cell", -79, 17) in recorder.events  # from ^RSSI, mid-answer
    assert [e.line for e in recorder.of(ev.Unsolicited)] == ["^BOOT:20189473,0,0,0,72", "RING"]


def test_wrong_apn_is_named(scripted_line: tuple[str, int]) -> None:
    path, master = scripted_line
    answers = {'AT+CGDCONT=1,"IP","nosuchapn"': b"\r\n+CME ERROR: 533\r\n",
               "AT+CPIN?": b"\r\n+CPIN: READY\r\nOK\r\n",
               "AT+CSQ": b"\r\n+CSQ: 20,99\r\nOK\r\n",
               "AT+CREG?": b"\r\n+CREG: 0,1\r\nOK\r\n",
               "AT+CGREG?": b"\r\n+CGREG: 0,1\r\nOK\r\n",
               "AT+COPS?": b"\r\n+COPS: 0\r\nOK\r\n"}

    async def scenario() -> None:
        server = asyncio.create_task(serve(master, answers, []))
        try:
            async with Modem("cell", path, "nosuchapn", Recorder()) as modem:
                with pytest.raises(ApnRejected, match="533 \\(missing or unknown APN\\)"):
                    await modem.initialise()
        finally:
            server.cancel()

    run(scenario)


def test_tty_that_vanishes_fails_the_command(scripted_line: tuple[str, int]) -> None:
    path, _ = scripted_line

    async def scenario() -> None:
        with pytest.raises(ModemGone):
            await Modem("cell", path + "-missing", "internet", Recorder()).open()

    run(scenario)


def test_polling_reports_signal_and_registration_changes_only(lab_modem: LabLine) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", lab_modem.path, "internet", recorder) as modem:
            await modem.initialise()
            poller = asyncio.create_task(modem.poll(0.02))
            try:
                lab_modem.state.set_signal(3)
                while ev.SignalReport("cell", -107, 3) not in recorder.events:
                    await asyncio.sleep(0.01)
                lab_modem.state.registration = LabRegistration.DENIED
                while recorder.of(ev.ModemState)[-1].problem is None:
                    await asyncio.sleep(0.01)
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)

    run(scenario)
    # Many polls, two values: the unchanged polls in between say nothing.
    assert [r.csq for r in recorder.of(ev.SignalReport)] == [20, 3]
    states = recorder.of(ev.ModemState)
    assert [s.problem for s in states] == [None, "not registered (CGREG stat 3 DENIED)"]


def test_reset_restarts_an_answering_modem_with_cfun(scripted_line: tuple[str, int]) -> None:
    path, master = scripted_line
    recorder = Recorder()
    seen: list[str] = []

    async def scenario() -> None:
        server = asyncio.create_task(serve(master, {}, seen))
        try:
            async with Modem("cell", path, "internet", recorder) as modem:
                assert await modem.reset(reappear_timeout=5.0)
        finally:
            server.cancel()

    run(scenario)
    assert "AT+CFUN=1,1" in seen
    assert recorder.of(ev.ModemReset) == [ev.ModemReset("cell", "AT+CFUN=1,1", True)]
