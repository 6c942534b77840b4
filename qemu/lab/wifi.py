"""The air: mac80211_hwsim radios, hostapd access points, and the router's wpa_supplicant.

Measured in the guest (DESIGN.md section 5): the station reports signal = AP txpower - 50 dBm;
`hostapd` SIGTERM deauthenticates stations at once, an AP interface going down is silent and
the station notices beacon loss 1.0-1.6 s later.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from . import plan
from .dhcp import Lease, request_lease
from .shell import Daemon, LabError, run, wait_until

HWSIM = "mac80211_hwsim"


def load_radios(count: int) -> list[str]:
    """(Re)load hwsim with `count` fresh radios; return their phy names in radio order."""
    unload_radios()
    run(["modprobe", HWSIM, f"radios={count}"])
    phys = _phys_by_index()
    if len(phys) != count:
        raise LabError(f"asked {HWSIM} for {count} radios, found {phys}")
    return phys


def unload_radios() -> None:
    if Path(f"/sys/module/{HWSIM}").exists():
        run(["modprobe", "-r", HWSIM])


def _phys_by_index() -> list[str]:
    names = [path.name for path in Path("/sys/class/ieee80211").iterdir()]
    return sorted(names, key=lambda name: int(name.removeprefix("phy")))


def _interface_of(phy: str) -> str:
    # `iw dev` lists "phy#N" followed by that phy's interfaces.
    listing = run(["iw", "dev"]).stdout
    index = phy.removeprefix("phy")
    match = re.search(rf"phy#{index}\n\s+Interface (\S+)", listing)
    if match is None:
        raise LabError(f"no interface for {phy} in `iw dev`:\n{listing}")
    return match.group(1)


def place_radio(phy: str, namespace: str, interface: str) -> None:
    """Move a radio into a namespace and give its interface a role name."""
    current = _interface_of(phy)
    run(["iw", "phy", phy, "set", "netns", "name", namespace])
    if current != interface:
        run(["ip", "-n", namespace, "link", "set", current, "name", interface])


def mac_address(namespace: str, interface: str) -> str:
    fields = run(["ip", "-n", namespace, "-br", "link", "show", interface]).stdout.split()
    return fields[2]


def hostapd_config(ap: plan.AccessPoint, control_dir: Path) -> str:
    return "\n".join((
        f"interface={plan.AP_WLAN}",
        f"bridge={plan.AP_BRIDGE}",
        "driver=nl80211",
        f"ctrl_interface={control_dir}",
        f"ssid={ap.ssid}",
        "hw_mode=g",
        f"channel={ap.channel}",
        "wpa=2",
        "wpa_key_mgmt=WPA-PSK",
        "rsn_pairwise=CCMP",
        f"wpa_passphrase={plan.WLAN_PASSPHRASE}",
        "",
    ))


class AccessPointPeer:
    """hostapd for one AP, plus the graceful/silent down and txpower knobs."""

    def __init__(self, ap: plan.AccessPoint, namespace: str, run_dir: Path) -> None:
        self.ap = ap
        self.namespace = namespace
        self.control_dir = run_dir / f"hostapd-{ap.name}"
        config = run_dir / f"hostapd-{ap.name}.conf"
        config.write_text(hostapd_config(ap, self.control_dir))
        log = run_dir / f"hostapd-{ap.name}.log"
        self.daemon = Daemon(f"hostapd-{ap.name}", ["hostapd", str(config)], log, namespace,
                             ready=self._enabled, ready_timeout=30)
        self.bssid = mac_address(namespace, plan.AP_WLAN)

    def _enabled(self) -> bool:
        return "AP-ENABLED" in self.daemon.log_tail(200)

    def launch(self) -> None:
        """Interface up and hostapd started; `daemon.wait_ready()` waits for beacons."""
        run(["ip", "link", "set", plan.AP_WLAN, "up"], self.namespace)
        if not self.daemon.running:
            # Only this run's lines count for readiness.
            self.daemon.log_path.write_text("")
            self.daemon.launch()

    def up(self) -> float:
        """Interface up and hostapd beaconing; return the seconds that took."""
        self.launch()
        return self.daemon.wait_ready()

    def down(self, silent: bool = False) -> None:
        """Graceful: hostapd deauthenticates its stations. Silent: the AP just vanishes."""
        if silent:
            self.daemon.stop(signal.SIGKILL)
            run(["ip", "link", "set", plan.AP_WLAN, "down"], self.namespace)
        else:
            self.daemon.stop(signal.SIGTERM)

    def set_txpower(self, mbm: int) -> None:
        """Transmit power in mBm (100 mBm = 1 dBm); hwsim accepts 0..2000 here."""
        run(["iw", "dev", plan.AP_WLAN, "set", "txpower", "fixed", str(mbm)], self.namespace)


def supplicant_config(control_dir: Path) -> str:
    networks = []
    for ap in plan.ACCESS_POINTS:
        if ap.name == plan.ROGUE:
            continue  # same SSID as corp: the "corp" network block covers it
        networks.append(
            f'network={{\n\tssid="{ap.ssid}"\n\tpsk="{plan.WLAN_PASSPHRASE}"\n'
            f'\tkey_mgmt=WPA-PSK\n\tdisabled=1\n}}\n'
        )
    return f"ctrl_interface={control_dir}\nupdate_config=0\nap_scan=1\n" + "".join(networks)


class Station:
    """The router's wlan0 under a lab-run wpa_supplicant (until the product drives it)."""

    def __init__(self, namespace: str, run_dir: Path) -> None:
        self.namespace = namespace
        self.run_dir = run_dir
        self.interface = plan.ROUTER_WLAN
        self.control_dir = run_dir / "wpa_supplicant"
        config = run_dir / "wpa_supplicant.conf"
        config.write_text(supplicant_config(self.control_dir))
        socket = self.control_dir / self.interface
        self.daemon = Daemon(
            "wpa_supplicant",
            ["wpa_supplicant", "-i", self.interface, "-c", str(config), "-D", "nl80211"],
            run_dir / "wpa_supplicant.log", namespace,
            ready=socket.exists, ready_timeout=20,
        )

    def cli(self, *args: str) -> str:
        """wpa_cli talks over a unix socket path, so it needs no namespace switch."""
        result = run(["wpa_cli", "-p", str(self.control_dir), "-i", self.interface, *args])
        return result.stdout.strip()

    def ensure_running(self) -> None:
        if not self.daemon.running:
            run(["ip", "link", "set", self.interface, "up"], self.namespace)
            self.daemon.start()

    def status(self) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in self.cli("status").splitlines() if "=" in line)
        return dict(pairs)

    def network_id(self, ssid: str) -> str:
        for line in self.cli("list_networks").splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) > 1 and fields[1] == ssid:
                return fields[0]
        raise LabError(f"wpa_supplicant has no network for SSID {ssid!r}")

    def associate(self, ssid: str, bssid: str, timeout: float = 30.0) -> float:
        """Join exactly this BSS; return seconds until the 4-way handshake completed."""
        self.ensure_running()
        network = self.network_id(ssid)
        self._expect_ok(self.cli("set_network", network, "bssid", bssid))
        self._expect_ok(self.cli("select_network", network))

        def joined() -> bool:
            state = self.status()
            return state.get("wpa_state") == "COMPLETED" and state.get("bssid") == bssid

        return wait_until(joined, timeout, f"association with {ssid} ({bssid})", interval=0.1,
                          on_timeout=lambda: f"status {self.status()}\n{self.daemon.log_tail()}")

    def disconnect(self) -> None:
        if self.daemon.running:
            self._expect_ok(self.cli("disconnect"))
        run(["ip", "-4", "addr", "flush", "dev", self.interface], self.namespace)

    def wait_disassociated(self, timeout: float) -> float:
        return wait_until(lambda: self.status().get("wpa_state") != "COMPLETED", timeout,
                          "the station to lose its AP", interval=0.05)

    def signal_dbm(self) -> int:
        poll = dict(line.split("=", 1) for line in self.cli("signal_poll").splitlines()
                    if "=" in line)
        if "RSSI" not in poll:
            raise LabError(f"signal_poll gave no RSSI: {poll}")
        return int(poll["RSSI"])

    def scan_until(self, heard: Callable[[list[tuple[str, str, int]]], bool],
                   timeout: float = 30.0) -> list[tuple[str, str, int]]:
        """Scan until `heard(results)` holds; results are (bssid, ssid, signal dBm).

        Scans go through wpa_supplicant, which owns the radio (a blocking `iw scan` beside it
        can wait forever); a new request goes out every few seconds until the BSSs show up.
        """
        self.ensure_running()
        results: list[tuple[str, str, int]] = []
        last_request = -10.0

        def done() -> bool:
            nonlocal results, last_request
            if time.monotonic() - last_request > 4.0 and self.cli("scan") == "OK":
                last_request = time.monotonic()
            results = self.scan_results()
            return heard(results)

        wait_until(done, timeout, "the expected BSSs in a scan", interval=0.3,
                   on_timeout=lambda: f"heard {results}")
        return results

    def scan_results(self) -> list[tuple[str, str, int]]:
        rows = []
        for line in self.cli("scan_results").splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) >= 5:
                rows.append((fields[0], fields[4], int(fields[2])))
        return rows

    def dhcp(self, timeout: float = 20.0) -> Lease:
        """One DHCP exchange on wlan0; the address is applied, no route."""
        return request_lease(self.namespace, self.interface, self.run_dir, timeout)

    @staticmethod
    def _expect_ok(answer: str) -> None:
        if answer != "OK":
            raise LabError(f"wpa_cli answered {answer!r}")

