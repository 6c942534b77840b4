"""`KernelAdapter`: the one door through which the daemons change the kernel.

apply(desired) = observe what we own + diff + apply each change + wait until the kernel shows
the desired plan. Because the adapter always starts from what the kernel holds (not from what
it believes it did), the same call serves the first start, every update, the restart after a
crash (leftovers are simply "owned and not desired") and shutdown (`teardown`: desired = empty).

A handover cannot wait for two full dumps of the kernel's tables (each is hundreds of
milliseconds on a slow router CPU): `apply_quick(desired)` diffs against what the last apply or
verification left (the adapter's *known* state, itself an observation), applies the changes and
returns; `verify(desired)` then observes, applies whatever still differs (an interface that
vanished meanwhile took its routes along) and waits for convergence, off the critical path.
Any refused change drops the known state, and the quick path falls back to a full `apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from .backend import Backend, BackendError
from .plan import Change, Plan, diff

log = logging.getLogger(__name__)


class ConvergenceError(RuntimeError):
    """The kernel did not show the desired plan in time; the message lists what differs."""


class KernelAdapter:
    def __init__(
        self,
        backend: Backend,
        *,
        settle_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.ownership = backend.ownership
        self._settle_timeout = settle_timeout
        self._clock = clock
        self._sleep = sleep

        #: What the kernel held after our last apply/verify (None: unknown, observe first).
        self._known: Plan | None = None

    def observe(self) -> Plan:
        return self.backend.observe()

    def forget(self) -> None:
        """Something outside our changes moved (a link went away): observe next time."""
        self._known = None

    def forget_device(self, ifname: str) -> None:
        """`ifname` went down or was re-created (ppp0 redialled): the kernel dropped the
        routes and addresses on it, so the known state must not list them any more."""
        known = self._known
        if known is None:
            return
        self._known = Plan(
            links=known.links,
            addresses=frozenset(a for a in known.addresses if a.ifname != ifname),
            routes=frozenset(r for r in known.routes if r.dev != ifname),
            rules=known.rules,
            proxy_arp=frozenset(p for p in known.proxy_arp if p.ifname != ifname),
        )

    def apply_quick(self, desired: Plan) -> list[Change]:
        """Apply the difference from the known state without observing first or waiting;
        follow with `verify(desired)`. Falls back to `apply` when nothing is known or the
        kernel refuses a change (the known state was stale)."""
        if self._known is None:
            return self.apply(desired)
        desired.validate(self.ownership)
        changes = diff(self._known, desired)
        try:
            for change in changes:
                self.backend.apply(change)
                log.info("kernel: %s", change)
        except BackendError as exc:
            log.info("kernel: %s; observing and applying again", exc)
            self._known = None
            return changes + self.apply(desired)
        self._known = desired
        return changes

    def verify(self, desired: Plan) -> list[Change]:
        """Observe; apply what still differs from `desired`; wait until converged."""
        self._known = None
        healed = diff(self.backend.observe(), desired)
        for change in healed:
            self.backend.apply(change)
            log.info("kernel: %s (verification)", change)
        self._wait_until_converged(desired)
        self._known = desired
        return healed

    def plan_changes(self, desired: Plan) -> list[Change]:
        """What `apply` would do now, without doing it (for dry runs and logs)."""
        desired.validate(self.ownership)
        return diff(self.backend.observe(), desired)

    def apply(self, desired: Plan) -> list[Change]:
        """Make the kernel hold exactly `desired` among the objects we own; return the changes.

        Raises `PlanError` before touching anything if the plan is invalid, `BackendError`
        naming the object the kernel refused (changes before it stay applied; calling again
        continues from there), `ConvergenceError` if the result does not show in time.
        """
        self._known = None
        changes = self.plan_changes(desired)
        for change in changes:
            self.backend.apply(change)
            log.info("kernel: %s", change)
        if changes:
            self._wait_until_converged(desired)
        self._known = desired
        return changes

    def reconcile(self, desired: Plan) -> list[Change]:
        """After a (re)start: remove owned leftovers not in `desired`, add what is missing."""
        changes = self.apply(desired)
        if changes:
            log.info("kernel: reconciled %d leftover difference(s) after start", len(changes))
        return changes

    def teardown(self) -> list[Change]:
        """Remove everything we own (clean shutdown)."""
        return self.apply(Plan())

    def ensure_sysctls(self, settings: Mapping[str, str]) -> list[str]:
        """Set networking sysctls that differ (e.g. net/ipv4/ip_forward = 1); return what changed.

        Sysctls carry no owner mark, so they are asserted, not owned: nothing here reverts
        them at teardown. Per-device keys of our own links vanish with the link; assert them
        again after an `apply` that recreated it.
        """
        changed = []
        for key, value in settings.items():
            if self.backend.read_sysctl(key) != value:
                self.backend.write_sysctl(key, value)
                changed.append(f"sysctl -w {key}={value}")
                log.info("kernel: sysctl %s = %s", key, value)
        return changed

    def close(self) -> None:
        self.backend.close()

    def _wait_until_converged(self, desired: Plan) -> None:
        # Netlink acknowledges a request once the kernel has done it, so this normally
        # passes on the first look; the bound covers devices that settle asynchronously.
        deadline = self._clock() + self._settle_timeout
        while True:
            residue = diff(self.backend.observe(), desired)
            if not residue:
                return
            if self._clock() >= deadline:
                pending = "\n  ".join(str(c) for c in residue)
                raise ConvergenceError(
                    f"kernel still differs from the plan after {self._settle_timeout} s:\n"
                    f"  {pending}"
                )
            self._sleep(0.02)


class SettledVerify:
    """The verification that follows `KernelAdapter.apply_quick`, off the critical path.

    Call `changed()` after each quick apply: once no change has come for `delay` seconds
    (a handover's burst of changes is verified once, after it), the kernel is read back
    against `plan()` and what still differs is applied (`KernelAdapter.verify`: a device that
    vanished took its routes with it). A failed read-back makes the adapter forget what it
    knew, so the next change starts from a fresh look. `lock` (the daemon's plan lock) is held
    around the read-back and `plan()`; nothing is read once `stopped()` says so. Both daemons
    (router and home agent) use it.
    """

    def __init__(
        self,
        adapter: KernelAdapter,
        plan: Callable[[], Plan],
        *,
        delay: float = 1.0,
        lock: asyncio.Lock | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.adapter = adapter
        self.plan = plan
        self.delay = delay
        self.lock = lock
        self.stopped = stopped
        self._after = 0.0
        self._task: asyncio.Future[None] | None = None

    def changed(self) -> None:
        """The kernel was just changed: verify once changes have stopped for `delay` s."""
        self._after = asyncio.get_running_loop().time() + self.delay
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._after - loop.time()) > 0:
            await asyncio.sleep(wait)
        if self.stopped():
            return
        async with self.lock if self.lock is not None else contextlib.nullcontext():
            if self.stopped():
                return
            try:
                healed = await asyncio.to_thread(self.adapter.verify, self.plan())
            except Exception as exc:  # the next change applies again from a fresh look
                log.warning("kernel verification failed: %s", exc)
                self.adapter.forget()
                return
            if healed:
                log.warning("kernel: %d difference(s) healed after verification", len(healed))
