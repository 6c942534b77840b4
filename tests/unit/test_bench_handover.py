"""bench.handover's rows from step records (pure): medians, worst cases, gap minus one
registration round trip, and per-phase rows sorted by when the phase happened."""

from __future__ import annotations

from dataclasses import asdict

from bench.handover import StepRecord, rows
from bench.peers import Sample


def sample(key: str, gap: float, lost: int, tcp: bool = True) -> dict[str, object]:
    return asdict(Sample("ours", key, "cn", True, gap, lost, True, tcp, "10.1.1.10", "10.1.1.10", True, 1.0))


def phases(*pairs: tuple[str, float]) -> list[dict[str, object]]:
    return [{"kind": "situation", "at": 1.0, "phases": [{"name": n, "at_ms": t} for n, t in pairs]}]


def test_rows_carry_median_worst_rtt_and_phases() -> None:
    records = [
        StepRecord("handover.unplanned", sample("handover.unplanned", 400.0, 20), [120.0, 30.0],
                   phases(("detect", 0.0), ("outer_registered", 150.0))),
        StepRecord("handover.unplanned", sample("handover.unplanned", 600.0, 30), [100.0],
                   phases(("detect", 0.0), ("outer_registered", 250.0))),
        StepRecord("handover.unplanned", sample("handover.unplanned", 500.0, 25), [], []),
    ]
    by_name = {m.metric: m for m in rows(records)}
    assert by_name["handover.unplanned.gap_ms"].value == 500.0
    assert by_name["handover.unplanned.gap_ms.worst"].value == 600.0
    assert by_name["handover.unplanned.lost_packets.worst"].value == 30.0
    assert by_name["handover.unplanned.registration_rtt_ms"].samples == [120.0, 100.0]
    # gap minus the step's first round trip, paired per repetition: 400-120, 600-100
    assert sorted(by_name["handover.unplanned.gap_minus_rtt_ms"].samples) == [280.0, 500.0]
    assert by_name["handover.unplanned.gap_minus_rtt_ms"].target == "<= 300"
    assert by_name["handover.unplanned.phase.outer_registered_ms"].value == 200.0
    names = [m.metric for m in rows(records) if ".phase." in m.metric]
    assert names == ["handover.unplanned.phase.detect_ms", "handover.unplanned.phase.outer_registered_ms"]


def test_a_planned_handover_is_held_to_zero_loss_and_a_broken_session_fails() -> None:
    records = [StepRecord("handover.planned", sample("handover.planned", 40.0, 1, tcp=False))]
    by_name = {m.metric: m for m in rows(records)}
    assert by_name["handover.planned.lost_packets"].target == "== 0"
    assert not by_name["handover.planned.lost_packets"].passed
    assert not by_name["handover.planned.tcp_survived"].passed
    assert by_name["tcp.sessions_survived_ratio"].value == 0.0


def test_boundary_steps_carry_the_names_issue_8_fixes() -> None:
    records = [StepRecord(key, sample(key, 700.0, 30)) for key in
               ("boundary.inside_outside", "boundary.outside_inside", "boundary.outer_home")]
    names = {m.metric for m in rows(records)}
    assert {"boundary.in_to_out.gap_ms", "boundary.out_to_in.gap_ms", "boundary.out_to_outer_home.gap_ms",
            "tcp.sessions_survived_ratio"} <= names
