"""The dual system behind the 3G operator's NAT: RFC 3519 for the outer system, end to end.

The product's daemons as in the tour (qemu.lab.product.DualProduct; [outer] udp_tunnel is not
set, so its default "auto" applies: UDP tunnelling only when the outer home agent sees a NAT).
Only lab knobs move the router; one world, steps in order, a 50 pps UDP stream and a TCP echo
session from lan-host to the corporate correspondent running through each move.

(a) inside on corp, the operator's NAT on (`cell_nat`), corp AP down -> 3G: the outer home agent
    assents to UDP tunnelling (its binding names the NAT's address), T's default goes into the
    router's mip3519-out instead of an IP-in-IP tunnel, the VPN comes up from T, the inner
    system registers over the VPN (care-of address V) and lan-host reaches the correspondent
    with its own address. On the operator's transit (as the internet core sees it, after the
    NAT) and on ppp0 (before it): UDP 434 type-4 tunnel data carrying ESP from T to the VPN
    gateway in both directions (tcpdump BPF on the RFC 3519 header and the inner IPv4 header),
    no IP-in-IP, nothing of 10.x in clear (tshark). A 4 MiB TCP transfer arrives whole (the
    TUN's MTU and path MTU discovery through the nesting: no black hole) and the path MTU is
    printed; idle, the keepalives (RFC 3519 §4.9) are counted and printed;
(b) hotspot (no NAT) appears -> the router moves to it: the outer binding is plain again
    (the router logs the UDP tunnel detached, T's default is mip-out-0, the home agent's
    binding carries no "udp"), the nesting on the hotspot's uplink is IP-in-IP again;
(c) hotspot gone -> 3G behind the NAT again: UDP tunnelling re-attached;
(d) corp back -> inside: the outer system is deregistered (the request cannot reach the outer
    home agent from inside; its binding expires there), the UDP tunnel detached, nothing routes
    into mip3519-out, the LAN goes direct.

Run: python3 -m qemu.run --tests tests/qemu/test_dual_nat.py
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qemu.lab import World, plan
from qemu.lab.captures import cleartext_leaks, nesting_layers, record, summary
from qemu.lab.nesting import exact_transfer, path_mtu
from qemu.lab.product import HOME_ADDRESS, DualProduct
from qemu.lab.shell import LabError, wait_until
from qemu.lab.testing import module_world
from qemu.lab.tour import (
    SECURE_PREFIXES,
    Expect,
    Step,
    StepResult,
    run_step,
    start_inside,
    wait_settled,
)
from qemu.lab.traffic import Traffic

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}
CN = plan.CORRESPONDENT_ADDRESS
T, T_HA, T_GW = HOME_ADDRESS, plan.OUTER_HA_ADDRESS, plan.VPN_GATEWAY_ADDRESS
X = plan.CELL_SUBSCRIBER_ADDRESS
NAT_ADDRESS = "203.0.113.2"  # the operator's transit address (plan: link "cell", its up0)
UDP_DEVICE = "mip3519-out"
ESP = 50
TRANSFER_MBIT: dict[str, float] = {}  # the 4 MiB transfer lan-host -> cn on 3G: "udp" / "ipip"


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS, static_lan=False)


@pytest.fixture(scope="module")
def product(world: World) -> Iterator[DualProduct]:
    product = DualProduct(world)
    try:
        TIMINGS.update(start_inside(world, product))
        world.cell_nat(True)
        yield product
    finally:
        world.cell_nat(False)
        print("\n--- router log (tail)\n" + product.router.log_tail(80))
        print("\n--- outer home agent log (tail)\n" + product.home_agent.log_tail(30))
        product.stop()


def aps(up: str | None = None, down: str | None = None) -> Callable[[World], None]:
    def act(world: World) -> None:
        if up is not None:
            world.ap_up(up)
        if down is not None:
            world.ap_down(down)
    return act


def _hex(address: str) -> str:
    return "0x" + ipaddress.IPv4Address(address).packed.hex()


def bpf_count(pcap: Path, bpf: str) -> int:
    """Packets of the capture that match `bpf` (tcpdump reads it back: an independent decoder)."""
    done = subprocess.run(["tcpdump", "-n", "-r", str(pcap), *bpf.split()], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise LabError(f"tcpdump -r {pcap} failed: {done.stderr}")
    return len([line for line in done.stdout.splitlines() if " IP " in line])


# BPF offsets from the UDP header: [8] the RFC 3519 type (4: tunnel data, §3.3), [9] its next
# header (4: IPv4), [12..] the inner IPv4 header: [21] its protocol, [24:4]/[28:4] source/destination.
UPSTREAM_ESP = f"udp dst port 434 and udp[8] = 4 and udp[9] = 4 and udp[21] = {ESP} and udp[24:4] = {_hex(T)} and udp[28:4] = {_hex(T_GW)}"
DOWNSTREAM_ESP = f"udp src port 434 and udp[8] = 4 and udp[9] = 4 and udp[21] = {ESP} and udp[24:4] = {_hex(T_GW)} and udp[28:4] = {_hex(T)}"
KEEPALIVE = f"udp dst port 434 and udp[8] = 4 and udp[21] = 1 and udp[24:4] = {_hex(T)} and udp[28:4] = {_hex(T_HA)} and udp[32] = 8"
IPIP_TO_HA = f"ip proto 4 and dst host {T_HA}"


def outer_default(world: World) -> str:
    return world.exec("router", ["ip", "route", "show", "table", "101", "default"])


def outer_bindings(product: DualProduct) -> list[tuple[str, str, bool]]:
    """(what, care-of address, udp) of every binding line for T in this run's outer HA log."""
    return [(m.group(1), m.group(2), bool(m.group(3))) for m in re.finditer(
        rf"binding {re.escape(T)} (added|moved \S+ -> \S+|renewed): coa (\S+) lifetime .*?( udp)?$",
        product.ha_log(), re.M)]


