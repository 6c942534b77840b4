"""The router daemon's wiring, end to end on loopback, with fakes only where no peer exists.

Real: the pure core (policy, coordinator, registration machines), real UDP sockets, real
home-agent logic (router.mip.homeagent behind router.drive) answering on 127.0.0.x.
Fake: the kernel (FakeBackend records the plan), the uplink driver (events injected),
the probes (answered at once) and, for the dual system, the VPN (hands out V at once).
No root, no namespaces.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from router.config import load_router_config
from router.daemon import RouterDaemon, UplinkInfo
from router.dataplane import ROUTER_OWNERSHIP
from router.drive import open_driver, udp_socket
from router.mip import homeagent as ha
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import NTP_UNIX_OFFSET
from router.net import FakeBackend, KernelAdapter
from router.policy.coordinator import LanRoute
from router.uplink import events as ue
from router.vpn.strongswan import VpnState

KEY = "00112233445566778899aabbccddeeff"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class InstantProber:
    """Answers every probe on the next loop iteration."""

    def __init__(self, answered: Callable[[int], None]) -> None:
        self.answered = answered
        self.sequence = 0

    def open(self) -> None:
        pass

    def send(self) -> int:
        self.sequence += 1
        asyncio.get_running_loop().call_soon(self.answered, self.sequence)
        return self.sequence

    def close(self) -> None:
        pass


class FakeVpn:
    def __init__(self, virtual_ip: str) -> None:
        self.virtual_ip = IPv4Address(virtual_ip)
        self.on_event: Any = None
        self.ups = 0
        self.downs = 0

    def start_listener(self, loop: Any) -> None:
        pass

    def stop_listener(self) -> None:
        pass

    async def up(self) -> VpnState:
        self.ups += 1
        return VpnState(up=True, virtual_ip=self.virtual_ip)

    async def down(self) -> None:
        self.downs += 1


class Firewalled:
    """Home agent logic behind a filter on the source address (None: everything passes)."""

    def __init__(self, logic: ha.HomeAgentLogic) -> None:
        self.logic = logic
        self.allowed: set[str] | None = None
        self.dropped = 0

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if self.allowed is not None and addr[0] not in self.allowed:
            self.dropped += 1
            return
        self.logic.receive_datagram(data, addr, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logic, name)


async def start_home_agent(address: str, home_network: str, home_address: str, spi: int, port: int) -> Firewalled:
    wrapped = Firewalled(home_agent_logic(address, home_network, home_address, spi))
    await open_driver(wrapped, lambda event: None, udp_socket(address, port))
    return wrapped


def home_agent_logic(address: str, home_network: str, home_address: str, spi: int) -> ha.HomeAgentLogic:
    loop = asyncio.get_running_loop()
    return ha.HomeAgentLogic(
        ha.HomeAgentConfig(
            address=IPv4Address(address),
            home_network=IPv4Network(home_network),
            mobile_nodes=(
                ha.MobileNodeEntry(
                    IPv4Address(home_address),
                    (SecurityAssociation(spi, AuthAlgorithm.HMAC_MD5, bytes.fromhex(KEY)),),
                    (IPv4Network("10.1.1.0/24"),) if spi == 256 else (),
                ),
            ),
            # The same wall clock as the router's (both derive NTP time from the loop clock).
            clock_offset=time.time() - loop.time() + NTP_UNIX_OFFSET,
        )
    )


def write_config(tmp_path: Path, inner_port: int, outer_port: int | None) -> Path:
    text = f"""
[router]
mobile_networks = ["10.1.1.0/24"]
history_db = "{tmp_path}/history.sqlite"
state_dir = "{tmp_path}"

[inner]
home_agent = "127.0.0.1"
home_address = "127.0.0.50"
spi = 256
key = "hex:{KEY}"
inside_prefixes = ["127.0.0.0/30"]
port = {inner_port}
"""
    if outer_port is not None:
        text += f"""
[outer]
home_agent = "127.0.0.4"
home_address = "127.0.0.60"
home_network = "127.0.0.32/27"
spi = 257
key = "hex:{KEY}"
port = {outer_port}

[vpn]
connection = "corp"
gateway = "127.0.0.5"
"""
    text += """
