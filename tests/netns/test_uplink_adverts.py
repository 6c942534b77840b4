"""Agent advertisements and solicitations on a real link (root: namespaces, raw sockets).

Two namespaces joined by a veth pair: "agent" (ag0, 10.10.0.1/24) and "router" (up0,
10.10.0.2/24). scapy, run inside the agent namespace, sends advertisements built by hand
from RFC 1256 section 3 and RFC 5944 section 2.1.1 (not with the product's encoder); the
product's :class:`AdvertListener` listens on up0. The other way round, a scapy sniffer on
ag0 must see the product's Agent Solicitation (RFC 5944 section 2.2).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from pyroute2.netns import popns, pushns

from router.policy.domain import AdvertisementHeard
from router.uplink.adverts import LIMITED_BROADCAST, AdvertListener, AdvertRateLimit

from .conftest import Namespaces, ip

A = IPv4Address


@dataclass(frozen=True, slots=True)
class Link:
    agent: str
    router: str


@pytest.fixture
def link(namespaces: Namespaces) -> Link:
    agent, router = namespaces.new("ag"), namespaces.new("rt")
    ip("-n", agent, "link", "add", "ag0", "type", "veth", "peer", "name", "up0", "netns", router)
    ip("-n", agent, "address", "add", "10.10.0.1/24", "dev", "ag0")
    ip("-n", router, "address", "add", "10.10.0.2/24", "dev", "up0")
    ip("-n", agent, "link", "set", "ag0", "up")
    ip("-n", router, "link", "set", "up0", "up")
    return Link(agent, router)


@contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the block with this thread in ``namespace`` (sockets keep the namespace they got)."""
    pushns(namespace)
    try:
        yield
    finally:
        popns()


# Runs in the agent namespace: argv[1] is a JSON list of [source, destination, flags|null,
# damage] to send in order. flags null = plain router advertisement; damage "checksum"
# flips a checksum bit; "echo" sends an ICMP echo reply instead (the kernel filter's case).
SENDER = textwrap.dedent(
    """
    import json, struct, sys
    from scapy.all import Ether, IP, ICMP, Raw, sendp, get_if_hwaddr

    def agent_advert(source, flags):
        # RFC 1256 section 3: Num Addrs 1, Addr Entry Size 2, Lifetime 1800 (in 'unused').
        body = bytes(map(int, source.split("."))) + struct.pack("!i", 0)
        if flags is not None:
            # RFC 5944 section 2.1.1: type 16, length 6, seq, registration lifetime, flags.
            body += struct.pack("!BBHHH", 16, 6, 7, 600, flags)
        return ICMP(type=9, code=0, unused=(1 << 24) | (2 << 16) | 1800) / Raw(body)

    mac = get_if_hwaddr("ag0")
    frames = []
    for source, destination, flags, damage in json.loads(sys.argv[1]):
        if destination == "255.255.255.255":
            dst_mac = "ff:ff:ff:ff:ff:ff"
        elif destination.startswith("224."):
            last = int(destination.split(".")[3])
            dst_mac = "01:00:5e:00:00:%02x" % last
        else:
            dst_mac = sys.argv[2]
        icmp = ICMP(type=0, id=1, seq=1) if damage == "echo" else agent_advert(source, flags)
        packet = IP(src=source, dst=destination, ttl=1) / icmp
        raw = bytearray(bytes(packet))
        if damage == "checksum":
            raw[22] ^= 0x01  # ICMP checksum, after the 20-byte IP header
        frames.append(Ether(src=mac, dst=dst_mac, type=0x0800) / Raw(bytes(raw)))
    sendp(frames, iface="ag0", verbose=False)
    """
)

# Runs in the agent namespace: sniff ICMP on ag0 until one Router Solicitation (type 10) or
# the timeout; print "ready" once sniffing, then the solicitation's fields as JSON.
SNIFFER = textwrap.dedent(
    """
    import json, sys
    from scapy.all import Ether, IP, ICMP, sniff

    def is_solicitation(p):
        return ICMP in p and p[ICMP].type == 10

    got = sniff(iface="ag0", filter="icmp", lfilter=is_solicitation, count=1, timeout=10,
                started_callback=lambda: print("ready", flush=True))
    if not got:
        print(json.dumps(None))
        sys.exit(0)
    p = got[0]
    icmp_bytes = bytes(p[ICMP])
    total = sum((icmp_bytes[i] << 8) + (icmp_bytes[i + 1] if i + 1 < len(icmp_bytes) else 0)
                for i in range(0, len(icmp_bytes), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    print(json.dumps({
        "eth_dst": p[Ether].dst, "src": p[IP].src, "dst": p[IP].dst, "ttl": p[IP].ttl,
        "type": p[ICMP].type, "code": p[ICMP].code, "icmp_len": len(icmp_bytes),
        "checksum_ok": total == 0xFFFF,
    }), flush=True)
    """
)


def send_from_agent(link: Link, packets: list[tuple[str, str, int | None, str]]) -> None:
    router_mac = ip("-n", link.router, "link", "show", "up0").split("link/ether")[1].split()[0]
    subprocess.run(
        ["ip", "netns", "exec", link.agent, sys.executable, "-c", SENDER, json.dumps(packets), router_mac],
        check=True,
        timeout=60,
        capture_output=True,
    )


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


H, F = 0x2000, 0x1000