def print_step(result: StepResult) -> None:
    print(f"  {result.name:<40} {result.situation:<9} {result.uplink:<18} gap {result.gap}  "
          f"tcp {'alive' if result.tcp_alive else 'BROKEN'}  settled in {result.settled_s or 0:.1f} s"
          f"{'  ERROR ' + result.error if result.error else ''}", flush=True)


def check_step(result: StepResult, traffic: Traffic) -> None:
    assert result.error is None, f"{result.name}: {result.error}\n{result.router_log[-4000:]}"
    assert result.gap is not None and result.gap.resumed, f"{result.name}: the stream did not resume"
    assert result.tcp_alive, f"{result.name}: the TCP session broke\n{result.router_log[-4000:]}"
    TIMINGS[f"{result.name}: gap (s)"] = result.gap.ms / 1000
    TIMINGS[f"{result.name}: settled (s)"] = result.settled_s or 0.0


def lan_host_address(world: World) -> str:
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", world.exec("lan-host", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]))
    assert match
    return match.group(1)


def test_a_behind_the_operators_nat_the_outer_system_rides_rfc3519(world: World, product: DualProduct,
                                                                   out_dir: Path) -> None:
    step = Step("corp down -> 3G behind the NAT", aps(down="corp"), Expect("outside", "cell"))
    transit, ppp = out_dir / "cell-transit.pcap", out_dir / "router-ppp0.pcap"
    with record(world, "inet", "cell0", transit), record(world, "router", "ppp0", ppp), \
            Traffic(world, CN, rate=50) as traffic:
        time.sleep(2)
        result = run_step(world, product, traffic, step, print_step)
        check_step(result, traffic)
        wait_until(lambda: f"dev {UDP_DEVICE}" in outer_default(world), 10, "T's default into mip3519-out", interval=0.2)
        time.sleep(2)
    assert traffic.tcp_ok, traffic.tcp_result
    # lan-host kept its own address end to end (the inner system, over the VPN).
    assert traffic.sources() == {lan_host_address(world)}, traffic.sources()
    log = result.router_log
    assert re.search(r"outer route -> tunnel from 100\.64\.0\.\d+ \(binding acknowledged, udp tunnelling behind nat\)", log), log[-4000:]
    assert "intent BringVpnUp" in log and re.search(r"inner: registered coa 10\.99\.0\.\d+", log), log[-4000:]
    status = product.status()
    assert status["vpn"]["state"] == "up", status["vpn"]
    assert status["registrations"]["outer"]["care_of_address"] == X, status["registrations"]["outer"]
    assert ipaddress.IPv4Address(status["registrations"]["inner"]["care_of_address"]) in ipaddress.IPv4Network(plan.VPN_POOL)
    # The outer home agent tunnels to the NAT's address, in UDP (RFC 3519 §4.6).
    assert (outer_bindings(product) or [("", "", False)])[-1][1:] == (NAT_ADDRESS, True), product.ha_log()[-3000:]
    links = world.exec("router", ["ip", "-o", "link", "show"])
    assert "mip-out-" not in links, links  # no IP-in-IP tunnel to T_HA on the NAT'd uplink

    # The wire, before and after the NAT.
    for pcap, source in ((ppp, X), (transit, NAT_ADDRESS)):
        up, down = bpf_count(pcap, UPSTREAM_ESP + f" and src host {source}"), bpf_count(pcap, DOWNSTREAM_ESP + f" and dst host {source}")
        ipip = bpf_count(pcap, IPIP_TO_HA)
        print(f"{pcap.name}: {up} type-4 datagrams with ESP T -> T_gw, {down} back, {ipip} IP-in-IP to T_HA")
        assert up >= 100 and down >= 20, (pcap, up, down)
        assert ipip == 0, summary(nesting_layers(pcap))
        leaked = cleartext_leaks(pcap, SECURE_PREFIXES)
        assert leaked == [], f"{pcap.name}: secure-domain addresses in clear:\n{summary(leaked)}"
    TIMINGS["NAT: type-4 ESP datagrams upstream on the transit"] = bpf_count(transit, UPSTREAM_ESP)

    # Bulk TCP across all the layers, with DF: it arrives whole (no PMTU black hole).
    TIMINGS["NAT: lan-host -> cn path MTU"] = mtu = path_mtu(world, "lan-host", CN)
    started = time.monotonic()
    received = exact_transfer(world, "lan-host", "cn", CN, 9101)
    seconds = time.monotonic() - started
    TRANSFER_MBIT["udp"] = received * 8 / seconds / 1e6
    print(f"NAT: path MTU lan-host -> cn {mtu}; 4 MiB lan-host -> cn in {seconds:.1f} s ({TRANSFER_MBIT['udp']:.1f} Mbit/s)")
    TIMINGS["NAT: 4 MiB lan-host -> cn (s)"] = seconds
    assert received == 4 * 1024 * 1024

    # Idle LAN: RFC 3519 §4.9, the router sends something into the tunnel at least every
    # keepalive interval (10 s here): a keepalive unless other traffic (charon's DPD, ESP from
    # T) went out anyway. Either keeps the NAT's mapping alive.
    with record(world, "router", "ppp0", out_dir / "idle-ppp0.pcap", "udp port 434") as idle:
        time.sleep(25)
    keepalives, upstream = bpf_count(idle, KEEPALIVE), bpf_count(idle, "udp dst port 434 and udp[8] = 4")
    print(f"NAT: idle 25 s: {upstream} type-4 datagram(s) upstream, {keepalives} of them keepalive(s)")
    TIMINGS["NAT: keepalives in 25 s idle"] = keepalives
    assert upstream >= 2, bpf_count(idle, "")