[[uplink]]
name = "eth"
interface = "lo"
kind = "ethernet"
"""
    path = tmp_path / "router.toml"
    path.write_text(text)
    return path


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def make_daemon(tmp_path: Path, inner_port: int, outer_port: int | None, vpn: Any = None) -> tuple[RouterDaemon, FakeBackend]:
    config = load_router_config(write_config(tmp_path, inner_port, outer_port))
    backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "lo"])
    adapter = KernelAdapter(backend, sleep=lambda _: None)

    def probes(info: UplinkInfo, answered: Callable[[int], None]) -> InstantProber:
        return InstantProber(answered)

    return RouterDaemon(config, adapter, vpn=vpn, probe_factory=probes), backend


def test_single_system_registers_then_routes_lan_into_tunnel(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        home_agent = await start_home_agent("127.0.0.1", "127.0.0.0/8", "127.0.0.50", 256, port)
        daemon, backend = make_daemon(tmp_path, port, None)
        await daemon.start()
        start_lines = "\n".join(backend.take_lines())
        assert "unreachable" in start_lines, "the LAN must fail closed before any registration"
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.lan_route == LanRoute.DIRECT)
        await wait_for(lambda: any("dev mip-in-0" in line and "table 100" in line for line in backend.lines))
        binding = home_agent.bindings()[IPv4Address("127.0.0.50")]
        assert binding.care_of_address == IPv4Address("127.0.0.2")
        assert binding.mobile_networks == (IPv4Network("10.1.1.0/24"),)
        text = "\n".join(backend.lines)
        assert "local 127.0.0.2" in text and "remote 127.0.0.1" in text
        status = daemon.status()
        assert status["registrations"]["inner"]["care_of_address"] == "127.0.0.2"
        assert status["uplinks"][0]["active"] is True
        assert KEY not in repr(status)
        await daemon.stop()
        assert backend.observe().links == frozenset()

    asyncio.run(main())


def test_single_system_moves_the_tunnel_only_after_the_new_binding_is_acknowledged(tmp_path: Path) -> None:
    """Make-before-break: a planned switch keeps the LAN on the old care-of address until
    the home agent acknowledged the new one; the router's LAN address is in the plan."""

    async def main() -> None:
        port = free_port("127.0.0.1")
        home_agent = await start_home_agent("127.0.0.1", "127.0.0.0/8", "127.0.0.50", 256, port)
        path = write_config(tmp_path, port, None)
        path.write_text(path.read_text() + '\n[[uplink]]\nname = "wifi"\ninterface = "lo"\nkind = "ethernet"\npriority = 10\n')
        config = load_router_config(path)
        backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "lo"])
        adapter = KernelAdapter(backend, sleep=lambda _: None)
        daemon = RouterDaemon(config, adapter, probe_factory=lambda info, answered: InstantProber(answered))
        await daemon.start()
        assert any("10.1.1.1/24 dev br-lan" in line for line in backend.take_lines())
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: any("local 127.0.0.2" in line for line in backend.lines))
        home_agent.allowed = {"127.0.0.2"}  # the new path's requests get lost for now
        daemon.on_uplink_event(ue.LinkUp("wifi", "lo", "127.0.0.3", None))
        await asyncio.sleep(0.2)  # wifi probed UP
        daemon.policy.prefer("wifi", daemon.now())
        daemon._after_input()
        await wait_for(lambda: daemon.active == "wifi")
        await wait_for(lambda: home_agent.dropped >= 1)
        await asyncio.sleep(0.1)
        assert not any("table 100" in line and "mip-in-1" in line for line in backend.lines), \
            "LAN route moved before the ack"
        assert daemon.dataplane().inner is not None and daemon.dataplane().inner.local == IPv4Address("127.0.0.2")
        # ... but a decapsulating tunnel on the new address is ready for the home agent's move.
        assert any("ip link add mip-in-1" in line and "local 127.0.0.3" in line for line in backend.lines)
        before_ack = len(backend.lines)
        home_agent.allowed = None  # the retransmission gets through
        await wait_for(lambda: any("table 100" in line and "mip-in-1" in line for line in backend.lines))
        await asyncio.sleep(0.2)  # anything else the ack would change
        # The ack changed one route (atomic replace) and no tunnel: both stay.
        assert backend.lines[before_ack:] == ["ip route replace 0.0.0.0/0 dev mip-in-1 src 127.0.0.50 table 100"]
        assert {link.name for link in backend.observe().links} == {"mip-home", "mip-in-0", "mip-in-1"}
        assert home_agent.bindings()[IPv4Address("127.0.0.50")].care_of_address == IPv4Address("127.0.0.3")
        await daemon.stop()

    asyncio.run(main())


