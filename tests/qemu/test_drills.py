"""Fault drills on the single-system product (issue 9, item 2), in the guest.

The product as tests/qemu/test_product_single.py runs it (its `world` and `product` fixtures
are shared, not copied): the home agent in outer-ha, the router with a hotspot (wlan) and a
3G uplink, lan-host behind it. Every drill breaks something, lets the router recover on its
own, and then asserts

- that LAN traffic to the correspondent flows again (ping from lan-host through the home
  agent) within a generous correctness bound; the measured recovery is printed and recorded;
- that no stale kernel state remains: back in the base state (3G, hotspot out of range) the
  router namespace's kernel matches ``router.dataplane.router_plan`` for that state exactly
  (observed through pyroute2, our ownership), and the independent listings (``ip`` tunnels,
  routes of all tables, rules; ``ip xfrm policy``; ``nft list ruleset``) equal the ones taken
  before the first drill.

Drills, in order (each starts and ends in the base state unless noted):
  SIGHUP with a broken config -> the router keeps serving; a valid one is applied live;
  (a) both uplinks down for 60 s (hotspot out of range, the operator detaches and the modem
      loses registration), then both back;
  (c) modem hang: the AT channel stops answering while the operator ends the call -> dial
      attempts fail on the hang, the driver's reset path runs, 3G comes back;
  (d) kill -9 of the router daemon right after the hotspot triggered a switch, restart ->
      reconciles and recovers, no duplicate kernel objects (ends on the hotspot);
  (b) hotspot flapping at ~1 Hz for 24 s starting on the hotspot -> the router ends on a
      working path with a bounded number of switches (ends in the base state);
  (f) the home agent's clock steps +5 min (date -s): the router's identification is out of
      tolerance -> 133 -> resync -> the binding renews; the clock is put back -> the same
      again (the home agent caps its replay floor, so nobody is locked out for 5 min).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from qemu.lab import World, plan
from qemu.lab.kernelstate import duplicates, kernel_listing
from qemu.lab.product import HOME_ADDRESS, Product
from qemu.lab.shell import LabError, run, wait_until
from tests.qemu.test_product_single import (  # the shared fixtures and helpers
    TIMINGS,
    lan_ping,
    product,
    wait_lan_path,
    world,
)

__all__ = ["product", "world"]  # fixtures, used by name

HA = plan.OUTER_HA_ADDRESS
CELL_ADDRESS = plan.CELL_SUBSCRIBER_ADDRESS
RESULTS: dict[str, tuple[bool, float | None, float]] = {}  # drill -> (passed, recovery s, bound s)
OUTAGE = 60.0  # (a): both uplinks down this long
FLAP_SECONDS = 24.0  # (b)


# -- kernel state ------------------------------------------------------------------------------

def ha_tunnels(listing: dict[str, list[str]]) -> list[str]:
    """The IP-in-IP tunnels to the home agent (whatever the data plane names them)."""
    return [t for t in listing["tunnels"] if re.search(rf"remote {re.escape(HA)} local ", t)]


def plan_differences(world: World) -> list[str]:
    """What the kernel would need to change to match router_plan for the base state
    (single system on 3G, hotspot gone): nothing, if no stale object is left."""
    from router.dataplane import ROUTER_OWNERSHIP, DataPlane, Tunnel, UplinkRoute, router_plan
    from router.net import KernelAdapter
    from router.net.kernel import Pyroute2Backend

    expected = DataPlane(
        lan_interface=plan.ROUTER_LAN_BRIDGE,
        mobile_networks=(IPv4Network(plan.LAN_PREFIX),),
        inner_home_address=IPv4Address(HOME_ADDRESS),
        # uplink index = position in the router's config: wlan 0, cell 1
        uplinks=(UplinkRoute(1, "ppp0", IPv4Address(CELL_ADDRESS), IPv4Address(plan.CELL_GATEWAY_ADDRESS)),),
        inner=Tunnel(IPv4Address(CELL_ADDRESS), IPv4Address(HA)),
        lan_address=IPv4Interface(f"{plan.ROUTER_LAN_ADDRESS}/24"),
    )
    adapter = KernelAdapter(Pyroute2Backend(ROUTER_OWNERSHIP, world.ns("router")))
    try:
        return [str(change) for change in adapter.plan_changes(router_plan(expected))]
    finally:
        adapter.close()


def assert_base_state(world: World, baseline: dict[str, list[str]], drill: str) -> None:
    """On 3G with the hotspot gone: the kernel is the plan's, and lists as before the drills."""
    def settled() -> bool:
        return not plan_differences(world)

    try:
        # The daemon applies the plan a moment after the registration; allow it to settle.
        wait_until(settled, 15, f"{drill}: the kernel to match router_plan", interval=0.5)
    except LabError:
        raise AssertionError(f"{drill}: kernel differs from router_plan:\n" + "\n".join(plan_differences(world))) from None
    after = kernel_listing(world)
    assert not duplicates(after), f"{drill}: duplicate kernel objects {duplicates(after)}"
    for kind in baseline:
        gone = sorted(set(baseline[kind]) - set(after[kind]))
        extra = sorted(set(after[kind]) - set(baseline[kind]))
        assert not gone and not extra, f"{drill}: {kind} differ from before the drills:\n- " + \
            "\n- ".join(gone) + "\n+ " + "\n+ ".join(extra)


