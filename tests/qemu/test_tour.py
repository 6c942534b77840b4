"""The tour and the dual system's security tests, end to end in the lab (issue 5, items 6-7).

The product's daemons run as they would on the router and in the enterprise: the inner home
agent in inner-ha (10.10.0.1), the outer one in outer-ha (192.0.2.1), the router daemon with
its own charon in the router namespace (qemu.lab.product.DualProduct). Only lab knobs (APs
down/up, a rogue AP) move the router; it decides everything itself.

(a) the tour (qemu.lab.tour): inside on corp -> 3G -> hotspot -> outer home (ext) -> inside,
    with a 50 pps UDP stream and a TCP echo session from lan-host to the corp server; every
    step settles with the expected situation/uplink/route, the stream resumes and the TCP
    session survives; captures on every outside link hold no 10.x address in clear, and the
    3G leg shows exactly the nesting IP-in-IP(X -> T_HA)[ESP(T -> T_gw)] (decoded by tshark);
(b) a rogue AP outside claiming SSID "corp" (its own DHCP handing out 10.30.0.x, forged agent
    advertisements naming the inner home agent) never makes the router drop the VPN or send
    the LAN in clear; on the rogue (which NATs) the outer registration is UDP-tunnelled
    (RFC 3519) and the LAN keeps flowing through the VPN; the router comes back when the
    rogue is gone;
(c) inner-HA registration replies captured on the wire and replayed are dropped.

At the outer home network (RFC 5944 §4.6, a node returning home), a capture on the outer home
agent's home link shows the router's own gratuitous ARP for T before its deregistration, one
deregistration only (no retransmission), its Reply on the link (not through the tunnel to
the old care-of address), and the home agent's gratuitous ARPs for T carrying the router's
wlan0 MAC.

Run: python3 -m qemu.run --tests tests/qemu/test_tour.py
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qemu.lab import World, plan
from qemu.lab.captures import nesting_layers, record, summary
from qemu.lab.product import HOME_ADDRESS, HOME_INTERFACE, DualProduct
from qemu.lab.shell import LabError, run, wait_until
from qemu.lab.testing import module_world
from qemu.lab.tour import (
    STEPS,
    Expect,
    StepResult,
    format_phases,
    format_table,
    leaks,
    observed,
    outside_captures,
    run_step,
    start_inside,
    wait_settled,
)
from qemu.lab.traffic import Traffic
from qemu.lab.wifi import mac_address

pytestmark = pytest.mark.guest

TIMINGS: dict[str, float] = {}
CN = plan.CORRESPONDENT_ADDRESS
T, T_HA, T_GW = HOME_ADDRESS, plan.OUTER_HA_ADDRESS, plan.VPN_GATEWAY_ADDRESS


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from module_world(request, TIMINGS, static_lan=False)


@pytest.fixture(scope="module")
def product(world: World) -> Iterator[DualProduct]:
    product = DualProduct(world)
    try:
        TIMINGS.update(start_inside(world, product))
        yield product
    finally:
        print("\n--- router log (tail)\n" + product.router.log_tail(80))
        print("\n--- inner home agent log (tail)\n" + product.inner_home_agent.log_tail(20))
        print("\n--- outer home agent log (tail)\n" + product.home_agent.log_tail(20))
        product.stop()


def print_step(result: StepResult) -> None:
    print(f"  {result.name:<36} {result.situation:<11} {result.uplink:<16} gap {result.gap}  "
          f"tcp {'alive' if result.tcp_alive else 'BROKEN'}  settled in {result.settled_s or 0:.1f} s"
          f"{'  ERROR ' + result.error if result.error else ''}", flush=True)
    for handover in result.phases:
        print(f"      {format_phases(handover)}", flush=True)


def test_tour_inside_3g_hotspot_outer_home_inside(world: World, product: DualProduct, out_dir: Path) -> None:
    results: list[StepResult] = []
    home_link = out_dir / "outer-home-link.pcap"
    with outside_captures(world, out_dir) as pcaps, Traffic(world, CN, rate=50) as traffic:
        time.sleep(2)
        for step in STEPS:
            capture = (record(world, "outer-ha", HOME_INTERFACE, home_link, "arp or udp port 434")
                       if step.expect.situation == "outer_home" else contextlib.nullcontext())
            with capture:
                results.append(run_step(world, product, traffic, step, print_step))
            if results[-1].error:
                break
    found = leaks(pcaps)
    leak_count = sum(len(packets) for packets in found.values())
    print("\n" + format_table(results, leak_count))
    for result in results:
        if result.gap is not None:
            TIMINGS[f"tour {result.name}: gap (s)"] = result.gap.ms / 1000
        if result.settled_s is not None:
            TIMINGS[f"tour {result.name}: settled (s)"] = result.settled_s
    (out_dir / "tour-router.log").write_text(product.router_log(whole=True))

    assert [r.error for r in results if r.error] == [], format_table(results, leak_count)
    assert len(results) == len(STEPS)
    for result in results:
        assert result.gap is not None and result.gap.resumed, f"{result.name}: the stream did not resume"
        assert result.tcp_alive, f"{result.name}: the TCP session broke"
    assert traffic.tcp_ok, traffic.tcp_result
    # Outside -> outside (3G -> hotspot) changes the care-of address only: the VPN and the
    # inner binding stay untouched (issue 5, item 5).
    care_of_only = results[1].router_log
    for intent in ("BringVpnUp", "TearVpnDown", "RegisterInner", "SwitchLanRoute"):
        assert f"intent {intent}" not in care_of_only, f"3G -> hotspot: {intent}\n{care_of_only[-3000:]}"
    assert "intent RegisterOuter" in care_of_only, care_of_only[-3000:]
    # Back on corp, the network context history (the start of the tour proved corp inside)
    # is a hint; the authenticated direct registration is still what switched the route.
    back_inside = results[-1].router_log
    assert re.search(r"hint .*last inside \(proven\)", back_inside), back_inside[-3000:]
    assert "authenticated direct inner registration" in back_inside, back_inside[-3000:]
    # The correspondent saw lan-host's own address all along: the LAN kept its addresses.
    assert traffic.sources() == {lan_host_address(world)}, traffic.sources()
    for name, packets in found.items():
        assert packets == [], f"{name}: secure-domain addresses in clear:\n{summary(packets)}"

    # The 3G leg's nesting, from the operator's transit capture (tshark decodes it).
    cell = nesting_layers(next(p for p in pcaps if "cell0" in p.name))
    x = plan.CELL_SUBSCRIBER_ADDRESS
    shapes = {packet.shape for packet in cell}
    assert f"ip {x}>{T_HA} / ip {T}>{T_GW} / esp" in shapes, summary(cell)
    assert f"ip {T_HA}>{x} / ip {T_GW}>{T} / esp" in shapes, summary(cell)
    # At the outer home network the VPN runs straight from T (no outer tunnel).
    ext = nesting_layers(next(p for p in pcaps if "ext0" in p.name))
    assert f"ip {T}>{T_GW} / esp" in {packet.shape for packet in ext}, summary(ext)
    assert not any(packet.shape.startswith(f"ip {T}>{T_HA} / ip") for packet in ext), summary(ext)
    TIMINGS.update(check_return_home(world, home_link))


def home_link_frames(pcap: Path) -> list[dict[str, str]]:
    """ARP and Mobile IP frames of the capture, as tshark decodes them (first occurrences;
    ``ip.src`` all of them, so a tunnelled frame shows two)."""
    fields = ("frame.number", "frame.time_relative", "eth.src", "arp.src.hw_mac", "arp.src.proto_ipv4", "arp.dst.proto_ipv4",
              "ip.src", "ip.dst", "mip.type", "mip.life", "mip.code")
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", "arp or mip", "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=,", *(arg for name in fields for arg in ("-e", name))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise LabError(f"tshark failed on {pcap} (rc={done.returncode}):\n{done.stderr}")
    return [dict(zip(fields, [*line.split("\t"), *[""] * len(fields)], strict=False))
            for line in done.stdout.splitlines() if line.strip()]


def check_return_home(world: World, pcap: Path) -> dict[str, float]:
    """RFC 5944 §4.6, the router back at the outer home network, on the home agent's link.
    Returns the wire times from the deregistration to its Reply and to the first ARP."""
    from router.ha.daemon import GRATUITOUS_ARP_COUNT

    router_mac = mac_address(world.ns("router"), plan.ROUTER_WLAN)
    ha_mac = mac_address(world.ns("outer-ha"), HOME_INTERFACE)
    frames = home_link_frames(pcap)
    shown = "\n".join(str(frame) for frame in frames[:40])

    def announces_t(frame: dict[str, str], sender: str) -> bool:
        return (frame["arp.src.proto_ipv4"] == frame["arp.dst.proto_ipv4"] == T
                and frame["eth.src"] == sender and frame["arp.src.hw_mac"] == router_mac)

    requests = [f for f in frames if f["mip.type"] == "1" and f["ip.src"] == T and f["mip.life"] == "0"]
    replies = [f for f in frames if f["mip.type"] == "3" and f["ip.dst"] == T and f["ip.src"] == T_HA]
    by_router = [f for f in frames if announces_t(f, router_mac)]
    by_ha = [f for f in frames if announces_t(f, ha_mac)]
    # One deregistration (care-of address = home address, from T): answered, no retransmission.
    assert len(requests) == 1, f"deregistrations from T: {requests}\n{shown}"
    # The Reply reached T on the home link: not tunnelled (a single IP header, captured at all).
    assert [(f["mip.code"], f["mip.life"]) for f in replies] == [("0", "0")], f"replies to T:\n{shown}"
    # The router announced T with its own MAC before the Request (§4.6 "Before transmitting").
    assert by_router and int(by_router[0]["frame.number"]) < int(requests[0]["frame.number"]), shown
    # The home agent, after accepting, announced T with the router's MAC, a few times.
    assert len(by_ha) == GRATUITOUS_ARP_COUNT, f"home agent's ARPs for {T} with {router_mac}:\n{shown}"
    def after_request(frame: dict[str, str]) -> float:
        return float(frame["frame.time_relative"]) - float(requests[0]["frame.time_relative"])

    print(f"\nouter home link: router ARP {after_request(by_router[0]) * 1000:+.0f} ms, deregistration, reply "
          f"{after_request(replies[0]) * 1000:+.0f} ms, home agent ARPs "
          f"{', '.join(f'{after_request(f) * 1000:+.0f}' for f in by_ha)} ms (sender {router_mac}, from {ha_mac})")
    return {"tour outer home: deregistration -> reply on the home link (s)": after_request(replies[0]),
            "tour outer home: deregistration -> home agent's first ARP (s)": after_request(by_ha[0])}


def lan_host_address(world: World) -> str:
    output = world.exec("lan-host", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", output)
    assert match, output
    return match.group(1)


def test_rogue_ap_never_takes_the_vpn_down(world: World, product: DualProduct, out_dir: Path) -> None:
    """Outside on 3G, a rogue AP claims "corp" (same SSID and passphrase, 10.30.0.x leases, forged
    agent advertisements for the inner home agent). Hints say "inside"; no authenticated direct
    reply can come, so the VPN must stay up and the LAN must never leave in clear. The rogue
    NATs its clients: the outer registration through it is UDP-tunnelled (RFC 3519), so the
    LAN keeps working over the rogue, through the VPN, with lan-host's own address."""
    world.ap_down("corp")
    wait_settled(product, Expect("outside", "cell"))
    log_mark = len(product.router_log())
    udp_before = product.router_log().count("udp tunnelling behind nat")
    with record(world, "inet", "rogue0", out_dir / "rogue-uplink.pcap") as rogue_pcap, \
            Traffic(world, CN, rate=20, name="rogue-traffic") as traffic:
        t_rogue = time.monotonic()
        world.rogue_ap_up()
        advertiser = forge_advertisements(world)
        try:
            # The router joins the rogue (its policy prefers WLAN) and tries inside first.
            joined = product.router_log().count("uplink wlan up: 10.30.0.")
            seen = product.wait_router_log("uplink wlan up: 10.30.0.", timeout=90, count=joined + 1)
            TIMINGS["rogue: router joined the rogue (s)"] = seen
            # It moves onto the rogue when its policy allows (hold-down; after the walk's
            # moves the WLAN may be flap-suppressed for up to a minute).
            wait_until(lambda: observed(product.status())[1] == "wlan", 120, "the router active on the rogue",
                       interval=0.5)
            t_moved = time.monotonic()
            product.wait_router_log("udp tunnelling behind nat", timeout=60, count=udp_before + 1)
            t_udp = time.monotonic()  # T's binding is at the rogue's NAT now: both ways through it
            traffic.wait_resumed(t_udp, timeout=60)
            TIMINGS["rogue: moved -> LAN flowing over the rogue (s)"] = time.monotonic() - t_moved
            time.sleep(20)  # smoke-out, direct attempts, timeouts: everything a hint can trigger
            during = observed(product.status())
            vpn_state = product.status()["vpn"]["state"]
            on_rogue = traffic.gap(t_udp)
        finally:
            advertiser.terminate()
            world.rogue_ap_down()
        t_gone = time.monotonic()
        wait_settled(product, Expect("outside", "cell"))
        traffic.wait_resumed(t_gone, timeout=90)
    log = product.router_log()[log_mark:]
    print(f"\nrogue: state while on the rogue {during}, vpn {vpn_state}, LAN on the rogue: largest gap {on_rogue}")
    print("\n".join(line for line in log.splitlines() if "intent" in line or "situation" in line or "outer route" in line))
    assert during[0] != "inside", during
    assert during[1] == "wlan", during  # still on the rogue when sampled
    assert vpn_state == "up", vpn_state
    # RFC 3519 through the rogue's NAT: the outer binding is UDP-tunnelled, and the LAN flowed
    # on the rogue (resumed after the move and still flowing when it went away).
    assert re.search(r"outer route -> tunnel from 10\.30\.0\.\d+ \(binding acknowledged, udp tunnelling behind nat\)", log), \
        log[-4000:]
    assert on_rogue.resumed, on_rogue
    assert traffic.sources() == {lan_host_address(world)}, traffic.sources()
    TIMINGS["rogue: largest gap after the move onto the rogue (s)"] = on_rogue.ms / 1000
    assert "TearVpnDown" not in log, log
    assert "situation outside -> inside" not in log, log
    assert "lan route -> direct" not in log.lower()
    leaked = leaks([rogue_pcap])[rogue_pcap.name]
    # The rogue's own 10.30.0.x addresses are the rogue's business; the LAN and the secure
    # domain must not appear in clear. The detection probes themselves are the exception by
    # design: the smoke-out (deliberately wrong authenticator) and the direct registration
    # attempt (RFC 5265 §3.2) must go to the inner home agent directly to prove anything; they
    # carry the router's registration fields only, no user packet (and ICMP errors quoting them).
    probes = [p for p in leaked if is_registration_probe(p)]
    lan_or_secure = [p for p in leaked if p not in probes and any(
        a.startswith(("10.1.1.", "10.10.", "10.20.", "10.99.")) for src_dst in p.ip_headers for a in src_dst)]
    assert lan_or_secure == [], summary(lan_or_secure)
    print(f"rogue: {len(probes)} direct registration probe(s) to the inner home agent seen on the rogue's uplink")
    assert traffic.gap(t_rogue).resumed
    TIMINGS["rogue: largest gap (s)"] = traffic.gap(t_rogue).ms / 1000