def test_b_a_hotspot_without_nat_detaches_the_udp_tunnel(world: World, product: DualProduct, out_dir: Path) -> None:
    step = Step("hotspot up -> hotspot (no NAT)", aps(up="hotspot"), Expect("outside", "wlan", "hotspot"))
    with record(world, "inet", "hs0", out_dir / "hotspot-uplink.pcap") as pcap, Traffic(world, CN, rate=50) as traffic:
        time.sleep(2)
        result = run_step(world, product, traffic, step, print_step)
        check_step(result, traffic)
        wait_until(lambda: "dev mip-out-0" in outer_default(world), 10, "T's default into mip-out-0", interval=0.2)
        time.sleep(2)
    assert traffic.tcp_ok, traffic.tcp_result
    log = result.router_log
    assert "outer: udp tunnel detached" in log, log[-4000:]
    assert re.search(r"outer route -> tunnel from 198\.51\.100\.\d+ \(binding acknowledged\)", log), log[-4000:]
    what, care_of, udp = outer_bindings(product)[-1]
    assert care_of.startswith("198.51.100.") and not udp, (what, care_of, udp)
    shapes = {packet.shape for packet in nesting_layers(pcap)}
    assert any(re.fullmatch(rf"ip 198\.51\.100\.\d+>{re.escape(T_HA)} / ip {re.escape(T)}>{re.escape(T_GW)} / esp", s)
               for s in shapes), summary(nesting_layers(pcap))
    assert bpf_count(pcap, "udp port 434 and udp[8] = 4") == 0
    assert cleartext_leaks(pcap, SECURE_PREFIXES) == []


