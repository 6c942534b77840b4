"""``python -m bench [--quick]``: run every benchmark that exists so far, in one process each."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["bench.ha_capacity", "bench.udp_tunnel"]


def main() -> int:
    failures = 0
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        failures += subprocess.call([sys.executable, "-m", module, *sys.argv[1:]]) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
