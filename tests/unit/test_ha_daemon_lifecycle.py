"""The home agent daemon's whole life against a fake kernel, on loopback (issue 4, item 1).

Start removes what a previous run left (a restart reconciles); an accepted registration puts
the binding's tunnel, routes and proxy-ARP entry in the kernel and is announced by a few
gratuitous ARPs, each sent only once the kernel proxies (RFC 5944 §4.6); a deregistration
and an expiry each remove everything of the binding; each change is one log line with its
reason; a clean stop leaves nothing of ours. With no adapter (``--control-only``) nothing
is programmed and nothing is announced. A real registration machine (router.mip) is the
mobile node; the kernel is ``FakeBackend``.

A node back home (RFC 5944 §4.6, last list): its deregistration (care-of address = home
address, sent from the home address) is answered only once the kernel removed the binding
(proxy ARP stopped, no host route into the tunnel), then a few gratuitous ARPs carry the
node's own MAC, read from the (fake) neighbour table; no MAC learnt: a warning and no ARP;
a rejected deregistration changes nothing about ARP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import router.ha.daemon as ha_daemon
from router.config import load_home_agent_config
from router.drive import MachineDriver, open_driver, udp_socket
from router.ha.daemon import HA_OWNERSHIP, HomeAgentDaemon
from router.ha.plan import home_agent_plan, tunnel_name
from router.mip import mobilenode as mn
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.homeagent import Binding
from router.mip.identification import NTP_UNIX_OFFSET
from router.net import FakeBackend, KernelAdapter, Plan
from router.net.plan import ProxyArp
from tests.config_samples import write_loopback_ha_config
from tests.unit.test_ha_reply_after_kernel import GatedAdapter
from tests.unit.test_ha_udp_wiring import KEY, free_port

HA = IPv4Address("127.0.0.1")
HOME = IPv4Address("127.0.0.50")
COA = IPv4Address("127.0.0.2")
LAN = IPv4Network("10.1.1.0/24")
HOME_INTERFACE = "eth0"


def write_config(tmp_path: Path, port: int, max_lifetime: int = 600) -> Path:
    extra = f'max_lifetime = {max_lifetime}\nhome_interface = "{HOME_INTERFACE}"\n'
    return write_loopback_ha_config(
        tmp_path, port, home_address=str(HOME), mobile_networks=str(LAN), key=KEY, extra=extra
    )


@dataclass
class ArpRecorder:
    """Stands in for send_gratuitous_arp; notes the hardware address asked for (None: the
    interface's own) and whether the kernel proxied at that moment."""

    backend: FakeBackend | None
    calls: list[tuple[str, IPv4Address, bytes | None, bool]] = field(default_factory=list)

    def __call__(self, ifname: str, address: IPv4Address, hardware_address: bytes | None = None) -> None:
        proxied = self.backend is not None and ProxyArp(ifname, address) in self.backend.observe().proxy_arp
        self.calls.append((ifname, address, hardware_address, proxied))


@dataclass
class FakeNeighbours:
    """Stands in for router.net.kernel.NeighbourTable: what the kernel's ARP cache holds."""

    entries: dict[tuple[str, IPv4Address], bytes] = field(default_factory=dict)
    lookups: int = 0

    def __call__(self, ifname: str, address: IPv4Address) -> bytes | None:
        self.lookups += 1
        return self.entries.get((ifname, address))


NODE_MAC = bytes.fromhex("020000000050")


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.01)


async def mobile_node(port: int, source: IPv4Address = COA, key: str = KEY,
                      ) -> tuple[mn.RegistrationMachine, MachineDriver, list[object]]:
    loop = asyncio.get_running_loop()
    events: list[object] = []
    machine = mn.RegistrationMachine(mn.MobileNodeConfig(
        home_address=HOME,
        home_agent=HA,
        security_association=SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, bytes.fromhex(key)),
        mobile_networks=(LAN,),
        home_agent_port=port,
        clock_offset=time.time() - loop.time() + NTP_UNIX_OFFSET,
    ))
    driver = await open_driver(machine, events.append, udp_socket(str(source)))
    return machine, driver, events


