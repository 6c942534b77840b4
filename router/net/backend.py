"""The narrow interface between plans and a kernel: read back what we own, apply one change.

Two implementations: `router.net.fake.FakeBackend` (records `ip ...` lines, no root) and
`router.net.kernel.Pyroute2Backend` (netlink). Both are idempotent per change: adding what
is already there, or removing what is already gone, succeeds, so a change interrupted by a
crash can simply be planned and applied again.
"""

from __future__ import annotations

from typing import Protocol

from .plan import Change, Ownership, Plan


class BackendError(RuntimeError):
    """A change the kernel refused. The message names the object and the kernel's reason."""

    def __init__(self, change: Change, reason: str) -> None:
        super().__init__(f"{change}: {reason}")
        self.change = change
        self.reason = reason


class Backend(Protocol):
    @property
    def ownership(self) -> Ownership: ...

    def observe(self) -> Plan:
        """Everything the kernel holds that carries our ownership marks, as a plan."""
        ...

    def apply(self, change: Change) -> None:
        """Make one change, idempotently; raise `BackendError` naming the object on failure."""
        ...

    def read_sysctl(self, key: str) -> str:
        """The value of /proc/sys/`key` in the backend's namespace, e.g. net/ipv4/ip_forward."""
        ...

    def write_sysctl(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


class SysctlError(ValueError):
    """A sysctl key outside net/ (we only ever touch networking settings) or malformed."""


_SYSCTL_ROOTS = ("net/ipv4/", "net/ipv6/", "net/core/")


def check_sysctl_key(key: str) -> str:
    """Return `key` if it names a networking sysctl, else raise `SysctlError`."""
    parts = key.split("/")
    if not key.startswith(_SYSCTL_ROOTS) or any(p in ("", ".", "..") for p in parts):
        raise SysctlError(f"sysctl {key!r}: expected net/ipv4/..., net/ipv6/... or net/core/...")
    return key
