"""The lab demo: `python3 -m qemu.demo` boots the guest and shows the world coming up.

On the host it boots the image through `qemu.run` and re-runs itself inside the guest with
`--in-guest`. Inside, it builds the lab world, walks the router through every uplink once
(each AP with a DHCP lease, the 3G dial, an IKE SA to the VPN gateway with a ping to the
correspondent node through ESP), prints a table of what came up and how long it took, tears
the world down and exits 0 only if everything came up. (The tour of DESIGN.md section 5
replaces the walk once the router daemon exists.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

Step = tuple[str, str, float]  # what, result, seconds


def walk_the_router(world: object) -> list[Step]:
    """Every uplink once, as the smoke tests do; raises on the first thing that fails."""
    from qemu.lab import World, plan

    assert isinstance(world, World)
    router = world.router
    steps: list[Step] = []

    def step(what: str, action: Callable[[], str]) -> None:
        start = time.monotonic()
        result = action()
        steps.append((what, result, time.monotonic() - start))
        print(f"  {what:<38} {result:<34} {steps[-1][2]:6.2f} s", flush=True)

    for ap in ("corp", "ext", "hotspot"):
        step(f"wlan0 associates with {ap}", lambda ap=ap: f"{router.associate(ap):.2f} s to COMPLETED")
        step(f"DHCP lease from {ap}", lambda: router.dhcp().address)
    router.station.disconnect()
    step("3G dial (AT, chat, pppd)", lambda: router.dial()[0])
    router.default_route("ppp0")
    step("router charon up", lambda: f"{router.start_vpn_client():.2f} s to vici socket")
    step("IKE SA + virtual IP over 3G", lambda: bring_vpn_up(world))
    step(f"ping cn {plan.CORRESPONDENT_ADDRESS} through ESP",
         lambda: ping_text(world.ping("router", plan.CORRESPONDENT_ADDRESS, count=3)))
    return steps


def bring_vpn_up(world: object) -> str:
    from qemu.lab import World, vpn

    assert isinstance(world, World)
    session = world.router.vici_session()
    session.load_shared(vpn.router_secret())
    session.load_conn(vpn.router_connection())
    for _ in session.initiate({"child": "corp", "ike": "lab", "timeout": 30000}):
        pass
    for sa in session.list_sas():
        virtual_ips = sa["lab"].get("local-vips", [])
        return "virtual IP " + ", ".join(ip.decode() for ip in virtual_ips)
    raise RuntimeError("no IKE SA after initiate")


def ping_text(result: object) -> str:
    from qemu.lab import PingResult

    assert isinstance(result, PingResult)
    if not result.ok:
        raise RuntimeError(f"ping failed: {result}")
    return f"{result.received}/{result.sent}, avg {result.average_ms:.1f} ms"


def in_guest() -> int:
    from qemu.lab import World

    print("lab: building the world", flush=True)
    world = World()
    with world:
        print(f"{'world stage':<40} {'seconds':>8}")
        for stage, seconds in world.timings.items():
            print(f"  {stage:<38} {seconds:8.2f}")
        print("router walk:")
        steps = walk_the_router(world)
    print(f"lab: all {len(steps)} steps came up; world torn down in "
          f"{world.last_down_seconds:.2f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m qemu.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--in-guest", action="store_true", help="run the demo here (in the guest)")
    parser.add_argument("--image", type=Path, help="boot this image dir instead of building one")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if args.in_guest:
        return in_guest()
    from qemu.run import BootConfig, RunnerError, run_script

    try:
        return run_script("exec python3 -m qemu.demo --in-guest",
                          BootConfig(image_dir=args.image), args.timeout)
    except RunnerError as error:
        print(f"qemu.demo: {error}", file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main())