def is_registration_probe(packet: object) -> bool:
    """A registration request to the inner home agent's UDP 434 (or an ICMP error quoting one)."""
    layers = getattr(packet, "layers", ())
    for outer, inner in itertools.pairwise(layers):
        if outer[0] == "ip" and outer[2] == plan.INNER_HA_ADDRESS and inner[0] == "udp" and inner[2] == "434":
            return True
    return False


def forge_advertisements(world: World) -> object:
    """An agent advertisement every 0.5 s on the rogue's WLAN, claiming to be the inner home
    agent's network (RFC 5944 §2.1: ICMP router advertisement + mobility extension 16)."""
    from qemu.lab.shell import Daemon

    script = world.run_dir / "forge_adverts.py"
    script.write_text(FORGE)
    daemon = Daemon("forged adverts", ["python3", str(script)], world.run_dir / "forge.log",
                    world.ns("ap-rogue"), ready=lambda: "ready" in (world.run_dir / "forge.log").read_text(),
                    ready_timeout=30, env={"PYTHONPATH": "/src"})
    daemon.start()
    return daemon.process


# Built with the product's own encoder (a hostile peer would use any tool; the bytes are the
# same), sent from a forged source (the inner home agent's address) with a hand-made IP header.
FORGE = r'''
import socket, struct, time
from ipaddress import IPv4Address
from router.mip.advert import (AdvertisementFlags, AgentAdvertisement, MobilityAgentAdvertisement,
                               RouterAddress, encode_icmp)
HA = IPv4Address("10.10.0.1")
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"br0")
print("ready", flush=True)
sequence = 0
while True:
    advert = AgentAdvertisement(lifetime=1800, router_addresses=(RouterAddress(HA, 0),), extensions=(
        MobilityAgentAdvertisement(sequence, 1800, AdvertisementFlags.H | AdvertisementFlags.F, (HA,)),))
    icmp = encode_icmp(advert)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), sequence & 0xFFFF, 0, 1, 1, 0,
                         HA.packed, IPv4Address("224.0.0.1").packed)
    try:
        sock.sendto(header + icmp, ("224.0.0.1", 0))
    except OSError as exc:
        print("send failed", exc, flush=True)
    sequence = (sequence + 1) & 0xFFFF
    time.sleep(0.5)
'''


