"""SettledVerify: the debounced kernel read-back both daemons run after quick applies."""

from __future__ import annotations

import asyncio
import logging

import pytest

from router.net import Plan, SettledVerify


class Adapter:
    """Records verify() calls; can fail or heal."""

    def __init__(self, healed: list[str] | None = None, fail: bool = False) -> None:
        self.plans: list[Plan] = []
        self.forgotten = 0
        self.healed = healed or []
        self.fail = fail

    def verify(self, plan: Plan) -> list[str]:
        self.plans.append(plan)
        if self.fail:
            raise OSError("netlink dump refused")
        return self.healed

    def forget(self) -> None:
        self.forgotten += 1


def run(coroutine_factory):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine_factory())


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll (no timing assertion: noisy machines only make it slower)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not met"
        await asyncio.sleep(0.01)


def test_a_burst_of_changes_is_verified_once_after_it_settles() -> None:
    adapter = Adapter()
    built: list[int] = []

    def plan() -> Plan:
        built.append(1)
        return Plan()

    async def main() -> None:
        verify = SettledVerify(adapter, plan, delay=0.3)  # type: ignore[arg-type]
        for _ in range(5):  # a handover's burst of quick applies
            verify.changed()
            await asyncio.sleep(0)
        assert adapter.plans == []  # nothing read during the burst
        await until(lambda: adapter.plans)
        await asyncio.sleep(0.05)
        assert len(adapter.plans) == 1 and len(built) == 1  # once, for the whole burst
        verify.changed()  # a later change: verified again
        await until(lambda: len(adapter.plans) == 2)

    run(main)


def test_a_failed_read_back_forgets_the_known_state(caplog: pytest.LogCaptureFixture) -> None:
    adapter = Adapter(fail=True)

    async def main() -> None:
        verify = SettledVerify(adapter, Plan, delay=0.01)  # type: ignore[arg-type]
        verify.changed()
        await until(lambda: adapter.forgotten)

    with caplog.at_level(logging.WARNING):
        run(main)
    assert adapter.forgotten == 1
    assert "kernel verification failed: netlink dump refused" in caplog.text


def test_healed_differences_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    adapter = Adapter(healed=["add route", "add rule"])

    async def main() -> None:
        SettledVerify(adapter, Plan, delay=0.01).changed()  # type: ignore[arg-type]
        await until(lambda: "healed" in caplog.text)

    with caplog.at_level(logging.WARNING):
        run(main)
    assert "kernel: 2 difference(s) healed after verification" in caplog.text


def test_nothing_is_read_once_stopped_or_cancelled() -> None:
    adapter = Adapter()
    stopping = False

    async def main() -> None:
        nonlocal stopping
        verify = SettledVerify(adapter, Plan, delay=0.02, stopped=lambda: stopping)  # type: ignore[arg-type]
        verify.changed()
        stopping = True
        await asyncio.sleep(0.1)
        assert adapter.plans == []
        stopping = False
        verify.changed()
        verify.cancel()
        await asyncio.sleep(0.1)
        assert adapter.plans == []

    run(main)


def test_the_read_back_waits_for_the_plan_lock() -> None:
    """The router's kernel syncs hold its plan lock: a read-back never runs inside one, and
    the plan is built under the lock (so it is the plan the sync left)."""
    adapter = Adapter()

    async def main() -> None:
        lock = asyncio.Lock()
        verify = SettledVerify(adapter, Plan, delay=0.01, lock=lock)  # type: ignore[arg-type]
        async with lock:
            verify.changed()
            await asyncio.sleep(0.1)
            assert adapter.plans == []  # blocked behind the sync holding the lock
        await until(lambda: len(adapter.plans) == 1)

    run(main)
