"""Scaffolding for the tests that run inside the QEMU guest (``python3 -m qemu.run --tests``).

These tests need the guest's kernel modules and peers, so outside the guest they must FAIL,
loudly, never skip: a skipped lab test on the host would read as a pass in CI.
The guest's init (qemu/guest/init) writes the marker file once the guest is set up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

GUEST_MARKER = Path("/run/mobile-router-guest")
OUT_ROOT = Path(os.environ.get("MR_OUT", "/out"))

NOT_IN_GUEST = (
    f"tests/qemu run inside the QEMU guest only ({GUEST_MARKER} is missing). "
    "Run them with: python3 -m qemu.run --tests tests/qemu   (or: make guest-test)"
)


def inside_guest() -> bool:
    return GUEST_MARKER.is_file()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here is a guest test: mark it so `-m guest` / `-m "not guest"` select them.
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.guest)


@pytest.fixture(autouse=True, scope="session")
def _require_guest() -> None:
    """Error every test here when not inside the guest (fail, never skip)."""
    if not inside_guest():
        pytest.fail(NOT_IN_GUEST, pytrace=False)


@pytest.fixture
def out_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A per-test directory under /out (the host's ./out/) for pcaps, logs, screenshots."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    path = OUT_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    yield path
