"""DHCP in the lab: dnsmasq servers (DHCP only, one per served subnet), and a one-shot
client (busybox udhcpc) for the router's and lan-host's helpers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import plan
from .shell import Daemon, LabError, run


@dataclass(frozen=True, slots=True)
class Lease:
    address: str
    prefix_length: int
    gateway: str
    server: str
    seconds: float


CLIENT_SCRIPT = """#!/bin/sh
# busybox udhcpc hook: apply the lease to the interface and write it down for the lab.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    echo "$ip $mask ${router%% *} $serverid" > "$LAB_LEASE_FILE" ;;
esac
"""


def request_lease(namespace: str, interface: str, run_dir: Path, timeout: float = 20.0) -> Lease:
    """One DHCP exchange (udhcpc, quits once bound); the address is applied, no route."""
    script = run_dir / "udhcpc.script"
    if not script.exists():
        script.write_text(CLIENT_SCRIPT)
        script.chmod(0o755)
    lease_file = run_dir / f"{interface}.lease"
    lease_file.unlink(missing_ok=True)
    start = time.monotonic()
    tries = max(int(timeout), 1)
    run(["busybox", "udhcpc", "-i", interface, "-f", "-q", "-n",
         "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script)],
        namespace, timeout=timeout + 10, env={"LAB_LEASE_FILE": str(lease_file)})
    if not lease_file.exists():
        raise LabError(f"udhcpc on {interface} returned without writing a lease")
    address, mask, gateway, server = [*lease_file.read_text().split(), "", ""][:4]
    return Lease(address, int(mask), gateway, server, time.monotonic() - start)


def dnsmasq(scope: plan.DhcpScope, namespace: str, run_dir: Path) -> Daemon:
    leases = run_dir / f"dhcp-{scope.name}.leases"
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        "--log-dhcp",
        "--conf-file=/dev/null",
        "--port=0",  # no DNS: only DHCP is the lab's business
        "--user=root",  # the lease file lives in the lab's root-owned run dir
        f"--interface={scope.interface}",
        "--bind-interfaces",
        "--except-interface=lo",
        "--dhcp-authoritative",
        "--no-ping",  # dnsmasq would otherwise probe each new address for 3 s before offering
        f"--dhcp-range={scope.first},{scope.last},255.255.255.0,1h",
        f"--dhcp-option=option:router,{scope.gateway}",
        f"--dhcp-leasefile={leases}",
        f"--pid-file={run_dir / f'dhcp-{scope.name}.pid'}",
    ]
    log = run_dir / f"dhcp-{scope.name}.log"
    return Daemon(f"dhcp-{scope.name}", argv, log, namespace,
                  ready=lambda: "DHCP, IP range" in log.read_text(errors="replace"),
                  ready_timeout=15)