def test_listener_reports_real_agent_advertisements_with_source_and_flags(link: Link) -> None:
    async def main() -> tuple[list[AdvertisementHeard], dict[str, int]]:
        heard: list[AdvertisementHeard] = []
        listener = AdvertListener("up0", heard.append)
        with inside(link.router):
            listener.open()
            listener.open()  # idempotent
        try:
            await asyncio.to_thread(
                send_from_agent,
                link,
                [
                    ("10.10.0.1", "224.0.0.1", H, ""),  # inner home agent, all-systems
                    ("10.10.0.5", "224.0.0.1", H, "checksum"),  # damaged: dropped
                    ("10.10.0.6", "224.0.0.1", None, ""),  # plain router advert: dropped
                    ("10.10.0.1", "10.10.0.2", None, "echo"),  # not type 9: kernel-filtered
                    ("10.10.0.3", "255.255.255.255", F, ""),  # foreign agent, broadcast
                    ("10.10.0.4", "10.10.0.2", H | F, ""),  # unicast (answer to a solicitation)
                ],
            )
            await wait_until(lambda: len(heard) >= 3, "three agent advertisements")
            await asyncio.sleep(0.2)  # anything else in flight would show up now
        finally:
            listener.close()
            listener.close()  # idempotent
        return heard, dict(listener.counters)

    heard, counters = asyncio.run(main())
    assert [(h.source, h.home_agent, h.foreign_agent) for h in heard] == [
        (A("10.10.0.1"), True, False),
        (A("10.10.0.3"), False, True),
        (A("10.10.0.4"), True, True),
    ]
    assert heard[0].at <= heard[1].at <= heard[2].at
    # The echo reply never reached Python (ICMP_FILTER); the damaged ones were counted.
    assert counters == {"heard": 3, "malformed": 1, "plain_router_advertisement": 1}, counters


def test_listener_on_another_interface_hears_nothing(link: Link) -> None:
    """SO_BINDTODEVICE: an advert on up0 is not reported by a listener bound to a second link."""
    ip("-n", link.router, "link", "add", "other0", "type", "veth", "peer", "name", "other1")
    ip("-n", link.router, "address", "add", "10.20.0.2/24", "dev", "other0")
    for name in ("other0", "other1"):
        ip("-n", link.router, "link", "set", name, "up")

    async def main() -> tuple[list[AdvertisementHeard], list[AdvertisementHeard]]:
        on_up0: list[AdvertisementHeard] = []
        on_other: list[AdvertisementHeard] = []
        right, wrong = AdvertListener("up0", on_up0.append), AdvertListener("other0", on_other.append)
        with inside(link.router):
            right.open()
            wrong.open()
        try:
            await asyncio.to_thread(send_from_agent, link, [("10.10.0.1", "224.0.0.1", H, "")])
            await wait_until(lambda: bool(on_up0), "the advertisement on up0")
            await asyncio.sleep(0.2)
        finally:
            right.close()
            wrong.close()
        return on_up0, on_other

    on_up0, on_other = asyncio.run(main())
    assert len(on_up0) == 1 and on_other == []


def test_a_flood_from_one_source_is_rate_limited(link: Link) -> None:
    rate, burst, sent = 5.0, 10.0, 300

    async def main() -> tuple[list[AdvertisementHeard], dict[str, int]]:
        heard: list[AdvertisementHeard] = []
        listener = AdvertListener(
            "up0", heard.append, rate_limit=AdvertRateLimit(per_source=rate, source_burst=burst)
        )
        with inside(link.router):
            listener.open()
        try:
            await asyncio.to_thread(send_from_agent, link, [("10.10.0.9", "224.0.0.1", F, "")] * sent)
            await wait_until(lambda: listener.counters["rate_limited"] > 0, "rate limiting")
            await asyncio.sleep(0.3)
        finally:
            listener.close()
        return heard, dict(listener.counters)

    heard, counters = asyncio.run(main())
    span = heard[-1].at - heard[0].at
    print(f"flood: {sent} sent, {len(heard)} heard over {span * 1000:.0f} ms, counters {counters}")
    # The bucket's invariant: never more than burst + rate * elapsed (plus the first token).
    assert len(heard) <= burst + rate * span + 1
    assert counters["heard"] + counters["rate_limited"] <= sent  # the kernel may drop the rest
    assert set(counters) <= {"heard", "rate_limited"}


@pytest.mark.parametrize(
    ("destination", "eth_dst"),
    [(None, "01:00:5e:00:00:02"), (LIMITED_BROADCAST, "ff:ff:ff:ff:ff:ff")],
)
def test_solicitation_is_seen_on_the_link_with_ttl_1(
    link: Link, destination: IPv4Address | None, eth_dst: str
) -> None:
    sniffer = subprocess.Popen(
        ["ip", "netns", "exec", link.agent, sys.executable, "-c", SNIFFER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sniffer.stdout is not None
        ready = sniffer.stdout.readline().strip()
        assert ready == "ready", (ready, sniffer.stderr.read() if sniffer.stderr else "")

        async def main() -> tuple[bool, bool, dict[str, int]]:
            listener = AdvertListener("up0", lambda heard: None)
            with inside(link.router):
                listener.open()
            try:
                first = listener.solicit() if destination is None else listener.solicit(destination)
                again = listener.solicit()  # within the second: the pacer refuses (RFC 5944 2.4)
            finally:
                listener.close()
            return first, again, dict(listener.counters)

        first, again, counters = asyncio.run(main())
        out, err = sniffer.communicate(timeout=30)
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.wait()
    assert first is True and again is False, counters
    assert counters == {"solicitation_sent": 1, "solicitation_paced": 1}
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {
        "eth_dst": eth_dst,
        "src": "10.10.0.2",
        "dst": str(destination or "224.0.0.2"),
        "ttl": 1,
        "type": 10,
        "code": 0,
        "icmp_len": 8,
        "checksum_ok": True,
    }, err
