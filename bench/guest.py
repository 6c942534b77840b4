"""In-guest benches: the host half boots the QEMU guest once (qemu.run) and runs the bench's
module inside with ``--in-guest``; the guest half writes its rows to /out/bench/<name>.json
(/src is read-only in the guest); the host half reads them back, prints them beside their
targets and writes bench/results/<name>.json like every other bench.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from bench.results import Metric, from_row, report

REPO = Path(__file__).resolve().parent.parent
GUEST_MARKER = Path("/run/mobile-router-guest")
GUEST_OUT = Path("/out/bench")
HOST_OUT = REPO / "out" / "bench"


def inside_guest() -> bool:
    return GUEST_MARKER.is_file()


def write_guest_rows(name: str, metrics: list[Metric]) -> Path:
    GUEST_OUT.mkdir(parents=True, exist_ok=True)
    path = GUEST_OUT / f"{name}.json"
    path.write_text(json.dumps([m.row() for m in metrics], indent=2) + "\n")
    return path


def guest_metrics(name: str, module: str, arguments: list[str], timeout: float = 1800) -> tuple[int, list[Metric]]:
    """Boot the guest, run ``python3 -m <module> --in-guest <arguments>`` there, and return
    (its exit status, or qemu.run's 124/125/126; the rows it wrote)."""
    rows = HOST_OUT / f"{name}.json"
    rows.unlink(missing_ok=True)
    inside = shlex.join(["python3", "-m", module, "--in-guest", *arguments])
    command = [sys.executable, "-m", "qemu.run", "--timeout", str(timeout), "--cmd", inside]
    lock = os.environ.get("BENCH_GUEST_LOCK")  # a machine shared by several sessions: one guest at a time
    if lock:
        command = ["flock", lock, *command]
    status = subprocess.call(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if not rows.exists():
        print(f"bench {name}: the guest wrote no results (status {status})", file=sys.stderr)
        return status or 1, []
    metrics = [from_row(row) for row in json.loads(rows.read_text())]
    return status, metrics


def run_in_guest(name: str, module: str, arguments: list[str], timeout: float = 1800) -> int:
    """`guest_metrics`, then print the rows beside their targets and write bench/results/."""
    status, metrics = guest_metrics(name, module, arguments, timeout)
    if not metrics:
        return status or 1
    print(f"{name} (measured in the QEMU guest):")
    path = report(name, metrics)
    print(f"  -> {path}")
    return status
