"""Run a pure datagram machine on an asyncio UDP endpoint.

The pure core (``router.mip``) speaks the aioquic-style protocol below: feed it datagrams
and timer expiries with the current time, then pull datagrams to send and events. This
module is the whole bridge to asyncio: one ``MachineDriver`` per socket, a timer handle
re-armed after every interaction, and events handed to a callback. No policy lives here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Address = tuple[str, int]


class DatagramMachine(Protocol):
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Any | None: ...


class MachineDriver(asyncio.DatagramProtocol):
    """Glue between one machine and one UDP socket; ``poke()`` after calling the machine's API."""

    def __init__(self, machine: DatagramMachine, on_event: Callable[[Any], None]) -> None:
        self.machine = machine
        self.on_event = on_event
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.send_errors = 0

    # asyncio.DatagramProtocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport is not a registered DatagramTransport subclass; it has sendto.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.machine.receive_datagram(data, (addr[0], addr[1]), self._loop.time())
        self.poke()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (e.g. port unreachable from a restarted home agent) arrive here; the
        # machine's retransmission timer is what recovers, so this is only logged.
        log.debug("udp error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    # driving
    def poke(self) -> None:
        """Send what the machine wants sent, deliver its events, and re-arm its timer."""
        now = self._loop.time()
        for data, addr in self.machine.datagrams_to_send(now):
            if self.transport is None or self.transport.is_closing():
                break
            try:
                self.transport.sendto(data, addr)
            except OSError as exc:  # no route while an uplink is down: the timer retries
                self.send_errors += 1
                log.info("send to %s:%d failed: %s", addr[0], addr[1], exc)
        while (event := self.machine.next_event()) is not None:
            self.on_event(event)
        self._arm_timer()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        deadline = self.machine.get_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.machine.handle_timer(self._loop.time())
        self.poke()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()


def udp_socket(local_address: str, port: int = 0, *, device: str | None = None) -> socket.socket:
    """A UDP socket bound to ``local_address:port`` (and to ``device`` if given).

    Binding to the care-of address (and the uplink device) is what makes a registration
    leave through the uplink it describes; policy routing by source does the rest.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        # IP_FREEBIND: the address may not be configured yet (a lease in flight, or the home
        # address proxied by the home agent), and binding must not race the kernel.
        sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
        sock.bind((local_address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def open_driver(
    machine: DatagramMachine,
    on_event: Callable[[Any], None],
    sock: socket.socket,
) -> MachineDriver:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: MachineDriver(machine, on_event), sock=sock
    )
    return protocol
