"""Handover and boundary-crossing benchmark of the product (issue 8, item 1), in the QEMU guest.

The product runs as the tour runs it (qemu.lab.product.DualProduct). bench.peers' chain of
steps is walked `--reps` times in one world, each step with its own 100 pps UDP stream and TCP
echo session from lan-host to the corp server (bench.peers.measure_step, the same measurement
the peer comparison uses):

    boundary.inside_outside   corp AP lost silently -> 3G (VPN up + two registrations)
    handover.planned          hotspot appears while on 3G -> WLAN (make-before-break)
    handover.unplanned        hotspot lost silently -> 3G
    boundary.outer_home       ext on the air, hotspot lost -> the outer home network
    boundary.outside_inside   corp on the air, ext lost -> inside

Per step and repetition: the longest gap (ms), packets lost, whether the TCP session survived;
from the router's own log the registration round trips of the step (`rtt Nms`), and from its
status the finished handovers' phases (ms after detection). Rows, per step KEY:
`KEY.gap_ms` (median; samples kept), `KEY.gap_ms.worst`, `KEY.lost_packets` (and `.worst`),
`KEY.tcp_survived`, `KEY.registration_rtt_ms`, `KEY.gap_minus_rtt_ms` (the gap less one
round trip to the home agent: what DESIGN.md's unplanned-loss target bounds),
`KEY.phase.<phase>_ms` (median), so the slowest phase is visible, and over every step
`tcp.sessions_survived_ratio`. KEY is the step's key, the boundary ones named as issue 8 asks:
boundary.in_to_out, boundary.out_to_in, boundary.out_to_outer_home.

Host: ``python3 -m bench handover [--reps N]`` boots the guest (one boot, one world).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.peers import CHAIN, GAP_TARGETS, Sample
from bench.results import Metric, median

NAME = "handover"
RTT = re.compile(r"(?:inner|outer): (?:registered|renewed|deregistered)\b.*?rtt (\d+)ms")
# DESIGN.md section 7: unplanned loss -> flowing again within 300 ms + one round trip.
GAP_MINUS_RTT_TARGETS = {"handover.unplanned": "<= 300"}
# The chain's step keys -> the metric names issue 8 fixes.
METRIC_NAMES = {"boundary.inside_outside": "boundary.in_to_out", "boundary.outside_inside": "boundary.out_to_in",
                "boundary.outer_home": "boundary.out_to_outer_home"}


@dataclass
class StepRecord:
    """One step of one repetition: the peers' sample toward cn plus what the router logged."""

    key: str
    sample: dict[str, Any]
    rtts_ms: list[float] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)  # handover log entries of the step


def worst(values: Sequence[float]) -> float:
    return max(values) if values else float("nan")


