"""The dual system's nesting built statically from the product's own plans (no daemon runs),
shared by tests/qemu/test_nesting.py and the throughput bench (bench/throughput.py).

Outside (3G): IP-in-IP(X -> T_HA)[ESP(T -> T_gw)[IP-in-IP(V -> S_HA)[packet]]] (DESIGN.md 2)

- outer-ha: router.ha.plan.home_agent_plan for T=192.0.2.50 -> CoA X;
- router: router.dataplane.router_plan, first without, then with the VPN's V and the inner tunnel;
- router-side charon with the product's strongswan.conf / swanctl `corp` (install_routes = no),
  brought up over vici by router.vpn.strongswan.StrongSwanVpn;
- inner-ha: home_agent_plan for S=10.10.0.50 -> CoA V with the mobile network 10.1.1.0/24.

Also the measuring helpers both use: path MTU by DF-ping bisection, iperf3, an exact-count
TCP transfer that detects a PMTU black hole.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from router.daemon import ROUTER_SYSCTLS
from router.dataplane import ROUTER_OWNERSHIP, DataPlane, Tunnel, UplinkRoute, router_plan
from router.ha.daemon import HA_OWNERSHIP
from router.ha.plan import SYSCTLS as HA_SYSCTLS
from router.ha.plan import home_agent_plan
from router.mip.homeagent import Binding
from router.net import BackendError, KernelAdapter, Plan
from router.net.kernel import Pyroute2Backend
from router.vpn.strongswan import StrongSwanVpn

from . import plan, vpn
from .shell import Daemon, LabError, run
from .world import World

A = IPv4Address
S, S_HA = A("10.10.0.50"), A(plan.INNER_HA_ADDRESS)
T, T_HA, T_GW = A("192.0.2.50"), A(plan.OUTER_HA_ADDRESS), A(plan.VPN_GATEWAY_ADDRESS)
MNP = IPv4Network(plan.LAN_PREFIX)
OUTER_HOME_NETWORK = IPv4Network("192.0.2.0/24")  # the ext WLAN / DMZ
LAN_HOST, CN = plan.LAN_HOST_ADDRESS, plan.CORRESPONDENT_ADDRESS
HOME_INTERFACE = "eth0"  # each home agent's leg on its home network


def binding(home: IPv4Address, care_of: IPv4Address, networks: tuple[IPv4Network, ...] = ()) -> Binding:
    return Binding(home_address=home, care_of_address=care_of, lifetime=None, expires_at=None,
                   mobile_networks=networks, reverse_tunnel=True, udp_tunnel=False,
                   source=(str(care_of), 434), request_identification=0, reply_identification=0,
                   registered_at=0.0)


def dataplane(uplinks: tuple[UplinkRoute, ...], **situation: object) -> DataPlane:
    return DataPlane(lan_interface=plan.ROUTER_LAN_BRIDGE, mobile_networks=(MNP,),
                     inner_home_address=S, uplinks=uplinks, outer_home_address=T,
                     outer_home_network=OUTER_HOME_NETWORK,
                     **situation)  # type: ignore[arg-type]


def planned(state: DataPlane) -> Plan:
    return router_plan(state)


@dataclass
class Dual:
    """The outside situation as built by `outside`."""

    world: World
    router: KernelAdapter
    outer_ha: KernelAdapter
    inner_ha: KernelAdapter
    charon: vpn.Charon
    vpn: StrongSwanVpn
    cell: UplinkRoute
    care_of: IPv4Address  # X
    virtual_ip: IPv4Address  # V

    def diagnostics(self) -> str:
        """What the router's kernel and charon hold: appended to every failure message."""
        w = self.world
        router = ["ip -br addr", "ip rule", "ip route show table all", "ip xfrm state",
                  "ip xfrm policy", "cat /proc/net/xfrm_stat", "ip -s -d link show type ipip"]
        parts = [f"--- router: {c}\n{w.exec('router', c.split(), check=False)}" for c in router]
        parts += [f"--- {host}: ip route\n{w.exec(host, ['ip', 'route'], check=False)}"
                  for host in ("outer-ha", "inner-ha", "corp", "vpn-gw")]
        parts.append(f"--- router charon log\n{self.charon.log_tail(40)}")
        return "\n".join(parts)


def adapter(world: World, host: str, ownership: object) -> KernelAdapter:
    return KernelAdapter(Pyroute2Backend(ownership, netns=world.ns(host)))  # type: ignore[arg-type]


