"""The VPN driver: strongSwan's charon over VICI (the ``vici`` package), nothing else.

The router's charon owns IKE and the kernel's xfrm state; we only ask it to bring one
connection up or down and read back what it negotiated (the virtual IP V, SA age, bytes).
The ``vici`` Session is a blocking socket client, so every request runs in a worker thread
with its own short-lived session, and the event listener (ike-updown, child-updown) runs in
one long-lived thread that hands events to the loop with ``call_soon_threadsafe``.

The connection itself comes from swanctl (``/etc/swanctl/conf.d``), loaded by charon's
service; its ``local_addrs`` must be the outer home address T and its ``vips`` must ask for a
virtual IP. Charon must run with ``install_routes = no``: routing is ours (router.dataplane),
and charon's table 220 would otherwise route LAN traffic around the inner tunnel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any

log = logging.getLogger(__name__)


class VpnError(RuntimeError):
    """charon refused or failed a request; the message is charon's own, never a secret."""


@dataclass(frozen=True, slots=True)
class VpnState:
    up: bool
    virtual_ip: IPv4Address | None = None
    local: str | None = None
    remote: str | None = None
    established_s: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    child_up: bool = False


@dataclass(frozen=True, slots=True)
class VpnReading:
    """One ``list-sas`` answer and when it was read (``at``: Unix time), for the status page."""

    state: VpnState
    at: float

    def status_fields(self, now: float) -> dict[str, Any]:
        """``sa_age_s``, ``established_at``, ``tx_bytes``, ``rx_bytes`` as of ``now`` (Unix time).

        charon reports ``established`` as seconds *ago* at the time of the reading, so the age
        keeps counting between readings; the byte counters are the last reading's (tx = the
        router's bytes-out). No established SA: all null, never a fake 0.
        """
        if not self.state.up or self.state.established_s is None:
            return {"sa_age_s": None, "established_at": None, "tx_bytes": None, "rx_bytes": None}
        established_at = self.at - self.state.established_s
        return {
            "sa_age_s": round(max(0.0, now - established_at), 1),
            "established_at": established_at,
            "tx_bytes": self.state.bytes_out,
            "rx_bytes": self.state.bytes_in,
        }


@dataclass(frozen=True, slots=True)
class VpnEvent:
    kind: str  # "up" | "down"
    connection: str
    reason: str


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _count(value: Any) -> int:
    text = _text(value)
    return int(text) if text.isascii() and text.isdigit() else 0


def parse_sas(sas: Iterator[Mapping[str, Any]], connection: str) -> VpnState:
    """Read ``list-sas`` output (one dict per IKE SA, keyed by connection name).

    charon is a local peer, but its answer is still outside input: anything not shaped as
    documented is treated as "no such SA" rather than raising.
    """
    for entry in sas:
        ike = entry.get(connection) if isinstance(entry, Mapping) else None
        if not isinstance(ike, Mapping):
            continue
        state = _text(ike.get("state", b""))
        if state != "ESTABLISHED":
            continue
        vips = ike.get("local-vips", [])
        vips = vips if isinstance(vips, list) else []
        virtual_ip = None
        for vip in vips:
            try:
                candidate = ip_address(_text(vip))
            except ValueError:
                continue
            if isinstance(candidate, IPv4Address):
                virtual_ip = candidate
                break
        bytes_in = bytes_out = 0
        child_up = False
        children = ike.get("child-sas", {})
        for child in children.values() if isinstance(children, Mapping) else ():
            if isinstance(child, Mapping) and _text(child.get("state", b"")) == "INSTALLED":
                child_up = True
                bytes_in += _count(child.get("bytes-in", b"0"))
                bytes_out += _count(child.get("bytes-out", b"0"))
        established = ike.get("established")
        return VpnState(
            up=True,
            virtual_ip=virtual_ip,
            local=_text(ike.get("local-host", b"")) or None,
            remote=_text(ike.get("remote-host", b"")) or None,
            established_s=_count(established) if established is not None else None,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            child_up=child_up,
        )
    return VpnState(up=False)


