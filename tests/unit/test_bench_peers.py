"""The pure half of bench.peers: loss counting, result rows, ours/peer ratios, the table."""

from __future__ import annotations

import math

import pytest

from bench.peers import (
    CHAIN,
    TRANSITION_KEYS,
    Sample,
    all_rows,
    markdown_table,
    parse_args,
    ratio_rows,
    rows_from_samples,
    step_gap,
    window_loss,
)


def sample(mode: str, key: str, gap: float, *, correspondent: str = "cn", lost: int | None = 0,
           resumed: bool = True, tcp: bool | None = True, before: str | None = "10.99.0.1",
           after: str | None = "10.99.0.1", reachable: bool = True) -> Sample:
    return Sample(mode, key, correspondent, reachable, gap, lost, resumed, tcp, before, after,
                  True, 1.0)


def by_name(rows: list) -> dict:
    return {row.metric: row for row in rows}


def test_ratio_is_ours_over_the_peer_per_step() -> None:
    rows = by_name(ratio_rows(
        {"handover.unplanned": [200.0, 300.0], "boundary.inside_outside": [1200.0]},
        {"mobike": {"handover.unplanned": [500.0], "boundary.inside_outside": [4000.0]},
         "nat": {"handover.unplanned": [1000.0]}},
    ))
    assert rows["ratio.ours_vs_mobike.handover.unplanned.gap_ms"].value == pytest.approx(0.5)
    assert rows["ratio.ours_vs_mobike.boundary.inside_outside.gap_ms"].value == pytest.approx(0.3)
    assert rows["ratio.ours_vs_nat.handover.unplanned.gap_ms"].value == pytest.approx(0.25)
    assert "ratio.ours_vs_nat.boundary.inside_outside.gap_ms" not in rows  # nat lacks the step
    assert all(row.unit == "ratio" and row.target == "<= 1" for row in rows.values())
    assert rows["ratio.ours_vs_mobike.handover.unplanned.gap_ms"].passed


def test_ratio_above_one_misses_and_degenerate_steps_give_no_row() -> None:
    rows = by_name(ratio_rows(
        {"handover.planned": [40.0], "handover.unplanned": [0.0], "boundary.outer_home": [9.0]},
        {"mobike": {"handover.planned": [20.0], "handover.unplanned": [100.0],
                    "boundary.outer_home": []}},
    ))
    assert rows["ratio.ours_vs_mobike.handover.planned.gap_ms"].value == pytest.approx(2.0)
    assert not rows["ratio.ours_vs_mobike.handover.planned.gap_ms"].passed
    assert set(rows) == {"ratio.ours_vs_mobike.handover.planned.gap_ms"}


def test_ratios_appear_only_with_ours_and_only_for_comparable_peer_steps() -> None:
    peers = [sample("mobike_vpn", "handover.unplanned", 800.0),
             sample("nat_failover", "handover.unplanned", 700.0, correspondent="internet"),
             sample("nat_failover", "boundary.inside_outside", 9000.0, resumed=False, tcp=False)]
    assert not [r for r in all_rows(peers) if r.metric.startswith("ratio.")]
    rows = by_name(all_rows([*peers, sample("ours", "handover.unplanned", 400.0),
                             sample("ours", "boundary.inside_outside", 1000.0)]))
    assert rows["ratio.ours_vs_mobike.handover.unplanned.gap_ms"].value == pytest.approx(0.5)
    # nat's unplanned step ran to the internet and its boundary step never resumed: no ratio.
    assert not [name for name in rows if name.startswith("ratio.ours_vs_nat")]


def test_window_loss_counts_missing_sequence_numbers_after_the_mark() -> None:
    arrivals = [(0, 0.00), (1, 0.01), (2, 0.02), (6, 0.30), (7, 0.31), (7, 0.32), (9, 0.33)]
    assert window_loss(arrivals, start=0.025, end=1.0) == 4  # 3, 4, 5 and 8
    assert window_loss(arrivals, start=0.025, end=0.305) == 3
    assert window_loss(arrivals, start=0.5, end=1.0) == 0  # nothing after the mark
    assert window_loss([(5, 1.0)], start=0.5, end=2.0) == 0  # nothing before it


