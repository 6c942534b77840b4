"""A kernel in memory that records the `ip ...` line of every change (netifd's dummy backend).

It mirrors the kernel behaviours plans depend on, so unit tests of the daemons catch the same
ordering mistakes the real kernel would: a device must exist before an address, route or
proxy entry uses it; deleting a device drops its addresses, routes and proxy entries; a
device going down drops its IPv4 routes; a bridge must exist before a port joins it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv4Network

from .backend import BackendError, check_sysctl_key
from .plan import Address, Change, Item, Link, Operation, Ownership, Plan, ProxyArp, Route, Rule


class FakeBackend:
    def __init__(
        self,
        ownership: Ownership | None = None,
        foreign_links: Iterable[str] = (),
        fail_on: Iterable[str] = (),
    ) -> None:
        """`foreign_links`: devices someone else owns (eth0, br-lan) that plans may use.
        `fail_on`: substrings of `ip` lines to refuse, to test error paths."""
        self._ownership = ownership or Ownership()
        self.foreign_links = set(foreign_links)
        self.fail_on = tuple(fail_on)
        self.lines: list[str] = []
        self._links: dict[str, Link] = {}
        self._addresses: set[Address] = set()
        self._routes: dict[tuple[int, IPv4Network, int], Route] = {}
        self._rules: set[Rule] = set()
        self._proxy_arp: set[ProxyArp] = set()
        #: /proc/sys as the fake kernel holds it; unknown keys read as "0".
        self.sysctls: dict[str, str] = {}
        self.closed = False

    @property
    def ownership(self) -> Ownership:
        return self._ownership

    def observe(self) -> Plan:
        return Plan(
            links=frozenset(self._links.values()),
            addresses=frozenset(self._addresses),
            routes=frozenset(self._routes.values()),
            rules=frozenset(self._rules),
            proxy_arp=frozenset(self._proxy_arp),
        )

    def take_lines(self) -> list[str]:
        """The lines recorded since the last call (handy between steps of a test)."""
        lines, self.lines = self.lines, []
        return lines

    def apply(self, change: Change) -> None:
        line = str(change)
        if any(pattern in line for pattern in self.fail_on):
            raise BackendError(change, "refused by the test (fail_on)")
        item = change.item
        if change.operation == Operation.REMOVE:
            self._remove(item)
        else:
            self._add(change, item)
        self.lines.append(line)

    def read_sysctl(self, key: str) -> str:
        return self.sysctls.get(check_sysctl_key(key), "0")

    def write_sysctl(self, key: str, value: str) -> None:
        self.sysctls[check_sysctl_key(key)] = value
        self.lines.append(f"sysctl -w {key}={value}")

    def close(self) -> None:
        self.closed = True

    # --- mirror of the kernel's rules ----------------------------------------------------

    def _devices(self) -> set[str]:
        return self.foreign_links | {n for link in self._links.values() for n in link.device_names}

    def _up_devices(self) -> set[str]:
        owned_up = {n for link in self._links.values() if link.up for n in link.device_names}
        return self.foreign_links | owned_up

    def _require_device(self, change: Change, name: str | None) -> None:
        if name is not None and name not in self._devices():
            raise BackendError(change, f"Cannot find device {name!r}")

    def _add(self, change: Change, item: Item) -> None:
        if isinstance(item, Link):
            self._require_device(change, item.master)
            existing = self._links.get(item.name)
            if change.operation == Operation.ADD and existing is not None:
                if existing.is_recreated_by(item):
                    raise BackendError(change, "a different device with this name exists")
            elif change.operation == Operation.ADD and item.name in self._devices():
                raise BackendError(change, "a device with this name exists and is not ours")
            if change.operation == Operation.MODIFY and existing is None:
                raise BackendError(change, f"Cannot find device {item.name!r}")
            mtu: int | None = item.mtu if item.mtu is not None else _default_mtu(item)
            if existing is not None and item.mtu is None:
                mtu = existing.mtu
            self._links[item.name] = replace(item, mtu=mtu)
            if not item.up:
                self._flush_routes(set(item.device_names))
        elif isinstance(item, Address):
            self._require_device(change, item.ifname)
            self._addresses.add(item)
        elif isinstance(item, ProxyArp):
            self._require_device(change, item.ifname)
            self._proxy_arp.add(item)
        elif isinstance(item, Route):
            self._require_device(change, item.dev)
            if item.dev is not None and item.dev not in self._up_devices():
                raise BackendError(change, "Nexthop device is not up")
            self._routes[item.key] = item
        else:
            # The kernel accepts rules naming absent devices (they wait for them); so do we.
            self._rules.add(item)

    def _remove(self, item: Item) -> None:
        if isinstance(item, Link):
            gone = self._links.pop(item.name, None)
            if gone is None:
                return
            names = set(gone.device_names)
            self._addresses = {a for a in self._addresses if a.ifname not in names}
            self._proxy_arp = {p for p in self._proxy_arp if p.ifname not in names}
            self._flush_routes(names)
            for name, link in list(self._links.items()):
                if link.master in names:
                    self._links[name] = replace(link, master=None)
        elif isinstance(item, Address):
            self._addresses.discard(item)
        elif isinstance(item, ProxyArp):
            self._proxy_arp.discard(item)
        elif isinstance(item, Route):
            self._routes.pop(item.key, None)
        else:
            self._rules.discard(item)

    def _flush_routes(self, devices: set[str]) -> None:
        self._routes = {k: r for k, r in self._routes.items() if r.dev not in devices}


def _default_mtu(link: Link) -> int:
    # What the kernel picks over a 1500-byte underlay: IP-in-IP adds 20 bytes, GRE 24 (+4 key).
    if link.kind == "ipip":
        return 1480
    if link.kind == "gre":
        return 1472 if link.tunnel is not None and link.tunnel.key is not None else 1476
    return 1500
