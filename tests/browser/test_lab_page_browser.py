"""The status page served by the real product in the QEMU lab, in headless Chromium on the host.

The host boots the guest (qemu.run.boot) with a port forward, and the guest runs
``python3 -m qemu.lab.serve --product``: the lab world, the home agent and the router daemon
(single system, qemu.lab.product), started on 3G, then moved to the hotspot by the router's
own policy (one handover), lan-host with a DHCP lease from the router's dnsmasq, and the page
(10.1.1.1:80 in the router namespace) relayed to the guest's root namespace. The host then
reads /api/status through the forward, checks it against the schema and against what the lab
did, loads the page in Chromium and reads the DOM back, and saves a screenshot under
out/screenshots/lab-status.png.

Slow (a guest boot and a world: several minutes under TCG). Skipped only when Chromium or QEMU
is absent and CI is not set; with CI set, a missing tool fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from router.web import page
from router.web.schema import check_status
from tests.unit.test_web_render import bindings_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QEMU = shutil.which("qemu-system-x86_64")
CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

if (CHROMIUM is None or QEMU is None) and not CI:
    pytest.skip("chromium and qemu-system-x86_64 are needed (scripts/deps.sh browser qemu)", allow_module_level=True)

from tests.browser.test_status_page_browser import SCREENSHOTS, chromium, png_size  # noqa: E402

GUEST_PORT = 8080
HOME_AGENT = "192.0.2.1"  # qemu.lab.plan.OUTER_HA_ADDRESS: the single system's home agent
READY = "/tmp/page-ready.json"
STOP = "/tmp/page-stop"
SERVE_LOG = "/tmp/page-serve.log"
SERVE_PID = "/tmp/page-serve.pid"
ALIVE = f"kill -0 $(cat {SERVE_PID}) 2>/dev/null"
SCENE_TIMEOUT = 900.0  # world + product + handover under TCG on a busy two-core host

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str, bytes]:
    with _DIRECT.open(url, timeout=30) as reply:
        return reply.status, reply.headers.get("Content-Type", ""), reply.read()


def api_status(base: str) -> dict[str, Any]:
    code, content_type, body = get(base + "api/status")
    assert code == 200 and content_type.startswith("application/json"), (code, content_type)
    data: dict[str, Any] = json.loads(body)
    return data


@pytest.fixture(scope="module")
def lab_page() -> Iterator[str]:
    """The lab's page at http://127.0.0.1:<host port>/, served until the module is done."""
    from qemu.run import BootConfig, Forward, boot

    host_port = free_port()
    config = BootConfig(forwards=[Forward(host_port, GUEST_PORT)])
    with boot(config) as guest:
        guest.run(f"rm -f {READY} {STOP}").check()
        guest.run(f"setsid python3 -m qemu.lab.serve --product --guest-port {GUEST_PORT} "
                  f"--host-port {host_port} --ready-file {READY} --stop-file {STOP} "
                  f">{SERVE_LOG} 2>&1 </dev/null & echo $! >{SERVE_PID}").check()
        started = time.monotonic()
        try:
            while True:
                if guest.run(f"test -s {READY}").returncode == 0:
                    break
                if guest.run(ALIVE).returncode != 0:
                    raise AssertionError("the lab scene ended before the page was served:\n"
                                         + guest.run(f"tail -n 80 {SERVE_LOG}").stdout)
                if time.monotonic() - started > SCENE_TIMEOUT:
                    raise AssertionError(f"no page after {SCENE_TIMEOUT:.0f} s:\n"
                                         + guest.run(f"tail -n 80 {SERVE_LOG}").stdout)
                time.sleep(3)
            print(f"lab scene served after {time.monotonic() - started:.1f} s "
                  f"({json.loads(guest.run(f'cat {READY}').stdout)['seconds']:.1f} s in the guest)")
            yield f"http://127.0.0.1:{host_port}/"
        finally:
            guest.run(f"touch {STOP}")
            guest.run(f"for i in $(seq 120); do {ALIVE} || break; sleep 0.5; done", timeout=90)
            print("--- guest: qemu.lab.serve log (tail)\n" + guest.run(f"tail -n 40 {SERVE_LOG}").stdout)