def replay_udp(world: World, host: str, source: str, sport: int, destination: str, dport: int,
               payload: bytes) -> None:
    """Send `payload` from source:sport as a raw UDP datagram (the home agent's own socket
    holds sport, so a normal socket cannot)."""
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    code = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); "
            f"s.bind(({source!r}, 0)); s.sendto(bytes.fromhex({(header + payload).hex()!r}), ({destination!r}, 0))")
    run(["python3", "-c", code], world.ns(host))


def test_replayed_inner_home_agent_replies_are_dropped(world: World, product: DualProduct, out_dir: Path) -> None:
    world.ap_up("corp")
    wait_settled(product, Expect("inside", "wlan", "corp", lan_route="direct"))
    status = product.status()
    care_of = status["registrations"]["inner"]["care_of_address"]
    # Capture one real renewal's reply at the inner home agent (lifetime is 30 s: renewals come).
    with record(world, "inner-ha", "eth0", out_dir / "inner-ha-replies.pcap", "udp src port 434") as pcap:
        product.wait_router_log("inner: renewed", timeout=90,
                                count=product.router_log().count("inner: renewed") + 1)
        time.sleep(0.5)
    replies = udp_payloads(pcap, 434)
    assert replies, "no inner home agent reply captured"
    dropped_before = product.router_log().count("reply from 10.10.0.1:434 dropped")
    for payload, port in replies[-1:] * 3:  # to the router's registration socket's port
        replay_udp(world, "inner-ha", plan.INNER_HA_ADDRESS, 434, care_of, port, payload)
        time.sleep(0.3)
    product.wait_router_log("reply from 10.10.0.1:434 dropped", timeout=10, count=dropped_before + 3)
    log = product.router_log()
    assert re.search(r"reply from 10\.10\.0\.1:434 dropped \((unsolicited|identification mismatch)\)", log), log[-3000:]
    # The same reply from a wrong port of the home agent, and from another host: wrong source.
    payload, port = replies[-1]
    replay_udp(world, "inner-ha", plan.INNER_HA_ADDRESS, 4434, care_of, port, payload)
    replay_udp(world, "cn", plan.CORRESPONDENT_ADDRESS, 434, care_of, port, payload)
    product.wait_router_log("dropped (unexpected source)", timeout=10, count=2)
    after = product.status()["registrations"]["inner"]
    assert after["state"] == "registered" and after["care_of_address"] == care_of, after