def record(drill: str, recovery: float | None, bound: float, passed: bool = True,
           what: str = "LAN traffic resumed after") -> None:
    RESULTS[drill] = (passed, recovery, bound)
    figure = f"{recovery:.1f} s" if recovery is not None else "-"
    print(f"\nDRILL {drill}: {'PASS' if passed else 'FAIL'}, {what} {figure} (bound {bound:.0f} s)")
    if recovery is not None:
        TIMINGS[f"drill {drill}: recovery (s)"] = recovery


def resumes(world: World, bound: float, what: str) -> float:
    """Seconds until a ping from lan-host reaches the correspondent again (fails past bound)."""
    return wait_until(lambda: lan_ping(world, 1), bound, what, interval=0.2)


def log_after(product: Product, mark: int) -> str:
    return product.router_log()[mark:]


def wait_router_log_after(product: Product, mark: int, text: str, timeout: float) -> float:
    def seen() -> bool:
        if not product.router.running:
            raise LabError(f"router died:\n{product.router.log_tail(40)}")
        return text in log_after(product, mark)
    return wait_until(seen, timeout, f"{text!r} in the router log", interval=0.1,
                      on_timeout=lambda: product.router.log_tail(40))


def on_hotspot(product: Product) -> bool:
    moves = re.findall(r"lan route -> tunnel from (\S+)", product.router_log())
    return bool(moves) and moves[-1].startswith("198.51.100.")


def back_to_base(world: World, product: Product) -> None:
    """Hotspot out of range, LAN on the 3G tunnel."""
    mark = len(product.router_log())
    was_on_hotspot = on_hotspot(product)
    world.ap_down("hotspot")
    if was_on_hotspot:
        wait_router_log_after(product, mark, f"lan route -> tunnel from {CELL_ADDRESS}", 90)
    wait_lan_path(world, 60, "traffic on 3G")


@pytest.fixture(scope="module")
def baseline(world: World, product: Product) -> Iterator[dict[str, list[str]]]:
    world.lan_host_dhcp(timeout=30)
    wait_lan_path(world, 30, "lan-host to reach the correspondent")
    assert not plan_differences(world), plan_differences(world)
    listing = kernel_listing(world)
    assert [t for t in ha_tunnels(listing) if f"local {CELL_ADDRESS}" in t], listing
    # Replay state on disk, 0600 (RFC 5944 §5.7 across restarts): the home agent's (default
    # state dir) and the router's (its state_dir).
    for state in (Path("/var/lib/router-ha") / f"replay-{HA}.json",
                  product.router_dir / "state" / "identification-inner.json"):
        assert state.is_file() and stat.S_IMODE(state.stat().st_mode) == 0o600, state
    assert "cannot persist" not in product.ha_log() + product.router_log()
    yield listing
    lines = [f"  {name:<28} {'PASS' if ok else 'FAIL'}  recovery {'-' if r is None else f'{r:6.1f} s'}  bound {b:4.0f} s"
             for name, (ok, r, b) in RESULTS.items()]
    print("\ndrills:\n" + "\n".join(lines))


# -- SIGHUP --------------------------------------------------------------------------------------

def test_sighup_with_a_broken_config_keeps_the_router_serving(
        world: World, product: Product, baseline: dict[str, list[str]]) -> None:
    path = product.router_config
    good = path.read_text()
    pid = product.router.pid
    assert pid is not None
    try:
        mark = len(product.router_log())
        path.write_text(good.replace("priority = 50", "priority = fifty"))
        os.kill(pid, signal.SIGHUP)  # the daemon only: a SIGHUP to its group would end pppd's call
        wait_router_log_after(product, mark, "reload refused, keeping the last good config", 20)
        line = next(x for x in log_after(product, mark).splitlines() if "reload refused" in x)
        assert f"{path}:" in line, line  # the ConfigError's file:line
        assert product.router.running and lan_ping(world)
        # A valid change is applied live; one that needs a restart is named.
        mark = len(product.router_log())
        path.write_text(good.replace("priority = 50", "priority = 40").replace(
            f'apn = "{plan.CELL_APN}"', 'apn = "other.apn"'))
        os.kill(pid, signal.SIGHUP)
        wait_router_log_after(product, mark, "reload: applied uplink cell priority 50 -> 40", 20)
        wait_router_log_after(product, mark, "needs a restart (running with the old values): uplink cell apn", 5)
        assert lan_ping(world)
    finally:
        mark = len(product.router_log())
        path.write_text(good)
        os.kill(pid, signal.SIGHUP)
        wait_router_log_after(product, mark, "reload: applied uplink cell priority 40 -> 50", 20)
    assert product.router.pid == pid
    assert_base_state(world, baseline, "sighup")


