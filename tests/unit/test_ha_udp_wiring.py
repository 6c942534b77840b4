"""The home agent daemon's RFC 3519 wiring on loopback: the data path owns UDP 434, a forced
UDP registration becomes a peer of the tunnel and its routes go into the TUN (fake kernel;
a socketpair stands in for the TUN device)."""

from __future__ import annotations

import asyncio
import socket
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from router.config import load_home_agent_config
from router.drive import open_driver, udp_socket
from router.ha.daemon import HA_OWNERSHIP, HomeAgentDaemon
from router.mip import mobilenode as mn
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import NTP_UNIX_OFFSET
from router.net import FakeBackend, KernelAdapter

KEY = "00112233445566778899aabbccddeeff"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_udp_binding_becomes_a_tunnel_peer_routed_into_the_tun(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        config_path = tmp_path / "ha.toml"
        config_path.write_text(f"""[home_agent]
address = "127.0.0.1"
home_network = "127.0.0.0/8"
port = {port}
udp_keepalive_interval = 15
state_dir = "{tmp_path}"

[[mobile_node]]
home_address = "127.0.0.50"
spi = 256
key = "hex:{KEY}"
mobile_networks = ["10.1.1.0/24"]
""")
        config = load_home_agent_config(config_path)
        assert config.udp_tunnelling and config.udp_keepalive_interval == 15
        backend = FakeBackend(HA_OWNERSHIP, foreign_links=["lo", "mip3519"])
        ours, tun = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        tun.setblocking(False)
        daemon = HomeAgentDaemon(config, KernelAdapter(backend, sleep=lambda _: None), open_udp_tun=tun.detach)
        await daemon.start()
        sync = asyncio.create_task(daemon.run_kernel_sync())
        assert daemon.tunnel is not None
        loop = asyncio.get_running_loop()
        events: list[object] = []
        machine = mn.RegistrationMachine(
            mn.MobileNodeConfig(
                home_address=IPv4Address("127.0.0.50"),
                home_agent=IPv4Address("127.0.0.1"),
                security_association=SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, bytes.fromhex(KEY)),
                mobile_networks=(IPv4Network("10.1.1.0/24"),),
                udp_tunnel=True,
                udp_tunnel_force=True,  # no NAT on loopback
                home_agent_port=port,
                clock_offset=time.time() - loop.time() + NTP_UNIX_OFFSET,
            )
        )
        driver = await open_driver(machine, events.append, udp_socket("127.0.0.2"))
        machine.register(IPv4Address("127.0.0.2"), loop.time())
        driver.poke()
        deadline = loop.time() + 5
        while not any(isinstance(e, mn.Registered) for e in events):
            assert loop.time() < deadline, events
            await asyncio.sleep(0.02)
        registered = next(e for e in events if isinstance(e, mn.Registered))
        assert registered.udp_tunnel and registered.udp_keepalive_interval == 15
        peers = daemon.tunnel.peers.peers()
        assert [p.home_address for p in peers] == [IPv4Address("127.0.0.50")]
        while not any("dev mip3519" in line and "10.1.1.0/24" in line for line in backend.lines):
            assert loop.time() < deadline, backend.lines
            await asyncio.sleep(0.02)
        assert not any("mip-" in line and "link add" in line for line in backend.lines), backend.lines
        sync.cancel()
        driver.close()
        await daemon.stop()
        assert daemon.tunnel is None
        assert not backend.observe().routes
        ours.close()

    asyncio.run(main())
