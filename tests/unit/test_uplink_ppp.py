"""The pppd side of the 3G driver on the host: chat script, pppd arguments, pppd's log read as
facts, backoff; and the supervisor's failure path (backoff, DialFailed, modem reset after N
failures) with a stand-in pppd that fails like the real one does when chat aborts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qemu.lab.modem import ModemResponder
from qemu.lab.modem import ModemState as LabModemState
from qemu.lab.modem import Registration as LabRegistration
from router.uplink import events as ev
from router.uplink.modem import Modem
from router.uplink.ppp import (
    Backoff,
    CallLog,
    DialError,
    PppLink,
    chat_script,
    parse_pppd_line,
    pppd_arguments,
)


def test_chat_script_aborts_on_every_failure_code_and_defines_the_context() -> None:
    script = chat_script("internet")
    for code in ("NO CARRIER", "ERROR", "+CME ERROR", "BUSY", "NO DIALTONE"):
        assert f'ABORT "{code}"' in script
    lines = script.splitlines()
    assert lines[-4:] == ['OK ATE0', "OK 'AT+CGDCONT=1,\"IP\",\"internet\"'", "OK ATD*99#",
                          'CONNECT ""']
    with pytest.raises(ValueError, match="invalid APN"):
        chat_script('internet"\nOK ATH')


def test_pppd_arguments_leave_routing_and_dns_files_to_us(tmp_path: Path) -> None:
    argv = pppd_arguments("/dev/ttyUSB2", "cell", 0, tmp_path / "chat")
    assert argv[:2] == ["pppd", "/dev/ttyUSB2"]
    for option in ("nodetach", "nodefaultroute", "usepeerdns", "noipdefault"):
        assert option in argv
    assert "defaultroute" not in argv and "persist" not in argv
    assert argv[argv.index("maxfail") + 1] == "1"  # we redial ourselves
    assert argv[argv.index("ipparam") + 1] == "cell"
    assert argv[argv.index("ip-up-script") + 1] == "/bin/true"
    assert argv[argv.index("lcp-echo-interval") + 1] == "1"
    assert argv[argv.index("connect") + 1] == f"chat -v -s -f {tmp_path / 'chat'}"


@pytest.mark.parametrize(
    ("line", "fact"),
    [
        ("local  IP address 100.64.0.10", ("local", "100.64.0.10")),
        ("remote IP address 100.64.0.1", ("remote", "100.64.0.1")),
        ("primary   DNS address 100.64.0.1", ("dns", "100.64.0.1")),
        ("secondary DNS address 8.8.8.8", ("dns", "8.8.8.8")),
        ("Using interface ppp0", ("interface", "ppp0")),
        ("LCP terminated by peer", ("reason", "LCP terminated by peer")),
        ("No response to 3 echo-requests", ("reason", "No response to 3 echo-requests")),
        ("Modem hangup", ("reason", "Modem hangup")),
        ("Connect script failed", ("reason", "Connect script failed")),
        ("abort on (NO CARRIER)", None),  # chat -v: the script declares an ABORT string
        ("Failed (NO CARRIER)", ("failure", "NO CARRIER")),
        ("chat:  Failed (+CME ERROR)", ("failure", "+CME ERROR")),
        ("+CME ERROR: 533^M", ("failure", "+CME ERROR: 533")),
        ("alarm", ("failure", "modem did not answer the chat script (timeout)")),
        ("IPCP: timeout sending Config-Requests", ("reason",
                                                    "IPCP: timeout sending Config-Requests")),
        ("send (ATD*99#^M)", None),
        ("Serial connection established.", None),
    ],
)
def test_pppd_log_lines(line: str, fact: tuple[str, str] | None) -> None:
    assert parse_pppd_line(line) == fact


def test_call_log_explains_failures_most_specific_first() -> None:
    call = CallLog()
    for line in ("abort on (+CME ERROR)", "+CME ERROR: 533", "Failed (+CME ERROR)",
                 "Connect script failed"):
        call.feed(line)
    assert call.explain(8, True) == \
        "dial failed: +CME ERROR: 533 (missing or unknown APN): check the APN"
    call = CallLog()
    call.feed("Failed (NO CARRIER)")
    assert "although registered" in call.explain(8, True)
    assert call.explain(8, False) == "dial failed: NO CARRIER"
    call = CallLog()
    call.feed("No response to 3 echo-requests")
    call.feed("Connect script failed")  # never overrides the link's reason
    assert call.explain(15, False) == "No response to 3 echo-requests"
    assert CallLog().explain(16, False) == "modem hung up"
    assert CallLog().explain(99, False) == "pppd exited with status 99"


def test_call_log_collects_ipcp() -> None:
    call = CallLog()
    for line in ("local  IP address 100.64.0.10", "remote IP address 100.64.0.1",
                 "primary   DNS address 100.64.0.1", "primary   DNS address 100.64.0.1"):
        call.feed(line)
    assert (call.local, call.remote, call.dns) == ("100.64.0.10", "100.64.0.1", ["100.64.0.1"])


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(2.0, 2.0, 30.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


# -- the supervisor with a stand-in pppd ----------------------------------------------------------

FAKE_PPPD = """#!/bin/sh
# Fails as pppd does when chat aborts on NO CARRIER (exit 8: connect script failed).
echo "abort on (NO CARRIER)"
echo "Failed (NO CARRIER)"
echo "Connect script failed"
exit 8
"""


@dataclass
class Recorder:
    events: list[ev.UplinkEvent] = field(default_factory=list)

    def __call__(self, event: ev.UplinkEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def lab_line() -> Iterator[tuple[str, LabModemState, ModemResponder]]:
    master, slave = os.openpty()
    state = LabModemState()
    responder = ModemResponder(master, state, on_connect=lambda: None)
    responder.start()
    try:
        yield os.ttyname(slave), state, responder
    finally:
        responder.stop()
        os.close(master)
        os.close(slave)


def test_supervisor_backs_off_and_resets_the_modem(tmp_path: Path, lab_line) -> None:
    path, _, responder = lab_line
    pppd = tmp_path / "pppd"
    pppd.write_text(FAKE_PPPD)
    pppd.chmod(0o755)
    recorder = Recorder()

    async def scenario() -> None:
        modem = Modem("cell", path, "internet", recorder)
        await modem.initialise()
        link = PppLink("cell", path, "internet", recorder, run_dir=tmp_path, modem=modem,
                       pppd=str(pppd), unit=57, backoff=Backoff(0.01, 2.0, 0.04),
                       reset_after=3)
        supervisor = asyncio.create_task(link.run())
        while len(recorder.of(ev.DialFailed)) < 4:
            await asyncio.sleep(0.01)
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        modem.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    failures = recorder.of(ev.DialFailed)[:4]
    assert [f.attempt for f in failures] == [1, 2, 3, 4]
    assert [f.retry_in for f in failures] == [0.01, 0.02, 0.04, 0.04]
    assert failures[0].reason.startswith("dial failed: NO CARRIER after dialling although")
    # One reset, after the third failure, and before the fourth attempt.
    [reset] = recorder.of(ev.ModemReset)
    assert recorder.events.index(reset) > recorder.events.index(failures[2])
    assert recorder.events.index(reset) < recorder.events.index(failures[3])
    assert not recorder.of(ev.LinkUp) and not recorder.of(ev.LinkDown)
    # Every attempt checked the modem first over the shared line.
    assert responder.commands_seen.count("AT+CGREG?") >= 5


def test_not_registered_stops_the_dial_before_pppd(tmp_path: Path, lab_line) -> None:
    path, state, _ = lab_line
    state.registration = LabRegistration.DENIED
    pppd = tmp_path / "pppd-must-not-run"

    async def scenario() -> None:
        modem = Modem("cell", path, "internet", Recorder())
        await modem.initialise()
        link = PppLink("cell", path, "internet", Recorder(), run_dir=tmp_path, modem=modem,
                       pppd=str(pppd))
        with pytest.raises(DialError, match=r"not registered .*CGREG stat 3 DENIED"):
            await link.dial()
        assert modem.is_open  # the line was never given away
        modem.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_separate_data_port_keeps_the_at_channel_open(tmp_path: Path, lab_line) -> None:
    """A modem with its own AT port (ttyUSB2) beside the data port (ttyUSB0)."""
    path, _, _ = lab_line
    data_master, data_slave = os.openpty()
    pppd = tmp_path / "pppd"
    pppd.write_text(FAKE_PPPD)
    pppd.chmod(0o755)
    recorder = Recorder()

    async def scenario() -> None:
        modem = Modem("cell", path, "internet", recorder)
        await modem.initialise()
        link = PppLink("cell", os.ttyname(data_slave), "internet", recorder,
                       run_dir=tmp_path, modem=modem, pppd=str(pppd))
        assert not link.shares_line
        released = []
        original_release = modem.release

        async def spy_release() -> None:
            released.append(True)
            await original_release()

        modem.release = spy_release  # type: ignore[method-assign]
        with pytest.raises(DialError, match="NO CARRIER"):
            await link.dial()
        assert released == [] and modem.is_open
        assert (await modem.command("AT")).ok
        modem.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        os.close(data_master)
        os.close(data_slave)