# -- (a) both uplinks down for 60 s ---------------------------------------------------------------

def test_a_both_uplinks_down_for_a_minute_then_back(
        world: World, product: Product, baseline: dict[str, list[str]]) -> None:
    bound = 150.0
    assert lan_ping(world)
    mark = len(product.router_log())
    down_at = time.monotonic()
    world.modem_registration("searching")  # no redial possible meanwhile
    world.modem_detach()
    wait_until(lambda: not lan_ping(world, 1), 30, "the LAN path to go down", interval=0.5)
    assert re.search(r"no (other )?usable uplink", log_after(product, mark)), product.router.log_tail(30)
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
    assert not lan_ping(world, 1), "traffic flowed with both uplinks down"
    world.modem_registration("home")
    world.ap_up("hotspot")
    back = time.monotonic()
    recovery = resumes(world, bound, "LAN traffic after both uplinks came back")
    record("a: both uplinks down 60 s", recovery, bound)
    # Both are really back: the router moves to the preferred hotspot, then 3G when it goes.
    wait_router_log_after(product, mark, "lan route -> tunnel from 198.51.100.", 120)
    wait_router_log_after(product, mark, "uplink cell up:", max(5.0, 120 - (time.monotonic() - back)))
    back_to_base(world, product)
    assert_base_state(world, baseline, "a")


# -- (c) modem hang ------------------------------------------------------------------------------

def test_c_modem_hang_runs_the_reset_path_and_3g_comes_back(
        world: World, product: Product, baseline: dict[str, list[str]]) -> None:
    bound = 120.0
    assert lan_ping(world)
    mark = len(product.router_log())
    world.modem_hang(True)
    try:
        world.modem_detach()  # the call ends; every redial meets a modem that does not answer
        wait_router_log_after(product, mark, "after a modem reset", 120)
    finally:
        # The reset ran: the modem answers again (as a real one does after AT+CFUN / reopen).
        world.modem_hang(False)
    text = log_after(product, mark)
    assert re.search(r"dial attempt \d+ failed: .*(did not answer|hung)", text), text[-3000:]
    recovery = resumes(world, bound, "LAN traffic after the modem reset")
    wait_router_log_after(product, mark, f"lan route -> tunnel from {CELL_ADDRESS}", 30)
    record("c: modem hang -> reset", recovery, bound)
    assert_base_state(world, baseline, "c")


# -- (d) kill -9 in the middle of a handover -------------------------------------------------------

def test_d_kill_9_mid_handover_then_restart_reconciles_and_recovers(
        world: World, product: Product, baseline: dict[str, list[str]]) -> None:
    bound = 120.0
    assert lan_ping(world)
    mark = len(product.router_log())
    world.ap_up("hotspot")
    # The policy's switch decision: kill within ~10 ms of it (before or during the tunnel move).
    wait_until(lambda: re.search(r"priority 10<50, wlan .*hold-down", log_after(product, mark)) is not None,
               90, "the switch to the hotspot", interval=0.01)
    product.stop_router(signal.SIGKILL)
    killed = time.monotonic()
    left = kernel_listing(world)
    mid = len(ha_tunnels(left)) > 1
    print(f"\nkilled mid-handover: {'pending tunnel present' if mid else 'before the pending tunnel'}; "
          f"tunnels left: {ha_tunnels(left)}")
    product.start_router()
    assert "kernel reconciled" in product.router_log()
    # RFC 5944 §5.7.1 across the crash: the new run counts on from the persisted value.
    assert "inner: identification continues after 0x" in product.router_log()
    recovery = time.monotonic() - killed + resumes(world, bound, "LAN traffic after the restart")
    record("d: kill -9 mid-handover", recovery, bound)
    # It settles on the preferred hotspot; nothing twice, no pending tunnel left behind.
    product.wait_router_log("lan route -> tunnel from 198.51.100.", timeout=90)
    wait_lan_path(world, 30, "traffic on the hotspot")

    def settled_on_hotspot() -> bool:
        # The LAN table's default goes into the tunnel from the hotspot address (the 3G
        # uplink's tunnel may stay beside it, unrouted: make-before-break keeps it ready).
        listing = kernel_listing(world)
        route = next((r for r in listing["routes"] if r.startswith("default dev mip-") and "table 100" in r), "")
        device = route.split()[2] if route else ""
        return any(t.split()[0].split("@")[0].rstrip(":") == device and "local 198.51.100." in t
                   for t in ha_tunnels(listing))

    wait_until(settled_on_hotspot, 15, "the LAN routed into the tunnel from the hotspot address", interval=0.5)
    assert not duplicates(kernel_listing(world)), duplicates(kernel_listing(world))