def test_dual_system_inside_outside_and_back(tmp_path: Path) -> None:
    """Inside (direct), walk out (outer registration, VPN, inner over the VPN), come back."""

    async def main() -> None:
        inner_port, outer_port = free_port("127.0.0.1"), free_port("127.0.0.4")
        inner_ha = await start_home_agent("127.0.0.1", "127.0.0.0/24", "127.0.0.50", 256, inner_port)
        outer_ha = await start_home_agent("127.0.0.4", "127.0.0.0/8", "127.0.0.60", 257, outer_port)
        vpn = FakeVpn("127.0.0.7")
        daemon, backend = make_daemon(tmp_path, inner_port, outer_port, vpn)
        home = IPv4Address("127.0.0.50")
        await daemon.start()

        # Inside: an inside address, and the inner HA answers it directly.
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.situation.name == "inside", 15)
        assert daemon.lan_route == LanRoute.DIRECT and vpn.ups == 0
        assert inner_ha.bindings()[home].care_of_address == IPv4Address("127.0.0.2")
        backend.take_lines()

        # Outside: the inner HA is reachable only through the VPN (source V).
        inner_ha.allowed = {"127.0.0.7"}
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.9", None))
        await wait_for(lambda: daemon.situation.name == "outside" and daemon.lan_route == LanRoute.VPN, 20)
        assert vpn.ups == 1
        assert outer_ha.bindings()[IPv4Address("127.0.0.60")].care_of_address == IPv4Address("127.0.0.9")
        assert inner_ha.bindings()[home].care_of_address == IPv4Address("127.0.0.7")
        outside = "\n".join(backend.take_lines())
        assert "mip-out-0" in outside and "remote 127.0.0.4" in outside, outside
        assert "local 127.0.0.7" in outside, outside  # the inner tunnel now starts at V

        # Back inside: the direct reply proves it; the LAN moves first, then the VPN goes.
        inner_ha.allowed = None
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.situation.name == "inside" and vpn.downs >= 1, 20)
        await wait_for(lambda: IPv4Address("127.0.0.60") not in outer_ha.bindings(), 10)
        assert daemon.lan_route == LanRoute.DIRECT and daemon.virtual_ip is None
        assert inner_ha.bindings()[home].care_of_address == IPv4Address("127.0.0.2")
        kinds = [entry["kind"] for entry in daemon.status()["handovers"]]
        assert "situation" in kinds
        await daemon.stop()

    asyncio.run(main())


def test_single_system_with_udp_tunnelling_attaches_the_data_path_and_routes_the_lan_into_it(tmp_path: Path) -> None:
    """RFC 3519 wiring: the registration leaves through the data path's socket, the home
    agent assents (forced, "always": no NAT on loopback), the tunnel is attached to that
    socket and the LAN default goes into the TUN; a TUN packet then leaves as type-4 data
    from the registration's source port."""
    from router.udptunnel.datapath import MobileTunnel

    async def main() -> None:
        port = free_port("127.0.0.1")
        home_agent = await start_home_agent("127.0.0.1", "127.0.0.0/8", "127.0.0.50", 256, port)
        path = write_config(tmp_path, port, None)
        path.write_text(path.read_text().replace("[inner]\n", '[inner]\nudp_tunnel = "always"\n'))
        config = load_router_config(path)
        backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "lo", "mip3519"])
        adapter = KernelAdapter(backend, sleep=lambda _: None)
        ours, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for the TUN
        tun.setblocking(False)
        tunnel = MobileTunnel(tun.detach(), home_address=IPv4Address("127.0.0.50"), home_agent=IPv4Address("127.0.0.1"))
        daemon = RouterDaemon(
            config, adapter, probe_factory=lambda info, answered: InstantProber(answered), udp_tunnel=tunnel
        )
        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.lan_route == LanRoute.DIRECT)
        binding = home_agent.bindings()[IPv4Address("127.0.0.50")]
        assert binding.udp_tunnel
        assert tunnel.attached and daemon.inner.socket is not None
        assert tunnel.peer == ("127.0.0.1", port)
        assert binding.source == daemon.inner.socket.getsockname()  # registrations and data share it
        await wait_for(lambda: any("dev mip3519" in line and "table 100" in line for line in backend.lines))
        assert not any("dev mip-in" in line for line in backend.lines), "the LAN never rides ip-in-ip with a UDP binding"
        await wait_for(lambda: not any(link.name.startswith("mip-in") for link in backend.observe().links))
        inner = bytes.fromhex("450000140000000040000000") + IPv4Address("10.1.1.9").packed + IPv4Address("203.0.113.1").packed
        ours.send(inner)
        await wait_for(lambda: tunnel.counters.tx_packets == 1)
        await daemon.stop()
        assert not tunnel.attached and tunnel.closed
        assert not any(route.dev == "mip3519" for route in backend.observe().routes)
        ours.close()

    asyncio.run(main())


