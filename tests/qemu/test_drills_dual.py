"""Fault drills on the dual system (issue 9, item 2: the peers only the dual system has), in the guest.

The product as the tour runs it (qemu.lab.product.DualProduct): the router outside on 3G, the
LAN riding IP-in-IP(X -> T_HA)[ESP(T -> T_gw)[IP-in-IP(V -> S_HA)]] to the corp server. Each
drill breaks one peer and lets the router recover by itself, then asserts

- LAN traffic from lan-host reaches the corp server again within a generous correctness
  bound (the measured recovery is printed and recorded in the timings);
- no stale kernel state: the router namespace's tunnels, routes (all tables), rules, xfrm
  policies and nft rules, as iproute2 and nft list them (qemu.lab.kernelstate), hold no
  duplicate and equal the listing taken before the first drill.

Drills: (1) the inner home agent is killed and restarted (its bindings lost): the router's next
renewal over the VPN re-creates the binding; (2) the same for the outer home agent; (3) the VPN
gateway's charon is killed and restarted (the IKE SA gone on its side): the router's charon
notices (DPD), the daemon brings the VPN up again and re-registers the inner system over it.

Run: python3 -m qemu.run --tests tests/qemu/test_drills_dual.py
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from qemu.lab import World, plan
from qemu.lab.kernelstate import differences, duplicates, kernel_listing
from qemu.lab.product import DualProduct
from qemu.lab.shell import wait_until
from qemu.lab.testing import module_world
from qemu.lab.tour import Expect, start_inside, wait_settled

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}
CN = plan.CORRESPONDENT_ADDRESS
OUTSIDE = Expect("outside", "cell")
# The virtual IP may differ after the VPN came up again (a new lease from the gateway's pool).
VOLATILE = (r"10\.99\.0\.\d+", r"reqid \d+", r"spi 0x[0-9a-f]+")


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS, static_lan=False)


@pytest.fixture(scope="module")
def product(world: World) -> Iterator[DualProduct]:
    product = DualProduct(world)
    try:
        start_inside(world, product)
        world.ap_down("corp")
        TIMINGS["inside -> outside settled (s)"] = wait_settled(product, OUTSIDE)
        yield product
    finally:
        print("\n--- router log (tail)\n" + product.router.log_tail(60))
        product.stop()


def listing(world: World) -> dict[str, list[str]]:
    return kernel_listing(world, volatile=VOLATILE, any_tunnel_name=True)


@pytest.fixture(scope="module")
def baseline(world: World, product: DualProduct) -> dict[str, list[str]]:
    wait_until(lambda: lan_ping(world), 60, "the LAN to reach the corp server outside", interval=0.3)
    time.sleep(2)  # the kernel verification after the last change
    return listing(world)


def lan_ping(world: World) -> bool:
    return world.ping("lan-host", CN, count=1, interval=0.2, wait=1.0).ok


def recover(world: World, product: DualProduct, baseline: dict[str, list[str]], drill: str,
            broken_at: float, bound: float) -> float:
    """Wait for the LAN path (bounded), then for the router to settle outside and the kernel to
    list as before; returns the recovery time from `broken_at`."""
    wait_until(lambda: lan_ping(world), bound, f"{drill}: LAN traffic to resume", interval=0.3,
               on_timeout=lambda: product.router.log_tail(60))
    recovery = time.monotonic() - broken_at
    wait_settled(product, OUTSIDE, timeout=60)
    TIMINGS[f"drill {drill}: LAN resumed after (s)"] = recovery

    def same() -> bool:
        now = listing(world)
        return not duplicates(now) and not differences(baseline, now)

    try:
        wait_until(same, 20, f"{drill}: the kernel to list as before", interval=1.0)
    except Exception:
        now = listing(world)
        print(f"\nDRILL {drill}: FAIL, LAN traffic resumed after {recovery:.1f} s but the kernel differs")
        raise AssertionError(f"{drill}: stale or missing kernel state\nduplicates {duplicates(now)}\n"
                             f"{differences(baseline, now)}") from None
    print(f"\nDRILL {drill}: PASS, LAN traffic resumed after {recovery:.1f} s (bound {bound:.0f} s), kernel as before")
    return recovery


def test_1_inner_home_agent_restart_loses_bindings_and_the_router_reregisters(
        world: World, product: DualProduct, baseline: dict[str, list[str]]) -> None:
    mark = len(product.router_log())
    broken_at = time.monotonic()
    product.restart_inner_home_agent(signal.SIGKILL)
    # Lifetime 30 s: the renewal over the VPN re-creates the binding on the new instance.
    recover(world, product, baseline, "inner HA restart", broken_at, bound=120)
    assert "inner: renewed" in product.router_log()[mark:] or "inner: registered" in product.router_log()[mark:]
    assert "binding 10.10.0.50 added" in product.inner_ha_log()


def test_2_outer_home_agent_restart_loses_bindings_and_the_router_reregisters(
        world: World, product: DualProduct, baseline: dict[str, list[str]]) -> None:
    mark = len(product.router_log())
    broken_at = time.monotonic()
    product.restart_home_agent(signal.SIGKILL)
    recover(world, product, baseline, "outer HA restart", broken_at, bound=180)
    log = product.router_log()[mark:]
    assert "outer: renewed" in log or "outer: registered" in log, log[-3000:]
    assert "binding 192.0.2.50 added" in product.ha_log()


def test_3_vpn_gateway_restart_brings_the_vpn_up_again(
        world: World, product: DualProduct, baseline: dict[str, list[str]]) -> None:
    mark = len(product.router_log())
    broken_at = time.monotonic()
    world.stop_peer("vpn-gw", silent=True)  # SIGKILL: no DELETE reaches the router
    # A crashed charon leaves its kernel SAs behind (ESP would still flow): a rebooted gateway
    # has none. Flush them, then start charon again with its config and no IKE SA.
    world.exec("vpn-gw", ["ip", "xfrm", "state", "flush"])
    world.exec("vpn-gw", ["ip", "xfrm", "policy", "flush"])
    world.restart_peer("vpn-gw")
    assert not lan_ping(world), "the VPN path should be broken now"
    # DPD every 10 s, then the router's charon gives up after ~22 s (product strongswan.conf).
    recover(world, product, baseline, "VPN gateway restart", broken_at, bound=240)
    log = product.router_log()[mark:]
    print("\n".join(line for line in log.splitlines() if "vpn" in line.lower() or "intent" in line))
    assert "intent BringVpnUp" in log, log[-3000:]
