"""Ours against what users would pick instead (issue 10): nat-failover and mobike-vpn
(qemu.lab.peers), on the same transitions, in ONE guest run, one fresh lab world per mode.

Every mode walks the same chain of knobs (each step starts where the last one ended):

    start       inside on "corp" (WLAN), 3G dialled as standby; "ext" and "hotspot" off the air
    boundary.inside_outside   corp AP lost (silently, like driving out of range) -> 3G
    handover.planned          hotspot appears while on 3G -> WLAN (make-before-break)
    handover.unplanned        hotspot lost silently -> 3G
    handover.planned          (a second sample; not with --quick)
    boundary.outer_home       ext is on the air, then the hotspot is lost -> ext
    boundary.outside_inside   corp is on the air, then ext is lost silently -> corp

Around each step a sequence-numbered 100 pps UDP stream and a TCP echo session run from
lan-host to the corporate correspondent cn 10.20.0.10 (qemu.lab.traffic), started afresh before
the step so that every step has its own TCP session. Per step and mode: the largest gap (ms),
the packets lost in the window, whether the TCP session survived (its socket still gets echoes:
`ss` lastrcv, or the client's own verdict), and the source address cn saw before and after.
Where cn is out of reach before the step (nat-failover outside: it has no VPN), a UDP-only
stream to cn shows when cn becomes reachable, and the measured session runs to the internet
core 203.0.113.1 instead (rows `peer.nat_failover.internet.<step>.*`): nat-failover judged in
its own terms.

Rows (bench/results.py format): `peer.<mode>.<step>.{gap_ms,lost,tcp_survived,source_kept,
resumed}`; with "ours" plugged in (`--ours MODULE:FUNCTION` returning a `ModeSpec`) also
`ours.<step>.*` and `ratio.ours_vs_mobike.<step>.gap_ms` / `ratio.ours_vs_nat.<step>.gap_ms`
(`ratio_rows`). The comparison table (markdown) is written from the run to
bench/results/peers.md.

Host: ``python3 -m bench peers`` (or ``python3 -m bench.peers``) boots the guest.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bench.results import RESULTS_DIR, Metric, median

NAME = "peers"
RATE = 100.0
CN = "10.20.0.10"  # plan.CORRESPONDENT_ADDRESS (not imported: the pure half runs on the host)
INTERNET = "203.0.113.1"  # plan.INTERNET_CORE_ADDRESS
PEER_MODES = ("nat-failover", "mobike-vpn")
RATIO_LABELS = {"mobike_vpn": "mobike", "nat_failover": "nat"}

# Targets are DESIGN.md section 7's where it has one (a peer is held to what we promise);
# "outer_home" has none there: the inside->outside bound is used. Planned gap: a stream with
# nothing lost has gaps of a few inter-packet times, 100 ms leaves room for TCG's jitter.
GAP_TARGETS = {
    "handover.unplanned": "<= 400",  # 300 ms + one round trip to the home agent
    "handover.planned": "<= 100",
    "boundary.inside_outside": "<= 1500",
    "boundary.outside_inside": "<= 500",
    "boundary.outer_home": "<= 1500",
}


# -- the chain of steps ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Transition:
    key: str
    title: str
    act: tuple[tuple[str, str], ...]  # ("up"|"down", ap) after the mark
    uplink: str  # where the mode must end up
    ssid: str | None
    inside: bool
    prepare: tuple[tuple[str, str], ...] = ()  # before the mark (an AP coming on the air)
    repeat: bool = False  # a second sample, left out with --quick


CHAIN: tuple[Transition, ...] = (
    Transition("boundary.inside_outside", "inside -> outside (corp AP lost)",
               (("down", "corp"),), "cell", None, inside=False),
    Transition("handover.planned", "planned handover (hotspot appears while on 3G)",
               (("up", "hotspot"),), "wlan", "hotspot", inside=False),
    Transition("handover.unplanned", "unplanned loss (hotspot lost, 3G takes over)",
               (("down", "hotspot"),), "cell", None, inside=False),
    Transition("handover.planned", "planned handover (hotspot appears while on 3G)",
               (("up", "hotspot"),), "wlan", "hotspot", inside=False, repeat=True),
    Transition("boundary.outer_home", "outside -> outer home (hotspot lost, ext on the air)",
               (("down", "hotspot"),), "wlan", "ext", inside=False, prepare=(("up", "ext"),)),
    # As qemu.lab.tour models it: wpa_supplicant leaves a working WLAN for no other SSID by
    # itself, so walking back in is corp on the air while ext fades.
    Transition("boundary.outside_inside", "outside -> inside (corp back, ext fades)",
               (("down", "ext"),), "wlan", "corp", inside=True, prepare=(("up", "corp"),)),
)
TRANSITION_KEYS = tuple(dict.fromkeys(t.key for t in CHAIN))


# -- the modes: ours plugs in here ---------------------------------------------------------------

class RouterMode(Protocol):
    """A started router mode in one world (PeerRouter is one; the lead's product is another)."""

    def wait_settled(self, uplink: str, ssid: str | None, inside: bool, timeout: float) -> float:
        """Block until the mode carries the LAN on `uplink` (`ssid`), in the `inside` domain
        state; seconds waited. Raise (LabError) on timeout."""

    def wait_standby(self, uplink: str, timeout: float) -> float:
        """Block until `uplink` is up and usable as a fallback."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ModeSpec:
    """How to run one mode: `start(world)` configures and starts it in a fresh world (already
    up) and returns the running mode; `world_options` go to World() (the product wants
    {"static_lan": False})."""

    name: str  # metric-name form: "ours", "nat_failover", "mobike_vpn"
    start: Callable[[Any], RouterMode]
    world_options: dict[str, Any] = field(default_factory=dict)


class _PeerMode:
    """qemu.lab.peers.PeerRouter behind the RouterMode protocol."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def wait_settled(self, uplink: str, ssid: str | None, inside: bool, timeout: float) -> float:
        return float(self.peer.wait_active(uplink, ssid, self.peer.vpn_expected(inside), timeout))

    def wait_standby(self, uplink: str, timeout: float) -> float:
        return float(self.peer.world.wait_for(
            lambda: bool(self.peer.status().get("uplinks", {}).get(uplink, {}).get("routed")),
            timeout, f"{uplink} online as standby"))

    def stop(self) -> None:
        self.peer.stop()


def peer_spec(mode: str) -> ModeSpec:
    def start(world: Any) -> RouterMode:
        from qemu.lab.peers import PeerRouter

        peer = PeerRouter(world, mode)
        peer.start()
        return _PeerMode(peer)

    return ModeSpec(mode.replace("-", "_"), start)


class _Ours:
    """The product (qemu.lab.product.DualProduct) behind the RouterMode protocol, settled by
    qemu.lab.tour's own rule (situation, uplink, SSID, LAN route, inner care-of address)."""

    def __init__(self, world: Any) -> None:
        from qemu.lab.product import DualProduct

        self.world = world
        self.product = DualProduct(world)
        self.product.start()
        world.lan_host_dhcp(timeout=60)

    def wait_settled(self, uplink: str, ssid: str | None, inside: bool, timeout: float) -> float:
        from qemu.lab import tour

        situation = "inside" if inside else ("outer_home" if ssid == "ext" else "outside")
        expect = tour.Expect(situation, uplink, ssid, "direct" if inside else "vpn")
        return float(tour.wait_settled(self.product, expect, timeout))

    def wait_standby(self, uplink: str, timeout: float) -> float:
        def online() -> bool:
            uplinks = self.product.status().get("uplinks", [])
            return any(u.get("name") == uplink and u.get("state") in ("up", "degraded")
                       for u in uplinks)

        return float(self.world.wait_for(online, timeout, f"{uplink} online as standby"))

    def stop(self) -> None:
        self.product.stop()


def ours_spec() -> ModeSpec:
    """The product as the third mode: ``python3 -m bench peers --ours bench.peers:ours_spec``
    (the lead may plug in a different factory with the same shape)."""
    return ModeSpec("ours", _Ours, {"static_lan": False})


# -- pure: samples -> rows, ratios, table ----------------------------------------------------------

@dataclass
class Sample:
    """One step of one mode towards one correspondent."""

    mode: str  # "nat_failover", "mobike_vpn", "ours"
    transition: str
    correspondent: str  # "cn" or "internet"
    reachable_before: bool
    gap_ms: float
    lost: int | None  # None: no stream flowed before the step (nothing to count against)
    resumed: bool
    tcp: bool | None  # None: no TCP session (correspondent out of reach before the step)
    source_before: str | None
    source_after: str | None
    settled: bool
    settle_s: float
    note: str = ""


def window_loss(arrivals: Sequence[tuple[int, float]], start: float, end: float) -> int:
    """Sequence numbers missing in (start, end]: between the last arrival before `start` and
    the highest one received by `end` (a duplicate counts once). `arrivals` are (seq, time)."""
    before = [seq for seq, at in arrivals if at <= start]
    inside = {seq for seq, at in arrivals if start < at <= end}
    if not before or not inside:
        return 0
    first = max(before)
    received = {seq for seq in inside if seq > first}
    if not received:
        return 0
    return max(received) - first - len(received)


def step_gap(arrivals: Sequence[tuple[int, float]], mark: float, settled_at: float, end: float,
             rate: float) -> tuple[float, int, bool]:
    """(gap ms, packets lost, resumed) of a stream that flowed before `mark`. Resumed: at
    least 3 packets arrived after the mode settled (stragglers sent just before the knob do
    not count). Not resumed: the whole window is the gap and everything sent in it is lost.
    Resumed: the largest inter-arrival time from the pair straddling `mark` on, and the
    sequence numbers missing in the window (`window_loss`)."""
    if sum(1 for _, at in arrivals if settled_at < at <= end) < 3:
        return (end - mark) * 1000, round((end - mark) * rate), False
    times = sorted(at for _, at in arrivals if at <= end)
    worst = max((b - a for a, b in itertools.pairwise(times) if b >= mark), default=0.0)
    return worst * 1000, window_loss(arrivals, mark, end), True


def metric_prefix(mode: str, correspondent: str) -> str:
    base = "ours" if mode == "ours" else f"peer.{mode}"
    return base if correspondent == "cn" else f"{base}.{correspondent}"


def rows_from_samples(samples: Iterable[Sample]) -> list[Metric]:
    """Result rows per (mode, correspondent, step), samples kept, medians as values."""
    groups: dict[tuple[str, str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.mode, sample.correspondent, sample.transition), []).append(sample)
    rows = []
    for (mode, correspondent, key), all_samples in groups.items():
        name = f"{metric_prefix(mode, correspondent)}.{key}"
        # Out of reach before the step: only whether (and how soon) it became reachable.
        unreachable = [s for s in all_samples if not s.reachable_before]
        if unreachable:
            reached = [float(s.resumed) for s in unreachable]
            rows.append(Metric(f"{name}.reachable_after", min(reached), "bool", "== 1", reached))
            if delays := [s.gap_ms for s in unreachable if s.resumed]:
                rows.append(Metric(f"{name}.reachable_after_ms", median(delays), "ms",
                                   GAP_TARGETS.get(key, ">= 0"), delays))
        group = [s for s in all_samples if s.reachable_before]
        if not group:
            continue
        gaps = [s.gap_ms for s in group]
        rows.append(Metric(f"{name}.gap_ms", median(gaps), "ms", GAP_TARGETS.get(key, ">= 0"), gaps))
        rows.append(Metric(f"{name}.resumed", float(all(s.resumed for s in group)), "bool", "== 1",
                           [float(s.resumed) for s in group]))
        losses = [float(s.lost) for s in group if s.lost is not None]
        if losses:
            target = "== 0" if key == "handover.planned" else ">= 0"
            rows.append(Metric(f"{name}.lost", median(losses), "packets", target, losses))
        sessions = [float(s.tcp) for s in group if s.tcp is not None]
        if sessions:
            rows.append(Metric(f"{name}.tcp_survived", min(sessions), "bool", "== 1", sessions))
        kept = [float(s.source_before == s.source_after) for s in group
                if s.source_before and s.source_after]
        if kept:
            rows.append(Metric(f"{name}.source_kept", min(kept), "bool", "== 1", kept))
    return rows


def comparable_gaps(samples: Iterable[Sample], mode: str) -> dict[str, list[float]]:
    """Gap samples to cn of the steps a mode came through with the stream resumed and a stream
    flowing before: the only ones a ratio can be taken of."""
    gaps: dict[str, list[float]] = {}
    for s in samples:
        if s.mode == mode and s.correspondent == "cn" and s.reachable_before and s.resumed:
            gaps.setdefault(s.transition, []).append(s.gap_ms)
    return gaps


def ratio_rows(ours: Mapping[str, Sequence[float]], peers: Mapping[str, Mapping[str, Sequence[float]]]
               ) -> list[Metric]:
    """`ratio.ours_vs_<label>.<step>.gap_ms` = median(ours) / median(peer), for every step both
    measured (`peers` maps a label such as "mobike" to its gap samples per step). Below 1: ours
    is faster. A step with a zero or missing median on either side gives no row."""
    rows = []
    for label, peer in peers.items():
        for key in (k for k in TRANSITION_KEYS if k in ours and k in peer):
            mine, theirs = median(list(ours[key])), median(list(peer[key]))
            if not theirs or not mine or mine != mine or theirs != theirs:  # zero or nan
                continue
            rows.append(Metric(f"ratio.ours_vs_{label}.{key}.gap_ms", mine / theirs, "ratio",
                               "<= 1", [mine / theirs]))
    return rows


def all_rows(samples: Sequence[Sample]) -> list[Metric]:
    rows = rows_from_samples(samples)
    ours = comparable_gaps(samples, "ours")
    if ours:
        peers = {label: comparable_gaps(samples, mode) for mode, label in RATIO_LABELS.items()}
        rows += ratio_rows(ours, {label: gaps for label, gaps in peers.items() if gaps})
    return rows


def describe(samples: Sequence[Sample]) -> str:
    """One table cell: gap, loss, TCP verdict, source cn saw (before -> after)."""
    parts = []
    for s in samples:
        where = "" if s.correspondent == "cn" else f"[{s.correspondent}] "
        if not s.reachable_before:
            text = (f"cn reachable after {s.gap_ms:.0f} ms" if s.resumed else "cn unreachable")
        else:
            text = f"{s.gap_ms:.0f} ms, {s.lost} lost" if s.resumed else \
                f"no traffic after {s.gap_ms / 1000:.0f} s"
        if s.tcp is not None:
            text += ", TCP " + ("kept" if s.tcp else "broken")
        if s.source_before or s.source_after:
            before, after = s.source_before or "-", s.source_after or "-"
            text += f", src {before}" + ("" if before == after else f" -> {after}")
        parts.append(where + text)
    return "; ".join(parts)


def markdown_table(samples: Sequence[Sample], modes: Sequence[str]) -> str:
    titles = {t.key: t.title.split(" (")[0] for t in CHAIN}
    header = "| step | " + " | ".join(m.replace("_", "-") for m in modes) + " |"
    lines = [header, "|" + "---|" * (len(modes) + 1)]
    for key in TRANSITION_KEYS:
        cells = [describe([s for s in samples if s.mode == mode and s.transition == key]) or "n/a"
                 for mode in modes]
        lines.append(f"| {titles[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- the guest half ------------------------------------------------------------------------------

def _tcp_receiving(world: Any, destination: str, port: int) -> bool | None:
    """The lan-host socket to destination:port: True if an echo arrived in the last 500 ms,
    False if it is established but silent, None if there is no such socket."""
    output = world.exec("lan-host", ["ss", "-Htni", "state", "established", "dst",
                                     f"{destination}:{port}"], check=False)
    if not output.strip():
        return None
    match = re.search(r"lastrcv:(\d+)", output)
    return match is not None and int(match.group(1)) < 500


def tcp_survives(world: Any, traffic: Any, destination: str, port: int, timeout: float) -> bool:
    """The session gets echoes again within `timeout` (TCP's retransmission backoff after a
    long outage can take several seconds); False once the client gave up or the socket is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not traffic.tcp_alive():
            return False
        state = _tcp_receiving(world, destination, port)
        if state is None:
            return False
        if state:
            return True
        time.sleep(0.3)
    return False


def _knob(world: Any, action: str, ap: str) -> None:
    if action == "up":
        world.ap_up(ap)
    else:
        world.ap_down(ap, silent=True)


def measure_step(world: Any, mode_name: str, mode: RouterMode, step: Transition,
                 rate: float) -> list[Sample]:
    from qemu.lab.shell import LabError
    from qemu.lab.traffic import Traffic, read_arrivals

    for action, ap in step.prepare:
        _knob(world, action, ap)
    cn_before = world.ping("lan-host", CN, count=2, interval=0.2, wait=1.0).ok
    tag = f"{mode_name}-{step.key.replace('.', '-')}-{int(time.monotonic())}"
    streams: list[tuple[str, bool, Any, int]] = []  # correspondent, full (tcp), traffic, tcp port
    if cn_before:
        streams.append(("cn", True, Traffic(world, CN, rate, name=f"{tag}-cn"), 9001))
    else:
        udp_only = Traffic(world, CN, rate, name=f"{tag}-cn", udp_port=9200, tcp_port=9201)
        udp_only.daemons = [d for d in udp_only.daemons if "-udp-" in d.name]
        streams.append(("cn", False, udp_only, 9201))
        if world.ping("lan-host", INTERNET, count=2, interval=0.2, wait=1.0).ok:
            streams.append(("internet", True, Traffic(world, INTERNET, rate, name=f"{tag}-inet",
                                                      udp_port=9100, tcp_port=9101), 9101))
    samples: list[Sample] = []
    try:
        for _, _, traffic, _ in streams:
            traffic.start()
        for _, full, traffic, _ in streams:
            if full:
                traffic.wait_resumed(traffic.started_at, timeout=30)
        time.sleep(1.0)  # a baseline before the knob
        mark = time.monotonic()
        for action, ap in step.act:
            _knob(world, action, ap)
        settled, note = True, ""
        try:
            mode.wait_settled(step.uplink, step.ssid, step.inside, timeout=120)
        except LabError as error:
            settled, note = False, str(error).splitlines()[0]
        settle_s = time.monotonic() - mark
        after = time.monotonic()
        for _, _, traffic, _ in streams:
            with contextlib.suppress(LabError):
                traffic.wait_resumed(after, timeout=10)
        # A stream that never came back means a dead path: no need to wait out TCP's backoff.
        sessions = {correspondent: tcp_survives(world, traffic, destination(correspondent), port,
                                                30 if _flowing(traffic, after) else 3)
                    for correspondent, full, traffic, port in streams if full}
        end = time.monotonic()
        for correspondent, _, traffic, _ in streams:
            arrivals = read_arrivals(traffic.arrivals_path)
            before = [a for a in arrivals if a.at <= mark]
            later = [a for a in arrivals if a.at > max(after, mark)]
            if not before:  # nothing flowed before: the gap is the time until cn is reachable
                first = min((a.at for a in arrivals if a.at > mark), default=None)
                gap_ms = (first - mark) * 1000 if first is not None else (end - mark) * 1000
                resumed, lost = first is not None, None
            else:
                gap_ms, lost, resumed = step_gap([(a.seq, a.at) for a in arrivals], mark, after,
                                                 end, rate)
            samples.append(Sample(
                mode_name, step.key, correspondent, bool(before), round(gap_ms, 1), lost, resumed,
                sessions.get(correspondent), before[-1].source if before else None,
                later[-1].source if later else None, settled, round(settle_s, 2), note))
    finally:
        for correspondent, full, traffic, _ in streams:
            if full and sessions_ok(samples, correspondent):
                traffic.stop()  # the client's own verdict: "SESSION OK" or why it broke
                for sample in samples:
                    if sample.correspondent == correspondent and not traffic.tcp_ok:
                        sample.tcp, sample.note = False, traffic.tcp_result
            else:
                traffic.tcp_ok = False
                traffic.kill()
    for sample in samples:
        print(f"  {mode_name:<12} {step.key:<24} {describe([sample])}"
              f"{'' if sample.settled else '  NOT SETTLED: ' + sample.note}", flush=True)
    return samples


def _flowing(traffic: Any, since: float) -> bool:
    return sum(1 for a in traffic.arrivals() if a.at > since) >= 3


def destination(correspondent: str) -> str:
    return CN if correspondent == "cn" else INTERNET


def sessions_ok(samples: Sequence[Sample], correspondent: str) -> bool:
    return any(s.correspondent == correspondent and s.tcp for s in samples)


def run_mode(spec: ModeSpec, steps: Sequence[Transition], rate: float) -> list[Sample]:
    from qemu.lab import World

    print(f"== {spec.name}: world up", flush=True)
    with World(**spec.world_options) as world:
        for ap in ("ext", "hotspot"):
            world.ap_down(ap)
        mode = spec.start(world)
        samples: list[Sample] = []
        try:
            mode.wait_settled("wlan", "corp", True, timeout=120)
            mode.wait_standby("cell", timeout=90)
            for step in steps:
                try:
                    samples += measure_step(world, spec.name, mode, step, rate)
                except Exception as error:  # the next step starts from wherever this one ended
                    print(f"  {spec.name:<12} {step.key:<24} FAILED: {error}", flush=True)
        finally:
            try:
                mode.stop()
            except Exception as error:  # the figures are taken; the world goes down anyway
                print(f"== {spec.name}: stop failed: {error}", flush=True)
            for daemon in world.router.daemons():
                daemon.send_signal(signal.SIGTERM)
    return samples


def load_ours(text: str) -> ModeSpec:
    """`MODULE:FUNCTION`; FUNCTION() returns the ModeSpec of the product."""
    module_name, _, function = text.partition(":")
    spec = getattr(importlib.import_module(module_name), function)()
    # Duck-typed: run as `python -m bench.peers`, this module is __main__, not bench.peers.
    if not all(hasattr(spec, name) for name in ("name", "start", "world_options")):
        raise TypeError(f"{text} returned {type(spec).__name__}, not a ModeSpec")
    return ModeSpec(spec.name, spec.start, dict(spec.world_options))


def in_guest(args: argparse.Namespace) -> int:
    from bench.guest import GUEST_OUT, write_guest_rows

    steps = [s for s in CHAIN if not (args.quick and s.repeat)]
    specs = [peer_spec(mode) for mode in args.modes]
    if args.ours:
        specs.insert(0, load_ours(args.ours))
    samples: list[Sample] = []
    failures = 0
    for spec in specs:
        try:
            samples += run_mode(spec, steps, args.rate)
        except Exception as error:  # one broken mode must not lose the others' figures
            failures += 1
            print(f"== {spec.name} FAILED: {error}", flush=True)
    write_guest_rows(NAME, all_rows(samples))
    (GUEST_OUT / f"{NAME}-samples.json").write_text(json.dumps(
        {"modes": [s.name for s in specs], "samples": [asdict(s) for s in samples]}, indent=1))
    print(markdown_table(samples, [s.name for s in specs]))
    return 1 if failures else 0


def write_table_from_guest() -> None:
    """bench/results/peers.md from the samples the guest wrote (the README table's source)."""
    from bench.guest import HOST_OUT

    path = HOST_OUT / f"{NAME}-samples.json"
    if not path.exists():
        return
    data = json.loads(path.read_text())
    samples = [Sample(**s) for s in data["samples"]]
    table = markdown_table(samples, data["modes"])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{NAME}.md").write_text(
        f"<!-- written by python3 -m bench peers, {stamp}; do not edit -->\n{table}")
    (RESULTS_DIR / f"{NAME}-samples.json").write_text(path.read_text())
    print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.peers")
    parser.add_argument("--in-guest", action="store_true", help="(used by the host half)")
    parser.add_argument("--quick", action="store_true", help="one sample per step")
    parser.add_argument("--rate", type=float, default=RATE, help="UDP packets per second")
    parser.add_argument("--modes", type=lambda text: [m for m in text.split(",") if m],
                        default=list(PEER_MODES), help="peer modes, comma-separated")
    parser.add_argument("--ours", default="bench.peers:ours_spec", metavar="MODULE:FUNCTION",
                        help="a function returning the product's ModeSpec ('' leaves ours out)")
    args = parser.parse_args(argv)
    unknown = set(args.modes) - set(PEER_MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; have {PEER_MODES}")
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.guest import inside_guest, run_in_guest

    args = parse_args(argv)
    if args.in_guest:
        if not inside_guest():
            print("--in-guest: not inside the QEMU guest", file=sys.stderr)
            return 2
        return in_guest(args)
    extra = ["--rate", str(args.rate), "--modes", ",".join(args.modes)]
    extra += ["--quick"] if args.quick else []
    extra += ["--ours", args.ours] if args.ours else []
    status = run_in_guest(NAME, "bench.peers", extra, timeout=3600)
    write_table_from_guest()
    return status


if __name__ == "__main__":
    sys.exit(main())
