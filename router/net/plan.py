"""The kernel networking state we own, as data, and the ordered changes between two states.

Theory of operation
-------------------
A daemon describes what the kernel should hold for it as a `Plan`: links (tunnels, bridges,
dummies, veth pairs), IPv4 addresses, routes, policy rules and proxy-ARP entries. A plan is
plain frozen data, so the home agent and the mobile router compute it from their state
machines without touching the kernel, and tests compare plans and the `ip ...`-like lines
of their differences.

Ownership makes plans safe to reconcile after a crash (`Ownership`): everything we create
carries a mark the kernel stores with the object, so a restarted daemon can read back exactly
what it owns and nothing else:

- links: the name starts with the owner's prefix (e.g. ``mip-``); addresses on those links
  are ours too;
- addresses elsewhere, routes, rules and proxy-ARP entries: the kernel's ``proto`` field
  (IFA_PROTO, RTA/rtm_protocol, FRA_PROTOCOL, NDA_PROTOCOL) holds the owner's number
  (e.g. 201), which no routing daemon in our image uses;
- routes go only to the main table or the owner's tables, rules only into the owner's
  priority range; strongSwan's table and rule (220) stay outside both.

`diff(current, desired)` yields the changes that turn one into the other, ordered so the
kernel accepts each in turn: removals first, dependants before what they depend on (rules,
routes, proxy entries, addresses, then links); then additions the other way round (links,
addresses, proxy entries, routes, rules). Route changes are one atomic ``replace``, so a route
moving to a new tunnel or gateway never disappears in between; a tunnel's endpoints move in
place for the same reason. A link whose kind changes is recreated, and everything that lived
on it is recreated with it, because the kernel drops a link's addresses, routes and proxy
entries when the link goes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

#: Linux's well-known routing tables (include/uapi/linux/rtnetlink.h, enum rt_class_t).
MAIN_TABLE = 254
#: Longest interface name the kernel accepts (IFNAMSIZ - 1).
MAX_LINK_NAME = 15


class PlanError(ValueError):
    """A plan that the kernel would reject or that breaks the ownership rules.

    The message lists every problem found, one per line, each naming the object.
    """


@dataclass(frozen=True, slots=True)
class Ownership:
    """How one daemon marks, and later recognises, the kernel objects it created.

    Two daemons sharing a namespace (e.g. the router's Mobile IP and its LAN service) need
    disjoint prefixes, protocol numbers, tables and priority ranges.
    """

    link_prefix: str = "mip-"
    #: rtm_protocol / IFA_PROTO / FRA_PROTOCOL / NDA_PROTOCOL value; 201 is unassigned in
    #: /etc/iproute2/rt_protos and unused by strongSwan, bird, dhcpcd, pppd.
    protocol: int = 201
    #: Tables we may fill; strongSwan uses 220, so stay below it.
    tables: range = range(100, 200)
    #: Rule priorities we may use; strongSwan's rule sits at 220, local at 0, main at 32766.
    rule_priorities: range = range(1000, 1100)

    def __post_init__(self) -> None:
        # 0-4 are the kernel's own (unspec, redirect, kernel, boot, static): never ours.
        if not 5 <= self.protocol <= 255:
            raise ValueError(f"ownership protocol {self.protocol}: expected 5..255")
        if not self.link_prefix or len(self.link_prefix) >= MAX_LINK_NAME:
            raise ValueError(f"ownership link prefix {self.link_prefix!r}: expected 1..14 chars")

    def owns_link(self, name: str) -> bool:
        return name.startswith(self.link_prefix)


class LinkKind(enum.StrEnum):
    DUMMY = "dummy"
    BRIDGE = "bridge"
    VETH = "veth"
    IPIP = "ipip"
    GRE = "gre"


@dataclass(frozen=True, slots=True)
class TunnelEnds:
    """The outer header of an IP-in-IP (RFC 2003) or GRE tunnel."""

    local: IPv4Address | None
    remote: IPv4Address | None
    #: 0 means "inherit the inner TTL", which the kernel allows only without PMTU discovery.
    ttl: int = 64
    #: Keep DF on the outer header so path MTU discovery works layer by layer through nesting.
    pmtudisc: bool = True
    #: GRE key (RFC 2890), the same in both directions; ignored for ipip.
    key: int | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A network device we own. Its name is its identity.

    A veth pair appears once, under the name that sorts first; `peer` names the other end,
    which shares the pair's `mtu` and `up`. `mtu=None` means "whatever the kernel chose".
    """

    name: str
    kind: LinkKind
    mtu: int | None = None
    up: bool = True
    tunnel: TunnelEnds | None = None
    peer: str | None = None
    #: A bridge this link is a port of (may be a bridge we do not own, e.g. br-lan).
    master: str | None = None

    def is_recreated_by(self, other: Link) -> bool:
        """True when turning self into other needs a new device, not a change in place.

        The kernel moves a point-to-point tunnel's ends, TTL and PMTU discovery in place
        (ip_tunnel_changelink), so the routes through it stay and a care-of address change
        loses no packets to a missing route. Switching between a fixed and an "any" remote
        (point-to-point vs. broadcast device) or changing a GRE key needs a new device.
        """
        if (self.kind, self.peer) != (other.kind, other.peer):
            return True
        old, new = self.tunnel, other.tunnel
        if old == new:
            return False
        if old is None or new is None:
            return True
        return (old.remote is None) != (new.remote is None) or old.key != new.key

    def is_satisfied_by(self, observed: Link) -> bool:
        return replace(self, mtu=self.mtu if self.mtu is not None else observed.mtu) == observed

    @property
    def device_names(self) -> tuple[str, ...]:
        return (self.name, self.peer) if self.peer is not None else (self.name,)


@dataclass(frozen=True, slots=True, order=True)
class Address:
    ifname: str
    interface: IPv4Interface


class RouteType(enum.StrEnum):
    UNICAST = "unicast"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"
    #: Ends the lookup in this table so the next rule is tried (for policy tables).
    THROW = "throw"


@dataclass(frozen=True, slots=True)
class Route:
    """An IPv4 route. Its identity in the kernel is (table, destination, metric)."""

    destination: IPv4Network
    table: int = MAIN_TABLE
    dev: str | None = None
    gateway: IPv4Address | None = None
    #: Preferred source address for packets this host originates along the route.
    src: IPv4Address | None = None
    metric: int = 0
    type: RouteType = RouteType.UNICAST

    @property
    def key(self) -> tuple[int, IPv4Network, int]:
        return (self.table, self.destination, self.metric)


class RuleAction(enum.StrEnum):
    LOOKUP = "lookup"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"


@dataclass(frozen=True, slots=True)
class Rule:
    """A policy routing rule. The kernel has no rule "replace": every field is identity."""

    priority: int
    action: RuleAction = RuleAction.LOOKUP
    table: int | None = None
    source: IPv4Network | None = None
    destination: IPv4Network | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None


@dataclass(frozen=True, slots=True, order=True)
class ProxyArp:
    """Answer ARP for `address` on `ifname` (RFC 5944 §4.6: the home agent for an away node).

    A per-address proxy entry (``ip neigh add proxy``), not the per-interface proxy_arp
    switch: it can be owned and removed one node at a time, and answers only for nodes we
    have a binding for. The kernel still needs IPv4 forwarding on and a route to `address`.
    """

    ifname: str
    address: IPv4Address


Item = Link | Address | Route | Rule | ProxyArp


@dataclass(frozen=True, slots=True)
class Plan:
    """A set of kernel objects. Compose with `|`; build with `Plan.of(...)`."""

    links: frozenset[Link] = frozenset()
    addresses: frozenset[Address] = frozenset()
    routes: frozenset[Route] = frozenset()
    rules: frozenset[Rule] = frozenset()
    proxy_arp: frozenset[ProxyArp] = frozenset()

    @classmethod
    def of(cls, *items: Item) -> Plan:
        return cls(
            links=frozenset(i for i in items if isinstance(i, Link)),
            addresses=frozenset(i for i in items if isinstance(i, Address)),
            routes=frozenset(i for i in items if isinstance(i, Route)),
            rules=frozenset(i for i in items if isinstance(i, Rule)),
            proxy_arp=frozenset(i for i in items if isinstance(i, ProxyArp)),
        )

    def __or__(self, other: Plan) -> Plan:
        return Plan(
            links=self.links | other.links,
            addresses=self.addresses | other.addresses,
            routes=self.routes | other.routes,
            rules=self.rules | other.rules,
            proxy_arp=self.proxy_arp | other.proxy_arp,
        )

    def __iter__(self) -> Iterator[Item]:
        yield from sorted(self.links, key=_link_order)
        yield from sorted(self.addresses)
        yield from sorted(self.proxy_arp)
        yield from sorted(self.routes, key=_route_order)
        yield from sorted(self.rules, key=_rule_order)

    def __len__(self) -> int:
        return sum(
            len(s) for s in (self.links, self.addresses, self.routes, self.rules, self.proxy_arp)
        )

    def is_empty(self) -> bool:
        return len(self) == 0

    def device_names(self) -> frozenset[str]:
        return frozenset(n for link in self.links for n in link.device_names)

    def validate(self, ownership: Ownership) -> None:
        """Raise `PlanError` listing every problem; a valid plan is one the kernel accepts."""
        problems = list(_problems(self, ownership))
        if problems:
            raise PlanError("invalid plan:\n  " + "\n  ".join(problems))


def _problems(plan: Plan, ownership: Ownership) -> Iterator[str]:
    names = plan.device_names()
    up_names = {n for link in plan.links if link.up for n in link.device_names}
    bridges = {link.name for link in plan.links if link.kind == LinkKind.BRIDGE}
    seen_links: set[str] = set()
    for link in sorted(plan.links, key=_link_order):
        for name in link.device_names:
            if name in seen_links:
                yield f"link {name}: declared twice"
            seen_links.add(name)
            if not ownership.owns_link(name):
                yield f"link {name}: name lacks the owner prefix {ownership.link_prefix!r}"
            if not 0 < len(name) <= MAX_LINK_NAME:
                yield f"link {name}: name must have 1..{MAX_LINK_NAME} characters"
        tunnel_kind = link.kind in (LinkKind.IPIP, LinkKind.GRE)
        if tunnel_kind != (link.tunnel is not None):
            yield f"link {link.name}: tunnel ends are required for ipip/gre and only for them"
        if link.tunnel is not None and link.tunnel.ttl == 0 and link.tunnel.pmtudisc:
            yield f"link {link.name}: ttl inherit (0) needs pmtudisc off"
        if (link.kind == LinkKind.VETH) != (link.peer is not None):
            yield f"link {link.name}: a peer is required for veth and only for it"
        if link.peer is not None and link.peer <= link.name:
            yield f"link {link.name}: declare a veth pair under its first name, {link.peer}"
        if link.master is not None and link.master == link.name:
            yield f"link {link.name}: cannot be its own master"
        elif (
            link.master is not None
            and ownership.owns_link(link.master)
            and link.master not in bridges
        ):
            yield f"link {link.name}: master {link.master} is not a bridge in the plan"
    for address in plan.addresses:
        if ownership.owns_link(address.ifname) and address.ifname not in names:
            yield f"address {address.interface} dev {address.ifname}: no such link in the plan"
    for proxy in plan.proxy_arp:
        if ownership.owns_link(proxy.ifname) and proxy.ifname not in names:
            yield f"proxy {proxy.address} dev {proxy.ifname}: no such link in the plan"
    route_keys: dict[tuple[int, IPv4Network, int], Route] = {}
    for route in sorted(plan.routes, key=_route_order):
        label = f"route {route.destination} table {route.table} metric {route.metric}"
        if route.key in route_keys:
            yield f"{label}: declared twice with different attributes"
        route_keys[route.key] = route
        if route.table != MAIN_TABLE and route.table not in ownership.tables:
            yield f"{label}: table outside the owner's {_span(ownership.tables)} and not main"
        if route.type == RouteType.UNICAST and route.dev is None:
            # The kernel would pick the device and report it back, so the plan could never
            # equal what we observe; naming it also keeps outer packets on the chosen uplink.
            yield f"{label}: a unicast route must name its dev"
        if route.type != RouteType.UNICAST and (route.dev or route.gateway):
            yield f"{label}: a {route.type} route takes no dev or gateway"
        if route.dev is not None and ownership.owns_link(route.dev):
            if route.dev not in names:
                yield f"{label}: dev {route.dev} is not a link in the plan"
            elif route.dev not in up_names:
                # IPv4 flushes routes through a device that goes down.
                yield f"{label}: dev {route.dev} is down in the plan"
    for rule in sorted(plan.rules, key=_rule_order):
        label = f"rule priority {rule.priority}"
        if rule.priority not in ownership.rule_priorities:
            yield f"{label}: outside the owner's range {_span(ownership.rule_priorities)}"
        if (rule.action == RuleAction.LOOKUP) != (rule.table is not None):
            yield f"{label}: a table is required for lookup and only for it"
        if rule.fwmask is not None and rule.fwmark is None:
            yield f"{label}: fwmask without fwmark"


def _span(r: range) -> str:
    return f"{r.start}..{r.stop - 1}"


# --- ordering -------------------------------------------------------------------------


def _link_order(link: Link) -> tuple[int, str]:
    # Bridges exist before their ports are enslaved; ports go before their bridge.
    return (0 if link.kind == LinkKind.BRIDGE else 1, link.name)


def _route_order(route: Route) -> tuple[int, int, int, int, int]:
    # Shorter prefixes last on addition is not needed by the kernel, but a stable order
    # makes logs and tests readable: by table, then destination.
    return (
        route.table,
        int(route.destination.network_address),
        route.destination.prefixlen,
        route.metric,
        0 if route.gateway is None else int(route.gateway),
    )


def _rule_order(rule: Rule) -> tuple[int, str]:
    return (rule.priority, render_rule(rule))


# --- changes --------------------------------------------------------------------------


class Operation(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"
    #: Links: set mtu/up/master in place. Routes: atomic replace (NLM_F_REPLACE).
    MODIFY = "modify"


@dataclass(frozen=True, slots=True)
class Change:
    operation: Operation
    item: Item
    #: For MODIFY, the object as it was.
    previous: Item | None = None

    def __str__(self) -> str:
        return render(self)


def diff(current: Plan, desired: Plan) -> list[Change]:
    """The changes that turn `current` into `desired`, in an order the kernel accepts."""
    current_links = {link.name: link for link in current.links}
    desired_links = {link.name: link for link in desired.links}

    recreated: set[str] = set()  # device names whose device goes away (removed or recreated)
    link_removals: list[Link] = []
    link_additions: list[Link] = []
    link_modifications: list[tuple[Link, Link]] = []
    for name, old in current_links.items():
        new = desired_links.get(name)
        if new is None or old.is_recreated_by(new):
            link_removals.append(old)
            recreated.update(old.device_names)
            if new is not None:
                link_additions.append(new)
        elif not new.is_satisfied_by(old):
            link_modifications.append((old, new))
    link_additions += [link for name, link in desired_links.items() if name not in current_links]

    def survives(item: Address | ProxyArp | Route) -> bool:
        # A device going down loses its IPv4 routes too, but a valid plan has no route
        # through a device that is down, so those routes are removed as undesired anyway.
        dev = item.dev if isinstance(item, Route) else item.ifname
        return dev is None or dev not in recreated

    addresses_kept = {a for a in current.addresses if survives(a)}
    proxies_kept = {p for p in current.proxy_arp if survives(p)}
    routes_kept = {r.key: r for r in current.routes if survives(r)}
    desired_routes = {r.key: r for r in desired.routes}

    removals: list[Change] = []
    removals += [Change(Operation.REMOVE, r) for r in _sorted_rules(current.rules - desired.rules)]
    removals += [
        Change(Operation.REMOVE, r)
        for r in sorted(current.routes, key=_route_order, reverse=True)
        if r.key not in desired_routes or not survives(r)
    ]
    removals += [Change(Operation.REMOVE, p) for p in sorted(current.proxy_arp - desired.proxy_arp)]
    removals += [
        Change(Operation.REMOVE, p)
        for p in sorted(current.proxy_arp & desired.proxy_arp)
        if p not in proxies_kept
    ]
    removals += [Change(Operation.REMOVE, a) for a in sorted(current.addresses - desired.addresses)]
    removals += [
        Change(Operation.REMOVE, a)
        for a in sorted(current.addresses & desired.addresses)
        if a not in addresses_kept
    ]
    # Removed first: ports before bridges, so reverse of the creation order.
    removals += [
        Change(Operation.REMOVE, link)
        for link in sorted(link_removals, key=_link_order, reverse=True)
    ]

    additions: list[Change] = []
    additions += [Change(Operation.ADD, link) for link in sorted(link_additions, key=_link_order)]
    additions += [
        Change(Operation.MODIFY, new, old)
        for old, new in sorted(link_modifications, key=lambda pair: _link_order(pair[1]))
    ]
    additions += [Change(Operation.ADD, a) for a in sorted(desired.addresses - addresses_kept)]
    additions += [Change(Operation.ADD, p) for p in sorted(desired.proxy_arp - proxies_kept)]
    for route in sorted(desired.routes, key=_route_order):
        old_route = routes_kept.get(route.key)
        if old_route is None:
            additions.append(Change(Operation.ADD, route))
        elif old_route != route:
            additions.append(Change(Operation.MODIFY, route, old_route))
    additions += [Change(Operation.ADD, r) for r in _sorted_rules(desired.rules - current.rules)]
    return removals + additions


def _sorted_rules(rules: Iterable[Rule]) -> list[Rule]:
    return sorted(rules, key=_rule_order)


# --- ip-like rendering -----------------------------------------------------------------


def render(change: Change) -> str:
    """One `ip ...` command line equivalent to the change (for logs and the fake backend)."""
    item = change.item
    if isinstance(item, Link):
        return _render_link(change.operation, item, change.previous)
    if isinstance(item, Address):
        verb = "del" if change.operation == Operation.REMOVE else "add"
        return f"ip address {verb} {item.interface} dev {item.ifname}"
    if isinstance(item, ProxyArp):
        verb = "del" if change.operation == Operation.REMOVE else "add"
        return f"ip neigh {verb} proxy {item.address} dev {item.ifname}"
    if isinstance(item, Route):
        route_verbs = {Operation.ADD: "add", Operation.REMOVE: "del", Operation.MODIFY: "replace"}
        return f"ip route {route_verbs[change.operation]} {render_route(item)}"
    verb = "del" if change.operation == Operation.REMOVE else "add"
    return f"ip rule {verb} {render_rule(item)}"


def _render_link(operation: Operation, link: Link, previous: Item | None) -> str:
    if operation == Operation.REMOVE:
        return f"ip link del {link.name}"
    if operation == Operation.MODIFY:
        assert isinstance(previous, Link)
        words = [f"ip link set {link.name}"]
        if link.mtu is not None and link.mtu != previous.mtu:
            words.append(f"mtu {link.mtu}")
        if link.master != previous.master:
            words.append(f"master {link.master}" if link.master else "nomaster")
        if link.up != previous.up:
            words.append("up" if link.up else "down")
        if link.tunnel is not None and link.tunnel != previous.tunnel:
            words.append(f"type {link.kind} {_render_tunnel(link)}")
        return " ".join(words)
    words = [f"ip link add {link.name}"]
    if link.mtu is not None:
        words.append(f"mtu {link.mtu}")
    if link.master is not None:
        words.append(f"master {link.master}")
    if link.up:
        words.append("up")
    words.append(f"type {link.kind}")
    if link.peer is not None:
        words.append(f"peer name {link.peer}")
    if link.tunnel is not None:
        words.append(_render_tunnel(link))
    return " ".join(words)


def _render_tunnel(link: Link) -> str:
    assert link.tunnel is not None
    ends = link.tunnel
    words = [f"local {ends.local or 'any'} remote {ends.remote or 'any'}"]
    words.append(f"ttl {ends.ttl or 'inherit'}")
    words.append("pmtudisc" if ends.pmtudisc else "nopmtudisc")
    if link.kind == LinkKind.GRE and ends.key is not None:
        words.append(f"key {ends.key}")
    return " ".join(words)


def render_route(route: Route) -> str:
    words = [] if route.type == RouteType.UNICAST else [str(route.type)]
    words.append(str(route.destination))
    if route.gateway is not None:
        words.append(f"via {route.gateway}")
    if route.dev is not None:
        words.append(f"dev {route.dev}")
    if route.src is not None:
        words.append(f"src {route.src}")
    words.append(f"table {route.table}")
    if route.metric:
        words.append(f"metric {route.metric}")
    return " ".join(words)


def render_rule(rule: Rule) -> str:
    words = [f"priority {rule.priority}"]
    words.append(f"from {rule.source or 'all'}")
    if rule.destination is not None:
        words.append(f"to {rule.destination}")
    if rule.iif is not None:
        words.append(f"iif {rule.iif}")
    if rule.oif is not None:
        words.append(f"oif {rule.oif}")
    if rule.fwmark is not None:
        mark = f"fwmark {rule.fwmark:#x}"
        words.append(mark if rule.fwmask is None else f"{mark}/{rule.fwmask:#x}")
    if rule.action == RuleAction.LOOKUP:
        words.append(f"lookup {rule.table}")
    else:
        words.append(str(rule.action))
    return " ".join(words)
