"""One atheris (libFuzzer) run of one target, in its own process (libFuzzer exits when done).

    python3 -m tests.fuzz.atheris_worker TARGET OUTDIR [libFuzzer flags...]

Product modules (``router.*``) are imported under coverage instrumentation. A contract
violation is recorded (``OUTDIR/crashes``) and the run goes on, so one run reports every
distinct crash; ``OUTDIR/stats.json`` holds executions and crash counts.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["router"]):
    from tests.fuzz import targets

from tests.fuzz.mutate import GENERIC_TOKENS, apply_ops, random_ops
from tests.fuzz.record import CrashLog

STATS_EVERY = 2000


def main() -> None:
    name, outdir = sys.argv[1], Path(sys.argv[2])
    target = targets.TARGETS[name]
    tokens = target.tokens + GENERIC_TOKENS
    crashes = CrashLog(outdir / "crashes")
    stats = outdir / "stats.json"
    count = 0
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        nonlocal count
        count += 1
        try:
            target.check(data)
        except targets.ContractViolation as exc:
            crashes.record(exc, data)
        if count % STATS_EVERY == 0:
            crashes.write_stats(stats, count, time.monotonic() - started)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rnd = random.Random(seed)
        if rnd.random() < 0.5:
            return atheris.Mutate(data, max_size)
        out = apply_ops(data, random_ops(rnd, rnd.randint(1, 4)), tokens)
        return out[:max_size]

    libfuzzer_argv = [sys.argv[0], *sys.argv[3:]]
    atheris.Setup(libfuzzer_argv, one_input, custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
