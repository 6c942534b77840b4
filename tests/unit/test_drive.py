"""The asyncio bridge: datagrams in and out, timers re-armed, events delivered (loopback only)."""

from __future__ import annotations

import asyncio
from typing import Any

from router.drive import Address, open_driver, udp_socket


class PingMachine:
    """Sends 'ping' to a peer every 50 ms until it has seen 3 'pong's; then emits 'done'."""

    def __init__(self, peer: Address) -> None:
        self.peer = peer
        self.pongs = 0
        self.deadline: float | None = 0.0
        self.outbox: list[tuple[bytes, Address]] = []
        self.events: list[str] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if data == b"pong" and addr == self.peer:
            self.pongs += 1
            if self.pongs == 3:
                self.deadline = None
                self.events.append("done")

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.outbox.append((b"ping", self.peer))
            self.deadline = now + 0.05

    def next_event(self) -> Any | None:
        return self.events.pop(0) if self.events else None


class PongMachine(PingMachine):
    def __init__(self) -> None:
        super().__init__(("0.0.0.0", 0))
        self.deadline = None

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if data == b"ping":
            self.outbox.append((b"pong", addr))


def test_driver_round_trips_and_timers() -> None:
    async def main() -> list[str]:
        server_sock = udp_socket("127.0.0.1", 0)
        port = server_sock.getsockname()[1]
        server = await open_driver(PongMachine(), lambda e: None, server_sock)
        events: list[str] = []
        done = asyncio.Event()

        def on_event(event: str) -> None:
            events.append(event)
            done.set()

        client = await open_driver(PingMachine(("127.0.0.1", port)), on_event, udp_socket("127.0.0.1"))
        client.poke()
        await asyncio.wait_for(done.wait(), 10)
        client.close()
        server.close()
        return events

    assert asyncio.run(main()) == ["done"]
