"""The two router modes users pick instead of the dual Mobile IP system (issue 10), built from
real parts in the lab's `router` namespace, on the same radios and 3G line as the product.

    mode = PeerRouter(world, "nat-failover")     # or "mobike-vpn"
    mode.start()                                 # controller up, first uplink chosen
    mode.wait_active("wlan", ssid="corp")
    mode.status()                                # {"active": "wlan", "vpn": {...}, ...}
    mode.stop()

Theory of operation
-------------------
**nat-failover** is what mwan3 (OpenWrt) or a Cradlepoint-class router does. Each uplink,
while it is online, has its own default route in the main table with its own metric
(wlan 10, cell 50: WLAN preferred, as such routers are usually set up); nftables masquerades
the LAN on each uplink (`oifname "wlan0" masquerade`, `oifname "ppp0" masquerade`). Whether an
uplink is online comes from the same detection the product uses: L2 events from our uplink
drivers (router.uplink: wpa_supplicant's control socket and the modem/pppd driver, both real
drivers) take it offline at once, and ICMP probes to its gateway go through the product's
mwan3track-style tracker (router.policy.health, same parameters), so both detect equally
fast. The selection is its own and simple, like mwan3's failover policy: the online uplink with
the lowest metric carries the traffic. On every switch the conntrack table is flushed, as
mwan3 recommends (`flush_conntrack`), so that flows are NATted anew on the new uplink instead
of leaving with the old uplink's address. The WLAN networks get wpa_supplicant priorities
(corp > ext > hotspot), as a user would give their known networks.

**mobike-vpn** is the road warrior: the same uplink failover underneath (a multi-uplink
router still needs one), plus strongSwan on the router with an IKEv2 connection to the lab's
VPN gateway with MOBIKE on (RFC 4555; strongSwan's `mobike = yes`, its default, set explicitly
on both ends) and a virtual IP from the gateway's pool. The LAN is routed into the tunnel,
not NATted: the child SA's traffic selectors are (virtual IP, 10.1.1.0/24) === 10.0.0.0/8,
and the corporate core routes 10.1.1.0/24 to the VPN gateway (a gateway-side route, as an
enterprise sets up for a branch router). So the correspondent sees the LAN host's own address
10.1.1.10 while the VPN is up (source-NAT to the virtual IP would work as well; the routed
LAN is what a branch router's users deploy, and it keeps the LAN's addresses visible). A rule
"to 10.1.1.0/24 lookup main" before strongSwan's table 220 keeps the LAN's own traffic off
charon's route for 10.0.0.0/8, which covers the LAN too. For this the mode loads a connection of its own, `mobike`, into the lab's gateway
charon over vici (same PSK, its own identity `router-mobike.lab`, so the lab's `corp`
connection and the other tests are untouched). When the active uplink changes, charon's
kernel interface sees the route change and MOBIKE moves the SA to the new address
(UPDATE_SA_ADDRESSES, RFC 4555 section 3.5); there is no outer home agent, so the SA's outer
address changes with every uplink change. charon runs with `prefer_best_path = yes`, so MOBIKE
also moves the SA to a better uplink that appears (planned handover), not only away from a
dead one. Packets that leave through an SA are exempt from the
uplink masquerade (`rt ipsec exists accept`).

Inside detection for mobike-vpn: the VPN cannot be "always on" in this lab (nor in most
enterprises): the gateway is reachable only from outside (its inside leg forwards nothing
back in), so the mode uses trusted network detection as commercial VPN clients do (e.g.
AnyConnect's TND): the uplink is "inside" when its address is in the inside prefixes
(10.0.0.0/8) and the inner home agent's address 10.10.0.1 answers a ping through it directly.
Inside, the VPN is closed and the LAN is masqueraded to the WLAN address; outside it is
opened. This is the closest a plain VPN client comes to our rule, and it is weaker: nothing
is authenticated (ours: only an authenticated registration reply proves "inside").

The controller (`python3 -m qemu.lab.peers MODE --config FILE`) runs in the router namespace;
it writes its state to a JSON status file that the lab reads, and logs one line per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import plan

MODES = ("nat-failover", "mobike-vpn")
NFT_TABLE = "peer_nat"
VPN_CONNECTION = "mobike"
VPN_CHILD = "corp"
INSIDE_PREFIXES = ("10.0.0.0/8",)
TRUSTED_HOST = plan.INNER_HA_ADDRESS
# wpa_supplicant priorities of the known networks (higher wins when several are heard).
WLAN_PRIORITIES = {"corp": 3, "ext": 2, "hotspot": 1}
METRICS = {"wlan": 10, "cell": 50}
# Per-uplink routing tables with a source rule (mwan3 has the same): traffic from an uplink's
# own address leaves on that uplink whatever the main table and strongSwan's table 220 say.
SOURCE_TABLES = {"wlan": 101, "cell": 102}
LAN_RULE_PRIORITY = 90  # "to 10.1.1.0/24 lookup main", before the source rules and table 220

log = logging.getLogger("peers")


# -- the lab side ----------------------------------------------------------------------------

def mode_name(mode: str) -> str:
    """The metric-name form of a mode: "nat-failover" -> "nat_failover"."""
    return mode.replace("-", "_")


ROUTER_ID = "router-mobike.lab"
# strongSwan keeps an SA on its current path while that path still works; a multi-uplink
# road warrior that prefers WLAN over 3G wants MOBIKE to move it to the best route instead
# (strongswan.conf `charon.prefer_best_path`; without it a planned handover never moves).
PREFER_BEST_PATH = "    prefer_best_path = yes"


def mobike_connection() -> dict[str, Any]:
    """The router's vici `load-conn` for the road warrior: the lab's client connection with
    its own identity, MOBIKE explicit, dead peer detection as a road warrior would set it,
    and the LAN in the child's local traffic selector beside the virtual IP."""
    from . import vpn

    connection = vpn.router_connection()["lab"]
    connection.update({"mobike": "yes", "dpd_delay": "10s", "keyingtries": "0"})
    connection["local"] = {**connection["local"], "id": ROUTER_ID}
    connection["children"] = {VPN_CHILD: {
        **connection["children"]["corp"], "local_ts": ["dynamic", plan.LAN_PREFIX],
        "remote_ts": [plan.VPN_PROTECTED]}}
    return {VPN_CONNECTION: connection}


