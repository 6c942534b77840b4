"""One managed driver per ``[[uplink]]``: the only place the daemon's uplinks are built.

Each managed uplink has ``start()`` and ``stop()`` and reports through ``emit``:

- ``wlan``: wpa_supplicant (already running for the interface, as on OpenWrt) through its
  control socket, DHCP over the association (router.uplink.wlan);
- ``3g``: the modem's AT channel and pppd, redialling with backoff (router.uplink.modem/ppp);
- ``ethernet``: DHCP on a wired port (router.uplink.dhcp), carrier from netlink.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
from pathlib import Path

from router.config import UplinkConfig
from router.uplink import netlink
from router.uplink.dhcp import DhcpClient, DhcpLease
from router.uplink.events import Emit, LinkDown, LinkUp
from router.uplink.modem import Modem
from router.uplink.ppp import PppLink
from router.uplink.wlan import WlanUplink, WpaError

log = logging.getLogger(__name__)

RUN_DIR = Path("/run/router/uplinks")


class CellularUplink:
    def __init__(self, config: UplinkConfig, emit: Emit, run_dir: Path) -> None:
        assert config.modem is not None and config.apn is not None
        match = re.fullmatch(r"ppp(\d+)", config.interface)
        if match is None:
            raise ValueError(f"uplink {config.name}: a 3g uplink's interface must be pppN, got {config.interface!r}")
        self.modem = Modem(config.name, config.modem, config.apn, emit)
        self.link = PppLink(config.name, config.modem, config.apn, emit, run_dir=run_dir, unit=int(match.group(1)), modem=self.modem)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # pppd leads its own session, so a crashed daemon leaves it running, holding the tty
        # and ppp0: end it first (SIGTERM lets it say LCP goodbye, so the call ends cleanly).
        for pid in leftover_pppds(self.link.tty, self.link.name):
            log.warning("uplink %s: stopping pppd %d left by an earlier run", self.link.name, pid)
            await stop_process(pid)
        self._task = asyncio.create_task(self.link.run(), name=f"uplink {self.link.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.modem.close()


def leftover_pppds(tty: str, linkname: str, proc: Path = Path("/proc")) -> list[int]:
    """pppd processes of this uplink (same tty and ``linkname``) still running."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"pppd"):
            continue
        words = [word.decode(errors="replace") for word in argv]
        if tty in words and any(a == "linkname" and b == linkname for a, b in itertools.pairwise(words)):
            found.append(int(entry.name))
    return found


async def stop_process(pid: int, grace: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        await asyncio.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class ManagedWlanUplink(WlanUplink):
    """A WLAN uplink that joins by itself: the configured networks (``ssids``; all of
    wpa_supplicant's networks when empty) are enabled at start, so wpa_supplicant associates
    with whichever of them it hears and comes back to one when it reappears. Which uplink
    carries traffic stays the daemon's policy's decision."""

    def __init__(self, config: UplinkConfig, emit: Emit, run_dir: Path) -> None:
        super().__init__(config.name, config.interface, config.wpa_control_dir, emit, run_dir=run_dir)
        self.ssids = config.ssids

    async def start(self) -> None:
        await super().start()
        enabled = []
        for network in await self.networks():
            if self.ssids and network.ssid not in self.ssids:
                continue
            if network.disabled:
                await self.enable_network(network.id)
            enabled.append(network.ssid)
        if not enabled:
            log.warning("wlan %s: wpa_supplicant has no network for %s", self.name, list(self.ssids) or "any SSID")
            return
        log.info("wlan %s: networks enabled: %s", self.name, ", ".join(enabled))
        if self.associated is None:
            with contextlib.suppress(WpaError):
                await self.scan()


class EthernetUplink:
    """DHCP on a wired port; the lease's address is set on the port, nothing else."""

    def __init__(self, config: UplinkConfig, emit: Emit, run_dir: Path) -> None:
        self.name = config.name
        self.ifname = config.interface
        self.emit = emit
        self.dhcp = DhcpClient(config.interface, run_dir, self._lease)
        self._pending: set[asyncio.Task[None]] = set()

    def _lease(self, lease: DhcpLease | None) -> None:
        task = asyncio.create_task(self._apply(lease))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _apply(self, lease: DhcpLease | None) -> None:
        if lease is None:
            self.emit(LinkDown(self.name, "DHCP lease lost"))
            return
        await netlink.set_ipv4_address(self.ifname, lease.address, lease.prefix_length)
        self.emit(LinkUp(self.name, self.ifname, lease.address, lease.gateway, lease.dns, lease.prefix_length))

    async def start(self) -> None:
        await self.dhcp.start()

    async def stop(self) -> None:
        await self.dhcp.stop()
        for task in list(self._pending):
            task.cancel()


def build(config: UplinkConfig, emit: Emit, *, netns: str | None = None, run_dir: Path = RUN_DIR) -> object:
    if netns is not None:
        raise ValueError("uplink drivers run in the daemon's own namespace")
    directory = run_dir / config.name
    if config.kind == "wlan":
        return ManagedWlanUplink(config, emit, directory)
    if config.kind == "3g":
        return CellularUplink(config, emit, directory)
    return EthernetUplink(config, emit, directory)