class NattedHomeAgent:
    """Home agent logic behind an emulated NAT (RFC 3519 §1): requests from a ``natted``
    address reach the logic from ``public`` (same port), as a NAT rewrites them, and the
    replies are translated back; type-4 tunnel data is recorded for the test, not parsed."""

    def __init__(self, logic: ha.HomeAgentLogic, public: str) -> None:
        self.logic = logic
        self.public = public
        self.natted: set[str] = set()
        self.private: dict[tuple[str, int], tuple[str, int]] = {}
        self.tunnelled: list[tuple[bytes, tuple[str, int]]] = []
        self.requests = 0

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if addr[0] in self.natted:
            public = (self.public, addr[1])
            self.private[public] = addr
            addr = public
        if data[:1] == bytes([4]):  # RFC 3519 §3.3: tunnel data
            self.tunnelled.append((data, addr))
            return
        self.requests += data[:1] == bytes([1])
        self.logic.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        return [(data, self.private.get(addr, addr)) for data, addr in self.logic.datagrams_to_send(now)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logic, name)


def test_dual_system_outer_udp_tunnelling_behind_a_nat_attaches_and_detaches(tmp_path: Path) -> None:
    """RFC 3519 for the outer system ([outer] udp_tunnel defaults to "auto"): outside behind a
    NAT the outer home agent assents, the outer data path attaches to the outer registration's
    socket and T's default goes into mip3519-out (a packet from T leaves as type-4 data from
    the NAT'd source); the inner system still rides the VPN. Without the NAT (another outside
    address) the binding is plain and T goes back into mip-out-0; behind the NAT again it
    re-attaches; keepalive silence re-registers; inside, the outer deregistration detaches it
    and nothing routes into the TUN."""
    from router.udptunnel.datapath import MobileTunnel
    from router.udptunnel.wire import tunnel_header

    async def main() -> None:
        inner_port, outer_port = free_port("127.0.0.1"), free_port("127.0.0.4")
        inner_ha = await start_home_agent("127.0.0.1", "127.0.0.0/24", "127.0.0.50", 256, inner_port)
        outer_ha = NattedHomeAgent(home_agent_logic("127.0.0.4", "127.0.0.0/8", "127.0.0.60", 257), "127.0.0.99")
        await open_driver(outer_ha, lambda event: None, udp_socket("127.0.0.4", outer_port))
        vpn = FakeVpn("127.0.0.7")
        config = load_router_config(write_config(tmp_path, inner_port, outer_port))
        assert config.outer is not None and config.outer.udp_tunnel == "auto"
        backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "lo", "mip3519-out"])
        ours, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for the TUN
        tun.setblocking(False)
        t, t_ha = IPv4Address("127.0.0.60"), IPv4Address("127.0.0.4")
        tunnel = MobileTunnel(tun.detach(), home_address=t, home_agent=t_ha)
        daemon = RouterDaemon(
            config, KernelAdapter(backend, sleep=lambda _: None), vpn=vpn,
            probe_factory=lambda info, answered: InstantProber(answered), outer_udp_tunnel=tunnel,
        )
        assert daemon.udp_tunnel is None and daemon.inner.tunnel is None  # the inner system: never

        def outer_default() -> str | None:
            return next((r.dev for r in backend.observe().routes
                         if r.table == 101 and r.destination.prefixlen == 0 and r.metric == 0), None)

        def binding() -> ha.Binding:
            return outer_ha.bindings()[t]

        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.situation.name == "inside", 15)

        # Outside behind the NAT: UDP assented, T into the TUN, no IP-in-IP tunnel for it.
        inner_ha.allowed = {"127.0.0.7"}
        outer_ha.natted = {"127.0.0.9"}
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.9", None))
        await wait_for(lambda: daemon.situation.name == "outside" and daemon.lan_route == LanRoute.VPN, 20)
        # RFC 3519 §4.6: the home agent's care-of address is the NAT's; the request named ours.
        assert binding().udp_tunnel and binding().requested_care_of_address == IPv4Address("127.0.0.9")
        assert binding().care_of_address == IPv4Address("127.0.0.99")
        assert daemon.outer is not None and daemon.outer.socket is not None
        port = daemon.outer.socket.getsockname()[1]
        assert binding().source == ("127.0.0.99", port)  # the NAT's address: where it tunnels to
        assert tunnel.attached and tunnel.peer == ("127.0.0.4", outer_port)
        await wait_for(lambda: outer_default() == "mip3519-out")
        await wait_for(lambda: not any(link.name.startswith("mip-out-") for link in backend.observe().links))
        assert not any("dev mip-out-0" in line and "table 101" in line for line in backend.lines)
        assert inner_ha.bindings()[IPv4Address("127.0.0.50")].care_of_address == IPv4Address("127.0.0.7")
        esp = bytes.fromhex("45000014000000004032_0000".replace("_", "")) + t.packed + IPv4Address("127.0.0.5").packed
        ours.send(esp)  # T -> the VPN gateway, ESP (protocol 50), as the kernel hands it to the TUN
        await wait_for(lambda: bool(outer_ha.tunnelled))
        assert outer_ha.tunnelled == [(tunnel_header() + esp, ("127.0.0.99", port))]

        # Keepalives unanswered (§4.10): the router re-registers its care-of address.
        requests = outer_ha.requests
        daemon._on_outer_udp_peer_state(False)
        await wait_for(lambda: outer_ha.requests > requests)
        await wait_for(lambda: tunnel.attached and daemon.counters.get("outer_udp_peer_silent") == 1)
        assert binding().udp_tunnel and outer_default() == "mip3519-out"

        # Another outside address without a NAT: a plain binding, T back into IP-in-IP.
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.10", None))
        await wait_for(lambda: binding().care_of_address == IPv4Address("127.0.0.10"))
        await wait_for(lambda: outer_default() == "mip-out-0")
        assert not binding().udp_tunnel and not tunnel.attached
        assert ("127.0.0.10", "127.0.0.4") in {(str(link.tunnel.local), str(link.tunnel.remote))
                                               for link in backend.observe().links if link.tunnel}

        # Behind the NAT again: the data path re-attaches on the new registration socket.
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.9", None))
        await wait_for(lambda: binding().requested_care_of_address == IPv4Address("127.0.0.9") and binding().udp_tunnel)
        await wait_for(lambda: outer_default() == "mip3519-out" and tunnel.attached)
        assert daemon.outer.socket is not None and tunnel.peer == ("127.0.0.4", outer_port)

        # Inside: the outer system is deregistered, the data path detached, T's table gone.
        inner_ha.allowed = None
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.situation.name == "inside" and vpn.downs >= 1, 20)
        await wait_for(lambda: t not in outer_ha.bindings(), 10)
        assert not tunnel.attached and not daemon._outer_udp
        assert not any(r.dev == "mip3519-out" for r in backend.observe().routes)
        await daemon.stop()
        assert tunnel.closed
        ours.close()

    asyncio.run(main())


