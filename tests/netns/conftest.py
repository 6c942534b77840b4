"""Host namespace tests: real kernel, root, one fresh network namespace per test.

Namespaces carry a per-run prefix (`nt<pid>-`), are removed after each test even when it
fails, and any stragglers of this run are swept at the end of the session. iproute2 (`ip`)
serves as the independent oracle: it reads back what the product wrote through pyroute2.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator

import pytest

RUN_PREFIX = f"nt{os.getpid()}-"
_counter = itertools.count()


@pytest.fixture(autouse=True, scope="session")
def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "tests/netns needs root (network namespaces, netlink writes); "
            "run as root or leave tests/netns out of the run",
            pytrace=False,
        )


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def in_ns(namespace: str, *command: str, check: bool = True) -> str:
    return ip("netns", "exec", namespace, *command, check=check)


def _delete(namespace: str) -> None:
    ip("netns", "del", namespace, check=False)


@pytest.fixture(scope="session", autouse=True)
def _sweep_namespaces_of_this_run() -> Iterator[None]:
    yield
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(RUN_PREFIX):
            _delete(name)


class Namespaces:
    """Creates namespaces on demand; the fixture deletes them all afterwards."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new(self, role: str) -> str:
        name = f"{RUN_PREFIX}{next(_counter)}{role}"
        ip("netns", "add", name)
        self.created.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    made = Namespaces()
    try:
        yield made
    finally:
        for name in made.created:
            _delete(name)


@pytest.fixture
def netns(namespaces: Namespaces) -> str:
    return namespaces.new("k")
