"""Uplink choice and make-before-break, the product end to end in the lab (issue 6, item 6).

One Mobile IP system (as tests/qemu/test_product_single.py): the home agent in outer-ha
(192.0.2.1), the router daemon with a wlan uplink (SSID "hotspot", priority 10, min signal
-45 dBm) and a 3G uplink (priority 50, metered). The correspondent is the internet core
(203.0.113.1), which reaches the mobile network through the home agent (a route added here,
test setup only). A 50 pps UDP stream and a TCP echo session run from lan-host to it during
each step (qemu.lab.traffic). Everything is driven by lab knobs only: the router chooses.

Steps, in order, on one world (each starts where the previous ended):
(a) planned handover 3G -> hotspot (the hotspot comes into range; failback after the hold-down):
    0 packets lost at 50 pps;
(b) the hotspot fades (AP transmit power down in steps; the station sees txpower - 50 dBm): the
    router moves to 3G while the hotspot still works (planned, 0 lost); the hotspot returns:
    back after the hold-down (planned, 0 lost);
(c) 3G loses its signal and registration while it stands by (the network ends the call): the
    router stays on the hotspot and logs why it cannot redial; then, on 3G with a weak hotspot,
    3G dies: unplanned move to the hotspot (detection time printed);
(d) the hotspot flaps at 1 Hz for 30 s: the number of switches stays within what the hold-down
    allows, and LAN traffic keeps flowing throughout.

Figures printed: lost packets of every planned handover, the detection time (knob -> the
router's switch decision) and the LAN gap of the unplanned losses.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from qemu.lab import World, plan
from qemu.lab.product import Product, RouterOptions
from qemu.lab.shell import run, wait_until
from qemu.lab.testing import module_world
from qemu.lab.traffic import Arrival, Traffic

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}
CORRESPONDENT = plan.INTERNET_CORE_ADDRESS
RATE = 50  # packets per second
MIN_SIGNAL = -45  # dBm, inside the lab's -50..-30 (txpower 0..2000 mBm - 50 dBm)
HOTSPOT = "198.51.100."
CELL = plan.CELL_SUBSCRIBER_ADDRESS
HOLD_DOWN = 5.0  # router.policy.uplink.UplinkProfile.failback_hold_down (default)
FLAP_SECONDS = 30.0
FULL_POWER = 2000  # mBm -> -30 dBm at the station


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS, static_lan=False)


@pytest.fixture(scope="module")
def product(world: World) -> Iterator[Product]:
    world.ap_down("hotspot")  # start on 3G: the hotspot comes into range in (a)
    run(["ip", "-n", world.ns("inet"), "route", "replace", plan.LAN_PREFIX, "via", plan.OUTER_HA_ADDRESS])
    product = Product(world, RouterOptions(wlan_min_signal_dbm=MIN_SIGNAL))
    TIMINGS["home agent start"] = product.start_home_agent()
    TIMINGS["router start -> running"] = product.start_router()
    TIMINGS["router running -> registered via cell"] = product.wait_router_log(
        f"lan route -> tunnel from {CELL}", timeout=120)
    TIMINGS["lan-host DHCP lease"] = world.lan_host_dhcp(timeout=30).seconds
    wait_until(lambda: world.ping("lan-host", CORRESPONDENT, count=1, interval=0.2, wait=1.0).ok,
               30, "lan-host to reach the correspondent", interval=0.2)
    try:
        yield product
    finally:
        if Path("/out").is_dir():
            (Path("/out") / "test_product_uplinks-router.log").write_text(product.router_log(whole=True))
        print("\n--- router log (tail)\n" + product.router.log_tail(80))
        print("\n--- home agent log (tail)\n" + product.home_agent.log_tail(20))
        product.stop()


# -- helpers -----------------------------------------------------------------------------------

def status(product: Product) -> dict[str, Any]:
    return product.status()


def active(product: Product) -> str | None:
    return next((u["name"] for u in status(product)["uplinks"] if u["active"]), None)


def uplink(product: Product, name: str) -> dict[str, Any]:
    return next(u for u in status(product)["uplinks"] if u["name"] == name)


def switches_since(product: Product, since_unix: float) -> list[dict[str, Any]]:
    """The router's own record of its uplink switches (oldest first) since a wall-clock time."""
    entries = [h for h in status(product)["handovers"] if h["kind"] == "uplink" and h["at"] >= since_unix]
    return sorted(entries, key=lambda h: h["at"])


def log_after(product: Product, mark: int) -> str:
    return product.router_log()[mark:]


def wait_log_after(product: Product, mark: int, text: str, timeout: float) -> float:
    return wait_until(lambda: text in log_after(product, mark), timeout, f"{text!r} in the router log",
                      interval=0.1, on_timeout=lambda: product.router.log_tail(40))


