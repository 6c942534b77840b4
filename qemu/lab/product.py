"""The product in the lab: config files for the home agent and the router, and their daemons.

    with World(static_lan=False) as world:
        product = Product(world)                 # writes configs and 0600 key files
        product.start_home_agent()               # python3 -m router.ha in outer-ha
        product.start_router()                   # python3 -m router in the router namespace
        product.wait_router_log("inner: registered")
        product.stop_router(signal.SIGKILL); product.start_router()   # crash and restart

Dual system (issue 5, `DualProduct`): the inner home agent runs in inner-ha (10.10.0.1, home
network 10.10.0.0/24, S = 10.10.0.50 with the mobile network), the outer one in outer-ha
(T = 192.0.2.50, no mobile network), the router's own charon runs with the product's
strongswan.conf and swanctl `corp` connection (local address T), and the router config has
[inner] (inside prefixes 10.0.0.0/8), [outer] (home network = the DMZ / ext WLAN) and [vpn].
The corp router learns 10.1.1.0/24 via the inner home agent (the home network's routing,
which RFC 5177 leaves to the operator).

Single-system design for the lab (issue 4): the home agent is the *outer* HA host
(192.0.2.1, home network = the DMZ, home interface = outer-ha's eth0), because the inner HA
is unreachable from outside without the VPN. The router's [inner] system points at it, with
home address 192.0.2.50 and the mobile network 10.1.1.0/24. Uplinks: wlan0 (the lab's
wpa_supplicant, SSID "hotspot" only) and ppp0 (the lab's emulated modem).

The daemons are `shell.Daemon`s (own session: a stop ends their children too, so a SIGKILL
of the router also takes its pppd, udhcpc and dnsmasq, like a crashed process group).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import plan, vpn
from .shell import Daemon, LabError, run, wait_until
from .world import World

HOME_ADDRESS = "192.0.2.50"
HOME_NETWORK = "192.0.2.0/24"
HOME_INTERFACE = "eth0"  # outer-ha's device on the DMZ
SPI = 300
KEY = "00112233445566778899aabbccddeeff"
WRONG_KEY = "ffeeddccbbaa99887766554433221100"
SOURCE = Path("/src")  # the repository inside the guest


INNER_HOME_ADDRESS = "10.10.0.50"
INNER_HOME_NETWORK = "10.10.0.0/24"
INNER_SPI = 256
OUTER_SPI = 257
INNER_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OUTER_KEY = "a0b1c2d3e4f5061728394a5b6c7d8e9f"
INSIDE_PREFIXES = ("10.0.0.0/8",)


@dataclass(frozen=True, slots=True)
class RouterOptions:
    """What a test may vary in the router's config."""

    key: str = KEY
    lifetime: int = 30  # short: renewals (and recovery after an HA restart) come quickly
    wlan_ssids: tuple[str, ...] = ("hotspot",)
    outer_lifetime: int = 60
    wlan_min_signal_dbm: int | None = None  # the wlan uplink's min_signal_dbm (lab: -50..-30 dBm)


