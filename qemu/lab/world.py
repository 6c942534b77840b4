"""The lab world: build it, tear it down, and turn its knobs.

    with World() as world:               # up(): leftovers of an earlier run are removed first
        world.router.associate("corp")
        lease = world.router.dhcp()
        world.ap_down("corp", silent=True)

`up()` records how long each stage took in `timings`; any failure tears down what was built and
raises `LabError` with the failing peer's log tail. Knobs are plain methods; their names follow
DESIGN.md section 5.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import plan, topology, vpn
from .cellular import CellularLine, Dialer
from .dhcp import Lease, dnsmasq, request_lease
from .modem import ModemState, Registration
from .shell import Daemon, LabError, run, wait_until
from .wifi import AccessPointPeer, Station, load_radios, place_radio, unload_radios

DEFAULT_RUN_DIR = Path("/run/lab")


@dataclass(frozen=True, slots=True)
class LinkCondition:
    """netem settings of a link, applied to both ends (so delay counts twice in an RTT)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbit: int | None = None
    loss_percent: float = 0.0
    cut: bool = False

    def netem_arguments(self) -> list[str] | None:
        """tc netem arguments, or None for a plain link."""
        if self == LinkCondition():
            return None
        arguments = ["delay", f"{self.delay_ms}ms"]
        if self.jitter_ms:
            arguments.append(f"{self.jitter_ms}ms")
        if self.rate_kbit is not None:
            arguments += ["rate", f"{self.rate_kbit}kbit"]
        arguments += ["loss", "100%" if self.cut else f"{self.loss_percent}%"]
        return arguments


@dataclass(frozen=True, slots=True)
class PingResult:
    sent: int
    received: int
    average_ms: float | None

    @property
    def ok(self) -> bool:
        return self.received > 0


@dataclass
class Capture:
    """tcpdump text lines of one device, filled in when the capture ends."""

    lines: list[str] = field(default_factory=list)

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))


class RouterHost:
    """The router namespace: interfaces only, plus the helpers tests use until the product
    drives them (wpa_supplicant, DHCP client, dialer, a strongSwan client)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.namespace = world.ns("router")
        self.run_dir = world.run_dir / "router"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.station = Station(self.namespace, self.run_dir)
        self.dialer = Dialer(world.cellular, self.namespace, self.run_dir) \
            if world.cellular else None
        self.vpn_client = vpn.router_client(self.namespace, self.run_dir)

    def associate(self, ap_name: str, timeout: float = 30.0) -> float:
        """Join the named AP (by BSSID, so "corp" and the rogue are told apart); seconds."""
        ap = self.world.access_points[ap_name]
        self.station.disconnect()
        return self.station.associate(ap.ap.ssid, ap.bssid, timeout)

    def dhcp(self, timeout: float = 20.0) -> Lease:
        return self.station.dhcp(timeout)

    def dial(self) -> tuple[str, float]:
        if self.dialer is None:
            raise LabError("this world has no 3G path")
        return self.dialer.dial()

    def hang_up(self) -> None:
        if self.dialer is not None:
            self.dialer.hang_up()

    def default_route(self, device: str, via: str | None = None) -> None:
        gateway = ["via", via] if via else []
        run(["ip", "-n", self.namespace, "route", "replace", "default", *gateway,
             "dev", device])

    def start_vpn_client(self) -> float:
        if self.vpn_client.daemon.running:
            return 0.0
        return self.vpn_client.start()

    def vici_session(self) -> Any:
        """A `vici.Session` on the router's charon (imported here: only VPN tests need it)."""
        import socket

        import vici

        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(self.vpn_client.vici_socket))
        return vici.Session(sock)

    def daemons(self) -> list[Daemon]:
        """The helper processes the lab runs for the router (not the product's)."""
        return [self.vpn_client.daemon, self.station.daemon,
                *([self.dialer.daemon] if self.dialer else [])]


