"""Every lab knob does what it says, seen from the router (issue 3, item 4).

One world for the module; each test leaves the knob it turned back where it found it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest

from qemu.lab import LabError, World, plan
from qemu.lab.cellular import ask_modem
from qemu.lab.testing import module_world

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS)


def modem_says(world: World, command: str, timeout: float = 2.0) -> str:
    assert world.cellular is not None
    return ask_modem(world.cellular.router_tty, command, timeout)


# -- access points ---------------------------------------------------------------------------


def test_txpower_moves_the_signal_the_router_sees(world: World) -> None:
    station = world.router.station
    world.router.associate("corp")
    full = station.signal_dbm()
    world.ap_txpower("corp", 1000)  # 20 dBm -> 10 dBm
    try:
        TIMINGS["signal follows txpower"] = world.wait_for(
            lambda: station.signal_dbm() <= full - 8, 10, "the signal to drop by ~10 dB")
        assert abs(station.signal_dbm() - (full - 10)) <= 2
    finally:
        world.ap_txpower("corp", 2000)
    world.wait_for(lambda: station.signal_dbm() >= full - 2, 10, "the signal to recover")


def test_graceful_ap_down_disassociates_at_once(world: World) -> None:
    world.router.associate("corp")
    world.ap_down("corp")
    try:
        seconds = world.router.station.wait_disassociated(5)
    finally:
        world.ap_up("corp")
    TIMINGS["graceful AP down -> station disconnected"] = seconds
    assert seconds < 2


def test_silent_ap_down_is_noticed_by_beacon_loss(world: World) -> None:
    world.router.associate("corp")
    world.ap_down("corp", silent=True)
    try:
        seconds = world.router.station.wait_disassociated(20)
    finally:
        TIMINGS["AP back up after silent down"] = world.ap_up("corp")
    TIMINGS["silent AP down -> station disconnected"] = seconds
    assert seconds > 0.3  # nobody said goodbye: it took missed beacons
    TIMINGS["re-association after AP back"] = world.router.associate("corp")


def test_rogue_ap_is_seen_in_a_scan_and_hands_out_corp_addresses(world: World) -> None:
    TIMINGS["rogue AP up"] = world.rogue_ap_up()
    try:
        both = {world.access_points["corp"].bssid, world.access_points["rogue"].bssid}
        start = time.monotonic()
        world.router.station.scan_until(
            lambda heard: {bssid for bssid, ssid, _ in heard if ssid == "corp"} == both)
        TIMINGS["rogue AP seen in a scan"] = time.monotonic() - start
        world.router.associate("rogue")
        lease = world.router.dhcp()
        assert ip_address(lease.address) in ip_network("10.30.0.0/24")
        # ...but it is the outside world: the corporate network is not behind it.
        world.router.default_route(plan.ROUTER_WLAN, lease.gateway)
        assert not world.ping("router", plan.CORRESPONDENT_ADDRESS, count=1).ok
        assert world.ping("router", plan.INTERNET_CORE_ADDRESS, count=1).ok
    finally:
        world.router.station.disconnect()
        world.rogue_ap_down()


# -- the modem -------------------------------------------------------------------------------


def test_modem_signal_changes_the_csq_answer(world: World) -> None:
    world.modem_signal(7)
    assert "+CSQ: 7,99" in modem_says(world, "AT+CSQ")
    world.modem_signal(99)
    assert "+CSQ: 99,99" in modem_says(world, "AT+CSQ")
    world.modem_signal(20)
    assert "+CSQ: 20,99" in modem_says(world, "AT+CSQ")


def test_modem_registration_and_sim_state(world: World) -> None:
    world.modem_registration("searching")
    assert "+CREG: 0,2" in modem_says(world, "AT+CREG?")
    world.modem_registration("denied")
    try:
        assert "+CGREG: 0,3" in modem_says(world, "AT+CGREG?")
        with pytest.raises(LabError, match="pppd-router exited"):
            world.router.dial()  # the modem answers NO CARRIER: chat fails, pppd gives up
    finally:
        world.modem_registration("home")
    assert '+COPS: 0,0,"Lab Cell",2' in modem_says(world, "AT+COPS?")
    world.modem_sim(False)
    try:
        assert "+CME ERROR: 10" in modem_says(world, "AT+CPIN?")
    finally:
        world.modem_sim(True)
    assert "+CPIN: READY" in modem_says(world, "AT+CPIN?")


def test_hung_modem_does_not_answer(world: World) -> None:
    world.modem_hang()
    try:
        assert modem_says(world, "AT", timeout=1.0) == ""
    finally:
        world.modem_hang(False)
    assert "OK" in modem_says(world, "AT")


def test_operator_detach_ends_the_call_and_the_router_can_redial(world: World) -> None:
    world.router.dial()
    start = time.monotonic()
    world.modem_detach()
    assert world.router.dialer is not None
    world.wait_for(lambda: not world.router.dialer.has_address(), 10, "ppp0 to go")
    TIMINGS["operator detach -> ppp0 gone"] = time.monotonic() - start
    world.router.dialer.daemon.wait_exit(10)
    address, TIMINGS["redial after detach"] = world.router.dial()
    assert ip_address(address) in ip_network(plan.CELL_PREFIX)
    world.router.hang_up()


def test_unplugged_modem_takes_its_tty_away_until_replugged(world: World) -> None:
    assert world.cellular is not None
    world.stop_peer("modem")
    assert not world.cellular.router_tty.exists()
    TIMINGS["modem replug"] = world.restart_peer("modem")
    assert "OK" in modem_says(world, "AT")


# -- links and peers -------------------------------------------------------------------------


def test_cut_hotspot_link_and_peer_restarts(world: World) -> None:
    router = world.router
    router.associate("hotspot")
    lease = router.dhcp()
    world.cut("hotspot")
    try:
        assert not world.ping("router", lease.gateway, count=1).ok
    finally:
        world.uncut("hotspot")
    assert world.ping("router", lease.gateway, count=2).ok

    world.stop_peer("dhcp-hotspot")
    with pytest.raises(LabError):
        router.dhcp(timeout=3)
    TIMINGS["dnsmasq restart"] = world.restart_peer("dhcp-hotspot")
    assert ip_address(router.dhcp().address) in ip_network("198.51.100.0/24")

    TIMINGS["vpn-gw charon restart + config load"] = world.restart_peer("vpn-gw")
    assert world.vpn_gateway is not None
    assert "corp" in world.vpn_gateway.swanctl("--list-conns")


def test_up_again_replaces_a_leftover_world(world: World) -> None:
    """A second `up()` (as after a crashed test process) removes the old world first. Last in
    the module: it replaces the module's world, whose teardown then finds nothing left."""
    second = World()
    try:
        TIMINGS["world up over a leftover world"] = second.up()["world up"]
        assert second.router.associate("hotspot") < 30
        assert ip_address(second.router.dhcp().address) in ip_network("198.51.100.0/24")
    finally:
        second.down()
