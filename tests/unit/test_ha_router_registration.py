"""The router daemon registering with our home agent daemon (issue 4, item 2), on loopback.

What the binding at the home agent proves about the router's requests:

- explicit NEMO mode (RFC 5177 §5): the home agent allows 10.1.0.0/16 for the node, the
  router's LAN is 10.1.1.0/24. Implicit mode would be acknowledged with the home agent's own
  table (10.1.0.0/16); only a Mobile Network Request for 10.1.1.0/24 binds 10.1.1.0/24;
- reverse tunnelling (RFC 3024, the T bit) and a co-located care-of address (the uplink's own);
- a new lease on the active uplink is a re-registration with the new care-of address; until
  the home agent acknowledges it the LAN stays fail-closed (the old address is gone), and
  only the acknowledgement routes it into the tunnel from the new address.

Real: both daemons' code (router.daemon.RouterDaemon, router.ha.daemon.HomeAgentDaemon in
control-only mode), UDP sockets on 127.0.0.x. Fake: the router's kernel (FakeBackend) and
its uplink driver (events injected).
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from router.config import load_home_agent_config
from router.ha.daemon import HomeAgentDaemon
from router.net.plan import RouteType
from router.policy.coordinator import LanRoute
from router.uplink import events as ue
from tests.config_samples import write_loopback_ha_config
from tests.unit.test_daemon_loopback import KEY, Firewalled, free_port, make_daemon, wait_for

HOME = IPv4Address("127.0.0.50")
LAN = IPv4Network("10.1.1.0/24")


async def start_home_agent(
    tmp_path: Path, port: int, allowed: str
) -> tuple[HomeAgentDaemon, Firewalled]:
    path = write_loopback_ha_config(tmp_path, port, home_address=str(HOME), mobile_networks=allowed, key=KEY)
    daemon = HomeAgentDaemon(load_home_agent_config(path), None)  # --control-only
    await daemon.start()
    assert daemon.driver is not None
    gate = Firewalled(daemon.driver.machine)
    daemon.driver.machine = gate
    return daemon, gate


def test_explicit_nemo_reverse_tunnel_and_colocated_care_of_address(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        home_agent, _ = await start_home_agent(tmp_path, port, "10.1.0.0/16")
        router, _ = make_daemon(tmp_path, port, None)
        await router.start()
        router.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: HOME in home_agent.logic.bindings())
        binding = home_agent.logic.bindings()[HOME]
        assert binding.mobile_networks == (LAN,), (
            "not explicit mode: the home agent's table was used"
        )
        assert binding.reverse_tunnel  # T bit (RFC 3024)
        assert binding.care_of_address == IPv4Address("127.0.0.2") == IPv4Address(binding.source[0])
        assert not binding.udp_tunnel
        await router.stop()
        await home_agent.stop()

    asyncio.run(main())


def test_a_new_lease_on_the_active_uplink_re_registers_and_moves_only_on_the_ack(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        home_agent, gate = await start_home_agent(tmp_path, port, str(LAN))
        router, backend = make_daemon(tmp_path, port, None)
        await router.start()
        router.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.2", None))
        await wait_for(lambda: router.lan_route == LanRoute.DIRECT)
        await wait_for(lambda: router.dataplane().inner is not None)
        assert home_agent.logic.bindings()[HOME].care_of_address == IPv4Address("127.0.0.2")

        gate.allowed = {"127.0.0.2"}  # the requests from the new address get lost for now
        router.on_uplink_event(ue.LinkUp("eth", "lo", "127.0.0.3", None))  # DHCP: a new address
        await wait_for(lambda: gate.dropped >= 1)
        # The old address is gone and the new one not acknowledged: fail closed, no leak.
        assert router.dataplane().inner is None
        table = [route for route in backend.observe().routes if route.table == 100]
        assert any(route.type == RouteType.UNREACHABLE for route in table), table
        assert all(route.type != RouteType.UNICAST or route.dev == "br-lan" for route in table), (
            table
        )
        assert home_agent.logic.bindings()[HOME].care_of_address == IPv4Address("127.0.0.2")

        gate.allowed = None  # the retransmission gets through
        await wait_for(
            lambda: home_agent.logic.bindings()[HOME].care_of_address == IPv4Address("127.0.0.3")
        )
        await wait_for(
            lambda: (
                (tunnel := router.dataplane().inner) is not None
                and tunnel.local == IPv4Address("127.0.0.3")
            )
        )
        await wait_for(
            lambda: any(
                route.table == 100
                and route.destination == IPv4Network("0.0.0.0/0")
                and route.dev is not None
                and route.dev.startswith("mip-")
                for route in backend.observe().routes
            )
        )
        await router.stop()
        await home_agent.stop()

    asyncio.run(main())