def lost_between(arrivals: list[Arrival], start: float, end: float) -> int:
    """Sequence numbers missing among the packets that arrived in [start, end] (the sender
    counts on even when the router has no route, so a fail-closed moment shows too)."""
    seqs = sorted({a.seq for a in arrivals if start <= a.at <= end})
    if len(seqs) < 2:
        raise AssertionError(f"the stream did not flow in [{start:.1f}, {end:.1f}]")
    return seqs[-1] - seqs[0] + 1 - len(seqs)


def timeline(product: Product, arrivals: list[Arrival], start: float, end: float) -> str:
    """Router and home agent log lines and the stream's holes in [start, end] (monotonic),
    on one clock: what a lost packet coincided with."""
    offset = time.time() - time.monotonic()
    events: list[tuple[float, str]] = []
    for who, text in (("router", product.router_log()), ("ha", product.ha_log())):
        for line in text.splitlines():
            try:
                at = log_time(line) - offset
            except ValueError:
                continue
            if start <= at <= end:
                events.append((at, f"{who:6} {line.split(' ', 2)[-1]}"))
    window = sorted((a for a in arrivals if start <= a.at <= end), key=lambda a: a.seq)
    for before, after in itertools.pairwise(window):
        if after.seq - before.seq > 1:
            events.append((before.at, f"stream seq {before.seq} then {after.seq} after "
                                      f"{(after.at - before.at) * 1000:.0f} ms"))
    return "\n".join(f"{at - start:8.3f} {text}" for at, text in sorted(events))


def flowing(traffic: Traffic) -> None:
    traffic.wait_resumed(time.monotonic(), timeout=60, packets=RATE)


def log_time(line: str) -> float:
    """The Unix time of a router log line (logging's asctime, local time, milliseconds)."""
    stamp = " ".join(line.split()[:2])
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def lan_route_moves(text: str, prefix: str) -> int:
    return len(re.findall(rf"lan route -> tunnel from {re.escape(prefix)}", text))


def ensure_on_hotspot(world: World, product: Product) -> None:
    world.ap_txpower("hotspot", FULL_POWER)
    if active(product) != "wlan":
        mark = len(product.router_log())
        world.ap_up("hotspot")
        wait_log_after(product, mark, f"lan route -> tunnel from {HOTSPOT}", 120)


# -- (a) ----------------------------------------------------------------------------------------

def test_a_planned_handover_3g_to_hotspot_loses_no_packet(world: World, product: Product) -> None:
    assert active(product) == "cell"
    with Traffic(world, CORRESPONDENT, rate=RATE, name="traffic-a") as traffic:
        flowing(traffic)
        mark, since = len(product.router_log()), time.time()
        started = time.monotonic()
        world.ap_up("hotspot")
        TIMINGS["a: hotspot up -> LAN on the hotspot tunnel"] = wait_log_after(
            product, mark, f"lan route -> tunnel from {HOTSPOT}", 120)
        moved = time.monotonic()
        time.sleep(2)
        lost = lost_between(traffic.arrivals(), started, time.monotonic())
        gap = traffic.gap(started)
        tcp_alive = traffic.tcp_alive()
        story = timeline(product, traffic.arrivals(), moved - 3, moved + 1)
    switches = switches_since(product, since)
    print(f"\n(a) planned 3G -> hotspot: {lost} packet(s) lost at {RATE} pps, largest gap {gap}")
    TIMINGS["a: planned 3G -> hotspot: packets lost"] = float(lost)
    assert [(s["from"], s["to"], s["planned"]) for s in switches] == [("cell", "wlan", True)], switches
    assert "hold-down" in switches[0]["reason"], switches
    assert tcp_alive and traffic.tcp_ok, traffic.tcp_result
    assert gap.resumed and moved > started
    assert lost == 0, f"planned handover lost {lost} packet(s); largest gap {gap}\n{story}"


# -- (b) ----------------------------------------------------------------------------------------

