"""bench/results.py: rows, verdicts, ratio rows and the target ratio column (no timing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import results
from bench.footprint import growth_per_handover
from bench.results import Metric, format_row, from_row, ratio


@pytest.mark.parametrize(("value", "target", "passed"), [
    (5000, ">= 5000", True), (4999.9, ">= 5000", False),
    (30, "<= 30", True), (30.1, "<= 30", False),
    (1, "== 1", True), (0.99, "== 1", False),
    (math.nan, ">= 0", False), (math.nan, "<= 1", False), (math.nan, "== 0", False),
])
def test_verdict(value: float, target: str, passed: bool) -> None:
    assert Metric("m", value, "u", target).passed is passed


def test_row_has_the_issue_8_fields_and_nan_is_null() -> None:
    row = Metric("throughput.nested_vs_esp", math.nan, "ratio", ">= 0.8", [0.9, math.nan]).row()
    assert set(row) == {"metric", "value", "unit", "target", "pass", "samples"}
    assert row["value"] is None and row["samples"] == [0.9, None] and row["pass"] is False
    json.dumps(row, allow_nan=False)  # strict JSON


def test_from_row_inverts_row() -> None:
    metric = Metric("a.b", 12.5, "MB", "<= 30", [12.0, 13.0])
    back = from_row(json.loads(json.dumps(metric.row())))
    assert back == metric
    assert math.isnan(from_row(Metric("x", math.nan, "s", "<= 1").row()).value)


def test_ratio_pairs_rounds_and_takes_the_median() -> None:
    row = ratio("throughput.nested_vs_esp", [30.0, 40.0, 20.0], [40.0, 40.0, 40.0], ">= 0.8")
    assert row.samples == [0.75, 1.0, 0.5]
    assert row.value == 0.75 and row.unit == "ratio" and not row.passed


def test_ratio_needs_paired_samples() -> None:
    with pytest.raises(ValueError):
        ratio("r", [1.0, 2.0], [1.0], ">= 0")


def test_ratio_skips_zero_denominators() -> None:
    assert ratio("r", [1.0, 2.0], [0.0, 4.0], ">= 0").samples == [0.5]


def test_target_ratio_column() -> None:
    assert Metric("m", 21_000, "1/s", ">= 5000").target_ratio == 4.2
    assert Metric("m", 15, "MB", "<= 30").target_ratio == 0.5
    assert math.isnan(Metric("m", 3, "Mbit/s", ">= 0").target_ratio)
    line = format_row(Metric("ha.registrations_per_s", 21_000, "1/s", ">= 5000"), 24)
    assert "4.20x target" in line and line.rstrip().endswith("PASS")
    assert format_row(Metric("x", 31, "MB", "<= 30"), 4).rstrip().endswith("MISS")


def test_report_writes_a_json_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    path = results.report("unit", [Metric("a", 1.0, "s", "<= 2"), Metric("b", 3.0, "s", "<= 2")])
    rows = json.loads(path.read_text())
    assert [(r["metric"], r["pass"]) for r in rows] == [("a", True), ("b", False)]


def test_growth_per_handover() -> None:
    assert growth_per_handover(1000, 1600, 300) == 2.0
    assert growth_per_handover(1000, 900, 100) == -1.0
    assert growth_per_handover(1, 2, 0) == 0.0
