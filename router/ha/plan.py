"""What the kernel must hold for the home agent's current bindings (pure).

Per binding (RFC 5944 §4.2.3 / §4.6, RFC 3024, RFC 5177 §6.5):

- an IP-in-IP tunnel ``mip-<hex home address>`` from the home agent's address to the care-of
  address (RFC 2003); the kernel decapsulates reverse-tunnelled packets arriving on it too
  (RFC 3024 §4.1: the home agent accepts packets whose outer source is the care-of address);
- host route for the home address and one route per acknowledged mobile network into it;
- a proxy-ARP entry for the home address on the home network interface, so hosts there send
  packets for the away node to us (§4.6); the gratuitous ARP that corrects their caches is
  sent by the daemon when a binding appears.

UDP-tunnelled bindings (RFC 3519): the kernel has no encapsulation with the RFC 3519 tunnel
header, so the daemon's user-space data path (router.udptunnel, one TUN ``mip3519`` for all of
them) carries them. Here they get no Link, only the host route and the acknowledged mobile
networks into that TUN, plus the proxy-ARP entry; the TUN picks the peer per packet by inner
destination. The TUN's name lies outside the ``mip-`` prefix on purpose: the process holding its
descriptor owns it, not the adapter (whose reconcile would delete an unplanned ``mip-`` link).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network

from router.mip.homeagent import Binding
from router.net.plan import Link, LinkKind, Plan, ProxyArp, Route, TunnelEnds

LINK_PREFIX = "mip-"
UDP_TUNNEL_DEVICE = "mip3519"  # router.udptunnel.tun.DEFAULT_TUN_NAME


def tunnel_name(home_address: IPv4Address) -> str:
    """``mip-0a0a0032`` for 10.10.0.50: unique per home address, 12 characters (< IFNAMSIZ)."""
    return f"{LINK_PREFIX}{int(home_address):08x}"


def slot_name(home_address: IPv4Address, slot: int) -> str:
    """The binding's tunnel in slot 0 (``mip-<hex>``) or 1 (``mip-<hex>p``)."""
    return tunnel_name(home_address) if slot % 2 == 0 else previous_tunnel_name(home_address)


def binding_plan(
    binding: Binding,
    home_agent: IPv4Address,
    home_interface: str | None,
    udp_device: str | None = UDP_TUNNEL_DEVICE,
    slot: int = 0,
) -> Plan:
    """``udp_device``: the TUN of the RFC 3519 data path (None: there is none, and a UDP
    binding gets nothing, which the daemon avoids by not assenting to UDP tunnelling).
    ``slot``: which of the node's two tunnel names carries the binding (see home_agent_plan)."""
    items: list[Link | Route | ProxyArp]
    if binding.udp_tunnel:
        if udp_device is None:
            return Plan()
        name = udp_device
        items = [Route(IPv4Network(binding.home_address), dev=name)]
    else:
        name = slot_name(binding.home_address, slot)
        items = [
            Link(name, LinkKind.IPIP, tunnel=TunnelEnds(local=home_agent, remote=binding.care_of_address)),
            Route(IPv4Network(binding.home_address), dev=name),
        ]
    items += [Route(network, dev=name) for network in binding.mobile_networks]
    if home_interface is not None:
        items.append(ProxyArp(home_interface, binding.home_address))
    return Plan.of(*items)


def previous_tunnel_name(home_address: IPv4Address) -> str:
    """``mip-0a0a0032p``: the decapsulation-only tunnel from a moved node's old care-of address."""
    return f"{tunnel_name(home_address)}p"


def home_agent_plan(
    bindings: Iterable[Binding],
    home_agent: IPv4Address,
    home_interface: str | None,
    previous: Mapping[IPv4Address, IPv4Address] | None = None,
    udp_device: str | None = UDP_TUNNEL_DEVICE,
    slots: Mapping[IPv4Address, int] | None = None,
) -> Plan:
    """``previous``: home address -> the care-of address it just moved away from. For a short
    grace period the kernel keeps accepting (decapsulating) reverse-tunnelled packets from it,
    so LAN packets the router still sends on the old path until it has the Reply are not
    lost (make-before-break for the upstream direction). No route points into it.

    ``slots``: home address -> which of its two tunnel names carries the binding (0 when
    absent). The daemon flips it on each move, so the tunnel from the old care-of address
    keeps its name and its ends (it becomes the previous one) while the new care-of address
    gets the other name: a move is a tunnel added and the routes replaced into it, with no
    moment in which either care-of address has no tunnel."""
    plan = Plan()
    for binding in bindings:
        slot = (slots or {}).get(binding.home_address, 0)
        plan = plan | binding_plan(binding, home_agent, home_interface, udp_device, slot)
        old = (previous or {}).get(binding.home_address)
        if old is not None and old != binding.care_of_address and not binding.udp_tunnel:
            plan = plan | Plan.of(
                Link(slot_name(binding.home_address, slot + 1), LinkKind.IPIP, tunnel=TunnelEnds(local=home_agent, remote=old))
            )
    return plan


# Forwarding on; reverse-path filtering off on the tunnels' receive side is not needed because
# the routes for the home address and mobile networks point back into the same tunnel; but the
# 'all' value is max()'d with per-device values, so make it loose rather than strict.
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
}
