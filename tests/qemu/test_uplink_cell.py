"""The 3G uplink drivers against the lab's modem and operator (issue 6, item 2), in the guest.

Our Modem initialises the lab's AT responder, reads signal and registration, names the errors
(no SIM, not registered), survives a hung modem; our PppLink dials through the real pppd/chat
on the same tty, reports LinkUp with the operator's 100.64.0.x address, and LinkDown when the
operator ends the call or silently dies (LCP echo); the supervisor redials, backs off and
resets the modem after repeated failures.

The drivers run in the router's network namespace (the test process enters it); the lab's
knobs act from outside through `ip netns exec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns

from qemu.lab import World, plan
from qemu.lab.cellular import ask_modem
from qemu.lab.modem import Registration as LabRegistration
from qemu.lab.testing import module_world
from router.uplink import events as ev
from router.uplink.modem import Modem, ModemHungError, NotRegistered, SimNotReady
from router.uplink.ppp import Backoff, DialError, PppLink

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS)


@pytest.fixture
def in_router(world: World) -> Iterator[World]:
    """Run the test body in the router's namespace (ppp0 appears there)."""
    netns.pushns(world.ns("router"))
    try:
        yield world
    finally:
        netns.popns()
        world.modem_sim(True)
        world.modem_hang(False)
        world.modem_signal(20)
        world.modem_registration("home")
        # Leave no data call behind, and a modem that answers, for the next test.
        if world.cellular is not None and world.cellular.operator_pppd.running:
            world.cellular.detach()
        if "OK" not in ask_modem(world.cellular.router_tty, "AT"):
            TIMINGS["modem restarted after a test left it deaf"] = \
                world.restart_peer("modem")


@dataclass
class Recorder:
    events: list[ev.UplinkEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: ev.UplinkEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait(self, kind: type, count: int = 1, timeout: float = 60.0) -> Any:
        """The count-th event of `kind` (waiting for it), with everything seen on failure."""
        async def arrived() -> None:
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(arrived(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind.__name__} #{count} within {timeout}s; "
                                 f"events: {self.events}") from None
        return self.of(kind)[count - 1]


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 240.0) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout))


def tty(world: World) -> str:
    assert world.cellular is not None
    return str(world.cellular.router_tty)


def test_modem_initialises_and_follows_signal_and_registration(in_router: World) -> None:
    world = in_router
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", tty(world), plan.CELL_APN, recorder) as modem:
            started = time.monotonic()
            state = await modem.initialise()
            TIMINGS["modem init sequence"] = time.monotonic() - started
            assert state == ev.ModemState("cell", "READY", ev.Registration.HOME,
                                          ev.Registration.HOME, "Lab Cell", -73, None)
            world.modem_signal(7)
            assert (await modem.read_signal()) == ev.SignalReport("cell", -99, 7)
            world.modem_registration("searching")
            state = await modem.read_state()
            assert state.packet_registration is ev.Registration.SEARCHING
            assert state.problem == "not registered (CGREG stat 2 SEARCHING)"
            with pytest.raises(NotRegistered):
                await modem.check_ready()
            world.modem_registration("roaming")
            assert (await modem.check_ready()).operator == "Lab Cell"

    run(scenario)
    assert world.cellular is not None
    assert world.cellular.state.signal == 7
    assert [s.problem is None for s in recorder.of(ev.ModemState)] == [True, False, True]


def test_modem_without_sim_and_hung_modem(in_router: World) -> None:
    world = in_router
    recorder = Recorder()

    async def scenario() -> None:
        async with Modem("cell", tty(world), plan.CELL_APN, recorder,
                         command_timeout=2.0) as modem:
            world.modem_sim(False)
            with pytest.raises(SimNotReady, match="NOT INSERTED"):
                await modem.initialise()
            world.modem_sim(True)
            await modem.initialise()
            world.modem_hang(True)
            with pytest.raises(ModemHungError):
                await modem.read_signal()
            assert not await modem.reset(reappear_timeout=2.0)
            world.modem_hang(False)
            assert await modem.reset(reappear_timeout=2.0)
            assert (await modem.read_signal()).csq == 20

    run(scenario)
    assert recorder.of(ev.ModemHung)[0] == ev.ModemHung("cell", "AT+CSQ")
    assert [r.answering for r in recorder.of(ev.ModemReset)] == [False, True]


