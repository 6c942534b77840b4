"""Config reload (SIGHUP) for both daemons, with the last good config kept on a bad file.

Router: ``plan_router_reload`` splits a new config into live changes (uplink priority,
metering and minimum signal -> policy profiles; each system's key/SPI/algorithm/lifetime ->
a new registration machine that re-registers) and settings that need a restart (logged,
running value kept). On loopback with the real home agent logic: a priority change moves the
router to the other uplink, a lifetime change re-registers with the new lifetime.

Home agent: a reload replaces the mobile-node table and keys; bindings of nodes still
configured stay, removed nodes' bindings go; an invalid file is refused with its ConfigError
line and the running config keeps serving. A real ``python -m router.ha`` process gets a
SIGHUP with a broken file and still answers registrations.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.config import load_home_agent_config, load_router_config
from router.daemon import RouterDaemon
from router.ha.daemon import HomeAgentDaemon
from router.lifecycle import plan_router_reload
from router.mip import mobilenode as mn
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import NTP_UNIX_OFFSET
from router.mip.messages import RegistrationReply, decode
from router.policy.coordinator import LanRoute
from router.uplink import events as ue
from tests.unit.test_daemon_loopback import make_daemon, start_home_agent, wait_for, write_config

KEY = "00112233445566778899aabbccddeeff"
NEW_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- router: what a reload may change live ------------------------------------------------------


def test_plan_splits_live_changes_from_restart_ones_and_never_shows_a_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 434, None)
    old = load_router_config(path)
    text = path.read_text()
    text = text.replace(f'key = "hex:{KEY}"', f'key = "hex:{NEW_KEY}"\nlifetime = 120')
    text = text.replace('kind = "ethernet"', 'kind = "ethernet"\npriority = 7\nmetered = true\nprobe_targets = ["127.0.0.9"]')
    text = text.replace('mobile_networks = ["10.1.1.0/24"]', 'mobile_networks = ["10.1.1.0/24", "10.1.2.0/24"]')
    text = text.replace('home_agent = "127.0.0.1"', 'home_agent = "127.0.0.8"')
    path.write_text(text)
    new = load_router_config(path)
    plan = plan_router_reload(old, new)
    assert plan.applied == (
        "uplink eth priority 50 -> 7",
        "uplink eth metered False -> True",
        "inner key (changed) -> (changed)",
        "inner lifetime 600 -> 120",
    ), plan.applied
    assert set(plan.needs_restart) == {"uplink eth probe_targets", "inner home_agent", "router mobile_networks"}
    assert plan.uplinks == ("eth",) and plan.systems == ("inner",)
    # Live settings from the new file, restart-only ones kept from the old one.
    assert plan.config.uplinks[0].priority == 7 and plan.config.uplinks[0].probe_targets == ()
    assert plan.config.inner.key == new.inner.key and plan.config.inner.home_agent == old.inner.home_agent
    assert plan.config.mobile_networks == old.mobile_networks
    assert KEY not in repr(plan) + " ".join(plan.applied) and NEW_KEY not in repr(plan) + " ".join(plan.applied)
    assert plan_router_reload(old, old).applied == () and plan_router_reload(old, old).needs_restart == ()


def test_router_reload_moves_to_the_reprioritised_uplink_and_re_registers_with_the_new_lifetime(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        port = free_port()
        home_agent = await start_home_agent("127.0.0.1", "127.0.0.0/8", "127.0.0.50", 256, port)
        template, _backend = make_daemon(tmp_path, port, None)
        text = write_config(tmp_path, port, None).read_text().replace('kind = "ethernet"', 'kind = "ethernet"\npriority = 10')
        path = tmp_path / "reloaded.toml"
        path.write_text(text + '\n[[uplink]]\nname = "wifi"\ninterface = "lo"\nkind = "ethernet"\n')
        daemon = RouterDaemon(load_router_config(path), template.adapter, probe_factory=template.probe_factory)
        await daemon.start()
        home = IPv4Address("127.0.0.50")
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: home in home_agent.bindings())
        daemon.on_uplink_event(ue.LinkUp("wifi", "lo", "127.0.0.3", None))
        await asyncio.sleep(0.3)  # wifi probed UP, but less preferred: no switch
        assert daemon.active == "eth"
        assert home_agent.bindings()[home].care_of_address == IPv4Address("127.0.0.2")
        assert home_agent.bindings()[home].lifetime == 600

        text = path.read_text() + "priority = 5\n"  # the last table is wifi's
        path.write_text(text.replace("port = ", "lifetime = 120\nport = ", 1))
        plan = daemon.reload(load_router_config(path))
        assert plan.uplinks == ("wifi",) and plan.systems == ("inner",)
        # The failback hold-down (5 s) still applies to the newly preferred uplink.
        await wait_for(lambda: daemon.active == "wifi" and daemon.lan_route == LanRoute.DIRECT, 15)
        await wait_for(lambda: home_agent.bindings()[home].care_of_address == IPv4Address("127.0.0.3"))
        assert home_agent.bindings()[home].lifetime == 120
        assert [u["active"] for u in daemon.status()["uplinks"]] == [False, True]
        await daemon.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert "reload: applied uplink wifi priority 50 -> 5" in caplog.text
    assert "reload: applied inner lifetime 600 -> 120" in caplog.text
    assert KEY not in caplog.text


# -- home agent --------------------------------------------------------------------------------


def ha_text(port: int, state_dir: Path, nodes: list[tuple[str, int, str]], max_lifetime: int = 600) -> str:
    text = f"""[home_agent]
