"""What both daemons share about their lifecycle and their keys.

- ``shutdown_event()``: the first SIGTERM/SIGINT sets the returned event (graceful stop,
  bounded by the caller); a second one exits at once without cleanup (uvicorn-style).
- ``security_association()``: the one mapping from the config's algorithm and replay names
  to the pure core's types, so the router and the home agent cannot disagree.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

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