def test_c_back_on_3g_behind_the_nat_it_reattaches(world: World, product: DualProduct) -> None:
    step = Step("hotspot down -> 3G behind the NAT", aps(down="hotspot"), Expect("outside", "cell"))
    with Traffic(world, CN, rate=50) as traffic:
        time.sleep(2)
        result = run_step(world, product, traffic, step, print_step)
        check_step(result, traffic)
        wait_until(lambda: f"dev {UDP_DEVICE}" in outer_default(world), 10, "T's default into mip3519-out", interval=0.2)
    assert traffic.tcp_ok, traffic.tcp_result
    assert "udp tunnelling behind nat" in result.router_log, result.router_log[-4000:]
    assert outer_bindings(product)[-1][1:] == (NAT_ADDRESS, True)


def test_d_inside_the_outer_system_is_deregistered_and_detached(world: World, product: DualProduct) -> None:
    step = Step("corp up -> inside", aps(up="corp"), Expect("inside", "wlan", "corp", lan_route="direct"))
    with Traffic(world, CN, rate=50) as traffic:
        time.sleep(2)
        result = run_step(world, product, traffic, step, print_step)
        check_step(result, traffic)
    assert traffic.tcp_ok, traffic.tcp_result
    log = result.router_log
    # (The deregistration itself cannot reach the outer home agent from inside: the corporate
    # network has no route to the internet core; its binding expires.)
    assert "intent DeregisterOuter" in log and "outer: udp tunnel detached" in log, log[-4000:]
    routes = world.exec("router", ["ip", "route", "show", "table", "all"])
    assert UDP_DEVICE not in routes, routes
    wait_settled(product, Expect("inside", "wlan", "corp", lan_route="direct"))


def test_e_without_the_nat_the_same_3g_link_carries_plain_ip_in_ip(world: World, product: DualProduct,
                                                                   out_dir: Path) -> None:
    """The default ("auto") changes nothing without a NAT: the outer binding on 3G is IP-in-IP.
    The same transfer as in (a) on the same link gives the UDP data path's cost as a ratio."""
    world.cell_nat(False)
    step = Step("corp down -> 3G without NAT", aps(down="corp"), Expect("outside", "cell"))
    with record(world, "inet", "cell0", out_dir / "cell-transit.pcap") as pcap, Traffic(world, CN, rate=50) as traffic:
        time.sleep(2)
        result = run_step(world, product, traffic, step, print_step)
        check_step(result, traffic)
        wait_until(lambda: "dev mip-out-1" in outer_default(world), 10, "T's default into mip-out-1", interval=0.2)
    assert traffic.tcp_ok, traffic.tcp_result
    assert re.search(r"outer route -> tunnel from 100\.64\.0\.\d+ \(binding acknowledged\)", result.router_log), \
        result.router_log[-4000:]
    assert outer_bindings(product)[-1][1:] == (X, False)
    assert bpf_count(pcap, "udp port 434 and udp[8] = 4") == 0
    assert f"ip {X}>{T_HA} / ip {T}>{T_GW} / esp" in {packet.shape for packet in nesting_layers(pcap)}
    TIMINGS["no NAT: lan-host -> cn path MTU"] = mtu = path_mtu(world, "lan-host", CN)
    started = time.monotonic()
    received = exact_transfer(world, "lan-host", "cn", CN, 9102)
    seconds = time.monotonic() - started
    assert received == 4 * 1024 * 1024
    TRANSFER_MBIT["ipip"] = received * 8 / seconds / 1e6
    TIMINGS["no NAT: 4 MiB lan-host -> cn (s)"] = seconds
    ratio = TRANSFER_MBIT["udp"] / TRANSFER_MBIT["ipip"] if "udp" in TRANSFER_MBIT else float("nan")
    TIMINGS["3G transfer: udp path / ip-in-ip path"] = ratio
    print(f"no NAT: path MTU {mtu}; 4 MiB in {seconds:.1f} s ({TRANSFER_MBIT['ipip']:.1f} Mbit/s); "
          f"behind the NAT (RFC 3519, user space) / plain: {ratio:.2f}")