address = "127.0.0.1"
home_network = "127.0.0.0/8"
port = {port}
max_lifetime = {max_lifetime}
state_dir = "{state_dir}"
"""
    for home, spi, key in nodes:
        text += f'\n[[mobile_node]]\nhome_address = "{home}"\nspi = {spi}\nkey = "hex:{key}"\n'
    return text


#: The last Identification each test node sent: one node, many short-lived machines, and
#: the home agent wants every timestamp greater than the last (RFC 5944 §5.7.1).
LAST_SENT: dict[str, int] = {}


async def register(port: int, home: str, spi: int, key: str, coa: str) -> RegistrationReply:
    loop = asyncio.get_running_loop()
    machine = mn.RegistrationMachine(
        mn.MobileNodeConfig(
            home_address=IPv4Address(home),
            home_agent=IPv4Address("127.0.0.1"),
            security_association=SecurityAssociation(spi, AuthAlgorithm.HMAC_MD5, bytes.fromhex(key)),
            home_agent_port=port,
            clock_offset=time.time() - loop.time() + NTP_UNIX_OFFSET,
        ),
        last_identification=LAST_SENT.get(home, 0),
    )
    machine.register(IPv4Address(coa), loop.time())
    [(datagram, _)] = machine.datagrams_to_send(loop.time())
    LAST_SENT[home] = machine.last_identification
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((coa, 0))
        sock.setblocking(False)
        sock.sendto(datagram, ("127.0.0.1", port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
    reply = decode(data)
    assert isinstance(reply, RegistrationReply)
    return reply


def test_home_agent_reload_keeps_bindings_of_kept_nodes_and_refuses_a_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        port = free_port()
        path = tmp_path / "ha.toml"
        state = tmp_path / "state"
        path.write_text(ha_text(port, state, [("127.0.0.50", 256, KEY), ("127.0.0.51", 257, KEY)]))
        daemon = HomeAgentDaemon(load_home_agent_config(path), None)
        await daemon.start()
        try:
            assert (await register(port, "127.0.0.50", 256, KEY, "127.0.0.2")).code == 0
            assert (await register(port, "127.0.0.51", 257, KEY, "127.0.0.3")).code == 0
            kept = daemon.logic.bindings()[IPv4Address("127.0.0.50")]

            # A broken file: refused, line-precise, nothing changes.
            path.write_text(ha_text(port, state, [("127.0.0.50", 256, KEY)]) + "\nspi = 300\n")
            assert not daemon.reload_from(str(path))
            assert set(daemon.logic.bindings()) == {IPv4Address("127.0.0.50"), IPv4Address("127.0.0.51")}
            assert (await register(port, "127.0.0.51", 257, KEY, "127.0.0.3")).code == 0

            # Node .51 removed, node .50 gets a new key, max_lifetime shrinks, port "changes".
            path.write_text(ha_text(port + 1, state, [("127.0.0.50", 256, NEW_KEY)], max_lifetime=100))
            assert daemon.reload_from(str(path))
            await asyncio.sleep(0)
            assert list(daemon.logic.bindings()) == [IPv4Address("127.0.0.50")]
            assert daemon.logic.bindings()[IPv4Address("127.0.0.50")] == kept  # not even renewed
            assert daemon.config.port == port  # needs a restart: kept
            # The new key is the one that counts now; the removed node is unknown.
            assert (await register(port, "127.0.0.50", 256, KEY, "127.0.0.2")).code == 131
            reply = await register(port, "127.0.0.50", 256, NEW_KEY, "127.0.0.2")
            assert (reply.code, reply.lifetime) == (0, 100)
            with pytest.raises(TimeoutError):
                await register(port, "127.0.0.51", 257, KEY, "127.0.0.3")  # silently dropped
        finally:
            await daemon.stop()

    with caplog.at_level(logging.INFO, logger="router.ha"):
        asyncio.run(main())
    text = caplog.text
    assert f"reload refused, keeping the last good config: {tmp_path / 'ha.toml'}:" in text
    assert "binding 127.0.0.51 removed (no longer configured)" in text
    assert "reload: port changed" in text and "needs a restart" in text
    assert "reload: 1 mobile node(s); added -; removed 127.0.0.51; changed 127.0.0.50" in text
    assert KEY not in text and NEW_KEY not in text


def test_a_home_agent_process_keeps_serving_after_sighup_with_a_broken_file(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "ha.toml"
    good = ha_text(port, tmp_path / "state", [("127.0.0.50", 256, KEY)])
    path.write_text(good)
    log = tmp_path / "ha.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "router.ha", "--control-only", "--config", str(path)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    try:
        def wait_log(text: str, timeout: float = 30.0) -> None:
            deadline = time.monotonic() + timeout
            while text not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

        wait_log("listening on udp")
        assert asyncio.run(register(port, "127.0.0.50", 256, KEY, "127.0.0.2")).code == 0
        path.write_text(good.replace("max_lifetime = 600", "max_lifetime = \"many\""))
        process.send_signal(signal.SIGHUP)
        wait_log("reload refused, keeping the last good config")
        assert process.poll() is None
        assert "max_lifetime" in log.read_text().split("reload refused")[1].splitlines()[0]
        assert asyncio.run(register(port, "127.0.0.50", 256, KEY, "127.0.0.2")).code == 0
        # A good file again: applied.
        path.write_text(good.replace("max_lifetime = 600", "max_lifetime = 60"))
        process.send_signal(signal.SIGHUP)
        wait_log("reload: 1 mobile node(s)")
        reply = asyncio.run(register(port, "127.0.0.50", 256, KEY, "127.0.0.2"))
        assert (reply.code, reply.lifetime) == (0, 60)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert KEY not in log.read_text()



def test_home_agent_logic_reconfigure_drops_bindings_whose_networks_are_no_longer_allowed() -> None:
    """Pure: a node kept with fewer allowed prefixes loses a binding that routes a prefix it
    may no longer claim (RFC 5177 §6.3 Prefix Table); its replay floor carries over."""
    from ipaddress import IPv4Network

    from router.mip import homeagent as ha

    sa = SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, bytes.fromhex(KEY))
    wall = 3_900_000_000.0

    def config(networks: tuple[IPv4Network, ...]) -> ha.HomeAgentConfig:
        return ha.HomeAgentConfig(
            IPv4Address("10.0.0.1"), IPv4Network("10.0.0.0/24"),
            (ha.MobileNodeEntry(IPv4Address("10.0.0.50"), (sa,), networks),), clock_offset=wall,
        )

    logic = ha.HomeAgentLogic(config((IPv4Network("10.1.1.0/24"), IPv4Network("10.1.2.0/24"))))
    machine = mn.RegistrationMachine(
        mn.MobileNodeConfig(
            home_address=IPv4Address("10.0.0.50"), home_agent=IPv4Address("10.0.0.1"), security_association=sa,
            mobile_networks=(IPv4Network("10.1.2.0/24"),), clock_offset=wall,
        )
    )
    machine.register(IPv4Address("100.64.0.9"), 1.0)
    [(request, _)] = machine.datagrams_to_send(1.0)
    logic.receive_datagram(request, ("100.64.0.9", 434), 1.0)
    assert logic.next_event() is not None and len(logic.bindings()) == 1
    [(accepted, _)] = logic.datagrams_to_send(1.0)
    assert decode(accepted).code == 0  # type: ignore[union-attr]
    floor = logic.replay_state()
    logic.reconfigure(config((IPv4Network("10.1.2.0/24"),)))  # still allowed: kept
    assert logic.next_event() is None and len(logic.bindings()) == 1
    logic.reconfigure(config((IPv4Network("10.1.1.0/24"),)))  # 10.1.2.0/24 no longer
    event = logic.next_event()
    assert isinstance(event, ha.BindingRemoved) and event.reason == "mobile networks no longer allowed"
    assert logic.bindings() == {} and logic.replay_state() == floor
    logic.receive_datagram(request, ("100.64.0.9", 434), 1.5)  # the old request, replayed
    [(data, _)] = logic.datagrams_to_send(1.5)
    assert decode(data).code == 133  # type: ignore[union-attr]


# --- the last good configuration survives a restart ------------------------------------------

def test_a_broken_config_at_start_runs_the_last_good_copy_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import stat

    from router.config import ConfigError, load_home_agent_config
    from router.lifecycle import last_good_path, load_config_or_last_good
    from tests.config_samples import HA_TOML

    path = tmp_path / "ha.toml"
    path.write_text(HA_TOML)
    log = logging.getLogger("test.lastgood")
    good = load_config_or_last_good(str(path), load_home_agent_config, log)
    copy = last_good_path(path)
    assert copy.read_text() == HA_TOML and stat.S_IMODE(copy.stat().st_mode) == 0o600
    path.write_text(HA_TOML.replace("max_lifetime", "max_lifetime = \"soon\"\n#", 1))  # a bad edit
    with caplog.at_level(logging.ERROR, logger="test.lastgood"):
        again = load_config_or_last_good(str(path), load_home_agent_config, log)
    assert again == good
    assert any("last good config" in r.getMessage() and "ha.toml:" in r.getMessage() for r in caplog.records)
    assert copy.read_text() == HA_TOML, "a broken file never replaces the last good copy"
    copy.unlink()
    with pytest.raises(ConfigError):  # nothing to fall back to: the error stands
        load_config_or_last_good(str(path), load_home_agent_config, log)
