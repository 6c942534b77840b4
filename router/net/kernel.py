"""Pyroute2Backend: plans applied to, and read back from, the kernel over rtnetlink.
NeighbourTable: the ARP cache, read (a node's own MAC, for the home agent's §4.6 announcement).

The only module of the product that imports pyroute2. Every call is synchronous and returns
once the kernel has acknowledged it; the daemon may run the adapter in a worker thread.

Idempotence follows the kernel's own answers: EEXIST on add and ENOENT / ESRCH / ENODEV /
EADDRNOTAVAIL on delete mean "already so", anything else becomes a `BackendError` naming the
object. Routes are always written with NLM_F_REPLACE, so an add over a stale route of ours
with the same identity corrects it instead of failing.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

# pyroute2 ships no type information; its answers are treated as Any and parsed here.
from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from .arp import parse_mac
from .backend import BackendError, check_sysctl_key
from .plan import (
    Address,
    Change,
    Item,
    Link,
    LinkKind,
    Operation,
    Ownership,
    Plan,
    ProxyArp,
    Route,
    RouteType,
    Rule,
    RuleAction,
    TunnelEnds,
)

IFF_UP = 0x1
NTF_PROXY = 0x08  # include/uapi/linux/neighbour.h
#: Neighbour states with a usable link-layer address: the kernel's NUD_VALID
#: (PERMANENT | NOARP | REACHABLE | PROBE | STALE | DELAY, include/net/neighbour.h); not
#: INCOMPLETE (still asking) or FAILED (nobody answered).
NUD_VALID = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08
GRE_KEY = 0x2000  # include/uapi/linux/if_tunnel.h (pyroute2 encodes the flags big-endian)
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
#: In a delete request: match a route of any scope (iproute2's default for ``ip route del``).
#: Without it pyroute2's request asks for scope universe, and an on-link route (scope link)
#: whose device stays (a TUN, a foreign bridge) is never found: ESRCH, swallowed as "gone".
RT_SCOPE_NOWHERE = 255
FULL_MARK_MASK = 0xFFFFFFFF  # what the kernel reports when a rule's fwmask was not given

# rtm_type (include/uapi/linux/rtnetlink.h)
_ROUTE_TYPES = {
    1: RouteType.UNICAST,
    6: RouteType.BLACKHOLE,
    7: RouteType.UNREACHABLE,
    8: RouteType.PROHIBIT,
    9: RouteType.THROW,
}
# fib_rule_hdr.action (include/uapi/linux/fib_rules.h)
_RULE_ACTIONS = {
    1: RuleAction.LOOKUP,
    6: RuleAction.BLACKHOLE,
    7: RuleAction.UNREACHABLE,
    8: RuleAction.PROHIBIT,
}
_RULE_ACTION_CODES = {action: code for code, action in _RULE_ACTIONS.items()}
_ALREADY_GONE = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}
_ANY = IPv4Address("0.0.0.0")
_SYSCTL_ROOT = Path("/proc/sys")
_T = TypeVar("_T")


class Pyroute2Backend:
    """Speaks rtnetlink in the current network namespace or in the named one (`netns`)."""

    def __init__(self, ownership: Ownership | None = None, netns: str | None = None) -> None:
        self._ownership = ownership or Ownership()
        self.netns = netns
        # flags=0: never create the namespace as a side effect of a typo.
        self._ipr = IPRoute(netns=netns, flags=0) if netns is not None else IPRoute()

    @property
    def ownership(self) -> Ownership:
        return self._ownership

    def close(self) -> None:
        self._ipr.close()

    # --- sysctls ------------------------------------------------------------------------

    def read_sysctl(self, key: str) -> str:
        path = _SYSCTL_ROOT / check_sysctl_key(key)
        return self._in_namespace(lambda: path.read_text().strip())

    def write_sysctl(self, key: str, value: str) -> None:
        path = _SYSCTL_ROOT / check_sysctl_key(key)
        self._in_namespace(lambda: path.write_text(f"{value}\n"))

    def _in_namespace(self, action: Callable[[], _T]) -> _T:
        """Run `action` where /proc/sys/net shows our namespace.

        /proc/sys/net belongs to the namespace of the thread that opens the file, so for a
        named namespace a short-lived thread enters it (setns changes only the calling
        thread) and ends there; the rest of the process never leaves its own namespace.
        """
        if self.netns is None:
            return action()
        from pyroute2.netns import setns  # type: ignore[import-untyped]

        outcome: list[_T] = []
        failure: list[BaseException] = []
        netns = self.netns

        def enter_and_act() -> None:
            try:
                setns(netns, flags=0)
                outcome.append(action())
            except BaseException as error:  # handed to the caller's thread below
                failure.append(error)

        worker = threading.Thread(target=enter_and_act, name=f"sysctl-{netns}")
        worker.start()
        worker.join()
        if failure:
            raise failure[0]
        return outcome[0]

    # --- reading ------------------------------------------------------------------------

    def observe(self) -> Plan:
        messages = list(self._ipr.get_links())
        names = {int(m["index"]): str(m.get("ifname")) for m in messages}
        links = _owned_links(messages, names, self._ownership)
        owned_names = {n for link in links for n in link.device_names}
        return Plan(
            links=frozenset(links),
            addresses=frozenset(self._owned_addresses(names, owned_names)),
            routes=frozenset(self._owned_routes(names)),
            rules=frozenset(self._owned_rules()),
            proxy_arp=frozenset(self._owned_proxies(names)),
        )

    def _owned_addresses(self, names: Mapping[int, str], owned: set[str]) -> list[Address]:
        found = []
        for m in self._ipr.get_addr(family=socket.AF_INET):
            ifname = names.get(int(m["index"]), "")
            if ifname in owned or m.get("IFA_PROTO") == self._ownership.protocol:
                local = m.get("IFA_LOCAL") or m.get("IFA_ADDRESS")
                found.append(Address(ifname, IPv4Interface(f"{local}/{m['prefixlen']}")))
        return found

    def _owned_routes(self, names: Mapping[int, str]) -> list[Route]:
        found = []
        for m in self._ipr.route("dump", family=socket.AF_INET):
            if m["proto"] != self._ownership.protocol or m["type"] not in _ROUTE_TYPES:
                continue
            oif = m.get("RTA_OIF")
            gateway = m.get("RTA_GATEWAY")
            src = m.get("RTA_PREFSRC")
            found.append(
                Route(
                    destination=IPv4Network(f"{m.get('RTA_DST') or _ANY}/{m['dst_len']}"),
                    table=int(m.get("RTA_TABLE") or m["table"]),
                    dev=names.get(int(oif)) if oif is not None else None,
                    gateway=IPv4Address(gateway) if gateway else None,
                    src=IPv4Address(src) if src else None,
                    metric=int(m.get("RTA_PRIORITY") or 0),
                    type=_ROUTE_TYPES[m["type"]],
                )
            )
        return found

    def _owned_rules(self) -> list[Rule]:
        found = []
        for m in self._ipr.get_rules(family=socket.AF_INET):
            if m.get("FRA_PROTOCOL") != self._ownership.protocol:
                continue
            action = _RULE_ACTIONS.get(m["action"])
            if action is None:
                continue
            fwmark = m.get("FRA_FWMARK")
            fwmask = m.get("FRA_FWMASK")
            found.append(
                Rule(
                    priority=int(m.get("FRA_PRIORITY") or 0),
                    action=action,
                    table=int(m.get("FRA_TABLE") or m["table"])
                    if action == RuleAction.LOOKUP
                    else None,
                    source=_prefix(m.get("FRA_SRC"), m["src_len"]),
                    destination=_prefix(m.get("FRA_DST"), m["dst_len"]),
                    iif=m.get("FRA_IIFNAME"),
                    oif=m.get("FRA_OIFNAME"),
                    fwmark=fwmark if fwmark or fwmask else None,
                    fwmask=fwmask if fwmask not in (None, FULL_MARK_MASK) else None,
                )
            )
        return found

    def _owned_proxies(self, names: Mapping[int, str]) -> list[ProxyArp]:
        found = []
        # pyroute2 drops ndm_flags from dump requests unless the filter is given explicitly;
        # the kernel lists proxy entries only when NTF_PROXY is set in the request.
        dump = self._ipr.neigh(
            "dump", dump_filter=_accept_all, family=socket.AF_INET, flags=NTF_PROXY
        )
        for m in dump:
            if m["flags"] & NTF_PROXY and m.get("NDA_PROTOCOL") == self._ownership.protocol:
                found.append(
                    ProxyArp(names.get(int(m["ifindex"]), ""), IPv4Address(m.get("NDA_DST")))
                )
        return found

    # --- writing ------------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        try:
            self._apply(change)
        except NetlinkError as error:
            if change.operation == Operation.REMOVE and error.code in _ALREADY_GONE:
                return
            if change.operation == Operation.ADD and error.code == errno.EEXIST:
                return
            raise BackendError(change, f"{os.strerror(error.code)} (errno {error.code})") from error

    def _apply(self, change: Change) -> None:
        item: Item = change.item
        removing = change.operation == Operation.REMOVE
        if isinstance(item, Link):
            if removing:
                self._ipr.link("del", ifname=item.name)
            else:
                self._ensure_link(change, item)
        elif isinstance(item, Address):
            self._ipr.addr(
                "del" if removing else "add",
                index=self._index(change, item.ifname),
                address=str(item.interface.ip),
                prefixlen=item.interface.network.prefixlen,
                **({} if removing else {"proto": self._ownership.protocol}),
            )
        elif isinstance(item, ProxyArp):
            self._ipr.neigh(
                "del" if removing else "add",
                dst=str(item.address),
                ifindex=self._index(change, item.ifname),
                flags=NTF_PROXY,
                **({} if removing else {"NDA_PROTOCOL": self._ownership.protocol}),
            )
        elif isinstance(item, Route):
            self._ipr.route("del" if removing else "replace", **self._route_fields(change, item))
        else:
            self._ipr.rule("del" if removing else "add", **self._rule_fields(item))

    def _index(self, change: Change, ifname: str) -> int:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            if change.operation == Operation.REMOVE:
                # The device took the object with it: already gone.
                raise NetlinkError(errno.ENODEV)
            raise BackendError(change, f"Cannot find device {ifname!r}")
        return int(found[0])

    def _ensure_link(self, change: Change, link: Link) -> None:
        existing = self._ipr.link_lookup(ifname=link.name)
        previous = change.previous
        if existing and change.operation == Operation.ADD:
            observed = self.observe().links
            same = [o for o in observed if link.name in o.device_names]
            if not same or same[0].is_recreated_by(link):
                raise BackendError(change, "a different device with this name exists")
            previous = same[0]  # ours already (a retried add): correct it in place below
        elif not existing:
            if change.operation == Operation.MODIFY:
                raise BackendError(change, f"Cannot find device {link.name!r}")
            self._ipr.link("add", ifname=link.name, kind=str(link.kind), **_kind_fields(link))
        # Settings go in a separate request so they also correct a device that already
        # existed, and so a bridge's MTU counts as set by the user (it then stops following
        # its ports' MTU).
        master = 0 if link.master is None else self._index(change, link.master)
        if isinstance(previous, Link) and previous.tunnel != link.tunnel:
            # RTM_NEWLINK on an existing device with its kind: the driver's changelink.
            tunnel_fields = _kind_fields(link)
            index = self._index(change, link.name)
            self._ipr.link("set", index=index, kind=str(link.kind), **tunnel_fields)
        for name in link.device_names:
            fields: dict[str, Any] = {"state": "up" if link.up else "down"}
            if link.mtu is not None:
                fields["mtu"] = link.mtu
            if name == link.name:
                fields["master"] = master
            self._ipr.link("set", index=self._index(change, name), **fields)

    def _route_fields(self, change: Change, route: Route) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "dst": str(route.destination.network_address),
            "dst_len": route.destination.prefixlen,
            "table": route.table,
            "proto": self._ownership.protocol,
            "type": str(route.type),
            "priority": route.metric,
        }
        if change.operation == Operation.REMOVE:
            fields["scope"] = RT_SCOPE_NOWHERE
            return fields  # the identity and our protocol: never someone else's route
        unicast_on_link = route.type == RouteType.UNICAST and route.gateway is None
        fields["scope"] = RT_SCOPE_LINK if unicast_on_link else RT_SCOPE_UNIVERSE
        if route.dev is not None:
            fields["oif"] = self._index(change, route.dev)
        if route.gateway is not None:
            fields["gateway"] = str(route.gateway)
        if route.src is not None:
            fields["prefsrc"] = str(route.src)
        return fields

    def _rule_fields(self, rule: Rule) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "family": socket.AF_INET,
            "priority": rule.priority,
            "action": _RULE_ACTION_CODES[rule.action],
            "protocol": self._ownership.protocol,
        }
        if rule.table is not None:
            fields["table"] = rule.table
        if rule.source is not None:
            fields["src"] = str(rule.source.network_address)
            fields["src_len"] = rule.source.prefixlen
        if rule.destination is not None:
            fields["dst"] = str(rule.destination.network_address)
            fields["dst_len"] = rule.destination.prefixlen
        if rule.iif is not None:
            fields["iifname"] = rule.iif
        if rule.oif is not None:
            fields["oifname"] = rule.oif
        if rule.fwmark is not None:
            fields["fwmark"] = rule.fwmark
        if rule.fwmask is not None:
            fields["fwmask"] = rule.fwmask
        return fields


class NeighbourTable:
    """The kernel's IPv4 neighbour (ARP) cache, read: which link-layer address answers for an
    address on an interface (the home agent learns a node's own MAC there when it comes home,
    RFC 5944 §4.6).

    It has its own netlink socket: the adapter's may be busy in another worker thread, and a
    synchronous IPRoute serves one call at a time (hence the lock).
    """

    def __init__(self, netns: str | None = None) -> None:
        self._ipr = IPRoute(netns=netns, flags=0) if netns is not None else IPRoute()
        self._lock = threading.Lock()

    def hardware_address(self, ifname: str, address: IPv4Address) -> bytes | None:
        """The entry's link-layer address while it is usable (NUD_VALID); None when there is
        no entry, or it is incomplete or failed. OSError when `ifname` does not exist or the
        kernel refuses the dump."""
        with self._lock:
            try:
                indices = self._ipr.link_lookup(ifname=ifname)
                if not indices:
                    raise OSError(errno.ENODEV, f"neighbour {address}: no interface {ifname}")
                entries = list(
                    self._ipr.get_neighbours(family=socket.AF_INET, ifindex=indices[0], dst=str(address))
                )
            except NetlinkError as error:
                raise OSError(error.code, f"neighbour {address} on {ifname}: {error}") from error
        for entry in entries:
            lladdr = entry.get("NDA_LLADDR")
            if (
                entry.get("NDA_DST") == str(address)
                and int(entry.get("ifindex", -1)) == indices[0]
                and int(entry["state"]) & NUD_VALID
                and lladdr
            ):
                try:
                    return parse_mac(str(lladdr))
                except ValueError:
                    return None  # not an Ethernet address (a tunnel's): nothing to announce
        return None

    def close(self) -> None:
        self._ipr.close()


def _accept_all(_message: object) -> bool:
    return True


def _prefix(address: str | None, length: int) -> IPv4Network | None:
    return IPv4Network(f"{address}/{length}") if address is not None else None


def _kind_fields(link: Link) -> dict[str, Any]:
    if link.kind == LinkKind.VETH:
        return {"peer": {"ifname": link.peer}}
    ends = link.tunnel
    if ends is None:
        return {}
    prefix = "ipip" if link.kind == LinkKind.IPIP else "gre"
    fields: dict[str, Any] = {
        f"{prefix}_local": str(ends.local or _ANY),
        f"{prefix}_remote": str(ends.remote or _ANY),
        f"{prefix}_ttl": ends.ttl,
        f"{prefix}_pmtudisc": int(ends.pmtudisc),
    }
    if link.kind == LinkKind.GRE and ends.key is not None:
        fields |= {"gre_ikey": ends.key, "gre_okey": ends.key}
        fields |= {"gre_iflags": GRE_KEY, "gre_oflags": GRE_KEY}
    return fields


def _owned_links(messages: list[Any], names: Mapping[int, str], ownership: Ownership) -> list[Link]:
    found: dict[str, Link] = {}
    for m in messages:
        name = names[int(m["index"])]
        if not ownership.owns_link(name):
            continue
        info = m.get("IFLA_LINKINFO")
        try:
            kind = LinkKind(str(info.get("IFLA_INFO_KIND") if info is not None else None))
        except ValueError:
            continue  # not a kind we create, so not ours whatever its name; leave it alone
        data = info.get("IFLA_INFO_DATA") if info is not None else None
        peer = None
        if kind == LinkKind.VETH:
            if m.get("IFLA_LINK_NETNSID") is not None:
                continue  # the other end lives in another namespace: not a pair we made
            peer = names.get(int(m.get("IFLA_LINK") or 0))
            if peer is None or (peer < name and ownership.owns_link(peer)):
                continue  # the pair is reported under its first name
        master = m.get("IFLA_MASTER")
        found[name] = Link(
            name=name,
            kind=kind,
            mtu=m.get("IFLA_MTU"),
            up=bool(m["flags"] & IFF_UP),
            tunnel=_tunnel_ends(kind, data),
            peer=peer,
            master=names.get(int(master)) if master else None,
        )
    return list(found.values())


def _tunnel_ends(kind: LinkKind, data: Any) -> TunnelEnds | None:
    if kind not in (LinkKind.IPIP, LinkKind.GRE) or data is None:
        return None
    prefix = "IFLA_IPIP_" if kind == LinkKind.IPIP else "IFLA_GRE_"

    def address(field: str) -> IPv4Address | None:
        value = data.get(prefix + field)
        return IPv4Address(value) if value and value != str(_ANY) else None

    key = data.get("IFLA_GRE_IKEY") if kind == LinkKind.GRE else None
    return TunnelEnds(
        local=address("LOCAL"),
        remote=address("REMOTE"),
        ttl=int(data.get(prefix + "TTL") or 0),
        pmtudisc=bool(data.get(prefix + "PMTUDISC")),
        key=int(key) if key else None,
    )
