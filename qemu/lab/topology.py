"""The wired part of the world: namespaces, veth links, bridges, addresses, routes, firewalls.

Everything here also works on the host kernel (veth, bridge, nftables), so the namespace tests
under tests/netns exercise it without QEMU.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable

from . import plan
from .shell import ip_batch, run, wait_until

# No cleartext between outside and inside through the VPN gateway: only packets that arrived
# in ESP may go in, and only packets that leave in ESP may go out (`rt ipsec` is the route
# after the xfrm lookup, which the forward path does before this hook).
VPN_GATEWAY_FIREWALL = """
table inet lab_vpn_gw {
    chain forward_filter {
        type filter hook forward priority filter; policy drop;
        iifname "eth0" oifname "in0" meta ipsec exists accept
        iifname "in0" oifname "eth0" rt ipsec exists accept
    }
}
"""

ROGUE_NAT = """
table ip lab_rogue {
    chain postrouting_nat {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "up0" masquerade
    }
}
"""

CELL_NAT = f"""
table ip lab_cell_nat {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "up0" ip saddr {plan.CELL_PREFIX} masquerade
    }}
}}
"""


class Namespaces:
    """Maps the plan's host names to namespace names (a prefix keeps host tests apart)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def __call__(self, host: str) -> str:
        if host not in plan.HOSTS:
            raise KeyError(f"no host {host!r} in the lab plan")
        return f"{self.prefix}{host}"

    def all(self) -> list[str]:
        return [self(host) for host in plan.HOSTS]


def existing_namespaces() -> set[str]:
    listing = run(["ip", "-o", "netns", "list"]).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def remove_namespaces(names: Iterable[str]) -> None:
    """Kill whatever still runs in our namespaces (leftovers of a crashed run), then delete."""
    present = existing_namespaces()
    for name in names:
        if name not in present:
            continue
        for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", name])


def create_namespaces(ns: Namespaces) -> None:
    """All namespaces and their sysctls in two processes: forks are dear under TCG."""
    ip_batch(None, [f"netns add {ns(host)}" for host in plan.HOSTS])
    script = []
    for host in plan.HOSTS:
        forwarding = "1" if host in plan.FORWARDING_HOSTS else "0"
        # Asymmetric paths (tunnels, VPN) are the point of this lab: no reverse-path filter.
        # nsenter --net is enough for /proc/sys/net and cheaper than `ip netns exec`.
        # IPv4 only (as the product): no IPv6 chatter in the captures the tests read.
        script.append(
            f"nsenter --net=/run/netns/{ns(host)} sysctl -qw net.ipv4.ip_forward={forwarding}"
            " net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0"
            " net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
        )
    run(["sh", "-ec", "\n".join(script)])


# The LAN's addresses belong to the product (its dnsmasq serves lan-host) once it runs; until
# then the lab sets them statically, unless told not to.
STATIC_LAN = {("router", plan.ROUTER_LAN_BRIDGE), ("lan-host", "eth0")}


def build_wired(ns: Namespaces, static_lan: bool = True) -> None:
    """Links, bridges, addresses and routes of `plan`, one `ip -batch` per namespace."""

    def addresses(host: str, device: str, planned: tuple[str, ...]) -> tuple[str, ...]:
        return planned if static_lan or (host, device) not in STATIC_LAN else ()

    # Temporary names first: the kernel checks a new veth's name against the creating
    # namespace too, and the guest's own eth0 lives there.
    ip_batch(None, [
        f"link add lab{index}a netns {ns(link.a.host)} type veth "
        f"peer name lab{index}b netns {ns(link.b.host)}"
        for index, link in enumerate(plan.LINKS)
    ])
    per_host: dict[str, list[str]] = {host: ["link set lo up"] for host in plan.HOSTS}
    for index, link in enumerate(plan.LINKS):
        per_host[link.a.host].append(f"link set lab{index}a name {link.a.device}")
        per_host[link.b.host].append(f"link set lab{index}b name {link.b.device}")
    for bridge in plan.BRIDGES:
        commands = per_host[bridge.host]
        # Forward at once: a bridge that waits for STP would eat the first DHCP exchange.
        commands.append(f"link add name {bridge.name} type bridge forward_delay 0 stp_state 0")
        commands += [f"addr add {address} dev {bridge.name}"
                     for address in addresses(bridge.host, bridge.name, bridge.addresses)]
        commands.append(f"link set {bridge.name} up")
    for link in plan.LINKS:
        for end in (link.a, link.b):
            commands = per_host[end.host]
            if end.bridge:
                commands.append(f"link set {end.device} master {end.bridge}")
            commands += [f"addr add {address} dev {end.device}"
                         for address in addresses(end.host, end.device, end.addresses)]
            commands.append(f"link set {end.device} up")
    for route in plan.ROUTES:
        if static_lan or route.host != "lan-host":
            per_host[route.host].append(f"route add {route.destination} via {route.via}")
    for host, commands in per_host.items():
        ip_batch(ns(host), commands)


def install_firewalls(ns: Namespaces) -> None:
    nft(ns("vpn-gw"), VPN_GATEWAY_FIREWALL)
    nft(ns("ap-rogue"), ROGUE_NAT)


def nft(namespace: str, ruleset: str) -> None:
    run(["nft", "-f", "-"], namespace, stdin=ruleset)


def set_cell_nat(ns: Namespaces, enabled: bool) -> None:
    """The operator's carrier-grade NAT knob: subscribers leave as the cell's transit address."""
    run(["nft", "delete", "table", "ip", "lab_cell_nat"], ns("cell"), check=False)
    if enabled:
        nft(ns("cell"), CELL_NAT)


def wait_for_links(ping: Callable[[str, str], bool], static_lan: bool = True,
                   timeout: float = 10.0) -> None:
    """Fail loudly if the wired core cannot carry a packet between its neighbours.

    New veths and bridge ports reach "forwarding" only after the kernel's link watch runs
    (up to a second later), so each pair gets a few tries.
    """
    pairs = [("cell", plan.INTERNET_CORE_ADDRESS), ("outer-ha", plan.VPN_GATEWAY_ADDRESS),
             ("vpn-gw", plan.CORRESPONDENT_ADDRESS), ("cn", plan.INNER_HA_ADDRESS)]
    if static_lan:
        pairs.append(("lan-host", plan.ROUTER_LAN_ADDRESS))
    for host, destination in pairs:
        wait_until(lambda host=host, destination=destination: ping(host, destination),
                   timeout, f"wired core: {host} to reach {destination}", interval=0)
