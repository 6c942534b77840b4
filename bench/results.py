"""One result row per metric, as issue 8 fixes the format: {metric, value, unit, target, pass, samples}."""

from __future__ import annotations

import json
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
    def passed(self) -> bool:
        op, _, bound = self.target.partition(" ")
        limit = float(bound)
        return {">=": self.value >= limit, "<=": self.value <= limit, "==": self.value == limit}[op]

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = self.passed
        return data


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def report(name: str, metrics: list[Metric]) -> Path:
    """Print each metric beside its target with PASS/MISS and write the JSON list."""
    width = max(len(m.metric) for m in metrics)
    for m in metrics:
        verdict = "PASS" if m.passed else "MISS"
        print(f"  {m.metric:<{width}}  {m.value:>12.3f} {m.unit:<8} target {m.target:<10} {verdict}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps([m.row() for m in metrics], indent=2) + "\n")
    return path
