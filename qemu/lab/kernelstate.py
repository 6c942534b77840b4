"""The router namespace's kernel state as iproute2 and nft list it: an independent oracle for
"no stale state remains" after a fault (issue 9's drills).

    before = kernel_listing(world)
    ...                                   # break something, let the router recover
    assert not duplicates(kernel_listing(world))
    assert differences(before, kernel_listing(world)) == ""

Uplink-owned objects the router does not plan (wlan0's kernel routes, links marked
linkdown) are left out; every tunnel, every route in every table, every rule, every xfrm
policy and the nft ruleset (counters and handles stripped) are in.
"""

from __future__ import annotations

import re
from typing import Any


def _strip_nft(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = re.sub(r"counter packets \d+ bytes \d+", "counter", line)
        line = re.sub(r" # handle \d+", "", line).rstrip()
        if line:
            lines.append(line)
    return lines


def _xfrm_policies(text: str) -> list[str]:
    """One line per policy: `ip xfrm policy` prints its selector ("src ... dst ...") and then
    indented lines (dir, priority, tmpl ...); the per-socket policies differ only in those."""
    policies: list[str] = []
    for line in text.splitlines():
        if line.startswith("src "):
            policies.append(line.strip())
        elif policies and line.strip():
            policies[-1] += " | " + " ".join(line.split())
    # Per-socket policies (charon's IKE sockets bypass IPsec, one pair per socket) belong to
    # the sockets, not to the policy database a stale tunnel could leave behind.
    return [p for p in policies if " | socket " not in p]


def kernel_listing(world: Any, host: str = "router", *, volatile: tuple[str, ...] = (),
                   any_tunnel_name: bool = False) -> dict[str, list[str]]:
    """Tunnels, routes (all tables), rules, xfrm policies and nft rules of `host`. What matches a
    regex in `volatile` reads "<*>" (e.g. a virtual IP that may change with each IKE SA);
    `any_tunnel_name` compares tunnels by their ends only (a make-before-break data plane
    alternates between two tunnel devices, so the name in use is not state that matters)."""
    tunnels = sorted(
        " ".join(line.split()[1:2] + re.findall(r"(?:ipip|gre) \S+ remote \S+ local \S+", line))
        for line in world.exec(host, ["ip", "-d", "-o", "link", "show"]).splitlines()
        if re.search(r" (ipip|gre|ip_vti|sit) ", line))
    routes = sorted(
        re.sub(r"\s+", " ", line).strip()
        for line in world.exec(host, ["ip", "-4", "route", "show", "table", "all"]).splitlines()
        if not (" dev wlan0 " in line and "proto kernel" in line) and "linkdown" not in line)
    rules = sorted(world.exec(host, ["ip", "-4", "rule"]).splitlines())
    xfrm = sorted(_xfrm_policies(world.exec(host, ["ip", "xfrm", "policy"])))
    nft = _strip_nft(world.exec(host, ["nft", "list", "ruleset"]))
    listing = {"tunnels": tunnels, "routes": routes, "rules": rules, "xfrm policies": xfrm, "nft": nft}
    if any_tunnel_name:
        listing = {kind: sorted(re.sub(r"\bmip-(?!home\b)[\w-]+", "mip-*", line) for line in lines)
                   for kind, lines in listing.items()}
    for pattern in volatile:
        listing = {kind: sorted(re.sub(pattern, "<*>", line) for line in lines) for kind, lines in listing.items()}
    return listing


def duplicates(listing: dict[str, list[str]]) -> dict[str, list[str]]:
    """Objects listed twice (a second tunnel, rule or policy for the same thing)."""
    return {kind: sorted({x for x in lines if lines.count(x) > 1})
            for kind, lines in listing.items() if kind != "nft" and len(set(lines)) != len(lines)}


def differences(before: dict[str, list[str]], after: dict[str, list[str]]) -> str:
    """What appeared (+) or vanished (-) between two listings; empty when they are the same."""
    out = []
    for kind in before:
        gone = sorted(set(before[kind]) - set(after.get(kind, [])))
        extra = sorted(set(after.get(kind, [])) - set(before[kind]))
        if gone or extra:
            out.append(f"{kind}:\n" + "".join(f"  - {x}\n" for x in gone) + "".join(f"  + {x}\n" for x in extra))
    return "".join(out)