def gateway_mobike_connection() -> dict[str, Any]:
    """The gateway's side (loaded over vici, beside the lab's `corp`): virtual IPs from the
    lab's pool, and the router's LAN accepted as a remote traffic selector."""
    return {VPN_CONNECTION: {
        "version": "2",
        "local_addrs": [plan.VPN_GATEWAY_ADDRESS],
        "pools": ["vpn-pool"],
        "mobike": "yes",
        "proposals": ["aes128-sha256-modp2048", "default"],
        "local": {"auth": "psk", "id": plan.VPN_GATEWAY_ID},
        "remote": {"auth": "psk", "id": ROUTER_ID},
        "children": {VPN_CHILD: {
            "local_ts": [plan.VPN_PROTECTED],
            "remote_ts": ["dynamic", plan.LAN_PREFIX],
            "esp_proposals": ["aes128gcm16", "default"],
        }},
    }}


def vici_session(socket_path: Path) -> Any:
    import vici

    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(socket_path))
    return vici.Session(sock)


class PeerRouter:
    """One peer mode's controller in the world's router namespace."""

    def __init__(self, world: Any, mode: str) -> None:
        from .shell import Daemon

        if mode not in MODES:
            raise ValueError(f"unknown peer mode {mode!r}; have {MODES}")
        self.world = world
        self.mode = mode
        self.name = mode_name(mode)
        self.run_dir = world.run_dir / f"peer-{mode}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.status_path = self.run_dir / "status.json"
        self.config_path = self.run_dir / "config.json"
        self.log_path = self.run_dir / "controller.log"
        self.daemon = Daemon(
            f"peer-{mode}",
            [sys.executable, "-m", "qemu.lab.peers", mode, "--config", str(self.config_path)],
            self.log_path, world.ns("router"),
            ready=lambda: self.status_path.exists(), ready_timeout=90,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"},
        )

    def config(self) -> dict[str, Any]:
        cellular = self.world.cellular
        assert cellular is not None, "the peer modes need the lab's 3G line"
        return {
            "mode": self.mode,
            "lan_interface": plan.ROUTER_LAN_BRIDGE,
            "lan_prefix": plan.LAN_PREFIX,
            "status": str(self.status_path),
            "run_dir": str(self.run_dir),
            "uplinks": [
                {"name": "wlan", "interface": plan.ROUTER_WLAN, "kind": "wlan",
                 "metric": METRICS["wlan"], "ssids": list(WLAN_PRIORITIES),
                 "wpa_control_dir": str(self.world.router.station.control_dir)},
                {"name": "cell", "interface": "ppp0", "kind": "3g", "metric": METRICS["cell"],
                 "modem": str(cellular.router_tty), "apn": plan.CELL_APN},
            ],
            "vpn": {"vici_socket": str(self.world.router.vpn_client.vici_socket),
                    "connection": VPN_CONNECTION, "child": VPN_CHILD,
                    "protected": plan.VPN_PROTECTED,
                    "inside_prefixes": list(INSIDE_PREFIXES), "trusted_host": TRUSTED_HOST}
            if self.mode == "mobike-vpn" else None,
        }

    def start(self) -> float:
        """Configure the known WLANs, (for mobike-vpn) load the VPN connection into the
        router's charon, and start the controller; seconds until it runs."""
        from .shell import run

        started = time.monotonic()
        station = self.world.router.station
        station.ensure_running()
        for ssid, priority in WLAN_PRIORITIES.items():
            station.cli("set_network", station.network_id(ssid), "priority", str(priority))
        run(["ip", "-n", self.world.ns("router"), "link", "set", plan.ROUTER_WLAN, "up"])
        if self.mode == "mobike-vpn":
            from . import vpn

            gateway = self.world.vpn_gateway
            assert gateway is not None, "mobike-vpn needs the lab's VPN gateway"
            vici_session(gateway.vici_socket).load_conn(gateway_mobike_connection())
            # The enterprise routes the branch's LAN to its VPN gateway.
            run(["ip", "-n", self.world.ns("corp"), "route", "replace", plan.LAN_PREFIX,
                 "via", plan.VPN_GATEWAY_INSIDE_ADDRESS])
            client = self.world.router.vpn_client
            if not client.daemon.running:
                client.conf.write_text(vpn.STRONGSWAN_CONF.replace(
                    "charon {", "charon {\n" + PREFER_BEST_PATH, 1))
            self.world.router.start_vpn_client()
            session = self.world.router.vici_session()
            session.load_shared(vpn.router_secret())
            session.load_conn(mobike_connection())
        self.status_path.unlink(missing_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        self.daemon.start()
        return time.monotonic() - started

    def stop(self) -> None:
        self.daemon.stop(signal.SIGTERM, timeout=20)

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def active_uplink(self) -> str | None:
        active = self.status().get("active")
        return str(active) if active else None

    def settled(self, uplink: str, ssid: str | None = None, vpn: bool | None = None) -> bool:
        """The mode carries traffic on `uplink` (and that SSID), VPN up/down as asked."""
        status = self.status()
        if status.get("active") != uplink:
            return False
        if ssid is not None and status.get("uplinks", {}).get(uplink, {}).get("ssid") != ssid:
            return False
        if vpn is not None and self.mode == "mobike-vpn":
            vpn_status = status.get("vpn") or {}
            if bool(vpn_status.get("up")) != vpn or vpn_status.get("busy"):
                return False
        return True

    def wait_active(self, uplink: str, ssid: str | None = None, vpn: bool | None = None,
                    timeout: float = 60.0) -> float:
        from .shell import LabError, wait_until

        def ready() -> bool:
            if not self.daemon.running:
                raise LabError(f"{self.daemon.name} died:\n{self.daemon.log_tail(40)}")
            return self.settled(uplink, ssid, vpn)

        return wait_until(ready, timeout, f"{self.mode} active on {uplink} {ssid or ''}",
                          interval=0.1, on_timeout=lambda: f"status {self.status()}\n"
                                                           f"{self.daemon.log_tail(30)}")

    def vpn_expected(self, inside: bool) -> bool | None:
        return (not inside) if self.mode == "mobike-vpn" else None

    def log_tail(self, lines: int = 40) -> str:
        return self.daemon.log_tail(lines)


def gateway_sa_remotes(world: Any) -> list[str]:
    """The remote (router-side) addresses of the IKE SAs the lab's VPN gateway holds now."""
    import re

    listing = world.vpn_gateway.swanctl("--list-sas") if world.vpn_gateway else ""
    # "corp: #3, ESTABLISHED, IKEv2, ...\n  local  'vpn-gw.lab' @ 192.0.2.2[500]\n
    #   remote 'router.lab' @ 100.64.0.10[500] [10.99.0.1]"
    return re.findall(r"remote\s+'[^']*'\s+@\s+([\d.]+)\[", listing)


# -- the controller (runs in the router namespace) --------------------------------------------

@dataclass
class Uplink:
    name: str
    interface: str
    kind: str
    metric: int
    tracker: Any
    driver: Any = None
    address: str | None = None
    gateway: str | None = None
    ssid: str | None = None
    routed: bool = False  # its default route is installed
    sourced: tuple[str, str] | None = None  # (address, gateway) of its source table and rule
    stale_route: bool = False  # its default route points at an old gateway
    prober: Any = None
    probe_task: asyncio.Task[None] | None = None


@dataclass
class VpnState:
    up: bool = False
    busy: bool = False
    virtual_ip: str | None = None
    local: str | None = None
    inside: bool | None = None
    history: list[str] = field(default_factory=list)


class Controller:
    def __init__(self, config: dict[str, Any]) -> None:
        from router.policy.health import HealthConfig, HealthTracker

        self.config = config
        self.mode = config["mode"]
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.uplinks = {
            u["name"]: Uplink(u["name"], u["interface"], u["kind"], int(u["metric"]),
                              HealthTracker(u["name"], now, HealthConfig()))
            for u in config["uplinks"]
        }
        self.active: str | None = None
        self.switches = 0
        self.vpn = VpnState()
        self.wake = asyncio.Event()
        self.status_path = Path(config["status"])
        self._domain_task: asyncio.Task[None] | None = None
        self._ipr: Any = None

    # -- lifecycle --

    async def run(self, stop: asyncio.Event) -> None:
        from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]

        from router.config import UplinkConfig
        from router.uplink import factory

        self._ipr = AsyncIPRoute()
        # A router forwards (the lab leaves forwarding off in the router namespace: the
        # product switches it on itself).
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self.nft(self.base_ruleset())
        # The LAN is ours whatever strongSwan routes: its table 220 route for the protected
        # 10.0.0.0/8 covers 10.1.1.0/24 too, and would send the LAN's replies back out.
        with contextlib.suppress(Exception):
            await self._ipr.rule("del", priority=LAN_RULE_PRIORITY)
        await self._ipr.rule("add", dst=self.config["lan_prefix"].split("/")[0],
                             dst_len=int(self.config["lan_prefix"].split("/")[1]),
                             table=254, priority=LAN_RULE_PRIORITY)
        run_dir = Path(self.config["run_dir"]) / "uplinks"
        for spec in self.config["uplinks"]:
            uplink = self.uplinks[spec["name"]]
            uplink_config = UplinkConfig(
                name=spec["name"], interface=spec["interface"], kind=spec["kind"],
                priority=spec["metric"], metered=spec["kind"] == "3g",
                modem=spec.get("modem"), apn=spec.get("apn"),
                ssids=tuple(spec.get("ssids", ())),
                wpa_control_dir=spec.get("wpa_control_dir", "/run/wpa_supplicant"))
            uplink.driver = factory.build(uplink_config, self.on_event, run_dir=run_dir)
        for uplink in self.uplinks.values():
            await uplink.driver.start()
        self.write_status()
        log.info("peer controller running: mode %s, uplinks %s", self.mode,
                 ", ".join(f"{u.name}(metric {u.metric})" for u in self.uplinks.values()))
        ticker = asyncio.create_task(self.tick())
        await stop.wait()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("peer controller stopping")
        if self._domain_task is not None:
            self._domain_task.cancel()
        if self.vpn.up:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._vpn_terminate)
        for uplink in self.uplinks.values():
            self.stop_prober(uplink)
            with contextlib.suppress(Exception):
                await uplink.driver.stop()
            await self.set_route(uplink, False)
            uplink.address = None
            await self.set_source_table(uplink)
        subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], check=False,
                       capture_output=True)
        with contextlib.suppress(Exception):
            await self._ipr.rule("del", priority=LAN_RULE_PRIORITY)
        self._ipr.close()

    # -- nftables --

    def base_ruleset(self) -> str:
        lan = self.config["lan_prefix"]
        rules = "\n".join(f'        ip saddr {lan} oifname "{u.interface}" masquerade'
                          for u in self.uplinks.values())
        # A LAN packet that leaves through an IPsec SA (mobike-vpn) keeps its address.
        return (f"table ip {NFT_TABLE} {{}}\ndelete table ip {NFT_TABLE}\n"
                f"table ip {NFT_TABLE} {{\n"
                f"    chain postrouting_nat {{\n"
                f"        type nat hook postrouting priority srcnat; policy accept;\n"
                f"        rt ipsec exists accept\n{rules}\n    }}\n}}\n")

    @staticmethod
    def nft(ruleset: str) -> None:
        subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True,
                       capture_output=True)

    # -- uplink events (called by the drivers, on the loop): state only, the loop acts --

    def on_event(self, event: Any) -> None:
        from router.uplink import events as ue

        uplink = self.uplinks.get(event.name)
        if uplink is None:
            return
        now = self.loop.time()
        if isinstance(event, ue.LinkUp):
            log.info("uplink %s up: %s gw %s on %s", uplink.name, event.address, event.gateway,
                     event.ifname)
            if (uplink.address, uplink.gateway) != (event.address, event.gateway):
                uplink.stale_route = uplink.routed
            uplink.address, uplink.gateway = event.address, event.gateway
            uplink.tracker.carrier(True, now)
            self.start_prober(uplink)
        elif isinstance(event, ue.Associated):
            uplink.ssid = event.ssid
        elif isinstance(event, (ue.LinkDown, ue.Disassociated)):
            log.info("uplink %s down: %s", uplink.name, event.reason)
            uplink.tracker.carrier(False, now)
            self.stop_prober(uplink)
            if isinstance(event, ue.LinkDown):
                uplink.address = None
            if isinstance(event, ue.Disassociated):
                uplink.ssid = None
        else:
            return
        self.wake.set()

    # -- probes (the product's tracker and prober, target: the uplink's gateway) --

    def start_prober(self, uplink: Uplink) -> None:
        from router.uplink.probe import IcmpProber

        self.stop_prober(uplink)
        if uplink.address is None or uplink.gateway is None:
            return

        def answered(key: int) -> None:
            uplink.tracker.probe_answered((uplink.name, key), self.loop.time())
            self.wake.set()

        try:
            prober = IcmpProber(uplink.interface, uplink.address, uplink.gateway, answered)
            prober.open()
        except OSError as exc:
            log.warning("uplink %s: no probes (%s)", uplink.name, exc)
            return
        uplink.prober = prober
        uplink.probe_task = asyncio.create_task(self.probe_loop(uplink))

    def stop_prober(self, uplink: Uplink) -> None:
        if uplink.probe_task is not None:
            uplink.probe_task.cancel()
            uplink.probe_task = None
        if uplink.prober is not None:
            uplink.prober.close()
            uplink.prober = None

    async def probe_loop(self, uplink: Uplink) -> None:
        while True:
            due = uplink.tracker.next_probe_at()
            if due is None:
                await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            key = uplink.prober.send()
            uplink.tracker.probe_sent((uplink.name, key), self.loop.time())
            self.wake.set()

    async def tick(self) -> None:
        """The one place that acts: after any event, probe answer or tracker deadline, expire
        overdue probes and reconcile the kernel with the selection."""
        while True:
            deadlines = [t for t in (u.tracker.get_timer() for u in self.uplinks.values())
                         if t is not None]
            timeout = max(0.0, min(deadlines) - self.loop.time()) if deadlines else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(timeout, 1.0))
            self.wake.clear()
            now = self.loop.time()
            for uplink in self.uplinks.values():
                uplink.tracker.handle_timer(now)
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed; retrying at the next event")

    # -- the selection: mwan3-like failover by metric --

    async def reconcile(self) -> None:
        for uplink in self.uplinks.values():
            while (change := uplink.tracker.next_event()) is not None:
                log.info("%s", change)
        for uplink in self.uplinks.values():
            if uplink.stale_route:
                await self.set_route(uplink, False)
                uplink.stale_route = False
            await self.set_source_table(uplink)
        online = [u for u in self.uplinks.values()
                  if u.address and u.gateway and u.tracker.snapshot().online]
        best = min(online, key=lambda u: u.metric).name if online else None
        # The new best route first, then the others go: no moment without a default route.
        for uplink in sorted(self.uplinks.values(), key=lambda u: u.name != best):
            wanted = uplink in online
            if wanted != uplink.routed:
                await self.set_route(uplink, wanted)
        if best != self.active:
            previous, self.active = self.active, best
            self.switches += 1
            log.info("uplink %s -> %s: %s", previous, best,
                     f"{best} is the online uplink with the lowest metric" if best
                     else "no uplink online")
            await asyncio.to_thread(self.flush_conntrack)
            if self.mode == "mobike-vpn":
                self.schedule_domain_check()
        self.write_status()

    async def set_route(self, uplink: Uplink, present: bool) -> None:
        try:
            if present:
                index = (await self._ipr.link_lookup(ifname=uplink.interface))[0]
                await self._ipr.route("replace", dst="0.0.0.0/0", gateway=uplink.gateway,
                                      oif=index, priority=uplink.metric)
                log.info("route default via %s dev %s metric %d added", uplink.gateway,
                         uplink.interface, uplink.metric)
            else:
                with contextlib.suppress(Exception):
                    await self._ipr.route("del", dst="0.0.0.0/0", priority=uplink.metric)
                if uplink.routed:
                    log.info("route default dev %s metric %d removed", uplink.interface,
                             uplink.metric)
            uplink.routed = present
        except Exception as exc:  # a vanished interface: the next event retries
            log.warning("route for %s: %s", uplink.name, exc)
            uplink.routed = False

    async def set_source_table(self, uplink: Uplink) -> None:
        """Table SOURCE_TABLES[name]: the uplink's gateway and default; rule "from address"."""
        wanted = (uplink.address, uplink.gateway) if uplink.address and uplink.gateway else None
        if wanted == uplink.sourced:
            return
        table = SOURCE_TABLES.get(uplink.name, 100 + len(SOURCE_TABLES))
        with contextlib.suppress(Exception):
            await self._ipr.rule("del", table=table, priority=table)
        with contextlib.suppress(Exception):
            await self._ipr.flush_routes(table=table)
        uplink.sourced = None
        if wanted is None:
            return
        address, gateway = wanted
        try:
            index = (await self._ipr.link_lookup(ifname=uplink.interface))[0]
            await self._ipr.route("replace", dst=f"{gateway}/32", oif=index, scope=253,
                                  table=table)
            await self._ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index,
                                  table=table)
            await self._ipr.rule("add", src=address, src_len=32, table=table, priority=table)
            uplink.sourced = wanted
            log.info("rule from %s lookup %d (default via %s dev %s)", address, table, gateway,
                     uplink.interface)
        except Exception as exc:  # the next event retries
            log.warning("source table for %s: %s", uplink.name, exc)

    @staticmethod
    def flush_conntrack() -> None:
        """In a worker thread: pyroute2's synchronous sockets want no running event loop."""
        from pyroute2 import Conntrack

        try:
            conntrack = Conntrack()
            try:
                conntrack.flush()
            finally:
                conntrack.close()
            log.info("conntrack flushed")
        except Exception as exc:
            log.warning("conntrack flush failed: %s", exc)

    # -- mobike-vpn: trusted network detection and the VPN --

    def schedule_domain_check(self) -> None:
        if self._domain_task is None or self._domain_task.done():
            self._domain_task = asyncio.create_task(self.domain_loop())

    async def domain_loop(self) -> None:
        """Converge: VPN closed on a trusted uplink, open otherwise (re-checked until stable)."""
        while True:
            active = self.uplinks.get(self.active) if self.active else None
            if active is None or active.address is None:
                return
            checked = (active.name, active.address)
            inside = await self.trusted(active)
            self.vpn.inside = inside
            self.vpn.busy = True
            self.write_status()
            try:
                if inside and self.vpn.up:
                    log.info("domain inside (%s: %s in %s, %s answers directly): VPN down",
                             active.name, active.address, "/".join(self.config["vpn"]["inside_prefixes"]),
                             self.config["vpn"]["trusted_host"])
                    await asyncio.to_thread(self._vpn_terminate)
                    # Flows set up through the SA carry no NAT binding: NAT them anew.
                    await asyncio.to_thread(self.flush_conntrack)
                elif not inside and not self.vpn.up:
                    log.info("domain outside (%s: %s untrusted): VPN up", active.name,
                             active.address)
                    await asyncio.to_thread(self._vpn_initiate)
                    # Flows NATted onto the uplink while the SA came up would stay NATted (and
                    # out of the SA's selectors): let them start over through the SA.
                    await asyncio.to_thread(self.flush_conntrack)
                    await self.nudge_roam()
            except Exception as exc:  # retried at the next change or loop
                log.warning("vpn: %s", exc)
                await asyncio.sleep(1.0)
            finally:
                self.vpn.busy = False
                self.write_status()
            current = self.uplinks.get(self.active) if self.active else None
            if current is not None and (current.name, current.address) == checked and \
                    self.vpn.up != inside:
                return

    async def nudge_roam(self) -> None:
        """The uplink changed while IKE was still coming up (charon ignores route events for
        an SA not yet established): re-announce the active route so that MOBIKE moves it."""
        active = self.uplinks.get(self.active) if self.active else None
        if active is None or not active.address or self.vpn.local == active.address:
            return
        log.info("vpn SA from %s but %s is active (%s): re-announcing its route for MOBIKE",
                 self.vpn.local, active.name, active.address)
        await self.set_route(active, False)
        await self.set_route(active, True)

    async def trusted(self, uplink: Uplink) -> bool:
        assert uplink.address is not None
        vpn = self.config["vpn"]
        address = ipaddress.ip_address(uplink.address)
        if not any(address in ipaddress.ip_network(p) for p in vpn["inside_prefixes"]):
            return False
        process = await asyncio.create_subprocess_exec(
            # From the uplink's own address: its source rule keeps the ping off the VPN.
            "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-I", uplink.address,
            vpn["trusted_host"], stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        return await process.wait() == 0

    def _vici(self) -> Any:
        return vici_session(Path(self.config["vpn"]["vici_socket"]))

    def _vpn_initiate(self) -> None:
        vpn = self.config["vpn"]
        session = self._vici()
        started = time.monotonic()
        for _ in session.initiate({"child": vpn["child"], "ike": vpn["connection"],
                                   "timeout": 30000}):
            pass
        for sa in session.list_sas({"ike": vpn["connection"]}):
            ike = sa[vpn["connection"]]
            vips = [ip.decode() for ip in ike.get("local-vips", [])]
            self.vpn.virtual_ip = vips[0] if vips else None
            self.vpn.local = ike["local-host"].decode()
        if self.vpn.virtual_ip is None:
            raise RuntimeError("the IKE SA came up without a virtual IP")
        self.vpn.up = True
        self.vpn.history.append(f"up {self.vpn.local} vip {self.vpn.virtual_ip}")
        log.info("vpn up in %.2f s: %s from %s, virtual IP %s, LAN %s routed in",
                 time.monotonic() - started, vpn["connection"], self.vpn.local,
                 self.vpn.virtual_ip, self.config["lan_prefix"])

    def _vpn_terminate(self) -> None:
        vpn = self.config["vpn"]
        session = self._vici()
        for _ in session.terminate({"ike": vpn["connection"], "timeout": 5000, "force": "yes"}):
            pass
        self.vpn.up = False
        self.vpn.history.append("down")
        log.info("vpn down")

    # -- status --

    def write_status(self) -> None:
        status = {
            "mode": self.mode,
            "active": self.active,
            "switches": self.switches,
            "uplinks": {u.name: {"address": u.address, "gateway": u.gateway, "ssid": u.ssid,
                                 "state": str(u.tracker.snapshot().state), "routed": u.routed}
                        for u in self.uplinks.values()},
            "vpn": {"up": self.vpn.up, "busy": self.vpn.busy, "virtual_ip": self.vpn.virtual_ip,
                    "local": self.vpn.local, "inside": self.vpn.inside}
            if self.mode == "mobike-vpn" else None,
        }
        temporary = self.status_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status))
        os.replace(temporary, self.status_path)


async def _main(config: dict[str, Any]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    controller = Controller(config)
    await controller.run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m qemu.lab.peers")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    if config["mode"] != args.mode:
        parser.error(f"config is for {config['mode']}, not {args.mode}")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s.%(msecs)03d %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("router").setLevel(logging.INFO)
    return asyncio.run(_main(config))


if __name__ == "__main__":
    sys.exit(main())
