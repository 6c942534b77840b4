"""What both daemons share about their lifecycle and their keys.

- ``shutdown_event()``: the first SIGTERM/SIGINT sets the returned event (graceful stop,
  bounded by the caller); a second one exits at once without cleanup (uvicorn-style).
- ``security_association()``: the one mapping from the config's algorithm and replay names
  to the pure core's types, so the router and the home agent cannot disagree.
- ``reload_signal()``: SIGHUP calls the daemon's reload (re-read the config; a bad one is
  logged and the last good one keeps running).
- ``write_state()`` / ``read_state()``: small JSON state files (replay protection state,
  RFC 5944 §5.7) that must survive a power cut: written to a temporary file, fsynced, renamed
  over the old one and the directory fsynced, mode 0600. A reader sees the old or the new
  file, never a torn one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from router.config import MobilitySystemConfig, RouterConfig, UplinkConfig
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import DEFAULT_TIMESTAMP_TOLERANCE, ReplayMethod

ALGORITHMS = {
    "hmac-md5": AuthAlgorithm.HMAC_MD5,
    "keyed-md5": AuthAlgorithm.KEYED_MD5,
    "hmac-sha256": AuthAlgorithm.HMAC_SHA256,
}
REPLAY_METHODS = {"timestamp": ReplayMethod.TIMESTAMPS, "nonce": ReplayMethod.NONCES}


def security_association(
    spi: int, algorithm: str, key: bytes, replay: str, tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE
) -> SecurityAssociation:
    return SecurityAssociation(
        spi=spi,
        algorithm=ALGORITHMS[algorithm],
        key=key,
        replay=REPLAY_METHODS[replay],
        timestamp_tolerance=tolerance,
    )


def shutdown_event(log: logging.Logger) -> asyncio.Event:
    """Install the signal handlers on the running loop; return the graceful-stop event."""
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting without cleanup")
            sys.exit(1)
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


def reload_signal(log: logging.Logger, reload: Callable[[], object]) -> None:
    """SIGHUP -> ``reload()`` on the running loop (the daemon re-reads its config)."""

    def on_hangup() -> None:
        log.info("signal SIGHUP: reloading the configuration")
        reload()

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hangup)


class StateError(ValueError):
    """A state file exists but cannot be read back (torn by hand, wrong format)."""


def write_state(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically and durably (tmp + fsync + rename + dir fsync), 0600."""
    write_atomic(path, (json.dumps(data, sort_keys=True) + "\n").encode())


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (tmp + fsync + rename + dir fsync), 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state a previous run wrote; None when there is none; StateError when unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: not a JSON object")
    return data


# --- the router's reload: what a new config may change live ---------------------------------