class FakeAdvertListener:
    def __init__(self, on_advert: Callable[[Any], None]) -> None:
        self.on_advert = on_advert
        self.opened = self.closed = False
        self.solicited = 0

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.closed = True

    def new_link(self) -> None:
        pass

    def solicit(self) -> bool:
        self.solicited += 1
        return True


def test_agent_advertisements_are_hints_fed_once_per_advertiser(tmp_path: Path) -> None:
    """An advert heard on the active uplink becomes one ConjectureFormed (its periodic repeats
    and forged floods add nothing); the listener opens with the link, solicits, and closes
    with it. A hint never switches the route: no direct proof, no DIRECT route."""
    from router.policy.domain import AdvertisementHeard

    async def main() -> None:
        inner_port, outer_port = free_port("127.0.0.1"), free_port("127.0.0.4")
        await start_home_agent("127.0.0.4", "127.0.0.0/8", "127.0.0.60", 257, outer_port)
        daemon, _backend = make_daemon(tmp_path, inner_port, outer_port, FakeVpn("127.0.0.7"))
        listeners: list[FakeAdvertListener] = []

        def factory(info: UplinkInfo, on_advert: Callable[[Any], None]) -> FakeAdvertListener:
            listeners.append(FakeAdvertListener(on_advert))
            return listeners[-1]

        daemon.advert_factory = factory
        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.active == "eth")
        assert len(listeners) == 1 and listeners[0].opened and listeners[0].solicited == 1
        assert daemon.coordinator is not None
        inner_ha = daemon.coordinator.params.domain.inner_home_agent
        for _ in range(5):  # the agent's periodic repeats
            listeners[0].on_advert(AdvertisementHeard(inner_ha, True, False, daemon.now()))
        for n in range(20):  # a forger inventing advertisers
            listeners[0].on_advert(AdvertisementHeard(IPv4Address(f"10.30.0.{n + 1}"), False, True, daemon.now()))
        assert daemon.counters["adverts_heard"] == RouterDaemon.MAX_SIGHTINGS
        assert daemon.lan_route != LanRoute.DIRECT  # a hint is never proof
        daemon.on_uplink_event(ue.LinkDown("eth", "carrier lost"))
        assert listeners[0].closed
        await daemon.stop()

    asyncio.run(main())


