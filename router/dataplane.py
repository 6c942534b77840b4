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
                                       into the inner tunnel (``mip-in-<i>`` single system,
                                       ``mip-inner`` dual system), unreachable default
                                       (fail closed)
1001  from S (inner home address)      100 (the router's own traffic rides the inner system)
1002  from V (VPN virtual IP)          102: default into the dummy ``mip-home``; the packet
                                       is ESP-encapsulated by xfrm on the way (V -> S_HA)
1003  from T (outer home address)      101: default into ``mip-out-<i>`` (ESP and IKE leave
                                       reverse-tunnelled to the outer home agent), into the
                                       TUN ``mip3519-out`` when that binding is UDP-tunnelled,
                                       or via the uplink when at the outer home network;
                                       unreachable default behind it
1010+ from X_i (uplink i's address)    110+i: default via uplink i's gateway / device
====  ===============================  =====================================================

Tunnels, one per care-of address, named after the uplink that holds the address (``i`` is
the uplink's index, the same as in its table 110+i):

=================  ===========================  ============================================
link               ends                         carries
=================  ===========================  ============================================
``mip-in-<i>``     X_i -> S_HA (single system)  the LAN, when X_i is the acknowledged care-of
                                                address; else decapsulation only (standby)
``mip-inner``      X or V -> S_HA (dual)        the LAN; moved in place inside <-> outside
``mip-out-<i>``    X_i -> T_HA                  T (VPN), when X_i is the acknowledged outer
                                                care-of address; else decapsulation only
=================  ===========================  ============================================

So the three situations of DESIGN.md section 2 fall out of which tunnels exist:

- inside: ``mip-inner`` = X -> S_HA;
- outside: ``mip-out-<i>`` = X_i -> T_HA, VPN from T, ``mip-inner`` = V -> S_HA;
- outer home: no ``mip-out-`` route, VPN from T over the uplink, ``mip-inner`` = V -> S_HA.

Make-before-break (a planned move from uplink i to uplink j): the tunnel on X_j is built
first as a *standby* (it only decapsulates; no route names it), then the registration for
X_j is sent; the home agent moves the binding on the Request, so whatever it tunnels to X_j
from then on finds a tunnel. The acknowledged Reply changes one route (the LAN table's, or
the outer table's, default: ``ip route replace``, atomic) from ``mip-*-<i>`` to
``mip-*-<j>``. The tunnel on X_i stays as a standby (what the home agent sent before it moved
the binding still arrives there) until its uplink goes or the next move replaces it. Because
each uplink holds one address, every tunnel has its own name and its own (local, remote)
pair, which the kernel requires; no change on the ack deletes or moves a tunnel, so there is
no moment without a decapsulating tunnel for the address the home agent sends to.

Behind a NAT (RFC 3519 UDP tunnelling assented by the home agent) the kernel cannot
encapsulate: the LAN table's default then goes into the TUN ``mip3519`` of the user-space data
path (router.udptunnel) instead, and the acknowledged care-of address has no IP-in-IP tunnel
meanwhile. The TUN is not ours to plan (the daemon's descriptor owns it; hence no ``mip-``
prefix); only routes name it. The dual system does the same for the outer system's role
(``outer_udp``): T's default (table 101: IKE and ESP to the VPN gateway) goes into the outer
system's own TUN ``mip3519-out`` instead of ``mip-out-<i>``, so the whole nesting crosses the
NAT as UDP 434 (type-4 tunnel data carrying ESP from T). The inner system is untouched (it
rides the VPN outside), and only a care-of address some live uplink holds routes into the TUN,
as for the IP-in-IP tunnels. Standby tunnels (make-before-break) stay IP-in-IP.

The LAN table always ends in an ``unreachable`` default, so while the inner tunnel is being
moved or is absent, LAN packets are dropped with an ICMP error instead of leaking onto an
uplink in clear (DESIGN.md section 8). The main table holds no default route at all (uplink
drivers run with "no default route"), so nothing unmatched can escape either. A tunnel whose
local address no live uplink holds is never built, and a route into it falls back to the
unreachable default.
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

INNER_TUNNEL = "mip-inner"  # the dual system's inner tunnel (X inside, V outside), moved in place
INNER_UPLINK_TUNNEL = "mip-in-"  # + uplink index: the single system's tunnel on that uplink
OUTER_UPLINK_TUNNEL = "mip-out-"  # + uplink index: the outer system's tunnel on that uplink
HOME_DEVICE = "mip-home"  # dummy holding S and T (and V, installed by charon)
UDP_TUNNEL_DEVICE = "mip3519"  # RFC 3519 TUN (router.udptunnel.tun.DEFAULT_TUN_NAME)
OUTER_UDP_TUNNEL_DEVICE = "mip3519-out"  # the dual system's outer system's RFC 3519 TUN
# Its MTU: the home agent's TUN has 1400 (router.ha.daemon.UDP_TUNNEL_MTU: 1400 + 32 bytes of
# IPv4, UDP and RFC 3519 header pass a PPP or PPPoE uplink unfragmented, §4.8), which already
# bounds T's ESP packets downstream; the same upstream keeps the LAN's path MTU symmetric.
OUTER_UDP_TUNNEL_MTU = 1400

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
    #: Make-before-break: tunnels that exist without a route into them, each on an uplink's
    #: address: the care-of address being registered (it decapsulates what the home agent
    #: sends there once it moved the binding, before the Reply arrives) and the one just
    #: left (what the home agent sent before it moved the binding). A tunnel on the address
    #: of ``inner`` / ``outer`` is that tunnel, not a second one.
    inner_standby: tuple[Tunnel, ...] = ()
    outer_standby: tuple[Tunnel, ...] = ()
    #: Dual system: one ``mip-inner`` whatever its local end (X inside, V outside), so the
    #: inside <-> outside move changes it in place. Otherwise (single system) the inner
    #: tunnel on an uplink's address is ``mip-in-<index>``, one per uplink; a tunnel from V
    #: is ``mip-inner`` either way.
    inner_in_place: bool = False
    #: The router's own address on the LAN bridge (the DHCP server's and LAN hosts' gateway).
    lan_address: IPv4Interface | None = None
    #: The outer home network (config [outer] home_network): on-link at the outer home.
    outer_home_network: IPv4Network | None = None
    #: The binding for ``inner`` is UDP-tunnelled (RFC 3519): LAN default into the TUN.
    inner_udp: bool = False
    #: The binding for ``outer`` is UDP-tunnelled (RFC 3519): T's default into the outer TUN.
    outer_udp: bool = False


def _uplink_items(uplink: UplinkRoute) -> list[Route | Rule]:
    default = Route(DEFAULT, table=uplink.table, dev=uplink.ifname, gateway=uplink.gateway, src=uplink.address)
    return [default, Rule(uplink.rule_priority, table=uplink.table, source=IPv4Network(uplink.address))]


def _tunnel_link(name: str, tunnel: Tunnel, mtu: int | None) -> Link:
    return Link(name, LinkKind.IPIP, mtu=mtu, tunnel=TunnelEnds(tunnel.local, tunnel.remote))


def _uplink_tunnels(
    prefix: str, tunnels: Sequence[Tunnel | None], uplinks: Sequence[UplinkRoute], mtu: int | None
) -> tuple[dict[IPv4Address, str], list[Link]]:
    """One tunnel per uplink address among ``tunnels`` (the first wins), named after the
    uplink; a tunnel from an address no uplink holds is left out. Returns local -> name."""
    by_address = {uplink.address: uplink for uplink in uplinks}
    names: dict[IPv4Address, str] = {}
    links: list[Link] = []
    for tunnel in tunnels:
        if tunnel is None or tunnel.local in names or (uplink := by_address.get(tunnel.local)) is None:
            continue
        names[tunnel.local] = f"{prefix}{uplink.index}"
        links.append(_tunnel_link(names[tunnel.local], tunnel, mtu))
    return names, links


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
    items += _inner_items(state)
    if state.outer_home_address is not None:
        t = state.outer_home_address
        items.append(Address(HOME_DEVICE, IPv4Interface(f"{t}/32")))
        items.append(Rule(RULE_OUTER_HOME, table=OUTER_TABLE, source=IPv4Network(t)))
        items.append(Route(DEFAULT, table=OUTER_TABLE, type=RouteType.UNREACHABLE, metric=FAIL_CLOSED_METRIC))
        # The acknowledged binding, when UDP-tunnelled, has no IP-in-IP tunnel of its own.
        outer_ipip = state.outer if not state.outer_udp else None
        standby = [s for s in state.outer_standby if state.outer is None or s.local != state.outer.local]
        names, links = _uplink_tunnels(OUTER_UPLINK_TUNNEL, (outer_ipip, *standby), state.uplinks, None)
        items += links
        if state.outer is not None:
            if state.outer_udp:
                if any(uplink.address == state.outer.local for uplink in state.uplinks):
                    items.append(Route(DEFAULT, table=OUTER_TABLE, dev=OUTER_UDP_TUNNEL_DEVICE, src=t))
            elif (outer_name := names.get(state.outer.local)) is not None:
                items.append(Route(DEFAULT, table=OUTER_TABLE, dev=outer_name, src=t))
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


def _inner_items(state: DataPlane) -> list[Link | Route]:
    """The inner tunnel(s) and the LAN table's default into the acknowledged one."""
    items: list[Link | Route] = []
    inner = state.inner
    # The acknowledged binding, when UDP-tunnelled, has no IP-in-IP tunnel of its own.
    ipip = inner if inner is not None and not state.inner_udp else None
    # A tunnel from V (the VPN's address, no uplink's) is the dual system's mip-inner too.
    in_place = ipip is not None and (state.inner_in_place or ipip.local == state.virtual_ip)
    standby = [t for t in state.inner_standby if inner is None or t.local != inner.local]
    names, links = _uplink_tunnels(
        INNER_UPLINK_TUNNEL, [*([] if in_place else [ipip]), *standby], state.uplinks, INNER_TUNNEL_MTU
    )
    items += links
    if inner is not None and state.inner_udp:
        items.append(Route(DEFAULT, table=LAN_TABLE, dev=UDP_TUNNEL_DEVICE, src=state.inner_home_address))
    elif ipip is not None and in_place:
        items.append(_tunnel_link(INNER_TUNNEL, ipip, INNER_TUNNEL_MTU))
        items.append(Route(DEFAULT, table=LAN_TABLE, dev=INNER_TUNNEL, src=state.inner_home_address))
    elif ipip is not None and (name := names.get(ipip.local)) is not None:
        items.append(Route(DEFAULT, table=LAN_TABLE, dev=name, src=state.inner_home_address))
    return items


def assign_uplink_indexes(names: Sequence[str]) -> dict[str, int]:
    """Stable table/rule index per configured uplink name (config order)."""
    return {name: index for index, name in enumerate(names)}