def test_rows_carry_names_targets_and_samples() -> None:
    rows = by_name(rows_from_samples([
        sample("mobike_vpn", "handover.planned", 30.0, lost=0),
        sample("mobike_vpn", "handover.planned", 50.0, lost=2),
        sample("nat_failover", "boundary.inside_outside", 20000.0, lost=2000, resumed=False,
               tcp=False, before="10.30.0.100", after=None),
        sample("nat_failover", "handover.unplanned", 900.0, correspondent="internet",
               before="198.51.100.100", after="100.64.0.10", tcp=False),
        sample("nat_failover", "boundary.outside_inside", 1500.0, lost=None, tcp=None,
               reachable=False, before=None, after="10.30.0.100"),
    ]))
    planned = rows["peer.mobike_vpn.handover.planned.gap_ms"]
    assert (planned.value, planned.samples, planned.target) == (40.0, [30.0, 50.0], "<= 100")
    lost = rows["peer.mobike_vpn.handover.planned.lost"]
    assert (lost.value, lost.target, lost.passed) == (1.0, "== 0", False)
    assert rows["peer.mobike_vpn.handover.planned.tcp_survived"].value == 1.0
    assert rows["peer.mobike_vpn.handover.planned.source_kept"].value == 1.0
    assert rows["peer.nat_failover.boundary.inside_outside.resumed"].value == 0.0
    assert rows["peer.nat_failover.boundary.inside_outside.tcp_survived"].value == 0.0
    assert "peer.nat_failover.boundary.inside_outside.source_kept" not in rows  # nothing after
    assert rows["peer.nat_failover.internet.handover.unplanned.source_kept"].value == 0.0
    # cn out of reach before the step: whether and how soon it became reachable, nothing else.
    assert rows["peer.nat_failover.boundary.outside_inside.reachable_after"].value == 1.0
    assert rows["peer.nat_failover.boundary.outside_inside.reachable_after_ms"].value == 1500.0
    assert not [name for name in rows if name.startswith("peer.nat_failover.boundary.outside_inside.")
                and not name.split(".")[-1].startswith("reachable_after")]
    assert all(not math.isnan(row.value) for row in rows.values())
    assert all(row.row()["pass"] in (True, False) for row in rows.values())


def test_table_has_a_row_per_step_and_a_column_per_mode() -> None:
    table = markdown_table([
        sample("mobike_vpn", "handover.unplanned", 812.0, lost=80),
        sample("nat_failover", "boundary.inside_outside", 30000.0, resumed=False, tcp=False,
               before="10.30.0.100", after=None),
    ], ["nat_failover", "mobike_vpn"])
    lines = table.strip().splitlines()
    assert lines[0] == "| step | nat-failover | mobike-vpn |"
    assert len(lines) == 2 + len(TRANSITION_KEYS)
    assert "812 ms, 80 lost, TCP kept, src 10.99.0.1" in table
    assert "no traffic after 30 s, TCP broken, src 10.30.0.100 -> -" in table


def test_the_chain_ends_where_it_started_and_quick_drops_only_repeats() -> None:
    assert CHAIN[-1].ssid == "corp" and CHAIN[-1].inside
    assert set(TRANSITION_KEYS) == {t.key for t in CHAIN if not t.repeat}
    assert parse_args(["--quick"]).modes == ["nat-failover", "mobike-vpn"]
    with pytest.raises(SystemExit):
        parse_args(["--modes", "ours"])


def test_step_gap_needs_packets_after_the_mode_settled() -> None:
    # 100 pps, a straggler at 0.105 just after the knob at 0.1, then silence until 1.0.
    flowing = [(n, n / 100) for n in range(11)] + [(n, n / 100) for n in range(100, 120)]
    gap_ms, lost, resumed = step_gap(flowing, mark=0.1, settled_at=0.9, end=1.2, rate=100)
    assert resumed and lost == 89 and gap_ms == pytest.approx(900)
    dead = [(n, n / 100) for n in range(11)]  # the straggler only: the stream never came back
    gap_ms, lost, resumed = step_gap(dead, mark=0.1, settled_at=0.9, end=1.2, rate=100)
    assert not resumed and lost == 110 and gap_ms == pytest.approx(1100)
