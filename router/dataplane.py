"""The router's kernel data plane as a pure function of what the daemon knows.

Theory of operation
-------------------
No user packet passes through Python: LAN traffic is steered by policy routing into the
kernel's IP-in-IP tunnels (RFC 2003), and ESP is the kernel's xfrm, programmed by strongSwan.
This module only computes the `Plan` (links, routes, rules) for the current situation; the
``KernelAdapter`` makes the kernel match it, changing only what differs.

Tables and rules (priorities inside ``ROUTER_OWNERSHIP``; strongSwan's own table 220 is not
used: the router's charon runs with ``install_routes = no`` so nothing routes around us):

====  ===============================  =====================================================
rule  selector                         table: contents
====  ===============================  =====================================================
1000  from <mobile network>            100 LAN: mobile networks on the LAN bridge, default
                                       into ``mip-inner``, unreachable default (fail closed)
1001  from S (inner home address)      100 (the router's own traffic rides the inner system)
1002  from V (VPN virtual IP)          102: default into ``mip-outer`` (or the active
                                       uplink at the outer home network); the packet is
                                       ESP-encapsulated by xfrm on the way (V -> S_HA)
1003  from T (outer home address)      101: default into ``mip-outer`` (ESP and IKE leave
                                       reverse-tunnelled to the outer home agent), or via the
                                       uplink when at the outer home network
1010+ from X_i (uplink i's address)    110+i: default via uplink i's gateway / device
====  ===============================  =====================================================

So the three situations of DESIGN.md section 2 fall out of which tunnels exist:

- inside: ``mip-inner`` = X -> S_HA;
- outside: ``mip-outer`` = X -> T_HA, VPN from T, ``mip-inner`` = V -> S_HA;
- outer home: no ``mip-outer``, VPN from T over the uplink, ``mip-inner`` = V -> S_HA.

Behind a NAT (RFC 3519 UDP tunnelling assented by the home agent) the kernel cannot
encapsulate: the LAN table's default then goes into the TUN ``mip3519`` of the user-space data
path (router.udptunnel) instead of ``mip-inner``, which does not exist meanwhile. The TUN is
not ours to plan (the daemon's descriptor owns it; hence no ``mip-`` prefix); only routes name it.

The LAN table always ends in an ``unreachable`` default, so while the inner tunnel is being
moved or is absent, LAN packets are dropped with an ICMP error instead of leaking onto an
uplink in clear (DESIGN.md section 8). The main table holds no default route at all (uplink
drivers run with "no default route"), so nothing unmatched can escape either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from router.net.plan import (
    Address,
    Link,
    LinkKind,
    Ownership,
    Plan,
    Route,
    RouteType,
    Rule,
    TunnelEnds,
)

ROUTER_OWNERSHIP = Ownership(link_prefix="mip-", protocol=201, tables=range(100, 200), rule_priorities=range(1000, 1100))

INNER_TUNNEL = "mip-inner"
OUTER_TUNNEL = "mip-outer"
PENDING_TUNNEL = "mip-next"
HOME_DEVICE = "mip-home"  # dummy holding S and T (and V, installed by charon)
UDP_TUNNEL_DEVICE = "mip3519"  # RFC 3519 TUN (router.udptunnel.tun.DEFAULT_TUN_NAME)

LAN_TABLE = 100
OUTER_TABLE = 101
VPN_TABLE = 102
UPLINK_TABLE_BASE = 110

RULE_LAN = 1000
RULE_INNER_HOME = 1001
RULE_VPN = 1002
RULE_OUTER_HOME = 1003
RULE_UPLINK_BASE = 1010

DEFAULT = IPv4Network("0.0.0.0/0")
# A fail-closed default sits behind the real one: higher metric, same table.
FAIL_CLOSED_METRIC = 4000

# Inner tunnel MTU: 1500 - 20 (outer ipip) - 73 worst-case ESP tunnel overhead - 20 (inner ipip)
# ~= 1406 measured in the guest (DESIGN.md section 5). A fixed value keeps the LAN's path MTU
# stable across situations, so TCP sessions do not shrink/grow their MSS on every move.
INNER_TUNNEL_MTU = 1400


@dataclass(frozen=True, slots=True)
class UplinkRoute:
    """One live uplink: its index fixes its table and rule, so they stay put while others come and go."""

    index: int
    ifname: str
    address: IPv4Address
    gateway: IPv4Address | None  # None on point-to-point links (ppp0)

    @property
    def table(self) -> int:
        return UPLINK_TABLE_BASE + self.index

    @property
    def rule_priority(self) -> int:
        return RULE_UPLINK_BASE + self.index


@dataclass(frozen=True, slots=True)
class Tunnel:
    local: IPv4Address
    remote: IPv4Address


@dataclass(frozen=True, slots=True)
class DataPlane:
    """Everything the plan depends on. Build a new one per change; compare plans, not states."""

    lan_interface: str
    mobile_networks: tuple[IPv4Network, ...]
    inner_home_address: IPv4Address
    uplinks: tuple[UplinkRoute, ...] = ()
    inner: Tunnel | None = None  # None: LAN traffic has nowhere to go (fail closed)
    outer: Tunnel | None = None  # only while outside and away from the outer home network
    outer_home_address: IPv4Address | None = None  # T, present while outside (VPN source)
    virtual_ip: IPv4Address | None = None  # V from IKEv2, present while the VPN is up
    #: The uplink whose gateway the VPN/outer traffic uses at the outer home network.
    home_uplink: UplinkRoute | None = None
    #: A tunnel for a care-of address being registered (make-before-break): it only
    #: decapsulates what the home agent sends there once it moved the binding; no route
    #: uses it until the binding is acknowledged and it becomes ``inner``.
    inner_pending: Tunnel | None = None
    #: The router's own address on the LAN bridge (the DHCP server's and LAN hosts' gateway).
    lan_address: IPv4Interface | None = None
    #: The outer home network (config [outer] home_network): on-link at the outer home.
    outer_home_network: IPv4Network | None = None
    #: The binding for ``inner`` is UDP-tunnelled (RFC 3519): LAN default into the TUN.
    inner_udp: bool = False


def _uplink_items(uplink: UplinkRoute) -> list[Route | Rule]:
    default = Route(DEFAULT, table=uplink.table, dev=uplink.ifname, gateway=uplink.gateway, src=uplink.address)
    return [default, Rule(uplink.rule_priority, table=uplink.table, source=IPv4Network(uplink.address))]


def router_plan(state: DataPlane) -> Plan:
    items: list[Link | Address | Route | Rule] = [
        Link(HOME_DEVICE, LinkKind.DUMMY),
        Address(HOME_DEVICE, IPv4Interface(f"{state.inner_home_address}/32")),
        Route(DEFAULT, table=LAN_TABLE, type=RouteType.UNREACHABLE, metric=FAIL_CLOSED_METRIC),
        Rule(RULE_INNER_HOME, table=LAN_TABLE, source=IPv4Network(state.inner_home_address)),
    ]
    if state.lan_address is not None:
        items.append(Address(state.lan_interface, state.lan_address))
    for network in state.mobile_networks:
        items.append(Route(network, table=LAN_TABLE, dev=state.lan_interface))
        items.append(Rule(RULE_LAN, table=LAN_TABLE, source=network))
    for uplink in state.uplinks:
        items += _uplink_items(uplink)
    if state.inner is not None and state.inner_udp:
        items.append(Route(DEFAULT, table=LAN_TABLE, dev=UDP_TUNNEL_DEVICE, src=state.inner_home_address))
    elif state.inner is not None:
        items.append(
            Link(INNER_TUNNEL, LinkKind.IPIP, mtu=INNER_TUNNEL_MTU, tunnel=TunnelEnds(state.inner.local, state.inner.remote))
        )
        items.append(Route(DEFAULT, table=LAN_TABLE, dev=INNER_TUNNEL, src=state.inner_home_address))
    if state.inner_pending is not None and state.inner_pending != state.inner:
        pending = state.inner_pending
        items.append(Link(PENDING_TUNNEL, LinkKind.IPIP, mtu=INNER_TUNNEL_MTU, tunnel=TunnelEnds(pending.local, pending.remote)))
    if state.outer_home_address is not None:
        t = state.outer_home_address
        items.append(Address(HOME_DEVICE, IPv4Interface(f"{t}/32")))
        items.append(Rule(RULE_OUTER_HOME, table=OUTER_TABLE, source=IPv4Network(t)))
        items.append(Route(DEFAULT, table=OUTER_TABLE, type=RouteType.UNREACHABLE, metric=FAIL_CLOSED_METRIC))
        if state.outer is not None:
            items.append(Link(OUTER_TUNNEL, LinkKind.IPIP, tunnel=TunnelEnds(state.outer.local, state.outer.remote)))
            items.append(Route(DEFAULT, table=OUTER_TABLE, dev=OUTER_TUNNEL, src=t))
        elif state.home_uplink is not None:
            items.append(
                Route(DEFAULT, table=OUTER_TABLE, dev=state.home_uplink.ifname, gateway=state.home_uplink.gateway, src=t)
            )
            if state.outer_home_network is not None:
                # At home the VPN gateway is on-link: without this, T's packets go via the
                # WLAN's router, which answers each with an ICMP redirect.
                items.append(Route(state.outer_home_network, table=OUTER_TABLE, dev=state.home_uplink.ifname, src=t))
    if state.virtual_ip is not None and state.outer_home_address is not None:
        v = state.virtual_ip
        # charon installs V on mip-home; listing it keeps the adapter from removing it as an
        # owned-but-undesired address of one of our links.
        items.append(Address(HOME_DEVICE, IPv4Interface(f"{v}/32")))
        items.append(Rule(RULE_VPN, table=VPN_TABLE, source=IPv4Network(v)))
        items.append(Route(DEFAULT, table=VPN_TABLE, type=RouteType.UNREACHABLE, metric=FAIL_CLOSED_METRIC))
        # The inner tunnel's outer packets (V -> S_HA) need a route to exist at all; xfrm then
        # encapsulates them in ESP from T (rule 1003 sends that on). The route points at the
        # dummy device on purpose: with no IPsec policy (CHILD SA gone, rekey failed) the
        # packet is discarded there instead of leaving the router in clear (DESIGN.md §8).
        items.append(Route(DEFAULT, table=VPN_TABLE, dev=HOME_DEVICE, src=v))
    return Plan.of(*items)


def assign_uplink_indexes(names: Sequence[str]) -> dict[str, int]:
    """Stable table/rule index per configured uplink name (config order)."""
    return {name: index for index, name in enumerate(names)}
