"""Replay state across restarts (RFC 5944 §5.7.1: a timestamp is accepted only if "greater
than" every one accepted before), on loopback with real UDP sockets, no root.

The home agent daemon (control only: no kernel) accepts a request; it is "crashed" (never
stopped cleanly) and a new daemon starts on the same state dir; the very same request bytes,
replayed, draw 133. Without the state file (the control case) the replay is accepted, which
is what the persistence prevents. The router side: the last Identification is persisted
before the request leaves, and a restarted machine with a clock stepped back still counts up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import stat
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from router.config import HomeAgentConfig, load_home_agent_config
from router.ha.daemon import LEASE_S, HomeAgentDaemon, LoggingLogic
from router.lifecycle import read_state, write_state
from router.mip import mobilenode as mn
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import NTP_UNIX_OFFSET, high32
from router.mip.messages import RegistrationReply, decode
from router.system import LoggingMachine, MobilitySystem, SystemEvent

KEY = "00112233445566778899aabbccddeeff"
HOME = IPv4Address("127.0.0.50")
COA = IPv4Address("127.0.0.2")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ha_config(tmp_path: Path, state_dir: Path, port: int, replay_window: int = 7) -> HomeAgentConfig:
    path = tmp_path / "ha.toml"
    path.write_text(f"""[home_agent]
address = "127.0.0.1"
home_network = "127.0.0.0/8"
port = {port}
state_dir = "{state_dir}"
replay_window = {replay_window}

[[mobile_node]]
home_address = "{HOME}"
spi = 256
key = "hex:{KEY}"
mobile_networks = ["10.1.1.0/24"]
""")
    return load_home_agent_config(path)


def node_config(port: int, clock_offset: float) -> mn.MobileNodeConfig:
    return mn.MobileNodeConfig(
        home_address=HOME,
        home_agent=IPv4Address("127.0.0.1"),
        security_association=SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, bytes.fromhex(KEY)),
        mobile_networks=(IPv4Network("10.1.1.0/24"),),
        home_agent_port=port,
        clock_offset=clock_offset,
    )


def wall_offset(loop: asyncio.AbstractEventLoop) -> float:
    return time.time() - loop.time() + NTP_UNIX_OFFSET


async def exchange(sock: socket.socket, datagram: bytes, port: int) -> RegistrationReply:
    """Send one request from `sock` and wait for the home agent's reply."""
    loop = asyncio.get_running_loop()
    sock.sendto(datagram, ("127.0.0.1", port))
    data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
    reply = decode(data)
    assert isinstance(reply, RegistrationReply)
    return reply


def crash(daemon: HomeAgentDaemon) -> None:
    """Like SIGKILL: the socket goes, nothing is written on the way out."""
    assert daemon.driver is not None
    daemon.driver.close()


async def capture_and_replay(tmp_path: Path, state_dir: Path, *, keep_state: bool,
                             clean_stop: bool = False) -> tuple[int, int, int]:
    """Accept a request, crash (or cleanly stop) the HA, start a new one; return the codes of
    the first answer, the replay after the restart, and a fresh request once the restarted
    home agent's floor has passed (after a crash: the lease + the 1 s tolerance used here)."""
    loop = asyncio.get_running_loop()
    port = free_port("127.0.0.1")
    config = ha_config(tmp_path, state_dir, port, replay_window=1)
    first = HomeAgentDaemon(config, None)
    await first.start()
    machine = mn.RegistrationMachine(node_config(port, wall_offset(loop)))
    machine.register(COA, loop.time())
    [(captured, _)] = machine.datagrams_to_send(loop.time())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((str(COA), 0))
    sock.setblocking(False)
    try:
        accepted = await exchange(sock, captured, port)
        assert first.logic.bindings()[HOME].care_of_address == COA
        if clean_stop:
            await first.stop()
        else:
            crash(first)
        if not keep_state:
            for path in state_dir.iterdir():
                path.unlink()
        second = HomeAgentDaemon(config, None)
        await second.start()
        try:
            replayed = await exchange(sock, captured, port)
            # A fresh request from the real node (a later timestamp) is welcome again once
            # nothing accepted before the restart can lie above it.
            await asyncio.sleep(0.01 if clean_stop or not keep_state else LEASE_S + 1 + 1 + 0.2)
            machine.cancel()
            machine.register(COA, loop.time())
            [(fresh, _)] = machine.datagrams_to_send(loop.time())
            renewed = await exchange(sock, fresh, port)
        finally:
            await second.stop()
    finally:
        sock.close()
    return accepted.code, replayed.code, renewed.code


