"""Start the status page and the control socket for the daemon: ``await start_web(daemon, config)``.

The daemon (router/daemon.py) only has to offer ``status() -> dict``. Everything else is
optional and adapted here:

- ``series()``: if the daemon has none, a :class:`SeriesRecorder` samples ``status()`` every
  5 s and keeps ten minutes of RTT, signal and score per uplink;
- ``action(name, args)``: if the daemon has none, the actions are refused with a clear message;
- the snapshot is normalised (``now`` filled in, handovers newest first) by the web layer.

The nftables rule that keeps the page off the uplinks is ``router.web.firewall.lan_only_ruleset``;
applying it is a kernel effect, so it belongs to the daemon's kernel adapter, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.web.api import WebServer, start_web_server
from router.web.control import ControlServer, start_control_server
from router.web.source import Series, StatusSource

log = logging.getLogger(__name__)

SERIES_KEYS = (("rtt_ms", "rtt_ms"), ("signal_dbm", "signal_dbm"), ("score", "score"))


class SeriesRecorder:
    """Ten minutes of per-uplink RTT/signal/score, sampled from ``status()``."""

    def __init__(self, status: Callable[[], dict[str, Any]], *, interval_s: float = 5.0,
                 window_s: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self._status = status
        self.interval_s = interval_s
        self.clock = clock
        self._length = int(window_s / interval_s) + 1
        self._data: dict[str, deque[tuple[float, float]]] = {}

    def sample(self) -> None:
        try:
            snapshot = self._status()
        except Exception:
            log.debug("series: status() failed; skipping a sample", exc_info=True)
            return
        now = self.clock()
        for uplink in snapshot.get("uplinks") or []:
            if not isinstance(uplink, dict):
                continue
            for field, prefix in SERIES_KEYS:
                value = uplink.get(field)
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    key = f"{prefix}.{uplink.get('name')}"
                    self._data.setdefault(key, deque(maxlen=self._length)).append((now, float(value)))

    def series(self) -> Series:
        return {key: list(points) for key, points in self._data.items()}

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)


class DaemonSource:
    """A :class:`StatusSource` over whatever the daemon offers."""

    def __init__(self, daemon: Any, recorder: SeriesRecorder | None) -> None:
        self.daemon = daemon
        self.recorder = recorder

    def status(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = self.daemon.status()
        return snapshot

    def series(self) -> Series:
        own = getattr(self.daemon, "series", None)
        if callable(own):
            result: Series = own()
            return result
        return self.recorder.series() if self.recorder is not None else {}

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        own = getattr(self.daemon, "action", None)
        if not callable(own):
            raise ValueError(f"{name}: this daemon build does not take actions yet")
        result: dict[str, Any] = await own(name, args)
        return result


@dataclass
class WebStack:
    web: WebServer | None
    control: ControlServer | None
    recorder_task: asyncio.Task[None] | None

    async def close(self) -> None:
        if self.recorder_task is not None:
            self.recorder_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.recorder_task
        if self.web is not None:
            await self.web.close()
        if self.control is not None:
            await self.control.close()


async def start_web(daemon: Any, config: Any) -> WebStack:
    """Serve ``config.web`` (if configured) and the control socket ``config.control_socket``.

    A failure to start either is logged and leaves the other running: the router's job is
    routing, and a busy port must not stop it.
    """
    if isinstance(daemon, StatusSource):
        source: StatusSource = daemon
        recorder = None
    else:
        recorder = SeriesRecorder(daemon.status) if not callable(getattr(daemon, "series", None)) else None
        source = DaemonSource(daemon, recorder)
    task = asyncio.ensure_future(recorder.run()) if recorder is not None else None
    web = None
    web_config = getattr(config, "web", None)
    if web_config is not None:
        token = web_config.token.value if web_config.token is not None else None
        try:
            web = await start_web_server(source, str(web_config.listen_address), web_config.listen_port, token=token)
        except (OSError, ValueError) as exc:
            log.error("web: cannot serve the status page on %s:%s: %s", web_config.listen_address,
                      web_config.listen_port, exc)
    control = None
    try:
        control = await start_control_server(source, config.control_socket)
    except (OSError, RuntimeError) as exc:
        log.error("control: cannot listen on %s: %s", config.control_socket, exc)
    return WebStack(web, control, task)
