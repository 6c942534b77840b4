"""Lab harness: one end of an RFC 3519 tunnel with real registrations (tests and bench only).

``python -m router.udptunnel.lab ha ...`` runs the pure home agent logic with UDP tunnelling
on and a ``HomeAgentTunnel``; ``... lab mn ...`` runs the registration machine with a UDP
Tunnel Request and a ``MobileTunnel``. It is the wiring the two daemons need, in ~100 lines,
without their kernel plans: addresses and routes on the TUN are the caller's (``ip``).

``NatWorld`` builds the host-namespace world the netns tests and the bench share::

    router ns: lo 10.1.1.1 (the LAN), r0 192.168.1.2/24 (care-of) --veth--
    nat ns:    n0 192.168.1.1/24, n1 198.51.100.1/24, nftables masquerade out of n1 --veth--
    ha ns:     h0 198.51.100.2/24, lo 10.10.0.1 (home agent), routes 10.1.1.0/24 + 10.10.0.50 -> tun
    router ns: rule from 10.1.1.0/24 -> table 100: default dev <tun> (nothing leaks around it)

Both write their counters as JSON to ``--status`` every 0.2 s, log one line per decision to
stderr, and exit cleanly on SIGTERM/SIGINT (the TUN disappears with its descriptor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from router.drive import MachineDriver, udp_socket
from router.mip import homeagent as ha
from router.mip import mobilenode as mn
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import NTP_UNIX_OFFSET
from router.udptunnel.datapath import HomeAgentTunnel, MobileTunnel
from router.udptunnel.keepalive import KeepaliveMonitor
from router.udptunnel.peers import Peer
from router.udptunnel.tun import open_tun, tunnel_mtu

log = logging.getLogger("router.udptunnel.lab")


KEY = "00112233445566778899aabbccddeeff"
HOME_AGENT = "10.10.0.1"
HOME_ADDRESS = "10.10.0.50"
LAN_ADDRESS = "10.1.1.1"
CARE_OF = "192.168.1.2"
NAT_PUBLIC = "198.51.100.1"
HA_OUTER = "198.51.100.2"
SOURCE_PORT = 4340


def sh(*command: str, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


class NatWorld:
    """Three namespaces (router, nat, ha) and the two tunnel ends as subprocesses.

    ``close()`` kills the processes it started (by their own handles) and deletes the
    namespaces; use it in a ``finally`` (or ``with``) so failures clean up too.
    """

    def __init__(self, prefix: str, status_dir: Path, tun: str = "mip3519") -> None:
        self.router, self.nat, self.ha = f"{prefix}r", f"{prefix}n", f"{prefix}h"
        self.status_dir = status_dir
        self.tun = tun
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.created: list[str] = []

    def __enter__(self) -> NatWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, namespace: str, *command: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", namespace, *command, check=check)

    def build(self) -> None:
        for name in (self.router, self.nat, self.ha):
            sh("ip", "netns", "add", name)
            self.created.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        r, n, h = self.router, self.nat, self.ha
        sh("ip", "link", "add", "r0", "netns", r, "type", "veth", "peer", "name", "n0", "netns", n)
        sh("ip", "link", "add", "n1", "netns", n, "type", "veth", "peer", "name", "h0", "netns", h)
        for name, dev, address in ((r, "r0", f"{CARE_OF}/24"), (n, "n0", "192.168.1.1/24"), (n, "n1", f"{NAT_PUBLIC}/24"), (h, "h0", f"{HA_OUTER}/24")):
            sh("ip", "-n", name, "addr", "add", address, "dev", dev)
            sh("ip", "-n", name, "link", "set", dev, "up")
        sh("ip", "-n", h, "addr", "add", f"{HOME_AGENT}/32", "dev", "lo")
        sh("ip", "-n", r, "addr", "add", f"{LAN_ADDRESS}/32", "dev", "lo")
        sh("ip", "-n", r, "route", "add", "default", "via", "192.168.1.1")
        sh("ip", "-n", h, "route", "add", "default", "via", NAT_PUBLIC)
        sh("ip", "-n", n, "route", "add", f"{HOME_AGENT}/32", "via", HA_OUTER)
        for name in (r, n, h):
            self.ns(name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        nft = 'table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname "n1" masquerade\n }\n}\n'
        sh("ip", "netns", "exec", n, "nft", "-f", "-", input=nft)

    def status(self, role: str) -> dict[str, Any]:
        path = self.status_dir / f"{role}.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def start(self, role: str, *extra: str) -> subprocess.Popen[bytes]:
        namespace = self.ha if role == "ha" else self.router
        command = [
            "ip", "netns", "exec", namespace, sys.executable, "-m", "router.udptunnel.lab", role,
            "--home-agent", HOME_AGENT, "--home-address", HOME_ADDRESS, "--mobile-network", "10.1.1.0/24",
            "--key", KEY, "--tun", self.tun, "--status", str(self.status_dir / f"{role}.json"),
        ]  # fmt: skip
        if role == "ha":
            command += ["--home-network", "10.10.0.0/24"]
        else:
            command += ["--care-of", CARE_OF, "--source-port", str(SOURCE_PORT)]
        (self.status_dir / f"{role}.json").unlink(missing_ok=True)  # a previous run's
        with (self.status_dir / f"{role}.log").open("ab") as log:
            process = subprocess.Popen([*command, *extra], stdout=log, stderr=log)
        self.processes[role] = process
        self._wait(lambda: self.status(role) != {} or process.poll() is not None, f"{role} start")
        if process.poll() is not None:
            raise RuntimeError(f"{role} exited: {self.log(role)}")
        if role == "ha":
            sh("ip", "-n", self.ha, "route", "replace", "10.1.1.0/24", "dev", self.tun)
            sh("ip", "-n", self.ha, "route", "replace", f"{HOME_ADDRESS}/32", "dev", self.tun)
        else:
            sh("ip", "-n", self.router, "rule", "add", "from", "10.1.1.0/24", "lookup", "100", check=False)
            # Fail closed: without the tunnel, LAN traffic is unreachable, never routed in clear.
            sh("ip", "-n", self.router, "route", "replace", "unreachable", "default", "table", "100", "metric", "4000")
            sh("ip", "-n", self.router, "route", "replace", "default", "dev", self.tun, "table", "100")
        return process

    def log(self, role: str) -> str:
        try:
            return (self.status_dir / f"{role}.log").read_text()
        except OSError:
            return ""

    def stop(self, role: str) -> None:
        process = self.processes.pop(role, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @staticmethod
    def _wait(predicate: Any, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.05)

    def wait_attached(self) -> None:
        self._wait(lambda: self.status("mn").get("attached") is True, "registration with udp tunnelling")

    def close(self) -> None:
        for role in list(self.processes):
            self.stop(role)
        for name in self.created:
            sh("ip", "netns", "del", name, check=False)
        self.created.clear()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m router.udptunnel.lab")
    parser.add_argument("role", choices=("ha", "mn"))
    parser.add_argument("--home-agent", required=True, type=IPv4Address)
    parser.add_argument("--home-address", required=True, type=IPv4Address)
    parser.add_argument("--mobile-network", action="append", type=IPv4Network, default=[])
    parser.add_argument("--spi", type=int, default=256)
    parser.add_argument("--key", required=True, help="hex")
    parser.add_argument("--tun", default="mip3519")
    parser.add_argument("--mtu", type=int, default=tunnel_mtu(1500))
    parser.add_argument("--status", type=Path, required=True)
    # ha
    parser.add_argument("--home-network", type=IPv4Network)
    parser.add_argument("--port", type=int, default=434)
    parser.add_argument("--keepalive-interval", type=int, default=0, help="ha: sent in the UDP Tunnel Reply")
    parser.add_argument("--silence-timeout", type=float, default=330.0)
    # mn
    parser.add_argument("--care-of", type=IPv4Address)
    parser.add_argument("--source-port", type=int, default=0)
    parser.add_argument("--keepalive-floor", type=float, default=10.0, help="lab only: below the RFC's 10 s")
    parser.add_argument("--keepalive-retransmit", type=float, default=2.0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def clock_offset(loop: asyncio.AbstractEventLoop) -> float:
    return time.time() - loop.time() + NTP_UNIX_OFFSET


async def run_home_agent(args: argparse.Namespace, stop: asyncio.Event) -> HomeAgentTunnel:
    loop = asyncio.get_running_loop()
    sa = SecurityAssociation(args.spi, AuthAlgorithm.HMAC_MD5, bytes.fromhex(args.key))
    logic = ha.HomeAgentLogic(
        ha.HomeAgentConfig(
            address=args.home_agent,
            home_network=args.home_network,
            mobile_nodes=(ha.MobileNodeEntry(args.home_address, (sa,), tuple(args.mobile_network)),),
            udp_tunnelling=True,
            udp_keepalive_interval=args.keepalive_interval,
            clock_offset=clock_offset(loop),
        )
    )

    def on_silent(peer: Peer) -> None:
        log.info("peer %s:%d (%s) silent", peer.source[0], peer.source[1], peer.home_address)

    tunnel = HomeAgentTunnel(
        open_tun(args.tun, args.mtu), home_agent=args.home_agent, on_peer_silent=on_silent, silence_timeout=args.silence_timeout
    )

    def on_event(event: Any) -> None:
        b = event.binding
        log.info("%s %s source %s:%d udp=%s", type(event).__name__, b.home_address, b.source[0], b.source[1], b.udp_tunnel)
        # The daemon's rule: after every binding event the peers are the UDP bindings.
        tunnel.sync_bindings(logic.bindings().values())

    driver = MachineDriver(logic, on_event)
    driver.connection_made(tunnel.add_socket(udp_socket(str(args.home_agent), args.port), driver.datagram_received))
    log.info("home agent %s: udp %d, tun %s", args.home_agent, args.port, args.tun)
    return tunnel


async def run_mobile_node(args: argparse.Namespace, stop: asyncio.Event) -> MobileTunnel:
    loop = asyncio.get_running_loop()
    sa = SecurityAssociation(args.spi, AuthAlgorithm.HMAC_MD5, bytes.fromhex(args.key))
    machine = mn.RegistrationMachine(
        mn.MobileNodeConfig(
            home_address=args.home_address,
            home_agent=args.home_agent,
            security_association=sa,
            mobile_networks=tuple(args.mobile_network),
            udp_tunnel=True,
            home_agent_port=args.port,
            clock_offset=clock_offset(loop),
        )
    )
    keepalive = KeepaliveMonitor(floor=args.keepalive_floor, retransmit=args.keepalive_retransmit)
    sock = udp_socket(str(args.care_of), args.source_port)

    def on_peer_state(alive: bool) -> None:
        if alive:
            log.info("home agent answers keepalives again")
            return
        # RFC 3519 §4.10: no answer after retransmissions -> re-register (new NAT mapping).
        log.info("home agent silent: re-registering")
        machine.register(args.care_of, loop.time())
        driver.poke()

    tunnel = MobileTunnel(
        open_tun(args.tun, args.mtu),
        home_address=args.home_address,
        home_agent=args.home_agent,
        keepalive=keepalive,
        on_peer_state=on_peer_state,
    )

    def on_event(event: Any) -> None:
        log.info("%s", event)
        if isinstance(event, mn.Registered):
            if event.udp_tunnel:
                tunnel.attach(sock, (str(args.home_agent), args.port), event.udp_keepalive_interval)
            else:
                tunnel.detach()
        elif isinstance(event, mn.Deregistered | mn.BindingExpired):
            tunnel.detach()

    driver = MachineDriver(machine, on_event)
    driver.connection_made(tunnel.add_socket(sock, driver.datagram_received))
    machine.register(args.care_of, loop.time())
    driver.poke()
    return tunnel


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tunnel: HomeAgentTunnel | MobileTunnel
    if args.role == "ha":
        tunnel = await run_home_agent(args, stop)
    else:
        tunnel = await run_mobile_node(args, stop)

    def status() -> dict[str, Any]:
        data: dict[str, Any] = tunnel.counters.as_dict()
        if isinstance(tunnel, MobileTunnel):
            data["attached"] = tunnel.attached
            data["silent"] = tunnel.keepalive.silent
        if isinstance(tunnel, HomeAgentTunnel):
            data["peers"] = [
                {"home_address": str(p.home_address), "source": list(p.source), "rx": p.rx_packets, "silent": p.silent}
                for p in tunnel.peers.peers()
            ]
        return data

    try:
        while not stop.is_set():
            tmp = args.status.with_suffix(".tmp")
            tmp.write_text(json.dumps(status()))
            tmp.replace(args.status)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        args.status.write_text(json.dumps(status()))
        tunnel.close()


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(arguments))
