"""The demo: `make demo` (python3 -m qemu.demo) boots the lab and runs the router through the tour.

On the host it boots the image through `qemu.run` and re-runs itself inside the guest with
`--in-guest`. Inside, it builds the lab world, starts the product as it runs in the field (the
inner home agent in the secure domain, the outer home agent in the DMZ, the router daemon
with its own strongSwan), waits until the router settled inside on "corp", then walks the
tour of DESIGN.md section 5 with a TCP session and a UDP stream from lan-host to the corp
server running throughout (qemu.lab.tour): corp AP down -> 3G; hotspot up -> hotspot; hotspot
down + ext up -> outer home; ext down + corp up -> inside. It prints one row per step (step,
situation, uplink, gap ms, packets lost, TCP alive, cleartext leaks on the outside links) and
exits 0 only when every step passed.

`--serve` keeps the world and the router running after the tour and relays the router's LAN
status page to the host (http://127.0.0.1:8080/ by default) until interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

GUEST_PAGE_PORT = 8080  # the guest's root namespace relays this port to the router's LAN page
OUT = Path("/out")


def in_guest(serve: bool, host_port: int = 8080) -> int:
    from qemu.lab import World, plan
    from qemu.lab.product import DualProduct
    from qemu.lab.tour import (
        STEPS,
        format_phases,
        format_table,
        leaks,
        outside_captures,
        run_step,
        start_inside,
    )
    from qemu.lab.traffic import Traffic

    print("demo: building the lab world", flush=True)
    world = World(static_lan=False)
    with world:
        for stage, seconds in world.timings.items():
            print(f"  {stage:<38} {seconds:8.2f} s", flush=True)
        product = DualProduct(world)
        try:
            print("demo: starting the product (home agents, router charon, router daemon)", flush=True)
            for what, seconds in start_inside(world, product).items():
                print(f"  {what:<38} {seconds:8.2f} s", flush=True)
            out_dir = OUT / "demo" if OUT.is_dir() else world.run_dir / "demo"
            out_dir.mkdir(parents=True, exist_ok=True)
            results = []
            print("demo: the tour (50 pps UDP + a TCP session lan-host -> corp server "
                  f"{plan.CORRESPONDENT_ADDRESS})", flush=True)
            with outside_captures(world, out_dir) as pcaps, \
                    Traffic(world, plan.CORRESPONDENT_ADDRESS, rate=50) as traffic:
                time.sleep(2)
                for step in STEPS:
                    result = run_step(world, product, traffic, step)
                    results.append(result)
                    print(f"  {step.name:<36} -> {result.situation} on {result.uplink}: gap {result.gap}"
                          f"{'  ERROR ' + result.error if result.error else ''}", flush=True)
                    for handover in result.phases:
                        print(f"      {format_phases(handover)}", flush=True)
                    if result.error:
                        break
            leak_count = sum(len(found) for found in leaks(pcaps).values())
            print("\n" + format_table(results, leak_count), flush=True)
            print(f"\nTCP session: {traffic.tcp_result}; the corp server saw {sorted(traffic.sources())}")
            passed = (len(results) == len(STEPS) and all(r.ok for r in results)
                      and leak_count == 0 and bool(traffic.tcp_ok))
            print(f"demo: {'PASS' if passed else 'FAIL'} (captures and logs in {out_dir})", flush=True)
            (out_dir / "router.log").write_text(product.router_log(whole=True))
            if serve:
                serve_page(world, host_port)
        finally:
            product.stop()
    return 0 if passed else 1


def serve_page(world: object, host_port: int) -> None:
    """Relay the router's LAN page to the guest's root namespace until interrupted."""
    from qemu.lab import World
    from qemu.lab.serve import hold
    from qemu.lab.serve import serve_page as relay_page

    assert isinstance(world, World)
    print("demo: the router keeps running; Ctrl-C ends the demo", flush=True)
    hold(relay_page(world, GUEST_PAGE_PORT, host_port))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m qemu.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--in-guest", action="store_true", help="run the demo here (in the guest)")
    parser.add_argument("--serve", action="store_true",
                        help="after the tour, keep the router running and serve its status page")
    parser.add_argument("--port", type=int, default=8080, help="host port for --serve (default 8080)")
    parser.add_argument("--image", type=Path, help="boot this image dir instead of building one")
    parser.add_argument("--timeout", type=float, default=1500)
    args = parser.parse_args(argv)
    if args.in_guest:
        return in_guest(args.serve, args.port)
    from qemu.run import BootConfig, Forward, RunnerError, run_script

    forwards = [Forward(args.port, GUEST_PAGE_PORT)] if args.serve else []
    if args.serve:
        print(f"demo: the status page will be at http://127.0.0.1:{args.port}/ after the tour "
              "(Ctrl-C ends the demo)", flush=True)
    timeout = 10 * 365 * 86400.0 if args.serve else args.timeout
    try:
        serve = f" --serve --port {args.port}" if args.serve else ""
        return run_script(f"exec python3 -m qemu.demo --in-guest{serve}",
                          BootConfig(image_dir=args.image, forwards=forwards), timeout)
    except RunnerError as error:
        print(f"qemu.demo: {error}", file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main())
