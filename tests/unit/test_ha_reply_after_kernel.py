"""The home agent answers a registration that creates or moves a binding only once the kernel
holds the tunnel for it (make-before-break: the node moves its traffic when the Reply
arrives, so the tunnel must already decapsulate from the new care-of address). Loopback,
fake kernel whose apply the test holds back."""

from __future__ import annotations

import asyncio
import threading
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from router.config import load_home_agent_config
from router.drive import open_driver, udp_socket
from router.ha.daemon import HA_OWNERSHIP, HomeAgentDaemon
from router.mip import mobilenode as mn
from router.mip.auth import AuthAlgorithm, SecurityAssociation
from router.mip.identification import NTP_UNIX_OFFSET
from router.net import FakeBackend, KernelAdapter, Plan
from router.net.plan import Change
from tests.config_samples import write_loopback_ha_config
from tests.unit.test_ha_udp_wiring import KEY, free_port


class GatedAdapter(KernelAdapter):
    """Applies only when the test opens the gate (a slow kernel, as under TCG)."""

    def __init__(self, backend: FakeBackend) -> None:
        super().__init__(backend, sleep=lambda _: None)
        self.gate = threading.Event()
        self.gate.set()

    def apply(self, desired: Plan) -> list[Change]:
        assert self.gate.wait(10), "the test never opened the gate"
        return super().apply(desired)

    def apply_quick(self, desired: Plan) -> list[Change]:
        assert self.gate.wait(10), "the test never opened the gate"
        return super().apply_quick(desired)


def test_reply_for_a_new_or_moved_binding_waits_for_the_kernel(tmp_path: Path) -> None:
    async def main() -> None:
        port = free_port("127.0.0.1")
        path = write_loopback_ha_config(tmp_path, port, key=KEY)
        backend = FakeBackend(HA_OWNERSHIP, foreign_links=["lo"])
        adapter = GatedAdapter(backend)
        daemon = HomeAgentDaemon(load_home_agent_config(path), adapter)
        await daemon.start()
        sync = asyncio.create_task(daemon.run_kernel_sync())
        loop = asyncio.get_running_loop()
        events: list[object] = []
        machine = mn.RegistrationMachine(mn.MobileNodeConfig(
            home_address=IPv4Address("127.0.0.50"),
            home_agent=IPv4Address("127.0.0.1"),
            security_association=SecurityAssociation(256, AuthAlgorithm.HMAC_MD5, bytes.fromhex(KEY)),
            mobile_networks=(IPv4Network("10.1.1.0/24"),),
            home_agent_port=port,
            clock_offset=time.time() - loop.time() + NTP_UNIX_OFFSET,
        ))
        driver = await open_driver(machine, events.append, udp_socket("127.0.0.2"))

        async def registered(care_of: str) -> None:
            deadline = loop.time() + 5
            while not any(isinstance(e, mn.Registered) and str(e.care_of_address) == care_of for e in events):
                assert loop.time() < deadline, events
                await asyncio.sleep(0.01)

        def tunnel_remote() -> set[str]:
            return {str(link.tunnel.remote) for link in backend.observe().links if link.tunnel is not None}

        for care_of in ("127.0.0.2", "127.0.0.3"):
            adapter.gate.clear()
            machine.register(IPv4Address(care_of), loop.time())
            driver.poke()
            await asyncio.sleep(0.3)  # the request is in; the kernel is held back
            assert not any(isinstance(e, mn.Registered) and str(e.care_of_address) == care_of for e in events), \
                "replied before the kernel held the tunnel"
            adapter.gate.set()
            await registered(care_of)
            assert care_of in tunnel_remote()  # the tunnel existed when the Reply left
        # The old care-of address still decapsulates (grace), under its own tunnel.
        assert tunnel_remote() == {"127.0.0.2", "127.0.0.3"}
        sync.cancel()
        driver.close()
        await daemon.stop()

    asyncio.run(main())