def test_dial_reports_link_up_then_link_down_when_the_operator_ends_the_call(
        in_router: World, tmp_path: Path) -> None:
    world = in_router
    recorder = Recorder()

    async def scenario() -> None:
        modem = Modem("cell", tty(world), plan.CELL_APN, recorder)
        await modem.initialise()
        link = PppLink("cell", tty(world), plan.CELL_APN, recorder, run_dir=tmp_path,
                       modem=modem)
        started = time.monotonic()
        up = await link.dial()
        TIMINGS["dial -> LinkUp"] = time.monotonic() - started
        assert up == ev.LinkUp("cell", "ppp0", plan.CELL_SUBSCRIBER_ADDRESS,
                               plan.CELL_GATEWAY_ADDRESS, up.dns)
        await asyncio.sleep(0.5)  # a DNS line after the addresses would update LinkUp
        assert recorder.of(ev.LinkUp)[-1].dns == (plan.CELL_GATEWAY_ADDRESS,)
        assert world.ping("router", plan.CELL_GATEWAY_ADDRESS, count=1).ok
        started = time.monotonic()
        await asyncio.to_thread(world.modem_detach)
        down = await recorder.wait(ev.LinkDown)
        TIMINGS["operator hang-up -> LinkDown"] = time.monotonic() - started
        assert down.name == "cell"
        reason = await link.wait_down()
        assert "LCP terminated by peer" in reason, link.log_lines
        # The line is the modem's again.
        assert modem.is_open
        assert (await modem.command("AT")).ok
        modem.close()

    run(scenario)
    assert len(recorder.of(ev.LinkDown)) == 1


def test_silent_operator_death_is_noticed_by_lcp_echo(in_router: World,
                                                       tmp_path: Path) -> None:
    world = in_router
    recorder = Recorder()

    async def scenario() -> None:
        modem = Modem("cell", tty(world), plan.CELL_APN, recorder)
        await modem.initialise()
        link = PppLink("cell", tty(world), plan.CELL_APN, recorder, run_dir=tmp_path,
                       modem=modem, lcp_echo_interval=1, lcp_echo_failure=3)
        await link.dial()
        operator = world.peer("pppd-cell")
        started = time.monotonic()
        # A frozen peer answers nothing, like a dead radio path: only LCP echo can tell.
        # (SIGKILL would leave the operator's tty in the PPP line discipline: a deaf modem.)
        operator.send_signal(signal.SIGSTOP)
        try:
            down = await recorder.wait(ev.LinkDown)
            TIMINGS["silent operator loss -> LinkDown (LCP echo 1s x3)"] = \
                time.monotonic() - started
        finally:
            operator.send_signal(signal.SIGCONT)
        assert down.reason == "No response to 3 echo-requests", link.log_lines
        assert await link.wait_down() == down.reason
        modem.close()

    run(scenario)
    # The operator's pppd notices our side is gone by its own LCP echoes and ends the call.
    world.peer("pppd-cell").wait_exit(30)


def test_supervisor_backs_off_resets_the_modem_and_redials(in_router: World,
                                                            tmp_path: Path) -> None:
    world = in_router
    recorder = Recorder()
    world.modem_registration(LabRegistration.DENIED)

    async def scenario() -> None:
        modem = Modem("cell", tty(world), plan.CELL_APN, recorder)
        await modem.initialise()
        link = PppLink("cell", tty(world), plan.CELL_APN, recorder, run_dir=tmp_path,
                       modem=modem, backoff=Backoff(0.2, 2.0, 1.0), reset_after=2)
        supervisor = asyncio.create_task(link.run())
        try:
            failures = [await recorder.wait(ev.DialFailed, n) for n in (1, 2)]
            assert [f.attempt for f in failures] == [1, 2]
            assert "not registered" in failures[0].reason
            assert failures[0].retry_in == 0.2 and failures[1].retry_in == 0.4
            reset = await recorder.wait(ev.ModemReset)
            assert reset.answering
            world.modem_registration("home")
            up = await recorder.wait(ev.LinkUp, timeout=90)
            assert up.address == plan.CELL_SUBSCRIBER_ADDRESS
            await asyncio.to_thread(world.modem_detach)
            await recorder.wait(ev.LinkDown)
            again = await recorder.wait(ev.LinkUp, count=len(recorder.of(ev.LinkUp)) + 1,
                                        timeout=90)
            assert again.address == plan.CELL_SUBSCRIBER_ADDRESS
            assert link.failures == 0
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        assert len(recorder.of(ev.LinkDown)) == 2  # the hang-up of the cancel counts
        modem.close()

    run(scenario, timeout=300)


def test_dial_without_a_modem_driver_and_a_missing_tty(in_router: World,
                                                       tmp_path: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        link = PppLink("cell", "/dev/nonexistent-modem", plan.CELL_APN, recorder,
                       run_dir=tmp_path)
        with pytest.raises(DialError, match="/dev/nonexistent-modem: no such device"):
            await link.dial()

    run(scenario)
