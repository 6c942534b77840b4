"""RFC 3519 UDP tunnel through a real NAT on the host: router ns -> nat ns (nftables
masquerade) -> ha ns, both ends running ``router.udptunnel.lab`` (real registration over the
tunnel's own socket, then data through the TUN devices).

Oracles: the kernel (ping, TCP), conntrack expiry (keepalives must hold the mapping open),
tshark (the capture decodes as Mobile IP tunnel data, type 4, with the inner IP visible).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.udptunnel import lab
from router.udptunnel.wire import echo_request, tunnel_header
from tests.netns.conftest import RUN_PREFIX

pytestmark = pytest.mark.root

_worlds = iter(range(1000))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[lab.NatWorld]:
    with lab.NatWorld(f"{RUN_PREFIX}u{next(_worlds)}", tmp_path) as made:
        made.build()
        yield made


def start_tunnel(world: lab.NatWorld, *, ha: tuple[str, ...] = (), mn: tuple[str, ...] = ()) -> None:
    world.start("ha", "--keepalive-interval", "1", *ha)
    world.start("mn", "--keepalive-floor", "0.5", "--keepalive-retransmit", "0.5", *mn)
    world.wait_attached()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ping(world: lab.NatWorld, namespace: str, source: str, destination: str, count: int = 3) -> bool:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", "-I", source, destination],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


SINK = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); print("ready", flush=True)
c, peer = s.accept(); h = hashlib.sha256(); n = 0; buf = bytearray(65536)
while (k := c.recv_into(buf)):
    h.update(memoryview(buf)[:k]); n += k
print(n, h.hexdigest(), peer[0], flush=True)
"""