def leftover_plan() -> Plan:
    """What a killed home agent left: another node's tunnel, routes and proxy entry."""
    other = Binding(
        home_address=IPv4Address("127.0.0.77"), care_of_address=IPv4Address("127.0.0.9"), lifetime=600,
        expires_at=600.0, mobile_networks=(IPv4Network("10.7.7.0/24"),), reverse_tunnel=True,
        udp_tunnel=False, source=("127.0.0.9", 434), request_identification=1, reply_identification=1,
        registered_at=0.0,
    )
    return home_agent_plan([other], HA, HOME_INTERFACE)


def binding_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if f"binding {HOME} " in line]


def test_start_reconciles_bindings_program_and_announce_removal_and_stop_clean_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="router.ha")
    monkeypatch.setattr(ha_daemon, "GRATUITOUS_ARP_INTERVAL_S", 0.01)

    async def main() -> None:
        port = free_port(str(HA))
        backend = FakeBackend(HA_OWNERSHIP, foreign_links=[HOME_INTERFACE])
        KernelAdapter(backend, sleep=lambda _: None).apply(leftover_plan())
        assert backend.observe().links  # the previous run's tunnel is there
        arp = ArpRecorder(backend)
        daemon = HomeAgentDaemon(load_home_agent_config(write_config(tmp_path, port, max_lifetime=2)),
                                 KernelAdapter(backend, sleep=lambda _: None), arp)
        daemon.move_grace = 0.1
        await daemon.start()
        # A restart reconciles: nothing of a previous run survives the start.
        assert backend.observe() == Plan(), backend.observe()
        assert "leftover kernel object(s) removed" in caplog.text
        sync = asyncio.create_task(daemon.run_kernel_sync())
        loop = asyncio.get_running_loop()
        name = tunnel_name(HOME)

        # 1. Registration: tunnel to the care-of address, host route and mobile network into
        #    it, proxy ARP on the home interface; then a few gratuitous ARPs, all after the
        #    proxy entry exists.
        machine, driver, events = await mobile_node(port)
        machine.register(COA, loop.time())
        driver.poke()
        await wait_for(lambda: any(isinstance(e, mn.Registered) for e in events), "registered")
        kernel = backend.observe()
        (link,) = kernel.links
        assert link.name == name and link.tunnel is not None
        assert (link.tunnel.local, link.tunnel.remote) == (HA, COA)
        assert {(route.destination, route.dev) for route in kernel.routes} == {
            (IPv4Network(HOME), name), (LAN, name)}
        assert kernel.proxy_arp == frozenset({ProxyArp(HOME_INTERFACE, HOME)})
        await wait_for(lambda: len(arp.calls) >= ha_daemon.GRATUITOUS_ARP_COUNT, "gratuitous ARPs")
        await asyncio.sleep(0.1)
        assert arp.calls == [(HOME_INTERFACE, HOME, None, True)] * ha_daemon.GRATUITOUS_ARP_COUNT
        assert ha_daemon.GRATUITOUS_ARP_COUNT > 1  # §4.6: "retransmitted a small number of times"

        # 2. Deregistration (care-of address = home address: "all bindings", §3.6.1.2), sent
        #    from away (the care-of address): not a return home, so no ARP on its behalf.
        machine.deregister(loop.time())
        driver.poke()
        await wait_for(lambda: any(isinstance(e, mn.Deregistered) for e in events), "deregistered")
        await wait_for(lambda: backend.observe() == Plan(), "binding removed from the kernel")
        await asyncio.sleep(0.1)
        assert len(arp.calls) == ha_daemon.GRATUITOUS_ARP_COUNT

        # 3. Expiry: a binding granted max_lifetime (2 s) that is never renewed goes by itself.
        events.clear()
        machine.register(COA, loop.time())
        driver.poke()
        await wait_for(lambda: any(isinstance(e, mn.Registered) for e in events), "registered again")
        registered = next(e for e in events if isinstance(e, mn.Registered))
        assert registered.lifetime == 2  # capped by max_lifetime (§3.8.3.2)
        machine.cancel()  # the node goes silent: no renewal
        driver.poke()
        await wait_for(lambda: f"binding {HOME} expired" in caplog.text, "expiry", timeout=15)
        await wait_for(lambda: backend.observe() == Plan(), "expired binding removed from the kernel")

        # 4. Clean stop with a binding in place removes it all.
        events.clear()
        machine.register(COA, loop.time())
        driver.poke()
        await wait_for(lambda: any(isinstance(e, mn.Registered) for e in events), "registered a third time")
        await wait_for(lambda: bool(backend.observe().links), "tunnel for the third binding")
        driver.close()
        sync.cancel()
        await daemon.stop()
        assert backend.observe() == Plan(), backend.observe()
        assert "stop: removed" in caplog.text

    asyncio.run(main())
    # One line per binding change, each naming what happened and why.
    lines = binding_lines(caplog.text)
    kinds = [line.split(f"binding {HOME} ", 1)[1].split(":")[0] for line in lines]
    assert kinds == ["added", "removed (deregistered)", "added", "expired", "added"], lines
    assert all(f"coa {COA}" in line and f"networks {LAN}" in line for line in lines), lines


