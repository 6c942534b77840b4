"""LAN traffic for handover measurements: a sequence-numbered UDP stream and a TCP session
from lan-host to a correspondent, with the arrivals read back for gaps and losses.

    with Traffic(world, destination=plan.CORRESPONDENT_ADDRESS, rate=100) as traffic:
        t = time.monotonic(); world.ap_down("corp"); ...
        gap = traffic.gap(t, time.monotonic())      # Gap(ms=..., lost=..., resumed=True)
    traffic.tcp_ok, traffic.sources                  # after the with-block

One small program (`python3 -m qemu.lab.traffic ROLE ...`) plays four roles in the namespaces:
udp-recv and tcp-serve at the correspondent, udp-send and tcp-client on lan-host. Arrivals are
written as "seq monotonic-time source" lines; CLOCK_MONOTONIC is shared by every namespace in
the guest, so the test's marks and the arrival times are on one clock.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

UDP_PORT = 9000
TCP_PORT = 9001


@dataclass(frozen=True, slots=True)
class Arrival:
    seq: int
    at: float
    source: str


@dataclass(frozen=True, slots=True)
class Gap:
    """The largest silence of the stream in a window: ms between two arrivals (or from the
    window's start to the first arrival after it), the packets missing in it, and whether the
    stream was flowing again by the window's end."""

    ms: float
    lost: int
    resumed: bool

    def __str__(self) -> str:
        return f"{self.ms:.0f} ms, {self.lost} lost{'' if self.resumed else ', NOT resumed'}"


def read_arrivals(path: Path) -> list[Arrival]:
    arrivals = []
    if not path.exists():
        return arrivals
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            try:
                arrivals.append(Arrival(int(fields[0]), float(fields[1]), fields[2]))
            except ValueError:
                continue  # a line cut by a kill
    return arrivals


def largest_gap(arrivals: list[Arrival], start: float, end: float) -> Gap:
    """Largest inter-arrival time in [start, end] (ms), the sequence numbers missing across it,
    and whether anything arrived after it. The pair straddling `start` counts."""
    window = [a for a in arrivals if a.at <= end]
    worst, lost = 0.0, 0
    for before, after in itertools.pairwise(window):
        if after.at < start:
            continue
        gap = (after.at - before.at) * 1000
        if gap > worst:
            worst, lost = gap, max(0, after.seq - before.seq - 1)
    after_start = [a for a in window if a.at >= start]
    if not after_start:
        return Gap(max(worst, (end - start) * 1000), 0, False)
    # The silence after the last arrival counts too (a stream that died stays a gap), and a
    # straggler is not a resumed stream: three packets after the start are.
    tail = (end - after_start[-1].at) * 1000
    if tail > worst:
        worst, lost = tail, 0
    return Gap(worst, lost, len(after_start) >= 3)


class Traffic:
    """Runs the four roles as lab daemons; stop() (or leaving the with-block) ends them."""

    def __init__(self, world: object, destination: str, rate: float = 100.0, *,
                 source_host: str = "lan-host", sink_host: str | None = None,
                 udp_port: int = UDP_PORT, tcp_port: int = TCP_PORT, name: str = "traffic") -> None:
        from . import plan
        from .shell import Daemon
        from .world import World

        assert isinstance(world, World)
        self.world = world
        self.rate = rate
        sink = sink_host or plan.host_of(destination)
        directory = world.run_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        self.arrivals_path = directory / "udp-arrivals.txt"
        self.stop_path = directory / "tcp-stop"
        for path in (self.arrivals_path, self.stop_path):
            path.unlink(missing_ok=True)
        env = {"PYTHONPATH": "/src", "PYTHONUNBUFFERED": "1"}

        def role(role_name: str, host: str, *args: str) -> Daemon:
            log = directory / f"{role_name}.log"
            log.unlink(missing_ok=True)
            return Daemon(f"{name}-{role_name}", [sys.executable, "-m", "qemu.lab.traffic", role_name, *args],
                          log, world.ns(host), ready=lambda: log.exists() and "ready" in log.read_text(),
                          ready_timeout=60, env=env)

        self.daemons = [
            role("udp-recv", sink, str(udp_port), str(self.arrivals_path)),
            role("tcp-serve", sink, str(tcp_port)),
            role("udp-send", source_host, destination, str(udp_port), str(rate)),
            role("tcp-client", source_host, destination, str(tcp_port), str(self.stop_path)),
        ]
        self.client = self.daemons[3]
        self.started_at = 0.0
        self.tcp_ok: bool | None = None
        self.tcp_result = ""

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            for daemon in self.daemons:
                daemon.start()
        except Exception:
            self.kill()
            raise
        self.started_at = time.monotonic()

    def arrivals(self) -> list[Arrival]:
        return read_arrivals(self.arrivals_path)

    def gap(self, start: float, end: float | None = None) -> Gap:
        return largest_gap(self.arrivals(), start, time.monotonic() if end is None else end)

    def wait_resumed(self, since: float, timeout: float = 30.0, packets: int = 5) -> float:
        """Wait until `packets` arrivals after `since`; the seconds waited."""
        from .shell import wait_until

        return wait_until(lambda: sum(1 for a in self.arrivals() if a.at > since) >= packets,
                          timeout, "the UDP stream to resume", interval=0.1)

    def tcp_alive(self) -> bool:
        """The TCP client is still running (it exits at the first broken echo)."""
        return self.client.running

    def sources(self) -> set[str]:
        """Every source address the correspondent saw on the UDP stream."""
        return {a.source for a in self.arrivals()}

    def stop(self) -> None:
        if self.tcp_ok is None and self.client.running:
            self.stop_path.write_text("stop")
            with contextlib.suppress(Exception):  # a hung client is a broken session
                self.client.wait_exit(60)
        tail = self.client.log_tail(5)
        self.tcp_result = next((line for line in tail.splitlines() if line.startswith("SESSION")), tail)
        self.tcp_ok = "SESSION OK" in tail
        self.kill()

    def kill(self) -> None:
        for daemon in reversed(self.daemons):
            if daemon.running:
                daemon.stop(signal.SIGKILL)


# --- the roles (run in the namespaces) -------------------------------------------------------

def _udp_recv(port: int, out_path: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    with open(out_path, "w", buffering=1) as out:
        print("ready", flush=True)
        while True:
            data, address = sock.recvfrom(2048)
            fields = data.split()
            if fields and fields[0].isdigit():
                out.write(f"{fields[0].decode()} {time.monotonic():.4f} {address[0]}\n")


def _udp_send(destination: str, port: int, rate: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seq, start = 0, time.monotonic()
    print("ready", flush=True)
    while True:
        # No route for a moment (the LAN fails closed): the sequence numbers show it.
        with contextlib.suppress(OSError):
            sock.sendto(f"{seq} {time.monotonic():.4f}".encode(), (destination, port))
        seq += 1
        time.sleep(max(0.0, start + seq / rate - time.monotonic()))


def _tcp_serve(port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    print("ready", flush=True)
    conn, address = server.accept()
    print("peer", address[0], flush=True)
    with conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(line)
    print("closed", flush=True)


def _tcp_client(destination: str, port: int, stop_path: str) -> int:
    conn = socket.create_connection((destination, port), timeout=60)
    conn.settimeout(300)  # a session survives a long handover; a reset or 5 min silence ends it
    lines = conn.makefile("rb")
    print("ready", flush=True)
    n = 0
    try:
        while not os.path.exists(stop_path):
            conn.sendall(f"line {n}\n".encode())
            if lines.readline() != f"line {n}\n".encode():
                print(f"SESSION BROKEN after {n} lines: wrong echo", flush=True)
                return 1
            n += 1
            time.sleep(0.1)
    except OSError as exc:
        print(f"SESSION BROKEN after {n} lines: {exc}", flush=True)
        return 1
    conn.close()
    print(f"SESSION OK {n} lines", flush=True)
    return 0


def main(argv: list[str]) -> int:
    role, args = argv[0], argv[1:]
    if role == "udp-recv":
        _udp_recv(int(args[0]), args[1])
    elif role == "udp-send":
        _udp_send(args[0], int(args[1]), float(args[2]))
    elif role == "tcp-serve":
        _tcp_serve(int(args[0]))
    elif role == "tcp-client":
        return _tcp_client(args[0], int(args[1]), args[2])
    else:
        print(f"unknown role {role!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