@contextmanager
def outside(world: World, timings: dict[str, float]) -> Iterator[Dual]:
    """Router on 3G, registered (statically) with both home agents, VPN up from T; stage
    times land in `timings`. The 3G line is dialled here unless it is up already."""
    dialer = world.router.dialer
    already = dialer.address() if dialer is not None else None
    if already is not None:
        address = already
    else:
        address, timings["3G dial"] = world.router.dial()
    care_of = A(address)
    cell = UplinkRoute(0, "ppp0", care_of, None)

    outer_ha = adapter(world, "outer-ha", HA_OWNERSHIP)
    outer_ha.ensure_sysctls(HA_SYSCTLS)
    outer_ha.apply(home_agent_plan([binding(T, care_of)], T_HA, HOME_INTERFACE))

    router = adapter(world, "router", ROUTER_OWNERSHIP)
    router.ensure_sysctls(ROUTER_SYSCTLS)
    router.apply(planned(dataplane((cell,), outer=Tunnel(care_of, T_HA))))

    charon = vpn.product_router_client(world.ns("router"), world.router.run_dir)
    timings["product charon start"] = charon.start()
    vpn.load_product_router_config(charon)
    driver = StrongSwanVpn(str(charon.vici_socket), vpn.PRODUCT_CONNECTION)
    inner_ha = adapter(world, "inner-ha", HA_OWNERSHIP)
    dual = Dual(world, router, outer_ha, inner_ha, charon, driver, cell, care_of, A("0.0.0.0"))
    try:
        # The outer system alone first: T reaches the gateway through the outer tunnel.
        assert world.ping("router", str(T_GW), count=2, source=str(T)).ok, dual.diagnostics()
        start = time.monotonic()
        try:
            state = asyncio.run(driver.up(timeout=30))
        except Exception as error:
            raise AssertionError(f"VPN from T did not come up: {error}\n{dual.diagnostics()}") from None
        timings["VPN up from T through the outer tunnel"] = time.monotonic() - start
        assert state.local == str(T) and state.remote == str(T_GW), state
        assert state.virtual_ip is not None and state.virtual_ip in IPv4Network(plan.VPN_POOL)
        dual.virtual_ip = state.virtual_ip

        try:
            router.apply(planned(dataplane((cell,), outer=Tunnel(care_of, T_HA),
                                           virtual_ip=dual.virtual_ip,
                                           inner=Tunnel(dual.virtual_ip, S_HA))))
        except BackendError as error:
            raise AssertionError(f"router plan with V refused: {error}\n{dual.diagnostics()}") from None
        inner_ha.ensure_sysctls(HA_SYSCTLS)
        inner_ha.apply(home_agent_plan([binding(S, dual.virtual_ip, (MNP,))], S_HA, HOME_INTERFACE))
        # Lab, not product: the secure domain's router learns the mobile network behind the
        # inner home agent (RFC 5177 leaves that to the home network's routing).
        world.exec("corp", ["ip", "route", "replace", str(MNP), "via", str(S_HA)])
        yield dual
    finally:
        charon.daemon.stop()
        for kernel in (router, outer_ha, inner_ha):
            kernel.close()


def ping_fits(world: World, host: str, destination: str, payload: int, tries: int) -> bool:
    """One DF ping of `payload` bytes gets an answer within `tries` attempts (each failed
    attempt may teach one more layer its path MTU: RFC 1191 through every tunnel)."""
    for _ in range(tries):
        done = run(["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", str(payload), destination],
                   world.ns(host), check=False)
        if done.returncode == 0:
            return True
    return False


def path_mtu(world: World, host: str, destination: str, tries: int = 4) -> int:
    """Largest IP packet that crosses with DF set, by bisection over ping payloads."""
    low, high = 1000, 1473  # a 1000-byte payload must fit; 1473 + 28 exceeds every 1500 link
    assert ping_fits(world, host, destination, low, tries), f"{host}: even {low + 28} bytes do not cross"
    while high - low > 1:
        middle = (low + high) // 2
        if ping_fits(world, host, destination, middle, tries):
            low = middle
        else:
            high = middle
    return low + 28


def iperf(world: World, client: str, server_address: str, reverse: bool, size: str = "4M",
          seconds: float | None = None) -> dict[str, float]:
    """iperf3 bulk TCP for the throughput figure (its byte counts are taken at the end of the
    test, with data still in flight, so they do not prove delivery: `exact_transfer` does).
    `seconds` runs for a time instead of a size."""
    amount = ["-t", str(seconds)] if seconds is not None else ["-n", size]
    argv = ["iperf3", "-c", server_address, *amount, "-J", "--connect-timeout", "5000"]
    if reverse:
        argv.append("-R")
    done = run(argv, world.ns(client), check=False, timeout=90 + (seconds or 0))
    report = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "error" in report:
        raise LabError(f"iperf3 failed: {report.get('error', done.stderr)}")
    end = report["end"]
    return {"sent": end["sum_sent"]["bytes"], "received": end["sum_received"]["bytes"],
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "mbit_s": round(end["sum_received"]["bits_per_second"] / 1e6, 1)}


@contextmanager
def iperf_server(world: World, host: str) -> Iterator[Daemon]:
    log = world.run_dir / f"iperf3-{host}.log"
    server = Daemon(f"iperf3 {host}", ["iperf3", "-s", "--forceflush"], log, world.ns(host),
                    ready=lambda: "Server listening" in log.read_text(errors="replace"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


TRANSFER_BYTES = 4 * 1024 * 1024


def exact_transfer(world: World, sender: str, receiver: str, receiver_address: str, port: int) -> int:
    """Send TRANSFER_BYTES over one TCP connection (DF set: Linux TCP does PMTU discovery) and
    return how many arrived. The timeout only detects a stall (a PMTU black hole hangs the
    connection); it is no speed threshold: 4 MiB at 1 Mbit/s still fits."""
    count_file = world.run_dir / f"received-{port}"
    listener = Daemon(f"socat {receiver}:{port}",
                      ["socat", "-u", f"TCP-LISTEN:{port},reuseaddr", f"CREATE:{count_file}"],
                      world.run_dir / f"socat-{port}.log", world.ns(receiver))
    listener.start()
    try:
        wait_listening = f"ss -ltn | grep -q ':{port} '"
        world.wait_for(lambda: run(["sh", "-c", wait_listening], world.ns(receiver), check=False)
                       .returncode == 0, 10, f"socat listening on {receiver}:{port}")
        run(["sh", "-c", f"head -c {TRANSFER_BYTES} /dev/zero | socat -u STDIN TCP:{receiver_address}:{port}"],
            world.ns(sender), timeout=120)
        listener.wait_exit(120)
    finally:
        listener.stop()
    return count_file.stat().st_size
