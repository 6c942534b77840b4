"""Home-agent capacity on one core: registrations/s with HMAC-MD5, and memory per binding.

Pure logic (router.mip.homeagent) fed pre-built signed requests, as the daemon would feed it
from its socket; the mobile node's cost of building and signing requests is excluded. CPU
time (``time.process_time``), not wall time, so a busy machine slows it less.

Sizes: 1, 1,000 and 100,000 mobile nodes. For each size, every node first registers once
(the table fills to N bindings; that pass is timed too and shown as ``.first_pass``); then
the figure itself: re-registrations (renewals, fresh Identification) against the full table.
Sampling, to keep the 100,000-node run bounded: the renewal pass is ``SAMPLE`` requests from
nodes drawn uniformly at random (seeded, with replacement; a node drawn twice simply renews
twice with a later Identification), cut into ``BATCHES`` equal batches whose rates are the
samples; the value is the rate over the whole pass. With 1 node the sample is that node
renewing SAMPLE times. Memory per binding: tracemalloc's growth while the table fills from
empty to N bindings (10,000 by default, 100,000 in the full run), divided by N.
"""

from __future__ import annotations

import gc
import random
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
TARGET = ">= 5000"  # DESIGN.md section 7
SAMPLE = 20_000
BATCHES = 5
Datagram = tuple[bytes, tuple[str, int], float]


def build(nodes: int) -> tuple[HomeAgentLogic, list[MobileNodeEntry]]:
    entries = []
    for i in range(nodes):
        sa = SecurityAssociation(256 + i, AuthAlgorithm.HMAC_MD5, i.to_bytes(16, "big"))
        network = IPv4Network(((0x0B000000 + (i << 8)), 24))
        entries.append(MobileNodeEntry(IPv4Address(0x0A000000 + 256 + i), (sa,), (network,)))
    logic = HomeAgentLogic(HomeAgentConfig(HOME_AGENT, IPv4Network("10.0.0.0/8"), tuple(entries), clock_offset=WALL))
    return logic, entries


def request(node: MobileNodeEntry, identification: int, now: float) -> Datagram:
    message = RegistrationRequest(
        RequestFlags.D | RequestFlags.T,
        600,
        node.home_address,
        HOME_AGENT,
        IPv4Address("100.64.0.20"),
        identification,
        (MobileNetworkRequest(node.mobile_networks[0]),),
    )
    return sign(encode(message), node.security_associations[0]), ("100.64.0.20", 434), now


def first_pass(entries: list[MobileNodeEntry]) -> list[Datagram]:
    """One registration per node, at t = 0."""
    return [request(node, (WALL << 32) | i, 0.0) for i, node in enumerate(entries)]


def renewals(entries: list[MobileNodeEntry], count: int, seed: int = 8) -> list[Datagram]:
    """`count` renewals from nodes drawn at random; Identification timestamps are 1 s after the
    first pass and the low word counts up, so every request is fresh (RFC 5944 section 5.7)."""
    pick = random.Random(seed)
    out = []
    for k in range(count):
        node = entries[pick.randrange(len(entries))]
        out.append(request(node, ((WALL + 1) << 32) | k, 1.0))
    return out


def feed(logic: HomeAgentLogic, batch: list[Datagram]) -> float:
    """CPU seconds the home agent spends on `batch`, replies and events drained as the daemon does."""
    gc.collect()
    start = time.process_time()
    for data, addr, now in batch:
        logic.receive_datagram(data, addr, now)
        logic.datagrams_to_send(now)
        while logic.next_event() is not None:
            pass
    return time.process_time() - start


def rate(nodes: int, sample: int = SAMPLE, batches: int = BATCHES) -> tuple[float, float, list[float]]:
    """(renewals/s with N bindings present, first-pass registrations/s, per-batch renewal rates)."""
    logic, entries = build(nodes)
    first = first_pass(entries)
    first_seconds = feed(logic, first)
    assert len(logic.bindings()) == nodes, f"only {len(logic.bindings())}/{nodes} bindings: {logic.counters}"
    renewed_before = logic.counters.get("renewed", 0)
    batch_rates, total_seconds = [], 0.0
    pending = renewals(entries, sample)
    size = max(1, sample // batches)
    for offset in range(0, sample, size):
        chunk = pending[offset:offset + size]
        seconds = feed(logic, chunk)
        total_seconds += seconds
        batch_rates.append(len(chunk) / seconds)
    renewed = logic.counters.get("renewed", 0) - renewed_before
    assert renewed == sample, f"{renewed}/{sample} renewals accepted: {logic.counters}"
    assert len(logic.bindings()) == nodes
    return sample / total_seconds, len(first) / first_seconds, batch_rates


def bytes_per_binding(nodes: int = 10_000) -> float:
    logic, entries = build(nodes)
    batch = first_pass(entries)
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
    assert len(logic.bindings()) == nodes
    return (after - before) / nodes


def main() -> int:
    quick = "--quick" in sys.argv
    sizes = (1, 1_000) if quick else (1, 1_000, 100_000)
    sample = 5_000 if quick else SAMPLE
    metrics = []
    print(f"home agent capacity (one core, HMAC-MD5, NEMO explicit mode; {sample} renewals per size,"
          f" random nodes, against a full table)")
    for nodes in sizes:
        started = time.monotonic()
        per_second, first, batches = rate(nodes, sample)
        metrics.append(Metric(f"ha.registrations_per_s.{nodes}_nodes", per_second, "1/s", TARGET, batches))
        if nodes > 1:  # one request: no rate worth a row
            metrics.append(Metric(f"ha.registrations_per_s.{nodes}_nodes.first_pass", first, "1/s", TARGET))
        print(f"  {nodes} nodes: {time.monotonic() - started:.1f} s wall for the size")
    steady = [m for m in metrics if not m.metric.endswith("first_pass")]
    metrics.append(Metric("ha.registrations_per_s", min(m.value for m in steady), "1/s", TARGET,
                          [m.value for m in steady]))
    table = 1_000 if quick else 100_000
    metrics.append(Metric("ha.bytes_per_binding", bytes_per_binding(table), "B", "<= 4096"))
    print(f"  ha.bytes_per_binding measured while {table} bindings were added")
    report("ha_capacity", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
