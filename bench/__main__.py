"""``python -m bench [NAME ...] [--quick]``: run the named benchmarks (all when none is named),
each in its own process. Names: ha_capacity, udp_tunnel, throughput, footprint, handover,
peers (the module names under bench/; handover and peers walk the tour's chain with the
product, peers also with nat-failover and mobike-vpn). In-guest benches boot the QEMU guest
themselves (qemu.run).
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["ha_capacity", "udp_tunnel", "footprint", "throughput", "handover", "peers"]


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    # Names first, then options for every bench (with their values: --reps 3).
    first_option = next((i for i, a in enumerate(arguments) if a.startswith("-")), len(arguments))
    names, options = arguments[:first_option], arguments[first_option:]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; have {BENCHMARKS}", file=sys.stderr)
        return 2
    failures = []
    for name in names or BENCHMARKS:
        print(f"== bench.{name}", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}", *options]) != 0:
            failures.append(name)
    if failures:
        print(f"benchmarks that did not finish: {failures}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