def test_lab_api_status_is_the_real_situation(lab_page: str) -> None:
    status = api_status(lab_page)
    assert check_status(status) == [], check_status(status)
    print(json.dumps({k: status[k] for k in ("situation", "uplinks", "registrations", "vpn")}, indent=1))

    assert status["situation"]["name"] == "single"
    assert f"registered with {HOME_AGENT} via wlan" in status["situation"]["reason"]
    uplinks = {u["name"]: u for u in status["uplinks"]}
    assert set(uplinks) == {"wlan", "cell"}
    wlan, cell = uplinks["wlan"], uplinks["cell"]
    assert wlan["active"] and wlan["state"] == "up" and wlan["address"].startswith("198.51.100.")
    assert not cell["active"] and cell["address"] == "100.64.0.10"
    # Real interface counters: both uplinks carried registrations and tunnelled traffic.
    for uplink in (wlan, cell):
        assert isinstance(uplink["tx_bytes"], int) and uplink["tx_bytes"] > 0, uplink
        assert isinstance(uplink["rx_bytes"], int) and uplink["rx_bytes"] > 0, uplink
    assert isinstance(wlan["signal_dbm"], int | float) and isinstance(cell["signal_dbm"], int | float)

    inner = status["registrations"]["inner"]
    assert (inner["state"], inner["home_agent"], inner["home_address"]) == ("registered", HOME_AGENT, "192.0.2.50")
    assert inner["care_of_address"] == wlan["address"]
    assert (inner["last_code"], inner["last_message"]) == (0, "accepted")
    assert isinstance(inner["lifetime_left_s"], int | float) and 0 < inner["lifetime_left_s"] <= 30
    assert "outer" not in status["registrations"]

    clients = status["mobile_network"]["clients"]
    assert clients and all(c["address"].startswith("10.1.1.") for c in clients), clients
    moves = [h for h in status["handovers"] if h["kind"] == "uplink" and h["to"] == "wlan"]
    assert moves and moves[0]["from"] == "cell", status["handovers"]
    assert abs(status["now"] - time.time()) < 3600, "guest and host clocks disagree by an hour or more"

    code, content_type, body = get(lab_page + "metrics")
    assert code == 200 and content_type.startswith("text/plain")
    assert re.search(rb'router_registration_registered\{system="inner"\} 1', body), body[:2000]


def test_lab_page_in_chromium(lab_page: str) -> None:
    result = chromium("--virtual-time-budget=4000", "--dump-dom", lab_page)
    dom = result.stdout
    assert "<main" in dom, f"no DOM from chromium (exit {result.returncode}): {result.stderr[-2000:]}"
    assert "Content Security Policy" not in result.stderr, result.stderr[-2000:]
    found = bindings_of(dom)
    assert 'id="live-text">live<' in dom, "the page's script did not get live data"
    assert found.bound["situation.name"] == "single"
    assert f"registered with {HOME_AGENT} via wlan" in found.bound["situation.reason"]
    assert 'id="uplink-wlan"' in dom and 'id="uplink-cell"' in dom
    assert re.search(r'data-role="uplinks.0" data-v="active">active<', dom)  # wlan, configured first
    assert found.bound["uplinks.0.address"].startswith("198.51.100.")
    assert found.bound["uplinks.1.address"] == "100.64.0.10"
    assert found.bound["registrations.inner.state"] == "registered"
    assert found.bound["registrations.inner.home_agent"] == HOME_AGENT
    assert found.bound["registrations.inner.last_message"] == "accepted"
    # The handover log shows the policy's move from 3G to the hotspot.
    assert re.search(r'class="ho".*?cell \u2192 wlan', dom, re.S), "no handover cell -> wlan on the page"
    # What Chromium shows is what the server renders from the live snapshot.
    status = api_status(lab_page)
    assert check_status(status) == []
    rendered = bindings_of(page.render_page(status, {}, nonce="x")).bound
    for path in ("situation.name", "uplinks.0.address", "uplinks.1.address", "registrations.inner.home_agent",
                 "registrations.inner.state", "registrations.inner.care_of_address"):
        assert found.bound[path] == rendered[path], path

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "lab-status.png"
    shot.unlink(missing_ok=True)
    result = chromium("--virtual-time-budget=4000", "--window-size=1280,2000", f"--screenshot={shot}", lab_page)
    assert shot.exists(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    assert png_size(shot) == (1280, 2000)