def test_a_flood_of_forged_replies_and_advertisements_costs_counters_not_log_lines(
        world: World, product: DualProduct) -> None:
    """4,000 forged registration replies at the router's registration port and 4,000 forged
    agent advertisements on its WLAN: the registration and the route stay, the daemon answers,
    the log grows by a bounded number of lines (rate-limited), the advert listener's per-source
    limit holds. The router's CPU time over the flood is printed beside the flood's duration."""
    wait_settled(product, Expect("inside", "wlan", "corp", lan_route="direct"))
    status = product.status()
    care_of = status["registrations"]["inner"]["care_of_address"]
    port = registration_port(world, care_of)
    pid = product.router.pid
    assert pid is not None
    cpu_before, lines_before = cpu_seconds(pid), len(product.router_log().splitlines())
    started = time.monotonic()
    flood = FLOOD.format(care_of=care_of, port=port)
    run(["python3", "-c", flood, "replies"], world.ns("inner-ha"), timeout=300)
    run(["python3", "-c", flood, "adverts"], world.ns("ap-corp"), timeout=300)
    flood_seconds = time.monotonic() - started
    time.sleep(2)
    cpu = cpu_seconds(pid) - cpu_before
    new_lines = product.router_log().splitlines()[lines_before:]
    print(f"\nflood: 8000 packets in {flood_seconds:.1f} s; router CPU {cpu:.2f} s "
          f"({cpu / (flood_seconds + 2) * 100:.0f} % of the window); {len(new_lines)} new log line(s)")
    TIMINGS["flood: router CPU seconds for 8000 forged packets"] = cpu
    after = product.status()
    assert after["registrations"]["inner"]["state"] == "registered", after["registrations"]
    assert after["registrations"]["inner"]["care_of_address"] == care_of
    assert after["lan_route"] == "direct" and after["situation"]["name"] == "inside"
    assert world.ping("lan-host", CN, count=2).ok
    drops = [line for line in new_lines if "dropped" in line or "advertisement" in line]
    assert len(drops) <= 40, "\n".join(drops[-50:])