def test_a_request_replayed_after_a_home_agent_restart_draws_133(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    codes = asyncio.run(capture_and_replay(tmp_path, state_dir, keep_state=True))
    assert codes == (0, 133, 0)
    [path] = state_dir.iterdir()
    assert path.name == "replay-127.0.0.1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = read_state(path)  # the second home agent stopped cleanly: every node, exactly
    assert data is not None and data["clean"] is True and data["nodes"][0]["home_address"] == str(HOME)


def test_after_a_clean_stop_the_exact_state_refuses_the_replay_and_nothing_else(tmp_path: Path) -> None:
    """A clean stop writes every node's last Identification: the replay draws 133 and the
    node's next request is accepted at once (no lease floor)."""
    codes = asyncio.run(capture_and_replay(tmp_path, tmp_path / "state", keep_state=True, clean_stop=True))
    assert codes == (0, 133, 0)


def test_the_running_home_agent_writes_a_small_lease_not_every_node(tmp_path: Path) -> None:
    """Under load the state file is a lease renewed at most about once a second (one small
    fsynced write), whatever the number of requests: the replay state costs no disk per request."""
    from router.ha.daemon import LEASE_S, replay_lease

    async def main() -> tuple[int, dict[str, object] | None, float]:
        loop = asyncio.get_running_loop()
        port = free_port("127.0.0.1")
        state_dir = tmp_path / "state"
        daemon = HomeAgentDaemon(ha_config(tmp_path, state_dir, port), None)
        await daemon.start()
        writes = 0
        original = daemon._write_state

        def counting(data: dict[str, object]) -> None:
            nonlocal writes
            writes += 1
            original(data)

        daemon._write_state = counting  # type: ignore[method-assign]
        machine = mn.RegistrationMachine(node_config(port, wall_offset(loop)))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((str(COA), 0))
        sock.setblocking(False)
        started = loop.time()
        try:
            for _ in range(50):
                machine.cancel()
                machine.register(COA, loop.time())
                [(request, _)] = machine.datagrams_to_send(loop.time())
                assert (await exchange(sock, request, port)).code == 0
            data = read_state(state_dir / "replay-127.0.0.1.json")
        finally:
            sock.close()
            crash(daemon)
        return writes, data, loop.time() - started

    writes, data, elapsed = asyncio.run(main())
    assert data is not None and data["clean"] is False and "nodes" not in data
    lease = replay_lease(data)
    assert lease is not None and lease > 0
    # One write per lease renewal: bounded by the time taken, never by the number of requests.
    from router.ha.daemon import LEASE_RENEW_S

    assert 1 <= writes <= 2 + elapsed / (LEASE_S - LEASE_RENEW_S), f"{writes} writes for 50 requests in {elapsed:.1f} s"


def test_without_the_state_file_the_replay_would_be_accepted(tmp_path: Path) -> None:
    """The control case: what the state file prevents really happens without it."""
    codes = asyncio.run(capture_and_replay(tmp_path, tmp_path / "state", keep_state=False))
    assert codes == (0, 0, 0)


def test_an_unreadable_state_file_fails_safe_with_a_floor_above_now(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        port = free_port("127.0.0.1")
        state_dir = tmp_path / "state"
        state_dir.mkdir()
        (state_dir / "replay-127.0.0.1.json").write_text('{"version": 1, "nodes": [{"home_addr')
        daemon = HomeAgentDaemon(ha_config(tmp_path, state_dir, port), None)
        [(home, spi)] = [(HOME, 256)]
        floor = daemon.logic.replay_state()[(home, spi)]
        now_seconds = int(loop.time() + wall_offset(loop))
        assert high32(floor) >= now_seconds + 7 - 1  # tolerance (replay_window) 7 s

    with caplog.at_level(logging.ERROR, logger="router.ha"):
        asyncio.run(main())
    assert "replay state unreadable" in caplog.text


def test_state_is_written_atomically_and_0600(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_state(path, {"a": 1})
    write_state(path, {"a": 2})
    assert read_state(path) == {"a": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left
    assert read_state(tmp_path / "missing.json") is None


def test_the_replay_check_follows_a_stepped_wall_clock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A request stamped with the old time of day is out of tolerance once the HA's clock
    stepped by minutes: 133 carrying the new time, so the node can resynchronise."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        port = free_port("127.0.0.1")
        daemon = HomeAgentDaemon(ha_config(tmp_path, tmp_path / "state", port), None)
        step = 300.0
        wrapper = LoggingLogic(daemon.logic, daemon.persist_replay_state, lambda: wall_offset(loop) + step)
        machine = mn.RegistrationMachine(node_config(port, wall_offset(loop)))
        machine.register(COA, loop.time())
        [(request, _)] = machine.datagrams_to_send(loop.time())
        wrapper.receive_datagram(request, (str(COA), 434), loop.time())
        [(data, _)] = wrapper.datagrams_to_send(loop.time())
        reply = decode(data)
        assert isinstance(reply, RegistrationReply) and reply.code == 133
        assert abs(high32(reply.identification) - (loop.time() + wall_offset(loop) + step)) < 3
        # The node adopts the home agent's clock and is accepted.
        machine.receive_datagram(data, ("127.0.0.1", port), loop.time())
        [(retry, _)] = machine.datagrams_to_send(loop.time())
        wrapper.receive_datagram(retry, (str(COA), 434), loop.time())
        [(data, _)] = wrapper.datagrams_to_send(loop.time())
        reply = decode(data)
        assert isinstance(reply, RegistrationReply) and reply.code == 0
        machine.receive_datagram(data, ("127.0.0.1", port), loop.time())
        assert machine.binding is not None

        # The clock is put right again (stepped back by 300 s). The floor accepted in the
        # stepped-forward era is capped at now + tolerance, so the node is back within
        # about the tolerance, not locked out for five minutes.
        step = 0.0
        t0 = loop.time()
        codes = []
        for now in (t0, t0 + 8.5):
            if now > t0:  # past the denial's hold-down: a new attempt (same clock correction)
                machine = mn.RegistrationMachine(
                    node_config(port, wall_offset(loop)), last_identification=machine.last_identification
                )
            machine.register(COA, now)
            for _ in range(3):
                out = machine.datagrams_to_send(now)
                if not out:
                    break
                wrapper.receive_datagram(out[0][0], (str(COA), 434), now)
                [(data, _)] = wrapper.datagrams_to_send(now)
                codes.append(decode(data).code)  # type: ignore[union-attr]
                machine.receive_datagram(data, ("127.0.0.1", port), now)
        assert codes[0] == 133 and codes[-1] == 0, codes
        assert codes.count(0) == 1

    with caplog.at_level(logging.WARNING, logger="router.ha"):
        asyncio.run(main())
    assert "wall clock stepped by +300 s" in caplog.text
    assert "wall clock stepped by -300 s" in caplog.text


# -- the router side --------------------------------------------------------------------------


def test_the_router_persists_the_identification_before_the_request_leaves() -> None:
    machine = mn.RegistrationMachine(node_config(434, 3_900_000_000.0))
    persisted: list[int] = []
    logging_machine = LoggingMachine("inner", machine, persisted.append)
    machine.register(COA, 10.0)
    [(datagram, _)] = logging_machine.datagrams_to_send(10.0)
    request = decode(datagram)
    assert persisted == [request.identification]  # type: ignore[union-attr]
    assert logging_machine.datagrams_to_send(10.5) == []
    assert persisted == [request.identification]  # type: ignore[union-attr]


def test_identification_stays_increasing_across_a_restart_with_the_clock_stepped_back(tmp_path: Path) -> None:
    state = tmp_path / "identification-inner.json"
    events: list[SystemEvent] = []
    first = MobilitySystem("inner", node_config(434, 3_900_000_000.0), events.append, state_path=state)
    first.machine.register(COA, 100.0)
    [(datagram, _)] = first._logging.datagrams_to_send(100.0)
    sent = decode(datagram).identification  # type: ignore[union-attr]
    assert read_state(state) == {"last_identification": sent, "home_agent": "127.0.0.1"}
    # Restart with the wall clock an hour behind (RTC lost, NTP not yet synced).
    second = MobilitySystem("inner", node_config(434, 3_900_000_000.0 - 3600), events.append, state_path=state)
    second.machine.register(COA, 100.0)
    [(datagram, _)] = second._logging.datagrams_to_send(100.0)
    assert decode(datagram).identification > sent  # type: ignore[union-attr]
    # Without the state it would have gone back by an hour.
    third = MobilitySystem("inner", node_config(434, 3_900_000_000.0 - 3600), events.append)
    third.machine.register(COA, 100.0)
    [(datagram, _)] = third._logging.datagrams_to_send(100.0)
    assert high32(decode(datagram).identification) < high32(sent)  # type: ignore[union-attr]