def test_control_only_programs_nothing_and_announces_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port(str(HA))
        arp = ArpRecorder(None)
        daemon = HomeAgentDaemon(load_home_agent_config(write_config(tmp_path, port)), None, arp)
        await daemon.start()
        sync = asyncio.create_task(daemon.run_kernel_sync())
        machine, driver, events = await mobile_node(port)
        machine.register(COA, asyncio.get_running_loop().time())
        driver.poke()
        await wait_for(lambda: any(isinstance(e, mn.Registered) for e in events), "registered")
        assert HOME in daemon.logic.bindings()  # bindings are kept ...
        await asyncio.sleep(0.2)
        assert arp.calls == []  # ... and nothing goes to the link or the kernel
        driver.close()
        sync.cancel()
        await daemon.stop()

    asyncio.run(main())


async def start_gated(tmp_path: Path, arp: ArpRecorder, neighbours: FakeNeighbours | None,
                      ) -> tuple[HomeAgentDaemon, GatedAdapter, FakeBackend, int, asyncio.Task[None]]:
    port = free_port(str(HA))
    backend = FakeBackend(HA_OWNERSHIP, foreign_links=[HOME_INTERFACE])
    arp.backend = backend
    adapter = GatedAdapter(backend)
    daemon = HomeAgentDaemon(load_home_agent_config(write_config(tmp_path, port)), adapter, arp,
                             neighbour_lookup=neighbours)
    await daemon.start()
    return daemon, adapter, backend, port, asyncio.create_task(daemon.run_kernel_sync())


async def register_away(port: int, arp: ArpRecorder) -> tuple[mn.RegistrationMachine, MachineDriver, list[object]]:
    machine, driver, events = await mobile_node(port)
    machine.register(COA, asyncio.get_running_loop().time())
    driver.poke()
    await wait_for(lambda: any(isinstance(e, mn.Registered) for e in events), "registered")
    await wait_for(lambda: len(arp.calls) == ha_daemon.GRATUITOUS_ARP_COUNT, "gratuitous ARPs for the new binding")
    return machine, driver, events


async def come_home(machine: mn.RegistrationMachine, driver: MachineDriver, port: int, events: list[object],
                    ) -> MachineDriver:
    """The node is back on the home link: it deregisters from its home address (§3.6.1.1)."""
    driver.close()
    at_home = await open_driver(machine, events.append, udp_socket(str(HOME)))
    machine.deregister(asyncio.get_running_loop().time())  # care-of address = home address
    at_home.poke()
    return at_home


def deregistered(events: list[object]) -> bool:
    return any(isinstance(e, mn.Deregistered) for e in events)