def write_secret(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")
    path.chmod(0o600)
    return path


def home_agent_config(key_file: Path, max_lifetime: int = 600, *, address: str = plan.OUTER_HA_ADDRESS,
                      home_network: str = HOME_NETWORK, home_address: str = HOME_ADDRESS,
                      spi: int = SPI, mobile_networks: tuple[str, ...] = (plan.LAN_PREFIX,)) -> str:
    networks = ", ".join(f'"{n}"' for n in mobile_networks)
    return f"""[home_agent]
address = "{address}"
home_network = "{home_network}"
home_interface = "{HOME_INTERFACE}"
max_lifetime = {max_lifetime}
# RFC 3519 (behind the operator's NAT): the smallest keepalive interval the RFC allows, so
# the tests see keepalives within seconds of idling.
udp_tunnelling = true
udp_keepalive_interval = 10

[[mobile_node]]
home_address = "{home_address}"
spi = {spi}
key_file = "{key_file}"
algorithm = "hmac-md5"
mobile_networks = [{networks}]
"""


def router_config(run_dir: Path, key_file: Path, wpa_control_dir: Path, modem: Path,
                  options: RouterOptions, dual: str = "") -> str:
    """`dual`: the [inner]/[outer]/[vpn] sections of the dual system (replaces the single
    system's [inner])."""
    ssids = ", ".join(f'"{s}"' for s in options.wlan_ssids)
    systems = dual or f"""[inner]
home_agent = "{plan.OUTER_HA_ADDRESS}"
home_address = "{HOME_ADDRESS}"
spi = {SPI}
key_file = "{key_file}"
algorithm = "hmac-md5"
lifetime = {options.lifetime}
"""
    return f"""[router]
lan_interface = "{plan.ROUTER_LAN_BRIDGE}"
lan_address = "{plan.ROUTER_LAN_ADDRESS}/24"
mobile_networks = ["{plan.LAN_PREFIX}"]
history_db = "{run_dir / 'history.sqlite'}"
state_dir = "{run_dir / 'state'}"
control_socket = "{run_dir / 'control.sock'}"

{systems}
[[uplink]]
name = "wlan"
interface = "{plan.ROUTER_WLAN}"
kind = "wlan"
priority = 10
metered = false
ssids = [{ssids}]
wpa_control_dir = "{wpa_control_dir}"
{"" if options.wlan_min_signal_dbm is None else f"min_signal_dbm = {options.wlan_min_signal_dbm}"}

[[uplink]]
name = "cell"
interface = "ppp0"
kind = "3g"
modem = "{modem}"
apn = "{plan.CELL_APN}"
priority = 50
metered = true

[web]
listen = "{plan.ROUTER_LAN_ADDRESS}:80"
"""


def ensure_tun_device() -> None:
    """The RFC 3519 data path opens /dev/net/tun, which appears when tun loads (no udev in
    the guest; OpenWrt's procd creates it)."""
    run(["modprobe", "tun"], check=False)
    node = Path("/dev/net/tun")
    if not node.exists():
        node.parent.mkdir(exist_ok=True)
        run(["mknod", str(node), "c", "10", "200"])


class Product:
    """Config files and daemons of the product in one lab world."""

    def __init__(self, world: World, options: RouterOptions | None = None) -> None:
        self.world = world
        ensure_tun_device()
        self.run_dir = world.run_dir / "product"
        self.ha_dir = self.run_dir / "ha"
        self.router_dir = self.run_dir / "router"
        for directory in (self.ha_dir, self.router_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        ha_key = write_secret(self.ha_dir / "mn.key", f"hex:{KEY}")
        self.ha_config = self.ha_dir / "ha.toml"
        self.ha_config.write_text(home_agent_config(ha_key))
        self.router_config = self.router_dir / "router.toml"
        self.configure_router(options or RouterOptions())
        env = {"PYTHONPATH": str(SOURCE), "PYTHONUNBUFFERED": "1"}
        self.home_agent = Daemon(
            "router.ha", ["python3", "-m", "router.ha", "--config", str(self.ha_config)],
            self.ha_dir / "ha.log", world.ns("outer-ha"),
            ready=lambda: self._log_has(self.home_agent, "listening on udp"),
            ready_timeout=60, env=env)
        self.router = Daemon(
            "router", ["python3", "-m", "router", "--config", str(self.router_config)],
            self.router_dir / "router.log", world.ns("router"),
            ready=lambda: self._log_has(self.router, "router running"),
            ready_timeout=90, env=env)
        # Where each daemon's current run starts in its log (logs are appended to).
        self._marks: dict[str, int] = {}

    def configure_router(self, options: RouterOptions) -> None:
        """(Re)write the router's config; takes effect at the next start."""
        key = write_secret(self.router_dir / "inner.key", f"hex:{options.key}")
        assert self.world.cellular is not None, "the product needs the lab's 3G line"
        self.router_config.write_text(router_config(
            self.router_dir, key, self.world.router.station.control_dir,
            self.world.cellular.router_tty, options))

    # -- lifecycle ----------------------------------------------------------------------------

    def _start(self, daemon: Daemon) -> float:
        self._marks[daemon.name] = daemon.log_path.stat().st_size if daemon.log_path.exists() else 0
        return daemon.start()

    def start_home_agent(self) -> float:
        return self._start(self.home_agent)

    def stop_home_agent(self, signum: int = signal.SIGTERM) -> None:
        self.home_agent.stop(signum)

    def restart_home_agent(self, signum: int = signal.SIGKILL) -> float:
        """Kill (by default without any cleanup) and start again: the bindings are lost."""
        self.home_agent.stop(signum)
        return self.start_home_agent()

    def start_router(self) -> float:
        # wpa_supplicant runs for the interface before the router, as on OpenWrt.
        self.world.router.station.ensure_running()
        return self._start(self.router)

    def stop_router(self, signum: int = signal.SIGTERM) -> None:
        self.router.stop(signum, timeout=20)

    def restart_router(self, signum: int = signal.SIGKILL) -> float:
        self.stop_router(signum)
        return self.start_router()

    def stop(self) -> None:
        self.stop_router()
        self.stop_home_agent()

    # -- the daemon's own view ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The router's status snapshot over its control socket (router/web/SCHEMA.md)."""
        from router.cli import request

        answer = request(str(self.router_dir / "control.sock"), {"cmd": "status"}, timeout_s=10)
        if not answer.get("ok"):
            raise LabError(f"router status: {answer.get('error')}")
        status: dict[str, Any] = answer["status"]
        return status

    # -- logs ---------------------------------------------------------------------------------

    def log(self, daemon: Daemon, whole: bool = False) -> str:
        """The daemon's log: this run's part, or everything since the world began."""
        if not daemon.log_path.exists():
            return ""
        text = daemon.log_path.read_text(errors="replace")
        return text if whole else text[self._marks.get(daemon.name, 0):]

    def router_log(self, whole: bool = False) -> str:
        return self.log(self.router, whole)

    def ha_log(self, whole: bool = False) -> str:
        return self.log(self.home_agent, whole)

    def _log_has(self, daemon: Daemon, text: str) -> bool:
        return text in self.log(daemon)

    def wait_log(self, daemon: Daemon, text: str, timeout: float, count: int = 1) -> float:
        """Wait until `text` appears `count` times in this run's log; seconds waited."""
        def seen() -> bool:
            if not daemon.running:
                raise LabError(f"{daemon.name} died:\n{daemon.log_tail(40)}")
            return self.log(daemon).count(text) >= count
        return wait_until(seen, timeout, f"{text!r} x{count} in the {daemon.name} log",
                          interval=0.2, on_timeout=lambda: daemon.log_tail(40))

    def wait_router_log(self, text: str, timeout: float = 60.0, count: int = 1) -> float:
        return self.wait_log(self.router, text, timeout, count)

    def wait_ha_log(self, text: str, timeout: float = 60.0, count: int = 1) -> float:
        return self.wait_log(self.home_agent, text, timeout, count)


def dual_systems(inner_key: Path, outer_key: Path, vici_socket: Path, options: RouterOptions) -> str:
    """The dual system's [inner], [outer] and [vpn] sections for the lab."""
    inside = ", ".join(f'"{p}"' for p in INSIDE_PREFIXES)
    return f"""[inner]
home_agent = "{plan.INNER_HA_ADDRESS}"
home_address = "{INNER_HOME_ADDRESS}"
spi = {INNER_SPI}
key_file = "{inner_key}"
algorithm = "hmac-md5"
lifetime = {options.lifetime}
inside_prefixes = [{inside}]

[outer]
home_agent = "{plan.OUTER_HA_ADDRESS}"
home_address = "{HOME_ADDRESS}"
home_network = "{HOME_NETWORK}"
spi = {OUTER_SPI}
key_file = "{outer_key}"
algorithm = "hmac-md5"
lifetime = {options.outer_lifetime}

[vpn]
vici_socket = "{vici_socket}"
connection = "{vpn.PRODUCT_CONNECTION}"
gateway = "{plan.VPN_GATEWAY_ADDRESS}"
"""


class DualProduct(Product):
    """The dual system in the lab: both home agents, the router's charon and the router.

        product = DualProduct(world)
        product.start()        # inner HA, outer HA, router charon, router daemon
    """

    def __init__(self, world: World, options: RouterOptions | None = None) -> None:
        self.charon = vpn.product_router_client(world.ns("router"), world.router.run_dir)
        super().__init__(world, options or RouterOptions(wlan_ssids=("corp", "hotspot", "ext")))
        env = {"PYTHONPATH": str(SOURCE), "PYTHONUNBUFFERED": "1"}
        # The outer home agent serves T only (no mobile network: the LAN rides the inner system).
        outer_key = write_secret(self.ha_dir / "outer.key", f"hex:{OUTER_KEY}")
        self.ha_config.write_text(home_agent_config(outer_key, spi=OUTER_SPI, mobile_networks=()))
        self.inner_ha_dir = self.run_dir / "inner-ha"
        self.inner_ha_dir.mkdir(parents=True, exist_ok=True)
        self.inner_ha_dir.chmod(0o700)
        inner_key = write_secret(self.inner_ha_dir / "inner.key", f"hex:{INNER_KEY}")
        self.inner_ha_config = self.inner_ha_dir / "ha.toml"
        self.inner_ha_config.write_text(home_agent_config(
            inner_key, address=plan.INNER_HA_ADDRESS, home_network=INNER_HOME_NETWORK,
            home_address=INNER_HOME_ADDRESS, spi=INNER_SPI))
        self.inner_home_agent = Daemon(
            "router.ha-inner", ["python3", "-m", "router.ha", "--config", str(self.inner_ha_config)],
            self.inner_ha_dir / "ha.log", world.ns("inner-ha"),
            ready=lambda: self._log_has(self.inner_home_agent, "listening on udp"),
            ready_timeout=60, env=env)

    def configure_router(self, options: RouterOptions) -> None:
        inner_key = write_secret(self.router_dir / "inner.key", f"hex:{INNER_KEY}")
        outer_key = write_secret(self.router_dir / "outer.key", f"hex:{OUTER_KEY}")
        assert self.world.cellular is not None, "the product needs the lab's 3G line"
        self.router_config.write_text(router_config(
            self.router_dir, inner_key, self.world.router.station.control_dir,
            self.world.cellular.router_tty, options,
            dual=dual_systems(inner_key, outer_key, self.charon.vici_socket, options)))

    def start(self) -> dict[str, float]:
        """Everything, in the order an OpenWrt boot would start it; seconds per part."""
        # The secure domain routes the mobile network to its home agent (lab routing).
        run(["ip", "route", "replace", plan.LAN_PREFIX, "via", plan.INNER_HA_ADDRESS], self.world.ns("corp"))
        timings = {
            "inner home agent": self.start_inner_home_agent(),
            "outer home agent": self.start_home_agent(),
            "router charon": self.start_charon(),
        }
        timings["router daemon"] = self.start_router()
        return timings

    def start_inner_home_agent(self) -> float:
        return self._start(self.inner_home_agent)

    def stop_inner_home_agent(self, signum: int = signal.SIGTERM) -> None:
        self.inner_home_agent.stop(signum)

    def restart_inner_home_agent(self, signum: int = signal.SIGKILL) -> float:
        self.inner_home_agent.stop(signum)
        return self.start_inner_home_agent()

    def start_charon(self) -> float:
        seconds = self.charon.start()
        vpn.load_product_router_config(self.charon)
        return seconds

    def stop(self) -> None:
        self.stop_router()
        self.charon.daemon.stop()
        self.stop_home_agent()
        self.stop_inner_home_agent()

    def inner_ha_log(self, whole: bool = False) -> str:
        return self.log(self.inner_home_agent, whole)

    def wait_inner_ha_log(self, text: str, timeout: float = 60.0, count: int = 1) -> float:
        return self.wait_log(self.inner_home_agent, text, timeout, count)
