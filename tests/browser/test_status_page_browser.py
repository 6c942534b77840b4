"""The status page in a real browser (Debian's headless Chromium), against the fake source.

The test serves the page on 127.0.0.1:<free port>, lets the fake change under the page
(situation inside -> outside, then a new handover), loads it in Chromium with a virtual-time
budget and reads the DOM back: the live values must have been updated by the page's script
(bound in place from /api/status, and the new handover swapped in from /fragment/main), and
every live value must read exactly as the server would render it (the JavaScript formatters
agree with Python's). Screenshots (desktop and phone) land in out/screenshots/.

Skipped only when Chromium is absent and CI is not set; with CI set, a missing Chromium fails.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.web import page
from router.web.api import WebServer, start_web_server
from router.web.schema import sanitise
from router.web.source import FakeStatusSource
from tests.unit.test_web_http import NOW, LoopThread
from tests.unit.test_web_render import bindings_of

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "out" / "screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

if CHROMIUM is None and not CI:
    pytest.skip("chromium is not installed (scripts/deps.sh browser)", allow_module_level=True)

NEW_HANDOVER = {"at": NOW - 5.0, "kind": "domain", "from": "wlan", "to": "cell",
                "reason": "corp AP gone; browser-test handover", "gap_ms": 1234.0,
                "phases": [{"name": "link", "at_ms": 0.0}, {"name": "vpn_up", "at_ms": 900.0},
                           {"name": "lan_route", "at_ms": 1234.0}]}


class ChangingSource(FakeStatusSource):
    """Changes under the page in two steps, so that each update path is proven on its own.

    Snapshot 1 is the page load (inside). Snapshot 2 (first poll) adds a handover: the page's
    shape changes, so the script swaps <main> from /fragment/main (snapshot 3). Snapshot 4
    (second poll) flips the situation to outside and changes uplink values without changing
    the shape: only the in-place binding can show those (the periodic swap comes every 6th poll,
    after the virtual-time budget).
    """

    def status(self) -> dict[str, Any]:
        if self.status_calls == 1 and self.handovers[0] is not NEW_HANDOVER:
            self.handovers.insert(0, NEW_HANDOVER)
        if self.status_calls == 3 and self.situation["name"] == "inside":
            self.set_situation("outside", reason="corp AP lost; cell outside every inside prefix")
            self.uplinks[0]["signal_dbm"] = None  # shown as a dash
            self.uplinks[1]["rtt_ms"] = 98.5  # rounds half up on both sides: 99 ms
            self.uplinks[1]["loss_pct"] = 2.25  # 2.3 %
            self.uplinks[1]["tx_bytes"] = 2_049_999  # 2.0 MB
        return super().status()


@pytest.fixture
def served() -> Iterator[tuple[ChangingSource, WebServer]]:
    loop = LoopThread()
    source = ChangingSource(clock=lambda: NOW, situation="inside")
    server = loop.run(start_web_server(source, "127.0.0.1", 0, token="browser-test-token",
                                       poll_interval_s=0.5))
    yield source, server
    loop.run(server.close())
    loop.stop()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is not installed and CI is set: install it (scripts/deps.sh browser)"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=180, check=False)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_live_page_in_chromium(served: tuple[ChangingSource, WebServer]) -> None:
    source, server = served
    url = f"http://127.0.0.1:{server.port}/"
    result = chromium("--virtual-time-budget=2500", "--dump-dom", url)
    dom = result.stdout
    assert "<main" in dom, f"no DOM from chromium (exit {result.returncode}): {result.stderr[-2000:]}"
    # The page's script ran under its CSP nonce: no violations reported on the console.
    assert "Content Security Policy" not in result.stderr, result.stderr[-2000:]
    assert source.status_calls >= 4, "the page did not poll /api/status"

    found = bindings_of(dom)
    # Bound in place from /api/status: the situation flipped after the page was served.
    assert found.bound["situation.name"] == "outside"
    assert re.search(r'<section class="sit" data-s="situation.name" data-v="outside"', dom)
    assert found.bound["situation.reason"] == "corp AP lost; cell outside every inside prefix"
    assert 'id="live-text">live<' in dom
    # Swapped in from /fragment/main: the new handover is there.
    assert "browser-test handover" in dom and "gap 1234 ms" in dom
    # The uplink values are shown.
    assert found.bound["uplinks.0.signal_dbm"] == "\u2013"
    assert found.bound["uplinks.1.signal_dbm"] == "-87 dBm"
    assert found.bound["uplinks.1.rtt_ms"] == "99 ms"
    assert found.bound["uplinks.1.loss_pct"] == "2.3 %"
    assert found.bound["uplinks.1.tx_bytes"] == "2.0 MB"
    assert found.bound["registrations.outer.care_of_address"] == "100.64.0.7"
    assert found.bound["vpn.state"] == "up"
    assert re.search(r'data-role="uplinks.1" data-v="active">active<', dom)
    # Every live value reads exactly as the server renders the same snapshot.
    final = sanitise(source.status())
    expected = bindings_of(page.render_page(final, source.series(), nonce="x")).bound
    assert found.bound == expected

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in (("status.png", (1280, 1900)), ("status-phone.png", (390, 2600))):
        shot = SCREENSHOTS / name
        shot.unlink(missing_ok=True)
        result = chromium("--virtual-time-budget=3000", f"--window-size={width},{height}",
                          f"--screenshot={shot}", url)
        assert shot.exists(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
        assert png_size(shot) == (width, height)
