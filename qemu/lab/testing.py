"""Helpers for the in-guest tests: one world per test module, and a timings table.

The timings a module measured are printed at the end of the run and written to
/out/lab-timings-<module>.json when /out (the runner's shared output dir) is writable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .world import World

OUT = Path("/out")


def module_world(request: Any, timings: dict[str, float], **options: Any) -> Iterator[World]:
    """Build a world for a test module, record its stage timings, tear it down afterwards.
    `options` go to World() (the product's tests: static_lan=False, its dnsmasq serves the LAN)."""
    if os.geteuid() != 0 or not Path("/src").is_dir():
        raise RuntimeError("tests/qemu run inside the QEMU guest: python3 -m qemu.run --tests ...")
    world = World(**options)
    timings.update(world.up())
    try:
        yield world
    finally:
        world.down()
        timings["world down"] = world.last_down_seconds
        report(request, timings)


def report(request: Any, timings: dict[str, float]) -> None:
    name = request.module.__name__.rsplit(".", 1)[-1]
    lines = [f"\n{name}: measured times"]
    lines += [f"  {what:<44} {seconds:8.2f}" for what, seconds in timings.items()]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        # Fixture teardown runs with output captured: step outside to show the table.
        with capture.global_and_fixture_disabled():
            print("\n".join(lines), flush=True)
    if OUT.is_dir() and os.access(OUT, os.W_OK):
        path = OUT / f"lab-timings-{name}.json"
        path.write_text(json.dumps({k: round(v, 3) for k, v in timings.items()}, indent=1))
