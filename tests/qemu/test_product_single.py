"""The product end to end in the lab, one Mobile IP system (issue 4, items 2 and 4), in the guest.

The home agent (`python3 -m router.ha`) runs in outer-ha (192.0.2.1, home network the DMZ);
the router daemon (`python3 -m router`) runs in the router namespace with a wlan uplink (the
lab's wpa_supplicant, SSID "hotspot") and a 3G uplink (the lab's modem and operator). The
correspondent is the internet core (203.0.113.1, namespace `inet`), which reaches the mobile
network 10.1.1.0/24 through the home agent (a route added here, test setup only).

Steps, in order, on one world (each depends on the previous state):
(a) lan-host gets its lease from the router's dnsmasq;
(b) lan-host reaches the correspondent through the home agent, which sees lan-host's address;
(c)+(d) a 50 pps UDP stream and a TCP line-echo session survive 3G -> hotspot -> 3G, driven
    only by lab knobs (the router's policy chooses); the gap of each switch is printed; a
    capture on both uplinks shows nothing but tunnelled packets to the home agent, DHCP, ARP
    and ICMP probes to the gateways;
(e) the home agent is killed and restarted (bindings lost): the router recovers; the router is
    killed (SIGKILL) and restarted: it reconciles the kernel without duplicates and recovers;
(f) a router with a wrong key is denied 131, both sides log it, and it backs off;
(g) behind the operator's NAT (lab knob cell_nat) the router's registration is UDP-tunnelled
    (RFC 3519): the LAN reaches the correspondent through UDP 434 carrying type-4 tunnel data,
    nothing of the LAN is in clear on the cell link, and keepalives flow when idle.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qemu.lab import World, plan
from qemu.lab.product import HOME_ADDRESS, WRONG_KEY, Product, RouterOptions
from qemu.lab.shell import LabError, run, wait_until
from qemu.lab.testing import module_world
from qemu.lab.traffic import Gap, Traffic

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}
CORRESPONDENT = plan.INTERNET_CORE_ADDRESS
HA = plan.OUTER_HA_ADDRESS
RATE = 50  # packets per second



@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS, static_lan=False)


@pytest.fixture(scope="module")
def product(world: World) -> Iterator[Product]:
    # Start on 3G: the hotspot is out of range until the switching step brings it up.
    world.ap_down("hotspot")
    # The correspondent reaches the mobile network through the home agent (test setup only).
    run(["ip", "-n", world.ns("inet"), "route", "replace", plan.LAN_PREFIX, "via", HA])
    product = Product(world)
    TIMINGS["home agent start"] = product.start_home_agent()
    TIMINGS["router start -> running"] = product.start_router()
    TIMINGS["router running -> registered via cell"] = product.wait_router_log(
        "lan route -> tunnel from", timeout=120)
    try:
        yield product
    finally:
        print("\n--- router log (tail)\n" + product.router.log_tail(60))
        print("\n--- home agent log (tail)\n" + product.home_agent.log_tail(30))
        product.stop()


def lan_ping(world: World, count: int = 3) -> bool:
    return world.ping("lan-host", CORRESPONDENT, count=count, interval=0.2, wait=1.0).ok


def wait_lan_path(world: World, timeout: float, what: str) -> float:
    return wait_until(lambda: lan_ping(world, 1), timeout, what, interval=0.2)


# -- (a) and (b) -----------------------------------------------------------------------------

def test_lan_host_gets_a_lease_and_reaches_the_correspondent_through_the_home_agent(
        world: World, product: Product) -> None:
    lease = world.lan_host_dhcp(timeout=30)
    TIMINGS["lan-host DHCP lease"] = lease.seconds
    address = ipaddress.ip_address(lease.address)
    assert address in ipaddress.ip_network(plan.LAN_PREFIX), lease
    assert (lease.gateway, lease.prefix_length) == (plan.ROUTER_LAN_ADDRESS, 24), lease
    assert lease.address in (product.router_dir / "state" / "dnsmasq" / "leases").read_text()

    TIMINGS["lan-host -> correspondent path up"] = wait_lan_path(world, 30, "lan-host to reach inet")
    with world.capture("inet", "oha0", f"host {lease.address}") as at_core, \
            world.capture("outer-ha", "eth0", f"host {plan.CELL_SUBSCRIBER_ADDRESS}") as at_ha:
        assert lan_ping(world, 5)
    # The correspondent sees the LAN host's own address, arriving from the home agent's link.
    assert at_core.count(rf"IP {re.escape(lease.address)} > {re.escape(CORRESPONDENT)}: ICMP echo request") >= 3, at_core.lines
    assert at_core.count(rf"IP {re.escape(CORRESPONDENT)} > {re.escape(lease.address)}: ICMP echo reply") >= 3, at_core.lines
    # ... and it got there inside the tunnel from the router's care-of address (3G).
    tunnelled = rf"IP {re.escape(plan.CELL_SUBSCRIBER_ADDRESS)} > {re.escape(HA)}: IP {re.escape(lease.address)} > "
    assert at_ha.count(tunnelled) >= 3, at_ha.lines
    log = product.ha_log()
    assert f"binding {HOME_ADDRESS} added: coa {plan.CELL_SUBSCRIBER_ADDRESS}" in log, log
    assert "networks 10.1.1.0/24" in log


# -- (c) and (d) -----------------------------------------------------------------------------

def allowed_on_uplink(line: str, gateways: set[str]) -> bool:
    """Only what may leave the router on an uplink: the tunnel/registrations to the home
    agent, DHCP, ARP, and ICMP probes with the gateway. IPv6 link-local chatter is allowed."""
    if " ARP," in line or re.match(r"\d+ packets (captured|received|dropped)", line):
        return True  # (tcpdump's closing statistics start with a digit too)
    if " IP6 " in line:
        return bool(re.search(r"IP6 (fe80:|::)", line)) and "10.1.1." not in line
    match = re.search(r" IP (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))? > (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))?:", line)
    if match is None:
        return False
    source, sport, destination, dport = match.groups()
    if HA in (source, destination):
        return True
    if {sport, dport} <= {"67", "68"}:
        return True
    return " ICMP echo" in line and bool({source, destination} & gateways)


def test_traffic_survives_3g_hotspot_3g_and_stays_in_the_tunnel(
        world: World, product: Product, out_dir: Path) -> None:
    gaps: dict[str, Gap] = {}
    with Traffic(world, CORRESPONDENT, rate=RATE) as traffic, \
            world.capture("router", "ppp0") as on_cell, world.capture("router", "wlan0") as on_wlan:
        time.sleep(3)
        # 3G -> hotspot: the hotspot comes into range; the router's policy moves by itself.
        switched = len(re.findall("lan route -> tunnel from", product.router_log()))
        t_up = time.monotonic()
        world.ap_up("hotspot")
        product.wait_router_log("lan route -> tunnel from 198.51.100.", timeout=90)
        TIMINGS["hotspot up -> LAN on the hotspot tunnel"] = time.monotonic() - t_up
        time.sleep(3)
        gaps["3G -> hotspot"] = traffic.gap(t_up)
        # hotspot -> 3G: the hotspot goes away (deauthentication).
        t_down = time.monotonic()
        world.ap_down("hotspot")
        product.wait_router_log(f"lan route -> tunnel from {plan.CELL_SUBSCRIBER_ADDRESS}",
                                timeout=90, count=2)
        TIMINGS["hotspot down -> LAN on the 3G tunnel"] = time.monotonic() - t_down
        time.sleep(3)
        gaps["hotspot -> 3G"] = traffic.gap(t_down)
        assert len(re.findall("lan route -> tunnel from", product.router_log())) == switched + 2
    final = traffic.arrivals()
    for what, gap in gaps.items():
        print(f"switch {what}: largest gap {gap.ms:.0f} ms, {gap.lost} packet(s) lost at {RATE} pps")
        TIMINGS[f"switch {what}: largest UDP gap (s)"] = gap.ms / 1000
    (out_dir / "udp-arrivals.txt").write_text(traffic.arrivals_path.read_text())
    (out_dir / "capture-ppp0.txt").write_text("\n".join(on_cell.lines))
    (out_dir / "capture-wlan0.txt").write_text("\n".join(on_wlan.lines))
    (out_dir / "router.log").write_text(product.router_log(whole=True))

    # The TCP session survived every switch, and the stream resumed after each one.
    assert traffic.tcp_ok, traffic.tcp_result
    assert all(gap.resumed for gap in gaps.values()), gaps
    assert final and final[-1].at > t_down, "the UDP stream did not resume after hotspot -> 3G"
    assert any(a.at > t_up for a in final if a.at < t_down), "no UDP packet between the switches"
    assert traffic.sources() == {lan_host_address(world)}, "the correspondent saw another source than lan-host"

    # Nothing but the tunnel, registrations, DHCP, ARP and probes on the uplinks.
    gateways = {plan.CELL_GATEWAY_ADDRESS, "198.51.100.1"}
    for name, capture in (("ppp0", on_cell), ("wlan0", on_wlan)):
        bad = [line for line in capture.lines if not allowed_on_uplink(line, gateways)]
        assert not bad, f"{name}: packets outside the tunnel:\n" + "\n".join(bad[:20])
        assert capture.count(rf" IP \S+ > {re.escape(HA)}: IP 10\.1\.1\.") > 0, f"{name}: no tunnelled LAN traffic"
        clear = [line for line in capture.lines if re.search(r" IP 10\.1\.1\.\d+(\.\d+)? > ", line)
                 and not re.search(rf" > {re.escape(HA)}: IP 10\.1\.1\.", line)]
        assert not clear, f"{name}: LAN addresses in clear:\n" + "\n".join(clear[:20])


def lan_host_address(world: World) -> str:
    output = world.exec("lan-host", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", output)
    assert match, output
    return match.group(1)


# -- (e) -------------------------------------------------------------------------------------

def test_home_agent_restart_loses_bindings_and_the_router_recovers(
        world: World, product: Product) -> None:
    assert lan_ping(world)
    restarted = time.monotonic()
    product.restart_home_agent(signal.SIGKILL)
    TIMINGS["home agent restart (SIGKILL + start)"] = time.monotonic() - restarted
    started = time.monotonic()
    # The new home agent knows nothing: no tunnel until the router registers again.
    TIMINGS["HA restarted -> binding added again"] = product.wait_ha_log(
        f"binding {HOME_ADDRESS} added", timeout=120)
    TIMINGS["HA restarted -> LAN traffic flows again"] = \
        time.monotonic() - started + wait_lan_path(world, 60, "traffic after the HA restart")
    print(f"home agent restart: traffic flows again {TIMINGS['HA restarted -> LAN traffic flows again']:.1f} s "
          "after the new home agent listens")


def owned_kernel_state(world: World) -> dict[str, list[str]]:
    rules = [line for line in world.exec("router", ["ip", "rule"]).splitlines()
             if 1000 <= int(line.split(":")[0]) < 1100]
    routes = world.exec("router", ["ip", "route", "show", "table", "all"]).splitlines()
    links = [line.split(":")[1].strip().split("@")[0]
             for line in world.exec("router", ["ip", "-o", "link"]).splitlines()]
    addresses = world.exec("router", ["ip", "-4", "-o", "addr"]).split("\n")
    return {
        "rules": sorted(rules),
        "owned routes": sorted(r for r in routes if "proto 201" in r),
        "all routes": sorted(r for r in routes if "ppp0" not in r or "proto 201" in r),
        "mip links": sorted(name for name in links if name.startswith("mip-")),
        "addresses": sorted(" ".join(a.split()[1:4]) for a in addresses
                            if a and ("mip-" in a or "br-lan" in a)),
    }


def test_router_killed_and_restarted_reconciles_and_recovers(world: World, product: Product) -> None:
    assert lan_ping(world)
    before = owned_kernel_state(world)
    assert before["mip links"] == ["mip-home", "mip-in-1"], before  # on 3G (uplink 1), hotspot gone
    product.stop_router(signal.SIGKILL)
    left_behind = owned_kernel_state(world)
    assert left_behind["mip links"] == before["mip links"]  # a crash cleans up nothing
    started = time.monotonic()
    product.start_router()
    assert "kernel reconciled" in product.router_log()
    product.wait_router_log("lan route -> tunnel from", timeout=120)
    TIMINGS["router restarted -> registered"] = time.monotonic() - started
    TIMINGS["router restarted -> LAN traffic flows again"] = \
        time.monotonic() - started + wait_lan_path(world, 60, "traffic after the router restart")
    after = owned_kernel_state(world)
    for kind in before:
        assert after[kind] == before[kind], f"{kind} before/after the router restart differ"
    for kind in ("rules", "owned routes", "mip links"):
        assert len(set(after[kind])) == len(after[kind]), f"duplicate {kind}: {after[kind]}"


# -- (f) -------------------------------------------------------------------------------------

def test_wrong_key_is_denied_131_logged_and_the_router_backs_off(
        world: World, product: Product) -> None:
    product.stop_router()
    product.configure_router(RouterOptions(key=WRONG_KEY))
    try:
        product.start_router()
        # The router cannot authenticate the denial (the keys differ), so it may not act on it
        # (RFC 5944 §3.6.2.1) but logs the unverified code; the home agent logs its denial.
        product.wait_router_log("unverified denial 131", timeout=120)
        product.wait_ha_log("denied 131 (mobile node failed authentication)", timeout=10)
        first = time.monotonic()
        with world.capture("outer-ha", "eth0", "udp port 434") as seen:
            time.sleep(20)
        # Any packet to the HA's port 434: tcpdump names some source ports (49152 is decoded as
        # BCM-LI-SHIM), so the text after the colon is not always "UDP".
        requests = seen.count(rf" > {re.escape(HA)}\.434: ")
        denials = product.router_log().count("unverified denial 131")
        print(f"wrong key: {requests} registration request(s) reached the home agent in "
              f"{time.monotonic() - first:.0f} s; router logged {denials} denial(s)")
        TIMINGS["wrong key: requests in 20 s"] = float(requests)
        # A back-off that doubles from ~1 s allows about log2(20) ~ 5 tries in 20 s; a flood
        # would be hundreds. Bounded, not timed.
        assert 0 < requests <= 8, seen.lines
        assert "131" in product.ha_log()
        assert "lan route -> tunnel from" not in product.router_log()
        with pytest.raises(LabError):
            wait_lan_path(world, 3, "no path with a wrong key")
    finally:
        product.stop_router()
        product.configure_router(RouterOptions())


# -- (g) -------------------------------------------------------------------------------------

def _ipv4_hex(address: str) -> str:
    return "0x" + ipaddress.IPv4Address(address).packed.hex()


def test_behind_the_operators_nat_the_lan_rides_rfc3519_udp_tunnelling(world: World, product: Product) -> None:
    product.stop_router()  # (f) leaves it stopped; a no-op then
    world.ap_down("hotspot")
    world.cell_nat(True)
    try:
        product.start_router()
        TIMINGS["NAT: router start -> registered with udp tunnelling"] = product.wait_router_log(
            "udp tunnelling behind nat", timeout=120)
        assert "udp tunnelling (RFC 3519) on" in product.ha_log(whole=True)
        bindings = re.findall(rf"binding {re.escape(HOME_ADDRESS)} (?:added|moved \S+ -> \S+|renewed): "
                              rf"coa (\S+) lifetime .* udp$", product.ha_log(), re.M)
        assert bindings, product.ha_log()
        # The home agent tunnels to the NAT's address, not to the address the router holds.
        assert bindings[-1] != plan.CELL_SUBSCRIBER_ADDRESS, bindings
        wait_until(lambda: "dev mip3519" in world.exec("router", ["ip", "route", "show", "table", "100"]),
                   10, "the LAN table's default into mip3519", interval=0.1)
        TIMINGS["NAT: lan-host -> correspondent path up"] = wait_lan_path(world, 60, "lan-host over UDP")

        ha_hex = _ipv4_hex(HA)
        # BPF offsets from the UDP header: [8] RFC 3519 type, [12..] the inner IPv4 header,
        # [21] its protocol, [24:4]/[28:4] its source/destination, [32] the ICMP type.
        data = "udp port 434 and udp[8] = 4"
        keepalive = f"udp dst port 434 and udp[8] = 4 and udp[21] = 1 and udp[28:4] = {ha_hex} and udp[32] = 8"
        answer = f"udp src port 434 and udp[8] = 4 and udp[21] = 1 and udp[24:4] = {ha_hex} and udp[32] = 0"
        with world.capture("router", "ppp0") as everything, \
                world.capture("router", "ppp0", data) as tunnelled, \
                world.capture("router", "ppp0", keepalive) as keepalives, \
                world.capture("router", "ppp0", answer) as answers:
            assert lan_ping(world, 5)
            # Idle: with the keepalive interval of 10 s (the home agent's reply), the router
            # must probe within that; 25 s of silence leaves room for at least two.
            time.sleep(25)
        lines = [line for line in everything.lines if " IP" in line]
        packets = [line for line in tunnelled.lines if " IP " in line]
        assert len([line for line in packets if f" > {HA}.434:" in line]) >= 5, tunnelled.lines
        assert len([line for line in packets if f" {HA}.434 > " in line]) >= 5, tunnelled.lines
        assert [line for line in keepalives.lines if " IP " in line], everything.lines[-30:]
        assert [line for line in answers.lines if " IP " in line], everything.lines[-30:]
        clear = [line for line in lines if re.search(r"10\.1\.1\.\d+", line)]
        assert not clear, "LAN addresses in clear on ppp0:\n" + "\n".join(clear[:20])
        ipip = [line for line in lines if re.search(rf" > {re.escape(HA)}: IP ", line)]
        assert not ipip, "IP-in-IP behind the NAT:\n" + "\n".join(ipip[:20])
        bad = [line for line in lines if not allowed_on_uplink(line, {plan.CELL_GATEWAY_ADDRESS})]
        assert not bad, "packets outside the tunnel:\n" + "\n".join(bad[:20])
        print(f"NAT: {len(packets)} type-4 datagram(s), {len(keepalives.lines)} keepalive(s) seen on ppp0")
    finally:
        product.stop_router()
        world.cell_nat(False)
