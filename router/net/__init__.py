"""net: the kernel's links, tunnels, routes, rules and proxy ARP, as plans (the only pyroute2 user).

- `plan`: pure data: `Plan`, its items, `Ownership`, `diff`, `ip`-like rendering.
- `backend`: the `Backend` protocol; `fake.FakeBackend` records lines, no root needed;
  `kernel.Pyroute2Backend` speaks netlink (imports pyroute2 lazily, on construction).
- `adapter.KernelAdapter`: apply / reconcile / teardown; `adapter.SettledVerify`: the debounced
  read-back after quick applies (both daemons).
- `arp.send_gratuitous_arp`: RFC 5944 §4.6 announcements (raw AF_PACKET socket).
- `kernel.NeighbourTable`: the ARP cache, read (a node's own MAC when it comes home, §4.6).

A home agent with one away mobile router (composition root builds the backend)::

    kernel = KernelAdapter(Pyroute2Backend(Ownership(link_prefix="mip-"), netns=None))
    kernel.reconcile(Plan())                          # at start: drop a crashed run's leftovers
    plan = Plan.of(
        Link("mip-0a0a0032", LinkKind.IPIP, tunnel=TunnelEnds(home_agent, care_of)),
        Route(IPv4Network("10.10.0.50/32"), dev="mip-0a0a0032"),
        Route(IPv4Network("10.1.1.0/24"), dev="mip-0a0a0032"),   # RFC 5177 prefix
        ProxyArp("eth0", IPv4Address("10.10.0.50")),
    )
    for change in kernel.apply(plan):                # returns what it changed, for the log
        ...
    send_gratuitous_arp("eth0", IPv4Address("10.10.0.50"))
    kernel.teardown()                                 # clean shutdown
"""

from .adapter import ConvergenceError, KernelAdapter, SettledVerify
from .backend import Backend, BackendError, SysctlError
from .fake import FakeBackend
from .plan import (
    MAIN_TABLE,
    Address,
    Change,
    Link,
    LinkKind,
    Operation,
    Ownership,
    Plan,
    PlanError,
    ProxyArp,
    Route,
    RouteType,
    Rule,
    RuleAction,
    TunnelEnds,
    diff,
)

__all__ = [
    "MAIN_TABLE",
    "Address",
    "Backend",
    "BackendError",
    "Change",
    "ConvergenceError",
    "FakeBackend",
    "KernelAdapter",
    "Link",
    "LinkKind",
    "Operation",
    "Ownership",
    "Plan",
    "PlanError",
    "ProxyArp",
    "Route",
    "RouteType",
    "Rule",
    "RuleAction",
    "SettledVerify",
    "SysctlError",
    "TunnelEnds",
    "diff",
]