def test_node_back_home_is_answered_after_the_removal_then_announced_with_its_own_mac(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="router.ha")
    monkeypatch.setattr(ha_daemon, "GRATUITOUS_ARP_INTERVAL_S", 0.01)

    async def main() -> None:
        arp, neighbours = ArpRecorder(None), FakeNeighbours()
        daemon, adapter, backend, port, sync = await start_gated(tmp_path, arp, neighbours)
        machine, driver, events = await register_away(port, arp)
        assert ProxyArp(HOME_INTERFACE, HOME) in backend.observe().proxy_arp

        adapter.gate.clear()  # a slow kernel: the removal is not applied yet
        driver = await come_home(machine, driver, port, events)
        await wait_for(lambda: f"binding {HOME} removed (deregistered, back home)" in caplog.text, "removal")
        await asyncio.sleep(0.3)
        # Held: until the kernel drops the host route, the Reply would enter the tunnel.
        assert not deregistered(events), "replied before the kernel removed the binding"
        assert ProxyArp(HOME_INTERFACE, HOME) in backend.observe().proxy_arp
        assert len(arp.calls) == ha_daemon.GRATUITOUS_ARP_COUNT  # nothing announced yet
        adapter.gate.set()
        await wait_for(lambda: deregistered(events), "deregistration reply after the kernel applied")
        assert backend.observe() == Plan()
        # The Reply made the kernel resolve the node on the home link: now it knows the MAC.
        neighbours.entries[(HOME_INTERFACE, HOME)] = NODE_MAC
        await wait_for(lambda: len(arp.calls) == 2 * ha_daemon.GRATUITOUS_ARP_COUNT, "ARPs for the node back home")
        await asyncio.sleep(0.1)
        back_home = arp.calls[ha_daemon.GRATUITOUS_ARP_COUNT:]
        # Sender hardware = the node's own MAC; sent after proxy ARP stopped (§4.6 order).
        assert back_home == [(HOME_INTERFACE, HOME, NODE_MAC, False)] * ha_daemon.GRATUITOUS_ARP_COUNT
        assert ha_daemon.GRATUITOUS_ARP_COUNT == 3
        assert neighbours.lookups >= 1
        assert "node 127.0.0.50 back home at 02:00:00:00:00:50 on eth0" in caplog.text
        driver.close()
        sync.cancel()
        await daemon.stop()

    asyncio.run(main())


def test_the_hold_for_a_removal_is_bounded_and_no_mac_means_no_arp(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A kernel that never applies does not mute the home agent: the Reply leaves after
    ``reply_hold_limit``. A node whose MAC never shows up: a warning, no ARP with any MAC."""
    caplog.set_level(logging.INFO, logger="router.ha")

    async def main() -> None:
        arp, neighbours = ArpRecorder(None), FakeNeighbours()
        daemon, adapter, backend, port, sync = await start_gated(tmp_path, arp, neighbours)
        daemon.reply_hold_limit = 0.3
        daemon.neighbour_wait = 0.2
        machine, driver, events = await register_away(port, arp)
        adapter.gate.clear()
        driver = await come_home(machine, driver, port, events)
        await wait_for(lambda: deregistered(events), "reply released by the bound")
        assert ProxyArp(HOME_INTERFACE, HOME) in backend.observe().proxy_arp  # still not applied
        adapter.gate.set()
        await wait_for(lambda: backend.observe() == Plan(), "removal applied")
        await wait_for(lambda: "no link-layer address for it on eth0" in caplog.text, "warning")
        assert neighbours.lookups >= 2  # polled, not asked once
        await asyncio.sleep(0.1)
        assert len(arp.calls) == ha_daemon.GRATUITOUS_ARP_COUNT  # only the new binding's
        driver.close()
        sync.cancel()
        await daemon.stop()

    asyncio.run(main())


def test_a_rejected_deregistration_from_home_changes_nothing_about_arp(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """§4.6: "If, instead, the home agent rejects the Registration Request, the home agent
    MUST NOT make any change to the way it performs ARP processing"."""
    caplog.set_level(logging.INFO, logger="router.ha")

    async def main() -> None:
        arp, neighbours = ArpRecorder(None), FakeNeighbours({(HOME_INTERFACE, HOME): NODE_MAC})
        daemon, _adapter, backend, port, sync = await start_gated(tmp_path, arp, neighbours)
        _machine, driver, _events = await register_away(port, arp)
        kernel = backend.observe()
        # The same node's deregistration from home under a wrong key: 131 (§3.8.2.1).
        forger, forged, _ = await mobile_node(port, source=HOME, key="ff" * 16)
        forger.deregister(asyncio.get_running_loop().time())
        forged.poke()
        await wait_for(lambda: daemon.logic.counters.get("denied_131", 0) == 1, "denied 131")
        await asyncio.sleep(0.3)
        assert HOME in daemon.logic.bindings()
        assert backend.observe() == kernel  # proxy ARP, tunnel and routes as they were
        assert ProxyArp(HOME_INTERFACE, HOME) in kernel.proxy_arp
        assert len(arp.calls) == ha_daemon.GRATUITOUS_ARP_COUNT and neighbours.lookups == 0
        assert "back home" not in caplog.text
        forged.close()
        driver.close()
        sync.cancel()
        await daemon.stop()

    asyncio.run(main())