def registration_port(world: World, care_of: str) -> int:
    """The router's inner registration socket's port (its UDP socket bound to the care-of address)."""
    listing = world.exec("router", ["ss", "-unp"])
    match = re.search(rf"{re.escape(care_of)}:(\d+)\s+{re.escape(plan.INNER_HA_ADDRESS)}:434", listing) or \
        re.search(rf"{re.escape(care_of)}:(\d+)\s", world.exec("router", ["ss", "-uan"]))
    assert match, listing
    return int(match.group(1))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Forged replies (type 3, random bodies and a valid-looking header) from the inner home agent's
# address, and agent advertisements from a forged corp gateway, as fast as Python sends them.
FLOOD = r'''
import os, socket, struct, sys
from ipaddress import IPv4Address
count = 4000
if sys.argv[1] == "replies":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    s.bind(("10.10.0.1", 0))
    for i in range(count):
        body = bytes([3, 0]) + struct.pack("!H", 600) + IPv4Address("10.10.0.50").packed + IPv4Address("10.10.0.1").packed + os.urandom(8 + i % 40)
        s.sendto(struct.pack("!HHHH", 434, {port}, 8 + len(body), 0) + body, ("{care_of}", 0))
else:
    sys.path.insert(0, "/src")
    from router.mip.advert import AdvertisementFlags, AgentAdvertisement, MobilityAgentAdvertisement, RouterAddress, encode_icmp
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"br0")
    for i in range(count):
        source = IPv4Address("10.30.0.1") + (i % 200)
        icmp = encode_icmp(AgentAdvertisement(1800, (RouterAddress(source, 0),), (
            MobilityAgentAdvertisement(i & 0xFFFF, 1800, AdvertisementFlags.F, (source,)),)))
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), i & 0xFFFF, 0, 1, 1, 0,
                             source.packed, IPv4Address("224.0.0.1").packed)
        s.sendto(header + icmp, ("224.0.0.1", 0))
'''


def test_no_key_or_psk_appears_in_any_log_of_the_run(world: World, product: DualProduct) -> None:
    """Every log the product and the lab wrote in this module's world: no configured key."""
    from qemu.lab.product import INNER_KEY, OUTER_KEY

    secrets = [INNER_KEY, OUTER_KEY, plan.VPN_PSK]
    logs = [path for path in world.run_dir.rglob("*") if path.is_file()
            and (path.suffix in (".log", ".stdout") or path.name.endswith(".log"))]
    assert len(logs) >= 5, logs
    found = [(str(path), secret[:6] + "...") for path in logs
             for secret in secrets if secret.lower() in path.read_text(errors="replace").lower()]
    assert found == [], found
    print(f"\nkeys: {len(logs)} log file(s) checked, no key or PSK in any")


def udp_payloads(pcap: Path, sport: int) -> list[tuple[bytes, int]]:
    """(payload, destination port) of every UDP datagram from `sport` in the capture."""
    from scapy.all import UDP, rdpcap  # tests only

    return [(bytes(packet[UDP].payload), int(packet[UDP].dport)) for packet in rdpcap(str(pcap))
            if UDP in packet and packet[UDP].sport == sport]