def rows(records: Sequence[StepRecord]) -> list[Metric]:
    """Result rows per step key (pure: records in, rows out)."""
    by_key: dict[str, list[StepRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    out: list[Metric] = []
    all_sessions: list[float] = []
    for key, group in by_key.items():
        samples = [Sample(**r.sample) for r in group]
        target = GAP_TARGETS.get(key, ">= 0")
        key = METRIC_NAMES.get(key, key)
        gaps = [s.gap_ms for s in samples if s.resumed]
        losses = [float(s.lost) for s in samples if s.lost is not None]
        out.append(Metric(f"{key}.gap_ms", median(gaps), "ms", target, gaps))
        out.append(Metric(f"{key}.gap_ms.worst", worst(gaps), "ms", target, gaps))
        out.append(Metric(f"{key}.resumed", float(all(s.resumed for s in samples)), "bool", "== 1",
                          [float(s.resumed) for s in samples]))
        if losses:
            lost_target = "== 0" if key == "handover.planned" else ">= 0"
            out.append(Metric(f"{key}.lost_packets", median(losses), "packets", lost_target, losses))
            out.append(Metric(f"{key}.lost_packets.worst", worst(losses), "packets", lost_target, losses))
        sessions = [float(s.tcp) for s in samples if s.tcp is not None]
        all_sessions += sessions
        if sessions:
            out.append(Metric(f"{key}.tcp_survived", min(sessions), "bool", "== 1", sessions))
        # One round trip per repetition: the step's first registration (the one that moved).
        rtts = [r.rtts_ms[0] for r in group if r.rtts_ms]
        if rtts:
            out.append(Metric(f"{key}.registration_rtt_ms", median(rtts), "ms", ">= 0", rtts))
            if key in GAP_MINUS_RTT_TARGETS:  # the bound DESIGN.md sets (elsewhere the step's
                # first round trip need not lie inside its gap, and a difference means nothing)
                paired = [Sample(**r.sample).gap_ms - r.rtts_ms[0] for r in group
                          if r.rtts_ms and r.sample["resumed"]]
                out.append(Metric(f"{key}.gap_minus_rtt_ms", median(paired), "ms", GAP_MINUS_RTT_TARGETS[key], paired))
        phases: dict[str, list[float]] = {}
        for record in group:
            for entry in record.phases:
                for phase in entry.get("phases", []):
                    phases.setdefault(str(phase["name"]), []).append(float(phase["at_ms"]))
        for phase, values in sorted(phases.items(), key=lambda kv: statistics.median(kv[1])):
            out.append(Metric(f"{key}.phase.{phase}_ms", median(values), "ms", ">= 0", values))
    if all_sessions:
        out.append(Metric("tcp.sessions_survived_ratio", sum(all_sessions) / len(all_sessions), "ratio", ">= 1",
                          all_sessions))
    return out


# --- in the guest ---------------------------------------------------------------------------------

def run(reps: int, rate: float) -> list[StepRecord]:
    from bench.peers import measure_step, ours_spec
    from qemu.lab import World

    spec = ours_spec()
    steps = [s for s in CHAIN if not s.repeat]
    records: list[StepRecord] = []
    with World(**spec.world_options) as world:
        for ap in ("ext", "hotspot"):
            world.ap_down(ap)
        mode = spec.start(world)
        product = mode.product  # type: ignore[attr-defined]
        try:
            mode.wait_settled("wlan", "corp", True, timeout=120)
            mode.wait_standby("cell", timeout=90)
            for rep in range(reps):
                print(f"== repetition {rep + 1}/{reps}", flush=True)
                for step in steps:
                    mark, since = len(product.router_log()), time.time()
                    try:
                        samples = measure_step(world, "ours", mode, step, rate)
                    except Exception as error:  # the next step starts from wherever this one ended
                        print(f"  {step.key:<24} FAILED: {error}", flush=True)
                        continue
                    log = product.router_log()[mark:]
                    phases = [h for h in product.status().get("handovers", [])
                              if h.get("kind") == "situation" and float(h.get("at", 0)) >= since - 0.5]
                    for sample in samples:
                        if sample.correspondent == "cn":
                            records.append(StepRecord(step.key, asdict(sample),
                                                      [float(x) for x in RTT.findall(log)], phases))
        finally:
            mode.stop()
    return records


def in_guest(args: argparse.Namespace) -> int:
    from bench.guest import GUEST_OUT, write_guest_rows

    records = run(args.reps, args.rate)
    write_guest_rows(NAME, rows(records))
    (GUEST_OUT / f"{NAME}-records.json").write_text(json.dumps([asdict(r) for r in records], indent=1))
    return 0 if records else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.handover", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="walks of the chain (default 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="UDP stream, packets/s")
    parser.add_argument("--quick", action="store_true", help="two repetitions")
    parser.add_argument("--in-guest", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 2
    if args.in_guest:
        return in_guest(args)
    from bench.guest import run_in_guest

    return run_in_guest(NAME, "bench.handover", ["--reps", str(args.reps), "--rate", str(args.rate)],
                        timeout=600 + 400 * args.reps)


if __name__ == "__main__":
    sys.exit(main())
