"""wpa_supplicant's control protocol (parsers, our socket client against a stand-in server),
secret redaction, and udhcpc hook reports, on the host."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.uplink.dhcp import MARK, DhcpLease, DhcpParseError, HookReport, parse_hook_line
from router.uplink.events import Bss
from router.uplink.wlan import (
    Network,
    WpaControl,
    WpaError,
    WpaParseError,
    describe_disconnect,
    parse_event,
    parse_key_values,
    parse_list_networks,
    parse_scan_results,
    redact,
)

STATUS = """bssid=02:00:00:00:01:00
freq=2412
ssid=corp
id=0
mode=station
pairwise_cipher=CCMP
group_cipher=CCMP
key_mgmt=WPA2-PSK
wpa_state=COMPLETED
ip_address=10.30.0.150
address=02:00:00:00:00:00
uuid=1b9a3b1c-0000-5000-8000-020000000000
"""


def test_status_and_signal_poll() -> None:
    status = parse_key_values(STATUS)
    assert status["wpa_state"] == "COMPLETED" and status["ssid"] == "corp"
    assert parse_key_values("RSSI=-30\nLINKSPEED=54\nNOISE=9999\nFREQUENCY=2412\n") == {
        "RSSI": "-30", "LINKSPEED": "54", "NOISE": "9999", "FREQUENCY": "2412"}
    assert parse_key_values("ssid=a=b\n")["ssid"] == "a=b"
    with pytest.raises(WpaParseError):
        parse_key_values("FAIL\n")


def test_scan_results() -> None:
    reply = ("bssid / frequency / signal level / flags / ssid\n"
             "02:00:00:00:01:00\t2412\t-30\t[WPA2-PSK-CCMP][ESS]\tcorp\n"
             "02:00:00:00:03:00\t2462\t-45\t[WPA2-PSK-CCMP][ESS]\thotspot\n"
             "02:00:00:00:04:00\t2437\t-50\t[ESS]\t\n")
    assert parse_scan_results(reply) == (
        Bss("02:00:00:00:01:00", "corp", 2412, -30, "[WPA2-PSK-CCMP][ESS]"),
        Bss("02:00:00:00:03:00", "hotspot", 2462, -45, "[WPA2-PSK-CCMP][ESS]"),
        Bss("02:00:00:00:04:00", "", 2437, -50, "[ESS]"),
    )
    assert parse_scan_results("bssid / frequency / signal level / flags / ssid\n") == ()
    for bad in ("", "FAIL\n", "bssid / x\nzz\t1\n", "bssid / x\nzz\tx\ty\t[ESS]\tssid\n"):
        with pytest.raises(WpaParseError):
            parse_scan_results(bad)


def test_list_networks() -> None:
    reply = ("network id / ssid / bssid / flags\n"
             "0\tcorp\tany\t[CURRENT]\n1\text\tany\t[DISABLED]\n2\thotspot\t02:00:00:00:03:00\t\n")
    networks = parse_list_networks(reply)
    assert networks == (Network(0, "corp", "any", "[CURRENT]"),
                        Network(1, "ext", "any", "[DISABLED]"),
                        Network(2, "hotspot", "02:00:00:00:03:00", ""))
    assert networks[0].current and networks[1].disabled and not networks[2].disabled
    with pytest.raises(WpaParseError):
        parse_list_networks("network id / ssid\nx\ty\tz\n")


@pytest.mark.parametrize(
    ("message", "name", "fields"),
    [
        ("<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:01:00 completed [id=0 id_str=]",
         "CTRL-EVENT-CONNECTED", {"bssid": "02:00:00:00:01:00", "id": "0", "id_str": ""}),
        ("<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:01:00 reason=3 locally_generated=1",
         "CTRL-EVENT-DISCONNECTED",
         {"bssid": "02:00:00:00:01:00", "reason": "3", "locally_generated": "1"}),
        ("<3>CTRL-EVENT-SCAN-RESULTS ", "CTRL-EVENT-SCAN-RESULTS", {}),
        ("<3>CTRL-EVENT-SIGNAL-CHANGE above=0 signal=-62 noise=-95 txrate=540",
         "CTRL-EVENT-SIGNAL-CHANGE",
         {"above": "0", "signal": "-62", "noise": "-95", "txrate": "540"}),
        ("<2>IFNAME=wlan0 CTRL-EVENT-BEACON-LOSS", "CTRL-EVENT-BEACON-LOSS", {}),
        ("<3>Trying to associate with 02:00:00:00:01:00 (SSID='corp' freq=2412 MHz)",
         "Trying", {"freq": "2412"}),
    ],
)
def test_events(message: str, name: str, fields: dict[str, str]) -> None:
    event = parse_event(message)
    assert event.name == name
    for key, value in fields.items():
        assert event.fields[key] == value


def test_disconnect_reasons_are_words() -> None:
    assert describe_disconnect(parse_event(
        "<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:01:00 reason=3 locally_generated=1")) \
        == "deauthenticated: AP is leaving (locally generated)"
    assert describe_disconnect(parse_event(
        "<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:01:00 reason=4")) == "inactivity"
    assert describe_disconnect(parse_event("<3>CTRL-EVENT-DISCONNECTED bssid=x reason=77")) \
        == "reason 77"


@given(st.text(max_size=200))
def test_fuzz_parsers_raise_only_parse_errors(text: str) -> None:
    for parser in (parse_key_values, parse_scan_results, parse_list_networks, parse_event):
        with contextlib.suppress(WpaParseError):
            parser(text)


@pytest.mark.parametrize(
    ("command", "logged"),
    [
        ('SET_NETWORK 0 psk "lab-wlan-passphrase"', "SET_NETWORK 0 psk <redacted>"),
        ("SET_NETWORK 3 password hunter2", "SET_NETWORK 3 password <redacted>"),
        ("SET_NETWORK 0 ssid \"corp\"", "SET_NETWORK 0 ssid \"corp\""),
        ("PASSPHRASE secret", "PASSPHRASE <redacted>"),
        ("SELECT_NETWORK 1", "SELECT_NETWORK 1"),
    ],
)
def test_secrets_never_reach_a_log_line(command: str, logged: str) -> None:
    assert redact(command) == logged
    assert "passphrase" not in redact(command).lower().replace("passphrase <", "")


# -- our client against a stand-in control socket ---------------------------------------------


def test_control_client_request_attach_and_events(tmp_path: Path) -> None:
    path = tmp_path / "wlan0"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        attached = None
        while True:
            data, peer = await loop.sock_recvfrom(server, 4096)
            command = data.decode()
            if command == "ATTACH":
                attached = peer
                server.sendto(b"OK\n", peer)
                server.sendto(b"<3>CTRL-EVENT-SCAN-RESULTS ", attached)
            elif command == "STATUS":
                if attached:  # an event interleaved on the attached socket only
                    server.sendto(b"<3>CTRL-EVENT-SIGNAL-CHANGE signal=-40", attached)
                server.sendto(STATUS.encode(), peer)
            elif command == "SILENT":
                pass
            else:
                server.sendto(b"FAIL\n", peer)

    async def scenario() -> None:
        task = asyncio.create_task(serve())
        control, monitor = WpaControl(path, timeout=0.5), WpaControl(path)
        control.open()
        monitor.open()
        try:
            await monitor.attach()
            events = monitor.events()
            assert (await anext(events)).startswith("<3>CTRL-EVENT-SCAN-RESULTS")
            assert parse_key_values(await control.request("STATUS"))["ssid"] == "corp"
            assert await anext(events) == "<3>CTRL-EVENT-SIGNAL-CHANGE signal=-40"
            with pytest.raises(WpaError, match="'BOGUS' -> 'FAIL'"):
                await control.ok("BOGUS")
            with pytest.raises(WpaError, match="did not answer"):
                await control.request("SILENT")
        finally:
            control.close()
            monitor.close()
            task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 20))
    server.close()


def test_control_client_names_a_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(WpaError, match="cannot reach wpa_supplicant"):
        WpaControl(tmp_path / "nothing").open()


# -- udhcpc hook reports ----------------------------------------------------------------------


def test_hook_report_bound() -> None:
    line = (f"{MARK} bound ip=10.30.0.150 mask=24 router=10.30.0.1 dns=10.30.0.1 9.9.9.9 "
            "serverid=10.30.0.1 lease=3600")
    assert parse_hook_line(line) == HookReport("bound", DhcpLease(
        "10.30.0.150", 24, "10.30.0.1", ("10.30.0.1", "9.9.9.9"), "10.30.0.1", 3600))


def test_hook_report_dotted_mask_no_router_and_deconfig() -> None:
    report = parse_hook_line(f"{MARK} renew ip=192.0.2.100 mask=255.255.255.0 router= dns= "
                             "serverid= lease=")
    assert report == HookReport("renew", DhcpLease("192.0.2.100", 24, None, (), None, None))
    assert parse_hook_line(f"{MARK} deconfig ip= mask= router= dns= serverid= lease=") == \
        HookReport("deconfig", None)
    assert parse_hook_line("udhcpc: sending discover") is None


@pytest.mark.parametrize("rest", ["bound ip=10.1.1 mask=24", "bound ip=10.1.1.1 mask=40",
                                  "bound ip=10.1.1.1 mask=24 dns=x"])
def test_hook_report_rejects_garbage(rest: str) -> None:
    with pytest.raises(DhcpParseError):
        parse_hook_line(f"{MARK} {rest}")


# -- the driver's event logic against a stand-in wpa_supplicant ---------------------------------


class FakeSupplicant:
    """Answers the control commands the driver uses from `status` / `rssi`; pushes events."""

    def __init__(self, path: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.setblocking(False)
        self.status = {"wpa_state": "DISCONNECTED"}
        self.rssi = -40
        self.attached: list[str] = []
        self.commands: list[str] = []

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, peer = await loop.sock_recvfrom(self.socket, 4096)
            command = data.decode()
            self.commands.append(command)
            if command == "ATTACH":
                self.attached.append(peer)
                reply = "OK\n"
            elif command == "STATUS":
                reply = "".join(f"{k}={v}\n" for k, v in self.status.items())
            elif command == "SIGNAL_POLL":
                reply = f"RSSI={self.rssi}\nLINKSPEED=54\nNOISE=9999\nFREQUENCY=2412\n"
            elif command == "SCAN_RESULTS":
                reply = ("bssid / frequency / signal level / flags / ssid\n"
                         "02:00:00:00:01:00\t2412\t-40\t[ESS]\tcorp\n")
            else:
                reply = "OK\n"
            self.socket.sendto(reply.encode(), peer)

    def push(self, message: str) -> None:
        for peer in self.attached:
            self.socket.sendto(message.encode(), peer)


def test_driver_turns_wpa_events_into_uplink_events(tmp_path: Path) -> None:
    from router.uplink import events as ev
    from router.uplink.wlan import WlanUplink

    supplicant = FakeSupplicant(tmp_path / "wlan-test0")
    seen: list[ev.UplinkEvent] = []

    async def until(count: int) -> None:
        for _ in range(500):
            if len(seen) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"wanted {count} events, have {seen}")

    async def scenario() -> None:
        server = asyncio.create_task(supplicant.serve())
        wlan = WlanUplink("wlan", "wlan-test0", tmp_path, seen.append, run_dir=tmp_path,
                          dhcp=False, signal_interval=0.02, signal_step=3)
        await wlan.start()
        try:
            supplicant.status = {"wpa_state": "COMPLETED", "bssid": "02:00:00:00:01:00",
                                 "ssid": "corp"}
            supplicant.push("<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:01:00 "
                            "completed [id=0 id_str=]")
            await until(2)
            assert seen == [ev.Associated("wlan", "02:00:00:00:01:00", "corp", -40),
                            ev.SignalReport("wlan", -40, None, 54000)]
            supplicant.rssi = -42  # within the step: nothing
            await asyncio.sleep(0.1)
            assert len(seen) == 2
            supplicant.rssi = -45
            await until(3)
            assert seen[2] == ev.SignalReport("wlan", -45, None, 54000)
            # A roam shows only as CONNECTED to another BSSID.
            supplicant.status["bssid"] = "02:00:00:00:03:00"
            supplicant.push("<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:03:00 "
                            "completed [id=0 id_str=]")
            await until(6)
            assert seen[3] == ev.Disassociated("wlan", "roamed to 02:00:00:00:03:00",
                                               "02:00:00:00:01:00")
            assert seen[4] == ev.Associated("wlan", "02:00:00:00:03:00", "corp", -45)
            supplicant.push("not an event")
            supplicant.push("<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:03:00 reason=3")
            await until(7)
            assert seen[6] == ev.Disassociated("wlan", "deauthenticated: AP is leaving",
                                               "02:00:00:00:03:00")
            supplicant.push("<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:03:00 reason=3")
            supplicant.push("<3>CTRL-EVENT-SCAN-RESULTS ")
            await until(8)
            assert seen[7] == ev.ScanResult("wlan", (
                Bss("02:00:00:00:01:00", "corp", 2412, -40, "[ESS]"),))
            assert wlan.associated is None
        finally:
            await wlan.stop()
            server.cancel()
        assert "DETACH" in supplicant.commands

    asyncio.run(asyncio.wait_for(scenario(), 30))
    supplicant.socket.close()