def tcp_transfer(world: lab.NatWorld, size: int) -> tuple[int, str, str, str]:
    """Send ``size`` pseudo-random bytes from the LAN address to the home agent's address."""
    sink = subprocess.Popen(
        ["ip", "netns", "exec", world.ha, sys.executable, "-c", SINK, lab.HOME_AGENT],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        payload = hashlib.shake_256(b"rfc3519").digest(size)
        sender = f"""
import socket, sys
data = sys.stdin.buffer.read()
s = socket.create_connection(("{lab.HOME_AGENT}", 5201), timeout=20, source_address=("{lab.LAN_ADDRESS}", 0))
s.sendall(data); s.close()
"""
        subprocess.run(["ip", "netns", "exec", world.router, sys.executable, "-c", sender], input=payload, check=True, timeout=60)
        received, digest, peer = sink.communicate(timeout=30)[0].split()
        return int(received), digest, hashlib.sha256(payload).hexdigest(), peer
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def test_registration_through_nat_assents_udp_tunnelling_and_learns_the_nat_mapping(world: lab.NatWorld) -> None:
    start_tunnel(world)
    peers = world.status("ha")["peers"]
    # RFC 3519 §4.6: the home agent tunnels to the request's (NAT'd) source, not the care-of address.
    assert peers == [{"home_address": lab.HOME_ADDRESS, "source": [lab.NAT_PUBLIC, lab.SOURCE_PORT], "rx": peers[0]["rx"], "silent": False}]
    # Demultiplexing on one socket per end: the registration went through the tunnels' sockets.
    assert world.status("mn")["signalling_received"] >= 1
    assert world.status("ha")["signalling_received"] >= 1 and world.status("ha")["signalling_sent"] >= 1


def test_ping_and_tcp_transfer_cross_the_tunnel_both_ways(world: lab.NatWorld) -> None:
    start_tunnel(world)
    assert ping(world, world.router, lab.LAN_ADDRESS, lab.HOME_AGENT)
    assert ping(world, world.ha, lab.HOME_AGENT, lab.LAN_ADDRESS)  # inbound through the NAT mapping
    received, digest, expected, peer = tcp_transfer(world, 4_000_000)
    assert (received, digest) == (4_000_000, expected)
    assert peer == lab.LAN_ADDRESS  # the inner source survives: no NAT inside the tunnel
    wait_for(lambda: world.status("ha")["rx_bytes"] >= 4_000_000, "home agent counters (written every 0.2 s)")
    mn, ha = world.status("mn"), world.status("ha")
    assert mn["tx_bytes"] >= 4_000_000
    assert mn["drop_send"] == ha["drop_send"] == 0
    assert ha["drop_unknown_peer"] == 0


def test_lan_traffic_never_leaves_in_clear_when_the_tunnel_is_gone(world: lab.NatWorld) -> None:
    start_tunnel(world)
    world.stop("mn")  # the TUN disappears with the process; the fail-closed route remains
    assert not ping(world, world.router, lab.LAN_ADDRESS, lab.HOME_AGENT, count=1)


def test_tunnel_data_from_an_unknown_source_is_dropped_and_counted(world: lab.NatWorld) -> None:
    start_tunnel(world)
    before = world.status("ha")
    # A well-formed keepalive for the real home address, from the right address but another port
    # (a NAT mapping nobody registered): it must not be answered nor reach the home agent's TUN.
    datagram = tunnel_header() + echo_request(IPv4Address(lab.HOME_ADDRESS), IPv4Address(lab.HOME_AGENT), 7, 1)
    sender = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{lab.NAT_PUBLIC}", 4999))
for _ in range(5):
    s.sendto(bytes.fromhex("{datagram.hex()}"), ("{lab.HOME_AGENT}", 434))
"""
    world.ns(world.nat, sys.executable, "-c", sender)
    wait_for(lambda: world.status("ha")["drop_unknown_peer"] >= before["drop_unknown_peer"] + 5, "5 drops counted")
    after = world.status("ha")
    assert after["drop_unknown_peer"] == before["drop_unknown_peer"] + 5
    assert after["rx_packets"] == before["rx_packets"]
    assert after["keepalives_answered"] - before["keepalives_answered"] <= after["peers"][0]["rx"] - before["peers"][0]["rx"]
    # The registered peer still works.
    assert ping(world, world.router, lab.LAN_ADDRESS, lab.HOME_AGENT, count=1)


def _shorten_nat_timeouts(world: lab.NatWorld) -> None:
    world.ns(world.nat, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=2", "net.netfilter.nf_conntrack_udp_timeout_stream=2")


def test_keepalives_hold_the_nat_mapping_open_while_idle(world: lab.NatWorld) -> None:
    _shorten_nat_timeouts(world)
    start_tunnel(world)  # keepalive interval 1 s < the NAT's 2 s timeout
    time.sleep(5)  # idle: only keepalives cross the NAT
    mn = world.status("mn")
    assert mn["keepalives_sent"] >= 2 and mn["keepalive_replies"] >= 2
    assert not mn["silent"]
    # Home agent -> LAN needs the mapping still open.
    assert ping(world, world.ha, lab.HOME_AGENT, lab.LAN_ADDRESS, count=1)


def test_without_keepalives_the_idle_mapping_expires(world: lab.NatWorld) -> None:
    """The control for the test above: the same idle time, keepalives at the RFC default (110 s)."""
    _shorten_nat_timeouts(world)
    world.start("ha", "--keepalive-interval", "0")
    world.start("mn")
    world.wait_attached()
    time.sleep(5)
    assert world.status("mn")["keepalives_sent"] == 0
    assert not ping(world, world.ha, lab.HOME_AGENT, lab.LAN_ADDRESS, count=1)


def test_peer_silence_is_detected_on_both_sides(world: lab.NatWorld) -> None:
    start_tunnel(world, ha=("--silence-timeout", "2"))
    world.stop("ha")
    wait_for(lambda: world.status("mn").get("silent") is True, "router notices the silent home agent")
    assert "home agent silent: re-registering" in world.log("mn")
    world.start("ha", "--keepalive-interval", "1", "--silence-timeout", "2")
    # RFC 3519 §4.10: the re-registration restores the binding, keepalives are answered again.
    wait_for(lambda: world.status("mn").get("silent") is False, "keepalives answered again")
    wait_for(lambda: world.status("ha").get("peers", []) != [], "binding restored")
    world.stop("mn")
    wait_for(lambda: world.status("ha")["peers"][0]["silent"], "home agent notices the silent router")
    assert f"({lab.HOME_ADDRESS}) silent" in world.log("ha")


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_capture_decodes_as_mobile_ip_tunnel_data_with_the_inner_ip_visible(world: lab.NatWorld, tmp_path: Path) -> None:
    start_tunnel(world)
    capture = tmp_path / "udp434.pcap"
    os.chmod(tmp_path, 0o777)  # dumpcap may drop privileges
    tshark = subprocess.Popen(
        ["ip", "netns", "exec", world.ha, "tshark", "-q", "-i", "h0", "-f", "udp port 434", "-w", str(capture), "-a", "duration:4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # dumpcap needs a moment to attach
        assert ping(world, world.router, lab.LAN_ADDRESS, lab.HOME_AGENT, count=3)
        tshark.wait(15)
    finally:
        if tshark.poll() is None:
            tshark.kill()
            tshark.wait()
    rows = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "mip.type == 4", "-T", "fields", "-E", "separator=|",
         "-e", "ip.src", "-e", "ip.dst", "-e", "udp.port", "-e", "mip.nattt.nexthdr", "-e", "icmp.type"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert rows, "no Mobile IP tunnel data in the capture"
    inner = {(row.split("|")[0], row.split("|")[1], row.split("|")[3]) for row in rows}
    # Outer then inner addresses; next header 4 (IP-in-UDP).
    assert (f"{lab.NAT_PUBLIC},{lab.LAN_ADDRESS}", f"{lab.HOME_AGENT},{lab.HOME_AGENT}", "4") in inner
    assert (f"{lab.HOME_AGENT},{lab.HOME_AGENT}", f"{lab.NAT_PUBLIC},{lab.LAN_ADDRESS}", "4") in inner
