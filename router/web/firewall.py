"""The nftables ruleset that keeps the status page on the LAN side (DESIGN.md section 8).

Binding the LAN address is not enough: Linux accepts a packet for any local address on any
interface (the weak host model), so a host on an uplink, or anything arriving through a
tunnel, that routes 10.1.1.1 to the router would reach the page. This table drops the
page's port on every interface but the LAN bridge and loopback. ``nft -f`` applies the
text atomically, and the leading add/delete pair makes re-applying it idempotent.
"""

from __future__ import annotations

import re

TABLE = "router_web"
_IFNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")


def lan_only_ruleset(lan_interface: str, port: int) -> str:
    """nftables text: TCP ``port`` is answered only on ``lan_interface`` (and ``lo``)."""
    if not _IFNAME.match(lan_interface):
        raise ValueError(f"not an interface name: {lan_interface!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"not a TCP port: {port}")
    return (
        f"add table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter - 5; policy accept;\n"
        f'    tcp dport {port} iifname != {{ "{lan_interface}", "lo" }} counter drop '
        'comment "status page: LAN side only"\n'
        "  }\n"
        "}\n"
    )


def remove_ruleset() -> str:
    return f"add table inet {TABLE}\ndelete table inet {TABLE}\n"
