"""`python3 -m qemu.lab up [--hold]` / `down`: the lab world by hand, inside the guest.

    python3 -m qemu.run --cmd 'python3 -m qemu.lab up --hold & sleep 30; ip netns list'

`up --hold` keeps the world (and its modem responder, which lives in this process) until
SIGTERM/SIGINT, then tears it down. `down` removes a world a crashed process left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .world import World


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m qemu.lab", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--hold", action="store_true", help="keep the world until SIGTERM/SIGINT")
    parser.add_argument("--prefix", default="", help="namespace name prefix")
    parser.add_argument("--no-static-lan", action="store_true",
                        help="leave br-lan and lan-host unaddressed (for the product)")
    args = parser.parse_args(argv)
    world = World(prefix=args.prefix, static_lan=not args.no_static_lan)
    if args.action == "down":
        world.down()
        return 0
    for stage, seconds in world.up().items():
        print(f"{stage:<30} {seconds:7.2f} s", flush=True)
    if not args.hold:
        return 0  # namespaces stay; the modem responder ends with this process
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print("lab: world up; holding until SIGTERM/SIGINT", flush=True)
    stop.wait()
    world.down()
    print("lab: world down", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