#: Per uplink: ranked by the policy, so a reload applies them at once.
LIVE_UPLINK_SETTINGS = ("priority", "metered", "min_signal_dbm")
#: Per mobility system: the security association and the lifetime (a new machine re-registers).
LIVE_SYSTEM_SETTINGS = ("spi", "key", "algorithm", "replay", "lifetime")
#: Shown by name only: never a key's value in a log line.
SECRET_SETTINGS = ("key",)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload does: ``config`` is the new running config (live settings from the new
    file, restart-only settings kept from the old one)."""

    config: RouterConfig
    applied: tuple[str, ...]  # human-readable, one per change applied live
    needs_restart: tuple[str, ...]  # settings that changed but keep their old value until restart
    uplinks: tuple[str, ...]  # uplinks whose policy profile changed
    systems: tuple[str, ...]  # "inner"/"outer": new security association or lifetime


def _show(name: str, value: object) -> str:
    return "(changed)" if name in SECRET_SETTINGS else str(value)


def _fields(value: object) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(value))  # type: ignore[arg-type]


def _merge_live(label: str, before: Any, after: Any, live_names: tuple[str, ...],
                applied: list[str], restart: list[str]) -> tuple[Any, bool]:
    """`before` with the live settings of `after` taken over; every other difference is
    noted as needing a restart. Returns (merged, whether a live setting changed)."""
    live = {name: getattr(after, name) for name in live_names}
    for name in _fields(before):
        old_value, new_value = getattr(before, name), getattr(after, name)
        if old_value == new_value:
            continue
        if name in live:
            applied.append(f"{label} {name} {_show(name, old_value)} -> {_show(name, new_value)}")
        else:
            restart.append(f"{label} {name}")
    changed = any(getattr(before, n) != v for n, v in live.items())
    return dataclasses.replace(before, **live), changed


def plan_router_reload(old: RouterConfig, new: RouterConfig) -> ReloadPlan:
    """Split the differences between two valid configs into live changes and restart ones."""
    applied: list[str] = []
    restart: list[str] = []
    uplink_names: list[str] = []
    systems: list[str] = []
    new_uplinks = {u.name: u for u in new.uplinks}
    merged_uplinks: list[UplinkConfig] = []
    for uplink in old.uplinks:
        candidate = new_uplinks.get(uplink.name)
        if candidate is None:
            restart.append(f"uplink {uplink.name} removed")
            merged_uplinks.append(uplink)
            continue
        merged, changed = _merge_live(f"uplink {uplink.name}", uplink, candidate, LIVE_UPLINK_SETTINGS, applied, restart)
        if changed:
            uplink_names.append(uplink.name)
        merged_uplinks.append(merged)
    restart += [f"uplink {name} added" for name in new_uplinks if name not in {u.name for u in old.uplinks}]

    def system(label: str, before: MobilitySystemConfig | None, after: MobilitySystemConfig | None) -> MobilitySystemConfig | None:
        if before is None or after is None:
            if (before is None) != (after is None):
                restart.append(f"[{label}] {'added' if before is None else 'removed'}")
            return before
        merged, changed = _merge_live(label, before, after, LIVE_SYSTEM_SETTINGS, applied, restart)
        if changed:
            systems.append(label)
        return merged

    inner = system("inner", old.inner, new.inner)
    assert inner is not None
    outer = system("outer", old.outer, new.outer)
    for name in _fields(old):
        if name not in ("inner", "outer", "uplinks") and getattr(old, name) != getattr(new, name):
            restart.append(f"[{name}]" if name in ("vpn", "web") else f"router {name}")
    merged = dataclasses.replace(old, inner=inner, outer=outer, uplinks=tuple(merged_uplinks))
    return ReloadPlan(merged, tuple(applied), tuple(restart), tuple(uplink_names), tuple(systems))


# --- the last good configuration ---------------------------------------------------------------
#
# A config that loaded (at start or on SIGHUP) is copied beside itself as ``<config>.last-good``
# (atomic, 0600: it may hold inline keys). A start with a broken config logs the error with its
# line and runs the last good copy instead, so a bad edit followed by a power cycle does not
# leave a vehicle without its router. `--check` never falls back.

T = TypeVar("T")


def last_good_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{path}.last-good")


def remember_good_config(path: str | os.PathLike[str], log: logging.Logger) -> None:
    """Copy the config that just loaded to its last-good place (best effort, logged)."""
    try:
        write_atomic(last_good_path(path), Path(path).read_bytes())
    except OSError as exc:
        log.warning("cannot keep a last good copy of %s: %s", path, exc.strerror or exc)


def load_config_or_last_good(path: str, loader: Callable[[str], T], log: logging.Logger) -> T:
    """``loader(path)``; on its ConfigError, the last good copy if there is one that loads
    (the error is logged with its line either way); else the ConfigError propagates."""
    from router.config import ConfigError

    try:
        config = loader(path)
    except ConfigError as exc:
        fallback = last_good_path(path)
        if not fallback.is_file():
            raise
        try:
            config = loader(str(fallback))
        except ConfigError:
            raise exc from None
        log.error("%s; running the last good config (%s) until it is fixed", exc, fallback)
        return config
    remember_good_config(path, log)
    return config