class StrongSwanVpn:
    """Bring one swanctl connection (and its child) up and down; report state changes."""

    def __init__(
        self,
        vici_socket: str,
        connection: str,
        child: str | None = None,
        *,
        on_event: Callable[[VpnEvent], None] | None = None,
    ) -> None:
        self.vici_socket = vici_socket
        self.connection = connection
        self.child = child or connection
        self.on_event = on_event
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._reading: VpnReading | None = None
        self._refreshing = threading.Lock()
        self._attempted_at: float | None = None  # monotonic time of the last refresh started
        self.stats_reads = 0

    def _session(self, timeout: float = 10.0) -> Any:
        import vici

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.vici_socket)
        except OSError as exc:
            sock.close()
            raise VpnError(f"charon not reachable at {self.vici_socket}: {exc.strerror}") from None
        return vici.Session(sock)

    # --- requests (each in a worker thread) ------------------------------------------------

    def _up_blocking(self, timeout: float) -> VpnState:
        from vici.exception import CommandException

        session = self._session(timeout + 5)
        try:
            request = {"child": self.child, "ike": self.connection, "timeout": int(timeout * 1000), "init-limits": True}
            for message in session.initiate(request):
                log.debug("charon: %s", _text(message.get("msg", b"")))
            return parse_sas(session.list_sas({"ike": self.connection}), self.connection)
        except CommandException as exc:
            raise VpnError(f"initiate {self.connection}: {exc}") from None
        finally:
            session.transport.socket.close()

    def _down_blocking(self, timeout: float) -> None:
        from vici.exception import CommandException

        session = self._session(timeout + 5)
        try:
            for _ in session.terminate({"ike": self.connection, "timeout": int(timeout * 1000), "force": True}):
                pass
        except CommandException as exc:
            # "no matching SAs" = already down: terminating is idempotent for us.
            if "no matching" not in str(exc).lower():
                raise VpnError(f"terminate {self.connection}: {exc}") from None
        finally:
            session.transport.socket.close()

    def _state_blocking(self) -> VpnState:
        session = self._session()
        try:
            return parse_sas(session.list_sas({"ike": self.connection}), self.connection)
        finally:
            session.transport.socket.close()

    async def up(self, timeout: float = 15.0) -> VpnState:
        started = time.monotonic()
        state = await asyncio.to_thread(self._up_blocking, timeout)
        if not state.up or state.virtual_ip is None:
            raise VpnError(f"{self.connection}: no established IKE SA with a virtual IP after initiate")
        log.info(
            "vpn %s up in %.0f ms: virtual ip %s, %s -> %s",
            self.connection,
            (time.monotonic() - started) * 1000,
            state.virtual_ip,
            state.local,
            state.remote,
        )
        return state

    async def down(self, timeout: float = 1.0) -> None:
        """Terminate the IKE SA. The DELETE is best effort (``force``): when the old path is
        already gone (walking inside, the uplink lost) charon would otherwise retransmit it for
        seconds; waiting ``timeout`` for the gateway's answer is enough, its DPD cleans up."""
        await asyncio.to_thread(self._down_blocking, timeout)
        log.info("vpn %s down", self.connection)

    async def state(self) -> VpnState:
        return await asyncio.to_thread(self._state_blocking)

    # --- statistics for the status page (never blocks the caller) ---------------------------

    def stats(self, max_age_s: float = 5.0) -> VpnReading | None:
        """The last ``list-sas`` reading (None before the first one), at once.

        Called from the event loop per status request: it never talks to charon itself. When
        the last refresh started ``max_age_s`` ago or more and none is running, one short-lived
        worker thread reads ``list-sas`` (2 s socket timeout) and replaces it; a page request
        sees the new values on a later call. charon unreachable: the reading becomes None.
        """
        reading = self._reading
        now = time.monotonic()
        if (self._attempted_at is None or now - self._attempted_at >= max_age_s) and self._refreshing.acquire(
            blocking=False
        ):
            self._attempted_at = now
            try:
                threading.Thread(target=self._refresh_stats, name="vici-stats", daemon=True).start()
            except RuntimeError:  # no thread to be had: try again next time
                self._refreshing.release()
        return reading

    def _refresh_stats(self) -> None:
        try:
            session = self._session(timeout=2.0)
            try:
                state = parse_sas(session.list_sas({"ike": self.connection}), self.connection)
            finally:
                session.transport.socket.close()
            self._reading = VpnReading(state, time.time())
        except Exception as exc:  # the vici package raises its own types on a dead socket
            log.debug("vpn stats: %s", type(exc).__name__ if not isinstance(exc, VpnError) else exc)
            self._reading = None
        finally:
            self.stats_reads += 1
            self._refreshing.release()

    def wait_stats_refreshed(self, timeout: float = 5.0) -> bool:
        """For tests: wait until no refresh is running."""
        if self._refreshing.acquire(timeout=timeout):
            self._refreshing.release()
            return True
        return False

    # --- events ------------------------------------------------------------------------------

    def start_listener(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch ike-updown for our connection in a thread; reconnect if charon restarts."""
        if self.on_event is None or self._listener is not None:
            return
        on_event = self.on_event

        def deliver(event: VpnEvent) -> None:
            loop.call_soon_threadsafe(on_event, event)

        def run() -> None:
            while not self._stop.is_set():
                try:
                    session = self._session(timeout=2.0)
                    for name, message in session.listen(["ike-updown"], timeout=0.5):
                        if self._stop.is_set():
                            break
                        if name is None or message is None:
                            continue
                        ike = message.get(self.connection)
                        if ike is None:
                            continue
                        up = _text(message.get("up", b"")) == "yes"
                        deliver(VpnEvent("up" if up else "down", self.connection, _text(ike.get("state", b""))))
                except (VpnError, OSError) as exc:
                    if not self._stop.is_set():
                        deliver(VpnEvent("down", self.connection, f"vici connection lost: {exc}"))
                        self._stop.wait(1.0)
                except Exception as exc:  # the vici package raises its own types on a dead socket
                    if not self._stop.is_set():
                        deliver(VpnEvent("down", self.connection, f"vici listener: {type(exc).__name__}"))
                        self._stop.wait(1.0)

        self._listener = threading.Thread(target=run, name="vici-listener", daemon=True)
        self._listener.start()

    def stop_listener(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=3)
            self._listener = None
