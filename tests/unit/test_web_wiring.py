"""router.web.wiring: the daemon side of the status page, with a daemon that only has status()."""

from __future__ import annotations

import asyncio
import io
import json
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from router import cli
from router.config import Secret, WebConfig
from router.web.wiring import SeriesRecorder, start_web
from tests.unit.test_web_http import NOW, TOKEN, exchange, get, post


class StatusOnlyDaemon:
    """Like router.daemon.RouterDaemon today: status() only, handovers oldest first, no 'now'."""

    def __init__(self) -> None:
        self.rtt = 10.0

    def status(self) -> dict[str, Any]:
        return {
            "situation": {"name": "outside", "since": NOW - 30, "reason": "no proof"},
            "uplinks": [{"name": "wlan", "kind": "wlan", "interface": "wlan0", "state": "up", "active": True,
                         "standby": False, "signal_dbm": -40, "rtt_ms": self.rtt, "loss_pct": 0.0, "score": 5,
                         "score_max": 10, "metered": False, "address": "198.51.100.20", "ssid": "hotspot",
                         "tx_bytes": None, "rx_bytes": None}],
            "registrations": {"inner": {"home_agent": "10.10.0.1", "home_address": "10.10.0.50",
                                        "care_of_address": None, "state": "registering"}},
            "vpn": {"state": "connecting", "virtual_ip": None, "gateway": "192.0.2.2"},
            "mobile_network": {"prefixes": ["10.1.1.0/24"], "lan_address": "10.1.1.1/24"},
            "handovers": [{"kind": "situation", "at": NOW - 100, "reason": "old"},
                          {"kind": "situation", "at": NOW - 10, "reason": "new"}],
            "counters": {"registrations.inner.accepted": 1},
            "uptime_s": 42,
        }


def test_series_recorder_keeps_a_bounded_window() -> None:
    daemon = StatusOnlyDaemon()
    clock = iter(range(1000))
    recorder = SeriesRecorder(daemon.status, interval_s=5.0, window_s=20.0, clock=lambda: float(next(clock)))
    for i in range(10):
        daemon.rtt = float(i)
        recorder.sample()
    series = recorder.series()
    assert [v for _, v in series["rtt_ms.wlan"]] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert set(series) == {"rtt_ms.wlan", "signal_dbm.wlan", "score.wlan"}


def test_start_web_serves_a_status_only_daemon(tmp_path: Path) -> None:
    socket_path = tmp_path / "control.sock"
    config = SimpleNamespace(web=WebConfig(IPv4Address("127.0.0.1"), 0, Secret(TOKEN.encode())),
                             control_socket=str(socket_path))

    async def scenario() -> None:
        stack = await start_web(StatusOnlyDaemon(), config)
        try:
            assert stack.web is not None and stack.control is not None
            page = await exchange(stack.web.port, get("/"))
            assert page.status == 200 and b"no proof" in page.body
            api = await exchange(stack.web.port, get("/api/status"))
            status = api.json()
            assert isinstance(status["now"], float)
            assert [h["reason"] for h in status["handovers"]] == ["new", "old"]  # newest first
            series = (await exchange(stack.web.port, get("/api/series"))).json()
            assert series["rtt_ms.wlan"][0][1] == 10.0  # the recorder's first sample
            refused = await exchange(stack.web.port, post(
                "/api/action/reconnect", b"{}", "Content-Type: application/json", f"Authorization: Bearer {TOKEN}"))
            assert refused.status == 400 and "does not take actions yet" in refused.json()["error"]
            out = io.StringIO()
            code = await asyncio.to_thread(cli.main, ["status", "--json", "--socket", str(socket_path)],
                                           stdout=out, stderr=io.StringIO())
            assert code == 0 and json.loads(out.getvalue())["situation"]["name"] == "outside"
            code = await asyncio.to_thread(cli.main, ["status", "--socket", str(socket_path)],
                                           stdout=io.StringIO(), stderr=io.StringIO())
            assert code == 0  # the human summary copes with the missing keys
        finally:
            await stack.close()
        assert not socket_path.exists()

    asyncio.run(scenario())


def test_a_busy_port_does_not_stop_the_control_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = blocker.sockets[0].getsockname()[1]
        config = SimpleNamespace(web=WebConfig(IPv4Address("127.0.0.1"), port, None),
                                 control_socket=str(tmp_path / "c.sock"))
        try:
            stack = await start_web(StatusOnlyDaemon(), config)
            assert stack.web is None and stack.control is not None
            await stack.close()
        finally:
            blocker.close()

    asyncio.run(scenario())