def test_b_hotspot_fades_router_moves_to_3g_before_the_link_dies_and_back_after_the_hold_down(
        world: World, product: Product) -> None:
    ensure_on_hotspot(world, product)
    try:
        with Traffic(world, CORRESPONDENT, rate=RATE, name="traffic-b") as traffic:
            flowing(traffic)
            mark, since = len(product.router_log()), time.time()
            fade_started = time.monotonic()
            steps = []
            for mbm in (1600, 1200, 900, 600, 300):  # -34, -38, -41, -44, -47 dBm
                world.ap_txpower("hotspot", mbm)
                steps.append(mbm)
                if mbm > 500:
                    time.sleep(2.5)  # a few signal polls (1 s) at each level
                if lan_route_moves(log_after(product, mark), CELL):
                    break
            wait_log_after(product, mark, f"lan route -> tunnel from {CELL}", 60)
            on_cell = time.monotonic()
            wlan = uplink(product, "wlan")
            time.sleep(2)
            fade_lost = lost_between(traffic.arrivals(), fade_started, time.monotonic())

            # The hotspot returns: the router waits for the hold-down, then goes back.
            mark_back = len(product.router_log())
            back_started = time.monotonic()
            world.ap_txpower("hotspot", FULL_POWER)
            TIMINGS["b: hotspot restored -> LAN back on the hotspot"] = wait_log_after(
                product, mark_back, f"lan route -> tunnel from {HOTSPOT}", 90)
            time.sleep(2)
            back_lost = lost_between(traffic.arrivals(), back_started, time.monotonic())
            tcp_alive = traffic.tcp_alive()
    finally:
        world.ap_txpower("hotspot", FULL_POWER)
    switches = switches_since(product, since)
    print(f"\n(b) fade: txpower steps {steps} mBm; moved to 3G after {on_cell - fade_started:.1f} s "
          f"at signal {wlan['signal_dbm']} dBm with {fade_lost} packet(s) lost; "
          f"back on the hotspot with {back_lost} lost")
    TIMINGS["b: fade -> 3G: packets lost"] = float(fade_lost)
    TIMINGS["b: back to the hotspot: packets lost"] = float(back_lost)
    assert [(s["from"], s["to"], s["planned"]) for s in switches] == [
        ("wlan", "cell", True), ("cell", "wlan", True)], switches
    # Before the link died: the router left because of the signal, while still associated.
    assert f"<{MIN_SIGNAL}dBm" in switches[0]["reason"], switches[0]
    assert wlan["address"] is not None and wlan["state"] != "down", wlan
    assert f"hold-down {HOLD_DOWN:.1f}s elapsed" in switches[1]["reason"], switches[1]
    assert tcp_alive and traffic.tcp_ok, traffic.tcp_result
    assert fade_lost == 0 and back_lost == 0, (fade_lost, back_lost)


# -- (c) ----------------------------------------------------------------------------------------

def restore_modem(world: World) -> None:
    world.modem_signal(20)
    world.modem_registration("home")


def test_c_3g_signal_and_registration_lost_is_handled(world: World, product: Product) -> None:
    ensure_on_hotspot(world, product)
    wait_until(lambda: uplink(product, "cell")["address"] is not None, 120, "3G dialled as the standby",
               interval=0.5)
    try:
        # c1: 3G, standing by, loses signal and registration; the network ends the call.
        with Traffic(world, CORRESPONDENT, rate=RATE, name="traffic-c1") as traffic:
            flowing(traffic)
            mark, since = len(product.router_log()), time.time()
            started = time.monotonic()
            world.modem_signal(0)
            world.modem_registration("searching")
            world.modem_detach()
            wait_log_after(product, mark, "uplink cell down", 30)
            wait_log_after(product, mark, "not registered", 60)
            standby_lost = lost_between(traffic.arrivals(), started, time.monotonic())
        text = log_after(product, mark)
        why = next(line for line in text.splitlines() if "not registered" in line)
        print(f"\n(c1) 3G lost while standing by: stays on the hotspot; router logs: {why.split(' ', 4)[-1]}")
        assert switches_since(product, since) == [] and active(product) == "wlan"
        assert standby_lost == 0, standby_lost
        assert uplink(product, "cell")["address"] is None

        # c2: the network comes back: 3G redials. With a weak hotspot the router prefers 3G...
        restore_modem(world)
        wait_until(lambda: uplink(product, "cell")["address"] is not None, 120, "3G dialled again",
                   interval=0.5)
        mark = len(product.router_log())
        world.ap_txpower("hotspot", 300)  # -47 dBm: below the minimum, still associated
        wait_log_after(product, mark, f"lan route -> tunnel from {CELL}", 120)
        # ... and when 3G then dies, it moves to the (weak but working) hotspot at once.
        with Traffic(world, CORRESPONDENT, rate=RATE, name="traffic-c2") as traffic:
            flowing(traffic)
            mark, since = len(product.router_log()), time.time()
            lost_at, started = time.time(), time.monotonic()
            world.modem_registration("denied")
            world.modem_detach()
            wait_log_after(product, mark, f"lan route -> tunnel from {HOTSPOT}", 60)
            traffic.wait_resumed(time.monotonic(), timeout=30)
            gap = traffic.gap(started)
            tcp_alive = traffic.tcp_alive()
        switches = switches_since(product, since)
        assert [(s["from"], s["to"], s["planned"]) for s in switches] == [("cell", "wlan", False)], switches
        detection = switches[0]["at"] - lost_at
        acknowledged = next(line for line in log_after(product, mark).splitlines()
                            if f"lan route -> tunnel from {HOTSPOT}" in line)
        print(f"(c2) 3G lost while active: switch decided {detection * 1000:.0f} ms after the call ended, "
              f"LAN on the hotspot tunnel {(log_time(acknowledged) - lost_at) * 1000:.0f} ms after; "
              f"largest LAN gap {gap}")
        TIMINGS["c2: unplanned 3G loss -> switch decided (s)"] = detection
        TIMINGS["c2: unplanned 3G loss: largest LAN gap (s)"] = gap.ms / 1000
        assert gap.resumed and tcp_alive and traffic.tcp_ok, (gap, traffic.tcp_result)
        # ... and says why 3G stays down: its redial is refused while registration is denied.
        wait_log_after(product, mark, "not registered with the network (CGREG stat 3 DENIED)", 60)
    finally:
        restore_modem(world)
        world.ap_txpower("hotspot", FULL_POWER)
    wait_until(lambda: uplink(product, "cell")["address"] is not None, 150, "3G dialled again", interval=0.5)


