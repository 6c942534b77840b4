"""Home-agent capacity on one core: registrations/s with HMAC-MD5, and memory per binding.

Pure logic (router.mip.homeagent) fed pre-built signed requests, as the daemon would feed it
from its socket; the mobile node's cost of building requests is excluded. CPU time, not wall
time, so a busy machine slows it less. Sizes: 1, 1,000 and 100,000 mobile nodes.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from ipaddress import IPv4Address, IPv4Network

from bench.results import Metric, report
from router.mip.auth import AuthAlgorithm, SecurityAssociation, sign
from router.mip.extensions import MobileNetworkRequest
from router.mip.homeagent import HomeAgentConfig, HomeAgentLogic, MobileNodeEntry
from router.mip.identification import NTP_UNIX_OFFSET
from router.mip.messages import RegistrationRequest, RequestFlags, encode

WALL = 1_795_000_000 + NTP_UNIX_OFFSET
HOME_AGENT = IPv4Address("10.0.0.1")


def build(nodes: int) -> tuple[HomeAgentLogic, list[MobileNodeEntry]]:
    entries = []
    for i in range(nodes):
        sa = SecurityAssociation(256 + i, AuthAlgorithm.HMAC_MD5, i.to_bytes(16, "big"))
        network = IPv4Network(((0x0B000000 + (i << 8)), 24))
        entries.append(MobileNodeEntry(IPv4Address(0x0A000000 + 256 + i), (sa,), (network,)))
    logic = HomeAgentLogic(HomeAgentConfig(HOME_AGENT, IPv4Network("10.0.0.0/8"), tuple(entries), clock_offset=WALL))
    return logic, entries


def requests(entries: list[MobileNodeEntry], rounds: int) -> list[tuple[bytes, tuple[str, int], float]]:
    out = []
    for r in range(rounds):
        for i, node in enumerate(entries):
            identification = ((WALL + r) << 32) | i
            request = RegistrationRequest(
                RequestFlags.D | RequestFlags.T,
                600,
                node.home_address,
                HOME_AGENT,
                IPv4Address("100.64.0.20"),
                identification,
                (MobileNetworkRequest(node.mobile_networks[0]),),
            )
            out.append((sign(encode(request), node.security_associations[0]), ("100.64.0.20", 434), float(r)))
    return out


def rate(nodes: int, total: int = 20_000) -> tuple[float, HomeAgentLogic]:
    logic, entries = build(nodes)
    rounds = max(1, total // nodes)
    batch = requests(entries, rounds)
    gc.collect()
    start = time.process_time()
    for data, addr, now in batch:
        logic.receive_datagram(data, addr, now)
        logic.datagrams_to_send(now)
        while logic.next_event() is not None:
            pass
    elapsed = time.process_time() - start
    accepted = len(logic.bindings())
    assert accepted == nodes, f"only {accepted}/{nodes} bindings: {logic.counters}"
    return len(batch) / elapsed, logic


def bytes_per_binding(nodes: int = 10_000) -> float:
    logic, entries = build(nodes)
    batch = requests(entries, 1)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for data, addr, now in batch:
        logic.receive_datagram(data, addr, now)
        logic.datagrams_to_send(now)
        while logic.next_event() is not None:
            pass
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / nodes


def main() -> int:
    quick = "--quick" in sys.argv
    sizes = (1, 1_000) if quick else (1, 1_000, 100_000)
    metrics = []
    print("home agent capacity (one core, HMAC-MD5, NEMO explicit mode)")
    for nodes in sizes:
        per_second, _ = rate(nodes, 5_000 if quick else 100_000 if nodes == 100_000 else 20_000)
        metrics.append(Metric(f"ha.registrations_per_s.{nodes}_nodes", per_second, "1/s", ">= 5000"))
    metrics.append(Metric("ha.registrations_per_s", min(m.value for m in metrics), "1/s", ">= 5000"))
    metrics.append(Metric("ha.bytes_per_binding", bytes_per_binding(1_000 if quick else 10_000), "B", "<= 4096"))
    report("ha_capacity", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
