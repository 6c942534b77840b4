"""The long fuzz run: ``python3 -m tests.fuzz [--executions N] [--target NAME] ...``.

Engine ``atheris`` (default when importable): coverage-guided libFuzzer, one process per
target, seeded with valid encodings and mutated both by libFuzzer and by our
structure-aware operators. Engine ``hypothesis``: the bounded test's strategies with a large
budget (no coverage guidance). Either way every contract violation is recorded, deduplicated,
with its shortest input and traceback under ``OUT/TARGET/crashes/``, and the run goes on.

Prints per target: executions, distinct crashes, execs/s and the estimated wall time for
``--executions`` (default 10**6); exits 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _write_seeds(name: str, corpus: Path, count: int = 64) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    from tests.fuzz.targets import TARGETS

    corpus.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(TARGETS[name].valid)
    def collect(data: bytes) -> None:
        seen.add(data)

    collect()
    for index, data in enumerate(sorted(seen)):
        (corpus / f"seed-{index:03d}").write_bytes(data)


def _crashes(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.read_text().split("\n", 1)[0] for p in directory.glob("crash-*.txt"))


def run_atheris(name: str, out: Path, executions: int, seconds: float | None, seed: int) -> dict:
    from tests.fuzz.targets import TARGETS

    target_dir = out / name
    corpus = target_dir / "corpus"
    _write_seeds(name, corpus)
    args = [sys.executable, "-m", "tests.fuzz.atheris_worker", name, str(target_dir), str(corpus),
            f"-runs={executions}", f"-seed={seed}", "-timeout=10", "-rss_limit_mb=2048",
            f"-max_len={max(4096, TARGETS[name].max_size * 2)}", "-print_final_stats=1",
            "-print_pcs=0", "-reload=0"]
    if seconds:
        args.append(f"-max_total_time={int(seconds)}")
    log = target_dir / "libfuzzer.log"
    started = time.monotonic()
    with log.open("w") as stream:
        proc = subprocess.run(args, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(REPO),
                                   "ROUTER_FUZZ_CONFIG_DIR": str(target_dir / "config")}, check=False)
    wall = time.monotonic() - started
    text = log.read_text(errors="replace")
    units = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    done = re.findall(r"Done (\d+) runs", text)
    executed = int(units[-1]) if units else int(done[-1]) if done else 0
    error = None if proc.returncode == 0 else f"worker exit {proc.returncode}, see {log}"
    rate = executed / wall if wall else 0.0
    stats = target_dir / "stats.json"
    if stats.exists():  # excludes interpreter start-up and seeding from the rate
        sample = json.loads(stats.read_text())
        rate = sample["executions"] / sample["seconds"] if sample["seconds"] else rate
    return {"executions": executed, "seconds": wall, "rate": rate,
            "crashes": _crashes(target_dir / "crashes"), "error": error}


def run_hypothesis(name: str, out: Path, executions: int, seconds: float | None, seed: int) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.fuzz.record import CrashLog
    from tests.fuzz.targets import TARGETS, ContractViolation

    target = TARGETS[name]
    crashes = CrashLog(out / name / "crashes")
    count = 0
    started = time.monotonic()
    batch = 0
    while count < executions and (seconds is None or time.monotonic() - started < seconds):
        size = min(10_000, executions - count)

        @hypothesis_seed(seed * 1_000_003 + batch)
        @settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(target.inputs())
        def fuzz(data: bytes) -> None:
            nonlocal count
            count += 1
            try:
                target.check(data)
            except ContractViolation as exc:
                crashes.record(exc, data)

        fuzz()
        batch += 1
    wall = time.monotonic() - started
    return {"executions": count, "seconds": wall, "rate": count / wall if wall else 0.0,
            "crashes": _crashes(out / name / "crashes"), "error": None}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from tests.fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python3 -m tests.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int, default=10**6, help="per target (default 10**6)")
    parser.add_argument("--seconds", type=float, default=None, help="stop each target after this")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="repeatable")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--out", type=Path, default=Path("/tmp/router-fuzz"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, target in sorted(TARGETS.items()):
            print(f"{name:18} {target.parser}")
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _atheris_available() else "hypothesis"
    run = run_atheris if engine == "atheris" else run_hypothesis
    names = args.target or sorted(TARGETS)
    print(f"engine {engine}, up to {args.executions} executions per target, output in {args.out}")
    print(f"{'target':18} {'executions':>11} {'crashes':>7} {'execs/s':>8} {'est. 1e6':>9}")
    results = {}
    for name in names:
        result = run(name, args.out, args.executions, args.seconds, args.seed)
        results[name] = result
        rate = result["rate"]
        estimate = f"{10**6 / rate / 60:.1f} min" if rate else "-"
        print(f"{name:18} {result['executions']:>11} {len(result['crashes']):>7} {rate:>8.0f} "
              f"{estimate:>9}", flush=True)
        for crash in result["crashes"]:
            print(f"    crash: {crash}")
        if result["error"]:
            print(f"    engine: {result['error']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"engine": engine, "targets": results}, indent=2))
    total = sum(len(r["crashes"]) for r in results.values())
    print(f"{len(names)} targets, {total} distinct crashes; details in {args.out}/<target>/crashes/")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