# -- (d) ----------------------------------------------------------------------------------------

def test_d_hotspot_flapping_at_1_hz_switches_within_the_hold_down_bound_and_traffic_flows(
        world: World, product: Product) -> None:
    ensure_on_hotspot(world, product)
    wait_until(lambda: uplink(product, "cell")["address"] is not None, 120, "3G standing by", interval=0.5)
    with Traffic(world, CORRESPONDENT, rate=RATE, name="traffic-d") as traffic:
        flowing(traffic)
        mark, since = len(product.router_log()), time.time()
        started = time.monotonic()
        cycles = 0
        first_down_at = time.time()
        while time.monotonic() - started < FLAP_SECONDS:
            cycle_start = time.monotonic()
            world.ap_down("hotspot", silent=cycles % 2 == 1)
            time.sleep(max(0.0, cycle_start + 0.5 - time.monotonic()))
            world.ap_up("hotspot")
            time.sleep(max(0.0, cycle_start + 1.0 - time.monotonic()))
            cycles += 1
        ended, ended_unix = time.monotonic(), time.time()
        flap_switches = switches_since(product, since)
        # The hotspot stays now: back on it after the hold-down (and any flap suppression).
        wait_log_after(product, mark, f"lan route -> tunnel from {HOTSPOT}", 150)
        time.sleep(1)
        arrivals = traffic.arrivals()
        tcp_alive = traffic.tcp_alive()
    period = (ended - started) / cycles
    to_wlan = [s for s in flap_switches if s["to"] == "wlan" and s["at"] <= ended_unix]
    during = [s for s in flap_switches if s["at"] <= ended_unix]
    first = during[0] if during else None
    lost = lost_between(arrivals, started, ended)
    # LAN traffic keeps flowing: no 5 s stretch of the flapping without arrivals.
    silent = [t for t in range(int(FLAP_SECONDS // 5))
              if not any(started + 5 * t <= a.at < started + 5 * (t + 1) for a in arrivals)]
    print(f"\n(d) flap: {cycles} cycles in {ended - started:.1f} s (period {period:.2f} s); "
          f"{len(during)} switch(es) during it ({len(to_wlan)} onto the hotspot), "
          f"{lost} packet(s) lost in the flap window")
    if first is not None:
        print(f"(d) first unplanned loss (graceful AP down): switch decided "
              f"{(first['at'] - first_down_at) * 1000:.0f} ms after the AP went")
        TIMINGS["d: unplanned hotspot loss -> switch decided (s)"] = first["at"] - first_down_at
    TIMINGS["d: switches during 30 s of 1 Hz flapping"] = float(len(during))
    assert first is not None and (first["from"], first["to"], first["planned"]) == ("wlan", "cell", False), during
    # A return to the hotspot needs it fit for the whole hold-down: at most one per hold-down
    # of flapping, each followed by at most one move away (router.policy.uplink, anti-flap).
    assert len(to_wlan) <= FLAP_SECONDS / HOLD_DOWN, during
    assert len(during) <= 2 * len(to_wlan) + 1, during
    assert all(f"hold-down {HOLD_DOWN:.1f}s elapsed" in s["reason"] for s in to_wlan), to_wlan
    assert not silent, f"no LAN packet in 5 s slice(s) {silent} of the flapping"
    assert tcp_alive and traffic.tcp_ok, traffic.tcp_result
