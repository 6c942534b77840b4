"""The tour (DESIGN.md section 5; issue 5, item 6): the dual-system router walked through the
three situations by lab knobs only, with LAN traffic running throughout.

    inside on corp -> corp AP down -> 3G (outside) -> hotspot appears -> hotspot (outside,
    care-of change only) -> hotspot gone, ext appears -> outer home -> ext gone, corp back ->
    inside

Each step acts on the world (APs down/up), then waits until the router's own status (its
control socket) shows the expected situation, active uplink, LAN route and inner care-of
address, and until the UDP stream flows again; the step's gap is the stream's largest silence
from the action to a few seconds after it settled. Captures on every outside link (the cell
operator's transit, the hotspot's and the ext WLAN's uplinks, as the internet core sees them)
run for the whole tour and are checked afterwards for secure-domain (10.x) addresses in clear.

Used by tests/qemu/test_tour.py, `make demo` (qemu/demo.py) and the handover benchmarks.
The last step brings corp back and takes ext away: wpa_supplicant does not leave a working
WLAN for another SSID by itself, so "walking back into the building" is modelled as the ext
WLAN fading while corp appears.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from . import plan
from .captures import Packet, cleartext_leaks, record
from .product import DualProduct
from .shell import LabError, wait_until
from .traffic import Gap, Traffic
from .world import World

SECURE_PREFIXES = ("10.0.0.0/8",)
#: The outside links as the internet core sees them: (host, device, what).
OUTSIDE_LINKS = (("inet", "cell0", "3G operator transit"),
                 ("inet", "hs0", "hotspot uplink"),
                 ("inet", "ext0", "ext WLAN uplink"))
SETTLE_TIMEOUT = 150.0
AFTER_SETTLE = 3.0  # the stream is watched this long after a step settled


@dataclass(frozen=True)
class Expect:
    situation: str  # inside / outside / outer_home
    uplink: str  # the router's uplink name (wlan / cell)
    ssid: str | None = None
    lan_route: str = "vpn"  # direct inside, vpn outside


@dataclass(frozen=True)
class Step:
    name: str
    action: Callable[[World], None]
    expect: Expect


@dataclass
class StepResult:
    name: str
    expect: Expect
    situation: str = "?"
    uplink: str = "?"
    settled_s: float | None = None
    gap: Gap | None = None
    tcp_alive: bool = False
    phases: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    router_log: str = ""  # what the router logged during the step

    @property
    def ok(self) -> bool:
        return self.error is None and self.gap is not None and self.gap.resumed and self.tcp_alive


def _aps(down: tuple[str, ...] = (), up: tuple[str, ...] = ()) -> Callable[[World], None]:
    def act(world: World) -> None:
        for name in up:
            world.ap_up(name)
        for name in down:
            world.ap_down(name)
    return act


STEPS: tuple[Step, ...] = (
    Step("corp AP down -> 3G", _aps(down=("corp",)), Expect("outside", "cell")),
    Step("hotspot up -> hotspot", _aps(up=("hotspot",)), Expect("outside", "wlan", "hotspot")),
    Step("hotspot down, ext up -> outer home", _aps(up=("ext",), down=("hotspot",)),
         Expect("outer_home", "wlan", "ext")),
    Step("ext down, corp up -> inside", _aps(up=("corp",), down=("ext",)),
         Expect("inside", "wlan", "corp", lan_route="direct")),
)
START = Expect("inside", "wlan", "corp", lan_route="direct")


def observed(status: dict[str, Any]) -> tuple[str, str, str | None, str, str | None]:
    """(situation, active uplink, its SSID, LAN route, inner care-of address) from a status."""
    active = next((u for u in status.get("uplinks", []) if u.get("active")), {})
    inner = status.get("registrations", {}).get("inner", {})
    inner_ok = inner.get("state") == "registered"
    return (status.get("situation", {}).get("name", "?"), active.get("name", "-"), active.get("ssid"),
            str(status.get("lan_route", "?")), inner.get("care_of_address") if inner_ok else None)


def settled(status: dict[str, Any], expect: Expect) -> bool:
    situation, uplink, ssid, lan_route, care_of = observed(status)
    if (situation, uplink, lan_route) != (expect.situation, expect.uplink, expect.lan_route):
        return False
    if expect.ssid is not None and ssid != expect.ssid:
        return False
    if care_of is None:
        return False
    pool = IPv4Network(plan.VPN_POOL)
    # Inside the inner binding is direct (CoA = X); outside it rides the VPN (CoA = V).
    return (IPv4Address(care_of) in pool) == (expect.lan_route == "vpn")


def wait_settled(product: DualProduct, expect: Expect, timeout: float = SETTLE_TIMEOUT) -> float:
    last: list[Any] = [None]

    def check() -> bool:
        try:
            status = product.status()
        except Exception as exc:  # the daemon may be busy; keep asking
            last[0] = exc
            return False
        last[0] = observed(status)
        return settled(status, expect)

    return wait_until(check, timeout, f"router settled {expect}", interval=0.3,
                      on_timeout=lambda: f"last seen {last[0]}\n{product.router.log_tail(50)}")


def recent_phases(product: DualProduct, since_unix: float) -> list[dict[str, Any]]:
    try:
        handovers = product.status().get("handovers", [])
    except Exception:
        return []
    return [h for h in handovers if h.get("kind") == "situation" and float(h.get("at", 0)) >= since_unix]


def run_step(world: World, product: DualProduct, traffic: Traffic, step: Step,
             report: Callable[[StepResult], None] | None = None) -> StepResult:
    result = StepResult(step.name, step.expect)
    log_mark = len(product.router_log())
    started_unix = time.time()
    start = time.monotonic()
    try:
        step.action(world)
        result.settled_s = wait_settled(product, step.expect)
        settled_at = time.monotonic()
        traffic.wait_resumed(settled_at - 0.5, timeout=60)
        time.sleep(max(0.0, settled_at + AFTER_SETTLE - time.monotonic()))
    except LabError as error:
        result.error = str(error).splitlines()[0]
    result.gap = traffic.gap(start)
    result.tcp_alive = traffic.tcp_alive()
    situation, uplink, ssid, _route, _coa = observed(product.status())
    result.situation = situation
    result.uplink = f"{uplink} ({ssid})" if ssid else uplink
    result.phases = recent_phases(product, started_unix - 1)
    result.router_log = product.router_log()[log_mark:]
    if report is not None:
        report(result)
    return result


@contextmanager
def outside_captures(world: World, out_dir: Path) -> Iterator[list[Path]]:
    """tcpdump on every outside link for the duration of the block."""
    with ExitStack() as stack:
        paths = [stack.enter_context(record(world, host, device, out_dir / f"outside-{host}-{device}.pcap"))
                 for host, device, _ in OUTSIDE_LINKS]
        yield paths


def leaks(pcaps: list[Path]) -> dict[str, list[Packet]]:
    """Per capture, the packets with a secure-domain address in clear."""
    return {pcap.name: cleartext_leaks(pcap, SECURE_PREFIXES) for pcap in pcaps}


def start_inside(world: World, product: DualProduct) -> dict[str, float]:
    """The tour's start: only corp in range, both home agents, charon and the router up,
    the router settled inside; lan-host has its lease. Returns timings."""
    for ap in ("hotspot", "ext"):
        world.ap_down(ap)
    timings = product.start()
    timings["lan-host lease"] = world.lan_host_dhcp(timeout=60).seconds
    timings["router settled inside"] = wait_settled(product, START, timeout=180)
    return timings


def format_phases(handover: dict[str, Any]) -> str:
    """One handover-log entry: from -> to via uplink, then each phase's ms after detection."""
    phases = ", ".join(f"{p.get('name')} +{float(p.get('at_ms', 0)):.0f}" for p in handover.get("phases", []))
    return f"handover {handover.get('from')} -> {handover.get('to')} via {handover.get('uplink')}: {phases} ms"


def format_table(results: list[StepResult], leak_count: int) -> str:
    rows = [("step", "situation", "uplink", "gap ms", "lost", "TCP alive", "leaks", "ok")]
    for r in results:
        gap = r.gap or Gap(0, 0, False)
        rows.append((r.name, r.situation, r.uplink, f"{gap.ms:.0f}", str(gap.lost),
                     "yes" if r.tcp_alive else "NO", str(leak_count), "PASS" if r.ok and not leak_count else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