# -- (b) uplink flap at ~1 Hz ---------------------------------------------------------------------

def test_b_hotspot_flapping_at_1_hz_ends_on_a_working_path_with_bounded_switches(
        world: World, product: Product, baseline: dict[str, list[str]]) -> None:
    bound = 90.0
    # Starts where (d) ended: on the hotspot (brought there if run alone).
    if not on_hotspot(product):
        mark = len(product.router_log())
        world.ap_up("hotspot")
        wait_router_log_after(product, mark, "lan route -> tunnel from 198.51.100.", 90)
    assert lan_ping(world)
    mark = len(product.router_log())
    started = time.monotonic()
    cycles = 0
    while time.monotonic() - started < FLAP_SECONDS:
        cycle_start = time.monotonic()
        world.ap_down("hotspot", silent=cycles % 2 == 1)
        time.sleep(max(0.0, cycle_start + 0.5 - time.monotonic()))
        world.ap_up("hotspot")
        time.sleep(max(0.0, cycle_start + 1.0 - time.monotonic()))
        cycles += 1
    world.ap_down("hotspot")
    ended = time.monotonic()
    period = (ended - started) / cycles
    recovery = resumes(world, bound, "LAN traffic after the flapping")
    wait_router_log_after(product, mark, f"lan route -> tunnel from {CELL_ADDRESS}", 60)
    text = log_after(product, mark)
    moves = len(re.findall(r"lan route -> tunnel from", text))
    to_wlan = len(re.findall(r"lan route -> tunnel from 198\.51\.100\.", text))
    print(f"\nflap: {cycles} cycles in {ended - started:.1f} s (period {period:.2f} s); "
          f"{moves} LAN route move(s), {to_wlan} onto the hotspot")
    TIMINGS["drill b: flap period (s)"] = period
    TIMINGS["drill b: LAN route moves"] = float(moves)
    # Hold-down (5 s fit before failback) and flap damping: at most one return to the
    # hotspot per 5 s of flapping, each followed by one move away from it.
    assert to_wlan <= FLAP_SECONDS / 5, text[-4000:]
    assert moves <= 2 * to_wlan + 1, text[-4000:]
    record("b: hotspot flap ~1 Hz", recovery, bound)
    assert_base_state(world, baseline, "b")


# -- (f) home agent clock jump ----------------------------------------------------------------------

def step_clock(seconds: int) -> None:
    run(["date", "-s", f"@{int(time.time()) + seconds}"])


def renewed_after_133(ha_text: str) -> bool:
    denied = ha_text.find("denied 133")
    return denied >= 0 and re.search(rf"binding {re.escape(HOME_ADDRESS)} (renewed|added)", ha_text[denied:]) is not None


def test_f_home_agent_clock_jump_resyncs_the_identification(
        world: World, product: Product, baseline: dict[str, list[str]]) -> None:
    bound = 90.0
    assert lan_ping(world)
    results = []
    stepped = 0
    try:
        for step in (300, -300):
            router_mark, ha_mark = len(product.router_log()), len(product.ha_log())
            step_clock(step)
            stepped += step
            t0 = time.monotonic()
            # The next renewal (lifetime 30 s) meets the stepped clock: 133, resync, renewed.
            wait_router_log_after(product, router_mark, "denied 133 by", 60)
            wait_until(lambda mark=ha_mark: renewed_after_133(product.ha_log()[mark:]), bound,
                       "the binding renewed after the 133", interval=0.2)
            recovered = time.monotonic() - t0
            ha_text = product.ha_log()[ha_mark:]
            assert f"wall clock stepped by {step:+d} s" in ha_text or \
                f"wall clock stepped by {step - 1:+d} s" in ha_text or \
                f"wall clock stepped by {step + 1:+d} s" in ha_text, ha_text
            assert "denied 133 (registration Identification mismatch)" in ha_text, ha_text
            # With the lab's 30 s lifetime the renewal starts ~6 s before expiry; after a step
            # back the home agent refuses values up to its tolerance (7 s) ahead, so the
            # binding may lapse briefly: then the LAN fails closed and comes back.
            lapsed = "lan route held" in log_after(product, router_mark)
            wait_lan_path(world, bound, "LAN traffic after the resync")
            results.append(recovered)
            record(f"f: HA clock {step:+d} s", recovered, bound,
                   what=f"binding renewed{' (after a lapse)' if lapsed else ''}, from the step,")
    finally:
        if stepped:
            step_clock(-stepped)
    assert product.router.running and product.home_agent.running
    assert_base_state(world, baseline, "f")