class World:
    """One lab world. `radios`/`peers` off builds only the wired part (host namespace tests)."""

    def __init__(self, prefix: str = "", run_dir: Path | None = None, *, radios: bool = True,
                 peers: bool = True, static_lan: bool = True) -> None:
        self.ns = topology.Namespaces(prefix)
        # False: br-lan and lan-host stay unaddressed, for the product's LAN driver and dnsmasq.
        self.static_lan = static_lan
        self.run_dir = run_dir or DEFAULT_RUN_DIR / (prefix.rstrip("-") or "world")
        self.with_radios = radios
        self.with_peers = peers
        self.timings: dict[str, float] = {}
        self.access_points: dict[str, AccessPointPeer] = {}
        self.dhcp_servers: dict[str, Daemon] = {}
        self.vpn_gateway: vpn.Charon | None = None
        self.cellular: CellularLine | None = None
        self._router: RouterHost | None = None
        self._conditions: dict[str, LinkCondition] = {}
        self._captures: list[Daemon] = []
        self._capture_count = 0  # each capture its own file: readiness reads the log
        self.last_down_seconds = 0.0

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> World:
        self.up()
        return self

    def __exit__(self, *_: object) -> None:
        self.down()

    @property
    def router(self) -> RouterHost:
        if self._router is None:
            raise LabError("the world is not up")
        return self._router

    def up(self) -> dict[str, float]:
        """Build the world from nothing (removing leftovers first); return stage timings."""
        self.down()
        self.timings = {}
        started = time.monotonic()
        try:
            self._stage("namespaces and links", self._build_wired)
            if self.with_radios:
                self._stage("radios", self._place_radios)
            if self.with_peers:
                self._stage("dhcp servers", self._start_dhcp_servers)
                if self.with_radios:
                    self._stage("access points", self._start_access_points)
                self._stage("vpn gateway", self._start_vpn_gateway)
                self._stage("modem line", self._start_cellular)
            self._router = RouterHost(self)
            self._stage("wired core check", self._check_wired)
        except BaseException:
            self.down()
            raise
        self.timings["world up"] = time.monotonic() - started
        return self.timings

    def down(self) -> None:
        """Stop every peer, delete every namespace; safe to call any number of times."""
        started = time.monotonic()
        for capture in self._captures:
            capture.stop(signal.SIGKILL)
        self._captures = []
        # Everyone gets SIGTERM at once, so the waits below overlap.
        router_daemons = self._router.daemons() if self._router else []
        for daemon in [*router_daemons, *self._peers()]:
            daemon.send_signal(signal.SIGTERM)
        for daemon in router_daemons:
            daemon.stop(timeout=3)
        if self.cellular is not None:
            self.cellular.stop()
        for daemon in self._peers():
            daemon.stop(timeout=3)
        topology.remove_namespaces(self.ns.all())
        if self.with_radios:
            unload_radios()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.access_points, self.dhcp_servers = {}, {}
        self.vpn_gateway, self.cellular, self._router = None, None, None
        self._conditions = {}
        self.last_down_seconds = time.monotonic() - started

    def _stage(self, name: str, action: Callable[[], object]) -> None:
        start = time.monotonic()
        action()
        self.timings[name] = time.monotonic() - start

    def _peers(self) -> list[Daemon]:
        daemons = [ap.daemon for ap in self.access_points.values()]
        daemons += self.dhcp_servers.values()
        if self.vpn_gateway is not None:
            daemons.append(self.vpn_gateway.daemon)
        return daemons

    def _build_wired(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        topology.create_namespaces(self.ns)
        topology.build_wired(self.ns, self.static_lan)
        topology.install_firewalls(self.ns)

    def _place_radios(self) -> None:
        phys = load_radios(plan.RADIOS)
        place_radio(phys[plan.ROUTER_RADIO], self.ns("router"), plan.ROUTER_WLAN)
        for ap in plan.ACCESS_POINTS:
            place_radio(phys[ap.radio], self.ns(ap.host), plan.AP_WLAN)

    def _start_dhcp_servers(self) -> None:
        for scope in plan.DHCP_SCOPES:
            self.dhcp_servers[scope.name] = dnsmasq(scope, self.ns(scope.host), self.run_dir)
        running = [daemon for name, daemon in self.dhcp_servers.items() if name != plan.ROGUE]
        for daemon in running:
            daemon.launch()
        for daemon in running:
            daemon.wait_ready()

    def _start_access_points(self) -> None:
        for ap in plan.ACCESS_POINTS:
            self.access_points[ap.name] = AccessPointPeer(ap, self.ns(ap.host), self.run_dir)
        live = [peer for name, peer in self.access_points.items() if name != plan.ROGUE]
        for peer in live:
            peer.launch()
        for peer in live:
            self.timings[f"ap {peer.ap.name} beaconing"] = peer.daemon.wait_ready()

    def _start_vpn_gateway(self) -> None:
        self.vpn_gateway = vpn.gateway(self.ns("vpn-gw"), self.run_dir)
        self.vpn_gateway.start()
        vpn.load_gateway_config(self.vpn_gateway)

    def _start_cellular(self) -> None:
        # pppd needs /dev/ppp, which appears when ppp_generic loads (udev may not be running).
        run(["modprobe", "-a", "ppp_generic", "ppp_async"])
        if not Path("/dev/ppp").exists():
            run(["mknod", "/dev/ppp", "c", "108", "0"])
        Path("/run/lock").mkdir(exist_ok=True)
        self.cellular = CellularLine(self.ns("cell"), self.ns("router"), self.run_dir)
        self.cellular.start()

    def _check_wired(self) -> None:
        topology.wait_for_links(lambda host, to: self.ping(host, to, count=1, wait=0.5).ok,
                                self.static_lan)

    # -- looking around -----------------------------------------------------------------------

    def exec(self, host: str, argv: list[str], check: bool = True) -> str:
        return run(argv, self.ns(host), check=check).stdout

    def ping(self, host: str, destination: str, count: int = 3, interval: float = 0.2,
             wait: float = 1.0, source: str | None = None) -> PingResult:
        source_option = ["-I", source] if source else []
        result = run(["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                      "-W", str(wait), *source_option, destination],
                     self.ns(host), check=False, timeout=count * (interval + wait) + 10)
        output = result.stdout
        counts = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        if counts is None:
            if "unreachable" in result.stderr:  # no route at all: nothing was even sent
                return PingResult(count, 0, None)
            raise LabError(f"unreadable ping output from {host}:\n{output}{result.stderr}")
        rtt = re.search(r"= [\d.]+/([\d.]+)/", output)
        return PingResult(int(counts.group(1)), int(counts.group(2)),
                          float(rtt.group(1)) if rtt else None)

    @contextmanager
    def capture(self, host: str, device: str, bpf: str = "") -> Iterator[Capture]:
        """tcpdump on one device for the duration of the block; lines land in the Capture."""
        self._capture_count += 1
        log = self.run_dir / f"capture-{self._capture_count}-{host}-{device}.txt"
        daemon = Daemon(f"tcpdump {host}/{device}",
                        ["tcpdump", "-l", "-n", "-i", device, *bpf.split()],
                        log, self.ns(host),
                        ready=lambda: "listening on" in log.read_text(errors="replace"))
        self._captures.append(daemon)
        result = Capture()
        daemon.start()
        try:
            yield result
        finally:
            time.sleep(0.3)  # let the last packets reach tcpdump's line buffer
            daemon.stop(signal.SIGINT)
            self._captures.remove(daemon)
            result.lines = [line for line in log.read_text(errors="replace").splitlines()
                            if line[:2].isdigit()]

    def lan_host_dhcp(self, timeout: float = 20.0) -> Lease:
        """lan-host asks the LAN (the product's dnsmasq) for an address and takes its route."""
        lease = request_lease(self.ns("lan-host"), "eth0", self.run_dir, timeout)
        if lease.gateway:
            run(["ip", "-n", self.ns("lan-host"), "route", "replace", "default",
                 "via", lease.gateway])
        return lease

    # -- knobs: access points -----------------------------------------------------------------

    def ap_down(self, name: str, silent: bool = False) -> None:
        """Graceful: stations are deauthenticated. Silent: like driving out of range."""
        self.access_points[name].down(silent)

    def ap_up(self, name: str) -> float:
        return self.access_points[name].up()

    def ap_txpower(self, name: str, mbm: int) -> None:
        self.access_points[name].set_txpower(mbm)

    def rogue_ap_up(self) -> float:
        """An AP claiming SSID "corp" in the outside world, with its own 10.30.0.0/24 DHCP."""
        dhcp = self.dhcp_servers[plan.ROGUE]
        if not dhcp.running:
            dhcp.start()
        return self.ap_up(plan.ROGUE)

    def rogue_ap_down(self) -> None:
        self.ap_down(plan.ROGUE)
        self.dhcp_servers[plan.ROGUE].stop()

    # -- knobs: links -------------------------------------------------------------------------

    def shape(self, link: str, delay_ms: float = 0.0, jitter_ms: float = 0.0,
              rate_kbit: int | None = None, loss_percent: float = 0.0) -> None:
        """netem on both ends of `link` (one-way delay each way: the RTT grows by twice it)."""
        current = self._conditions.get(link, LinkCondition())
        self._set_condition(link, LinkCondition(delay_ms, jitter_ms, rate_kbit, loss_percent,
                                                current.cut))

    def unshape(self, link: str) -> None:
        current = self._conditions.get(link, LinkCondition())
        self._set_condition(link, LinkCondition(cut=current.cut))

    def cut(self, link: str) -> None:
        """Drop everything on the link, silently (carrier stays up, as with a broken path)."""
        self._set_condition(link, replace(self._conditions.get(link, LinkCondition()), cut=True))

    def uncut(self, link: str) -> None:
        self._set_condition(link, replace(self._conditions.get(link, LinkCondition()), cut=False))

    def _set_condition(self, link_name: str, condition: LinkCondition) -> None:
        link = plan.link(link_name)
        arguments = condition.netem_arguments()
        for end in (link.a, link.b):
            namespace = self.ns(end.host)
            if arguments is None:
                run(["tc", "qdisc", "del", "dev", end.device, "root"], namespace, check=False)
            else:
                run(["tc", "qdisc", "replace", "dev", end.device, "root", "netem", *arguments],
                    namespace)
        self._conditions[link_name] = condition

    def cell_nat(self, enabled: bool) -> None:
        topology.set_cell_nat(self.ns, enabled)

    # -- knobs: peers -------------------------------------------------------------------------

    def peer(self, name: str) -> Daemon:
        """A peer process by name: hostapd-<ap>, dhcp-<scope>, vpn-gw, pppd-cell.

        ("modem", the socat line with its AT responder, is a peer for stop/restart_peer.)
        """
        peers = {daemon.name: daemon for daemon in self._peers()}
        if self.cellular is not None:
            peers["pppd-cell"] = self.cellular.operator_pppd
        if name not in peers:
            raise LabError(f"no peer {name!r}; have {sorted(peers)} and 'modem'")
        return peers[name]

    def stop_peer(self, name: str, silent: bool = False) -> None:
        """Graceful stop (SIGTERM), or silent (SIGKILL: no goodbye to anybody)."""
        if name == "modem":
            self._cell().stop()
            return
        self.peer(name).stop(signal.SIGKILL if silent else signal.SIGTERM)

    def restart_peer(self, name: str) -> float:
        if name == "modem":
            return self._cell().restart()
        daemon = self.peer(name)
        if self.vpn_gateway is not None and daemon is self.vpn_gateway.daemon:
            daemon.stop()
            start = time.monotonic()
            self.vpn_gateway.start()
            vpn.load_gateway_config(self.vpn_gateway)
            return time.monotonic() - start
        return daemon.restart()

    # -- knobs: the modem ---------------------------------------------------------------------

    @property
    def modem(self) -> ModemState:
        return self._cell().state

    def modem_signal(self, rssi: int) -> None:
        self.modem.set_signal(rssi)

    def modem_registration(self, registration: Registration | str) -> None:
        if isinstance(registration, str):
            registration = Registration[registration.upper()]
        self.modem.registration = registration

    def modem_sim(self, ready: bool) -> None:
        self.modem.sim_ready = ready

    def modem_hang(self, hung: bool = True) -> None:
        self.modem.hung = hung

    def modem_detach(self) -> None:
        """The operator ends the data call."""
        self._cell().detach()

    def _cell(self) -> CellularLine:
        if self.cellular is None:
            raise LabError("this world has no 3G path")
        return self.cellular

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        return wait_until(condition, timeout, what)