def test_dual_system_outside_to_outside_moves_t_after_the_outer_ack_by_one_route_replace(tmp_path: Path) -> None:
    """Make-before-break for the outer system (3G -> hotspot while outside): the tunnel on the
    new care-of address exists before the outer Request leaves, T keeps riding the old one
    until the outer home agent acknowledged, then table 101's default moves by one route
    replace; the inner system (over the VPN, CoA V) is not touched."""

    async def main() -> None:
        inner_port, outer_port = free_port("127.0.0.1"), free_port("127.0.0.4")
        inner_ha = await start_home_agent("127.0.0.1", "127.0.0.0/24", "127.0.0.50", 256, inner_port)
        outer_ha = await start_home_agent("127.0.0.4", "127.0.0.0/8", "127.0.0.60", 257, outer_port)
        inner_ha.allowed = {"127.0.0.7"}  # outside: the inner HA only through the VPN (V)
        path = write_config(tmp_path, inner_port, outer_port)
        path.write_text(path.read_text() + '\n[[uplink]]\nname = "wifi"\ninterface = "lo"\nkind = "ethernet"\npriority = 10\n')
        config = load_router_config(path)
        backend = FakeBackend(ROUTER_OWNERSHIP, foreign_links=["br-lan", "lo"])
        vpn = FakeVpn("127.0.0.7")
        daemon = RouterDaemon(config, KernelAdapter(backend, sleep=lambda _: None), vpn=vpn,
                              probe_factory=lambda info, answered: InstantProber(answered))
        t = IPv4Address("127.0.0.60")
        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.9", None))
        await wait_for(lambda: daemon.situation.name == "outside" and daemon.lan_route == LanRoute.VPN, 20)
        await wait_for(lambda: any("dev mip-out-0 src 127.0.0.60 table 101" in line for line in backend.lines))
        ups = vpn.ups

        outer_ha.allowed = {"127.0.0.9"}  # the new path's outer requests get lost for now
        daemon.on_uplink_event(ue.LinkUp("wifi", "lo", "127.0.0.10", None))
        await asyncio.sleep(0.2)  # wifi probed UP
        daemon.policy.prefer("wifi", daemon.now())
        daemon._after_input()
        await wait_for(lambda: daemon.active == "wifi")
        await wait_for(lambda: outer_ha.dropped >= 1, 15)
        await asyncio.sleep(0.1)
        assert any("ip link add mip-out-1" in line and "local 127.0.0.10 remote 127.0.0.4" in line for line in backend.lines)
        assert not any("table 101" in line and "mip-out-1" in line for line in backend.lines), "T moved before the ack"
        assert outer_ha.bindings()[t].care_of_address == IPv4Address("127.0.0.9")
        before_ack = len(backend.lines)
        outer_ha.allowed = None
        await wait_for(lambda: outer_ha.bindings()[t].care_of_address == IPv4Address("127.0.0.10"), 15)
        await wait_for(lambda: any("table 101" in line and "mip-out-1" in line for line in backend.lines))
        await asyncio.sleep(0.3)
        tunnel_lines = [line for line in backend.lines[before_ack:] if "mip-" in line]
        assert tunnel_lines == ["ip route replace 0.0.0.0/0 dev mip-out-1 src 127.0.0.60 table 101"], tunnel_lines
        names = {link.name for link in backend.observe().links}
        assert {"mip-out-0", "mip-out-1", "mip-inner"} <= names, names
        assert vpn.ups == ups and daemon.lan_route == LanRoute.VPN  # the VPN and the LAN stayed
        assert inner_ha.bindings()[IPv4Address("127.0.0.50")].care_of_address == IPv4Address("127.0.0.7")
        await daemon.stop()

    asyncio.run(main())


