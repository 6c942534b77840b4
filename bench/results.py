"""One result row per metric, as issue 8 fixes the format: {metric, value, unit, target, pass, samples}.

Every figure is printed as a value beside its target and as a ratio to the target's bound
(``x target``: above 1 is better for ``>=`` targets, below 1 for ``<=`` ones), both from the
same run. Ratios between two measurements of one run (nested vs ESP, after vs before) are
rows of their own, built by :func:`ratio`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Metric:
    metric: str
    value: float
    unit: str
    target: str  # e.g. ">= 5000", "<= 300"
    samples: list[float] = field(default_factory=list)

    @property
    def bound(self) -> float:
        return float(self.target.partition(" ")[2])

    @property
    def passed(self) -> bool:
        op, _, bound = self.target.partition(" ")
        limit = float(bound)
        return {">=": self.value >= limit, "<=": self.value <= limit, "==": self.value == limit}[op]

    @property
    def target_ratio(self) -> float:
        """value / bound; nan when the bound is 0 (an informational ">= 0" row)."""
        return self.value / self.bound if self.bound else math.nan

    def row(self) -> dict[str, Any]:
        """The JSON object; a figure that could not be measured (nan) is null, and a MISS."""
        data = asdict(self)
        data["value"] = None if math.isnan(self.value) else self.value
        data["samples"] = [None if math.isnan(s) else s for s in self.samples]
        data["pass"] = self.passed
        return data


def from_row(row: dict[str, Any]) -> Metric:
    """The inverse of Metric.row (null back to nan)."""
    def number(x: float | None) -> float:
        return math.nan if x is None else float(x)
    return Metric(row["metric"], number(row["value"]), row["unit"], row["target"],
                  [number(s) for s in row["samples"]])


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def ratio(metric: str, numerators: list[float], denominators: list[float], target: str) -> Metric:
    """A ratio row from paired samples of one run: value = median of the per-pair ratios
    (pairs taken in the same round, so a slow moment of the machine hits both sides)."""
    pairs = [n / d for n, d in zip(numerators, denominators, strict=True) if d]
    return Metric(metric, median(pairs), "ratio", target, pairs)


def format_row(m: Metric, width: int) -> str:
    verdict = "PASS" if m.passed else "MISS"
    x = m.target_ratio
    times = f"{x:8.2f}x target" if not math.isnan(x) else " " * 15
    return f"  {m.metric:<{width}}  {m.value:>12.3f} {m.unit:<8} target {m.target:<10} {times}  {verdict}"


def report(name: str, metrics: list[Metric]) -> Path:
    """Print each metric beside its target with PASS/MISS and write the JSON list."""
    width = max(len(m.metric) for m in metrics)
    for m in metrics:
        print(format_row(m, width))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps([m.row() for m in metrics], indent=2) + "\n")
    return path


def markdown_table(paths: list[Path]) -> str:
    """The rows of the given result files as a Markdown table (for the README section)."""
    lines = ["| metric | value | target | |", "|---|---|---|---|"]
    for path in paths:
        for row in json.loads(path.read_text()):
            m = from_row(row)
            value = "n/a" if math.isnan(m.value) else f"{m.value:,.3g}" if abs(m.value) < 1000 else f"{m.value:,.0f}"
            lines.append(f"| `{m.metric}` | {value} {m.unit} | {m.target} | {'PASS' if m.passed else 'MISS'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    names = sys.argv[1:] or sorted(p.stem for p in RESULTS_DIR.glob("*.json"))
    print(markdown_table([RESULTS_DIR / f"{name}.json" for name in names]))
