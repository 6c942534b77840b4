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
    capture on both uplinks, decoded by tcpdump and by tshark, shows nothing but tunnelled
    packets to the home agent, registrations with it, DHCP, ARP and ICMP probes to the
    gateways, and tshark reads the registrations: co-located care-of address (the DHCP lease on
    wlan0, the IPCP address on ppp0), T bit, explicit NEMO request and acknowledgement;
(e) the home agent is killed and restarted (bindings lost): the router recovers; the router is
    killed (SIGKILL) and restarted: it reconciles the kernel without duplicates and recovers;
(f) a router with a wrong key is denied 131, both sides log it, and it backs off (the
    requests on the home agent's link come further and further apart);
(g) behind the operator's NAT (lab knob cell_nat) the router's registration is UDP-tunnelled
    (RFC 3519): the LAN reaches the correspondent through UDP 434 carrying type-4 tunnel data,
    nothing of the LAN is in clear on the cell link, and keepalives flow when idle.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from qemu.lab import Capture, World, plan
from qemu.lab.captures import Packet, nesting_layers, record, summary
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


def tcpdump_text(pcap: Path) -> list[str]:
    """tcpdump's decode of a recorded capture, one line per packet (as `World.capture` has them)."""
    done = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise LabError(f"tcpdump -r {pcap} failed (rc={done.returncode}):\n{done.stderr}")
    return [line for line in done.stdout.splitlines() if line[:2].isdigit()]


def outside_the_tunnel(packet: Packet, gateways: set[str]) -> bool:
    """tshark's layers of one uplink frame: True unless it is the tunnel to or from the home
    agent (an IPv4 header right inside the outer one), a registration with it (UDP 434), DHCP,
    or an ICMP echo with a gateway. Frames without IPv4 (ARP, IPv6 link-local) are left to the
    tcpdump pass."""
    headers = packet.ip_headers
    if not headers:
        return False
    source, destination = headers[0]
    inside = packet.layers[1] if len(packet.layers) > 1 else ("",)
    if HA in (source, destination):
        return not (inside[0] == "ip" or (inside[0] == "udp" and "434" in inside[1:]))
    if inside[0] == "udp" and set(inside[1:]) <= {"67", "68"}:
        return False
    return not (inside[0] == "icmp" and inside[1] in ("0", "8") and bool({source, destination} & gateways))


MIP_FIELDS = ("ip.src", "ip.dst", "mip.type", "mip.code", "mip.coa", "mip.t", "mip.d",
              "mip.ext.mne.subtype", "mip.ext.mne.prefix", "mip.ext.mne.prefix_length", "mip.ext.mne.code")


def registrations(pcap: Path) -> list[dict[str, list[str]]]:
    """Every Mobile IP message in the capture as tshark decodes it (MIP_FIELDS, all occurrences)."""
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", "mip", "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in MIP_FIELDS:
        argv += ["-e", name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise LabError(f"tshark failed on {pcap} (rc={done.returncode}):\n{done.stderr}")
    rows = []
    for line in done.stdout.splitlines():
        cells = [*line.split("\t"), *[""] * len(MIP_FIELDS)]
        rows.append({name: cell.split("|") if cell else [] for name, cell in zip(MIP_FIELDS, cells, strict=False)})
    return rows


def check_registrations(name: str, pcap: Path, care_of: ipaddress.IPv4Network | str) -> str:
    """The registrations on one uplink, read by tshark: each Request from the uplink's own
    address names that address as care-of address (co-located, D bit), asks for reverse
    tunnelling (T bit) and carries the mobile network prefix (explicit NEMO, RFC 5177 §5);
    at least one Reply accepts it with an explicit acknowledgement. Returns the address."""
    rows = registrations(pcap)
    requests = [row for row in rows if row["mip.type"] == ["1"]]
    replies = [row for row in rows if row["mip.type"] == ["3"]]
    assert requests, f"{name}: no registration request decoded: {rows}"
    address = requests[0]["ip.src"][0]
    wanted = ipaddress.ip_network(care_of)
    assert ipaddress.ip_address(address) in wanted, f"{name}: request from {address}, not in {wanted}"
    for row in requests:
        assert row["ip.src"] == [address] == row["mip.coa"], f"{name}: not a co-located care-of address: {row}"
        # tshark 4.0 prints booleans as 1, later versions as True.
        assert row["mip.t"][:1] in (["1"], ["True"]) and row["mip.d"][:1] in (["1"], ["True"]), \
            f"{name}: T (reverse tunnel) and D (co-located) bits: {row}"
        assert (row["mip.ext.mne.subtype"], row["mip.ext.mne.prefix"], row["mip.ext.mne.prefix_length"]) == (
            ["0"], ["10.1.1.0"], ["24"]), f"{name}: not an explicit NEMO request: {row}"
    assert any(row["ip.dst"] == [address] and row["mip.code"] == ["0"] and row["mip.ext.mne.subtype"] == ["1"]
               and row["mip.ext.mne.code"] == ["0"] and row["mip.ext.mne.prefix"] == ["10.1.1.0"]
               for row in replies), f"{name}: no accepting reply with an explicit NEMO ack: {replies}"
    return address


def test_traffic_survives_3g_hotspot_3g_and_stays_in_the_tunnel(
        world: World, product: Product, out_dir: Path) -> None:
    gaps: dict[str, Gap] = {}
    cell_pcap, wlan_pcap = out_dir / "uplink-ppp0.pcap", out_dir / "uplink-wlan0.pcap"
    with Traffic(world, CORRESPONDENT, rate=RATE) as traffic, \
            record(world, "router", "ppp0", cell_pcap), record(world, "router", "wlan0", wlan_pcap):
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
    on_cell, on_wlan = Capture(tcpdump_text(cell_pcap)), Capture(tcpdump_text(wlan_pcap))
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

    # The same captures through tshark, an independent decoder: every IPv4 frame is the tunnel
    # or a registration with the home agent (or DHCP / a gateway probe), no outer header
    # carries a LAN address, and the tunnel carries the LAN host's packets both ways.
    lan = ipaddress.ip_network(plan.LAN_PREFIX)
    host = lan_host_address(world)
    for name, pcap in (("ppp0", cell_pcap), ("wlan0", wlan_pcap)):
        packets = nesting_layers(pcap)
        print(f"{name} (tshark):\n{summary(packets)}")
        bad_packets = [p for p in packets if outside_the_tunnel(p, gateways)]
        assert not bad_packets, f"{name}: frames outside the tunnel (tshark):\n{summary(bad_packets)}"
        outer_lan = [p for p in packets if p.ip_headers and any(
            ipaddress.ip_address(a) in lan for a in p.ip_headers[0])]
        assert not outer_lan, f"{name}: LAN addresses in an outer header:\n{summary(outer_lan)}"
        inner = [p.ip_headers[1] for p in packets if len(p.ip_headers) >= 2 and HA in p.ip_headers[0]]
        assert any(src == host for src, _ in inner) and any(dst == host for _, dst in inner), \
            f"{name}: the tunnel did not carry lan-host's packets both ways:\n{summary(packets)}"
    cell_address = check_registrations("ppp0", cell_pcap, f"{plan.CELL_SUBSCRIBER_ADDRESS}/32")  # IPCP
    wlan_address = check_registrations("wlan0", wlan_pcap, "198.51.100.0/24")  # the hotspot's DHCP
    print(f"registrations (tshark): co-located care-of addresses {cell_address} (ppp0, IPCP) and "
          f"{wlan_address} (wlan0, DHCP), T bit, explicit NEMO 10.1.1.0/24 acknowledged")


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
    # Any packet to the HA's port 434: tcpdump names some source ports (49152 is decoded as
    # BCM-LI-SHIM), so the text after the colon is not always "UDP".
    to_ha = rf" > {re.escape(HA)}\.434: "
    try:
        with world.capture("outer-ha", "eth0", "udp dst port 434") as since_start:
            product.start_router()
            # The router cannot authenticate the denial (the keys differ), so it may not act on
            # it (RFC 5944 §3.6.2.1) but logs the unverified code; the home agent logs its denial.
            product.wait_router_log("unverified denial 131", timeout=120)
            product.wait_ha_log("denied 131 (mobile node failed authentication)", timeout=10)
            first = time.monotonic()
            with world.capture("outer-ha", "eth0", "udp port 434") as seen:
                time.sleep(20)
        requests = seen.count(to_ha)
        # Back-off, read from the wire: from the first request on, each gap between two
        # requests is at least about as long as the one before, and the last is several times
        # the first (a fixed retry interval, however long, would keep the ratio near 1).
        sent = [_clock_seconds(line) for line in since_start.lines if re.search(to_ha, line)]
        intervals = [round(b - a, 2) for a, b in itertools.pairwise(sent)]
        print(f"wrong key: requests on the home agent's link {len(sent)}, intervals {intervals} s")
        assert len(intervals) >= 3, since_start.lines
        assert all(b >= 0.75 * a for a, b in itertools.pairwise(intervals)), intervals
        assert intervals[-1] >= 3 * intervals[0], intervals
        TIMINGS["wrong key: last / first request interval"] = intervals[-1] / intervals[0]
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


def _clock_seconds(line: str) -> float:
    """Seconds since midnight of a tcpdump line's timestamp (HH:MM:SS.ffffff)."""
    stamp = datetime.strptime(line.split()[0], "%H:%M:%S.%f")
    return stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6


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