def test_a_registration_exchange_is_a_free_health_probe_of_its_uplink(tmp_path: Path) -> None:
    """Registrations cost nothing extra as probes: the exchange from an uplink's address is an
    RTT sample of that uplink's health (issue 6, item 3)."""

    async def main() -> None:
        port = free_port("127.0.0.1")
        await start_home_agent("127.0.0.1", "127.0.0.0/8", "127.0.0.50", 256, port)
        daemon, _backend = make_daemon(tmp_path, port, None)
        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: daemon.lan_route == LanRoute.DIRECT)
        tracker = daemon.health["eth"]
        assert daemon.counters.get("registration_round_trips", 0) >= 1
        assert tracker.probes_sent >= 1 and tracker.srtt is not None
        await daemon.stop()

    asyncio.run(main())


def test_dual_system_back_at_the_outer_home_announces_t_before_the_deregistration(
        tmp_path: Path, monkeypatch: Any) -> None:
    """RFC 5944 §4.6, the node's side: "Before transmitting the (de)Registration Request ...
    the mobile node MUST transmit this gratuitous ARP"; its retransmissions "SHOULD proceed in
    parallel" with the deregistration, so the first ARP precedes the request and the repeats
    follow it. Each ARP names T with our own MAC (no hardware address given)."""
    import router.net.arp

    order: list[str] = []
    sent: list[tuple[str, IPv4Address, dict[str, Any]]] = []

    def fake_arp(ifname: str, address: IPv4Address, **kwargs: Any) -> bytes:
        order.append("arp")
        sent.append((ifname, address, kwargs))
        return b""

    monkeypatch.setattr(router.net.arp, "send_gratuitous_arp", fake_arp)

    async def main() -> None:
        inner_port, outer_port = free_port("127.0.0.1"), free_port("127.0.0.4")
        inner_ha = await start_home_agent("127.0.0.1", "127.0.0.0/24", "127.0.0.50", 256, inner_port)
        outer_ha = await start_home_agent("127.0.0.4", "127.0.0.0/8", "127.0.0.60", 257, outer_port)
        inner_ha.allowed = {"127.0.0.7"}  # outside: the inner HA only through the VPN (V)
        receive = outer_ha.receive_datagram

        def noting_deregistrations(data: bytes, addr: tuple[str, int], now: float) -> None:
            if data[:1] == b"\x01" and data[2:4] == b"\x00\x00":  # Request, Lifetime 0 (§3.3)
                order.append(f"deregistration from {addr[0]}")
            receive(data, addr, now)

        outer_ha.receive_datagram = noting_deregistrations  # type: ignore[method-assign]
        vpn = FakeVpn("127.0.0.7")
        daemon, _backend = make_daemon(tmp_path, inner_port, outer_port, vpn)
        t = IPv4Address("127.0.0.60")
        await daemon.start()
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.9", None))
        await wait_for(lambda: daemon.situation.name == "outside" and daemon.lan_route == LanRoute.VPN, 20)
        assert t in outer_ha.bindings() and order == []

        # The uplink's new address is on the outer home network (127.0.0.32/27): back home.
        daemon.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.40", None))
        await wait_for(lambda: daemon.situation.name == "outer_home", 20)
        await wait_for(lambda: len(sent) == 3)
        assert t not in outer_ha.bindings()
        assert order == ["arp", "deregistration from 127.0.0.60", "arp", "arp"], order
        assert sent == [("lo", t, {})] * 3
        await daemon.stop()

    asyncio.run(main())
