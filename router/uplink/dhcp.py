"""DHCP on a WLAN uplink: busybox udhcpc as a supervised subprocess.

udhcpc (``-f``: foreground, renews by itself) runs our hook script at every state change; the
hook only prints one marked line with udhcpc's environment to its stdout, which is udhcpc's,
which is a pipe we read. The lease is applied to the interface by us (address only, through
rtnetlink; routes are the daemon's business) and reported as :class:`DhcpLease`; a lost lease
(``deconfig``) as ``None``. No files, no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARK = "@@router-dhcp"
HOOK_SCRIPT = f"""#!/bin/sh
# udhcpc hook: report, change nothing (the router applies the lease itself).
echo "{MARK} $1 ip=$ip mask=$mask router=$router dns=$dns serverid=$serverid lease=$lease"
exit 0
"""


class DhcpParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DhcpLease:
    address: str
    prefix_length: int
    gateway: str | None
    dns: tuple[str, ...]
    server: str | None
    lease_seconds: int | None


@dataclass(frozen=True, slots=True)
class HookReport:
    action: str  # deconfig, bound, renew, leasefail, nak
    lease: DhcpLease | None


def parse_hook_line(line: str) -> HookReport | None:
    """One stdout line of udhcpc; None unless it is our hook's report."""
    if not line.startswith(MARK + " "):
        return None
    words = line[len(MARK) + 1 :].split(" ")
    action, values = words[0], {}
    key = None
    for word in words[1:]:
        if "=" in word and word.split("=", 1)[0].isidentifier():
            key, value = word.split("=", 1)
            values[key] = value
        elif key is not None and word:  # dns and router may be space-separated lists
            values[key] = f"{values[key]} {word}".strip()
    if action not in ("bound", "renew"):
        return HookReport(action, None)
    try:
        address = str(ipaddress.IPv4Address(values.get("ip", "")))
        mask = values.get("mask", "32")
        prefix = int(mask) if mask.isdigit() else \
            ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        if not 0 <= prefix <= 32:
            raise ValueError(mask)
        routers = values.get("router", "").split()
        dns = tuple(str(ipaddress.IPv4Address(d)) for d in values.get("dns", "").split())
        server = values.get("serverid") or None
        lease = values.get("lease", "")
        return HookReport(action, DhcpLease(
            address, prefix, str(ipaddress.IPv4Address(routers[0])) if routers else None, dns,
            str(ipaddress.IPv4Address(server)) if server else None,
            int(lease) if lease.isdigit() else None))
    except ValueError as error:
        raise DhcpParseError(f"unreadable udhcpc report {line!r}: {error}") from error


class DhcpClient:
    """udhcpc on one interface; ``on_lease(lease | None)`` on every change."""

    def __init__(self, ifname: str, run_dir: Path,
                 on_lease: Callable[[DhcpLease | None], None],
                 argv0: tuple[str, ...] = ("busybox", "udhcpc")) -> None:
        self.ifname = ifname
        self.on_lease = on_lease
        run_dir.mkdir(parents=True, exist_ok=True)
        self.hook = run_dir / f"udhcpc-{ifname}.hook"
        self.hook.write_text(HOOK_SCRIPT)
        self.hook.chmod(0o755)
        self.argv = [*argv0, "-i", ifname, "-f", "-R", "-s", str(self.hook),
                     "-t", "4", "-T", "1", "-A", "2"]
        self.lease: DhcpLease | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        if self.running:
            return
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self._task = asyncio.create_task(self._read(self._process), name=f"udhcpc {self.ifname}")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while raw := await process.stdout.readline():
            line = raw.decode(errors="replace").rstrip()
            try:
                report = parse_hook_line(line)
            except DhcpParseError as error:
                log.warning("dhcp %s: %s", self.ifname, error)
                continue
            if report is None:
                log.debug("udhcpc %s: %s", self.ifname, line)
                continue
            if report.action in ("bound", "renew") and report.lease is not None:
                if report.lease != self.lease:
                    self.lease = report.lease
                    self.on_lease(report.lease)
            elif report.action == "deconfig" and self.lease is not None:
                self.lease = None
                self.on_lease(None)
        await process.wait()

    async def stop(self) -> None:
        process, task = self._process, self._task
        self._process = self._task = None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)  # -R: release the lease
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.lease = None
