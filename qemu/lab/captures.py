"""Capture analysis: what a pcap shows, layer by layer, decoded by tshark (an independent oracle).

    with record(world, "inet", "cell0", out / "outside.pcap"):
        ...                                              # traffic
    packets = nesting_layers(out / "outside.pcap")       # one `Packet` per frame
    assert not cleartext_leaks(out / "outside.pcap")     # DESIGN.md section 8
    print(summary(packets))

A packet's `layers` is its protocol stack from the outside in, as tshark decodes it, e.g. for the
outside situation (DESIGN.md section 2)::

    (("ip", "100.64.0.10", "192.0.2.1"), ("ip", "192.0.2.50", "192.0.2.2"), ("esp", "0xc1d2e3f4"))

ESP hides everything inside it, so the innermost IP-in-IP (V -> S_HA) can only be seen on the
other side of the VPN gateway. Link layers (eth, ppp, sll) are left out; tshark's ICMP errors
show the header they quote as further layers, which is right for leak checks: a quoted header
on the wire is visible too.

Everything here but `record` is pure: it reads a file and runs tshark, nothing else.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import TYPE_CHECKING

from .shell import Daemon, LabError

if TYPE_CHECKING:
    from .world import World

#: A decoded layer: ("ip", src, dst), ("esp", spi), ("udp", sport, dport), ("tcp", sport, dport),
#: ("icmp", type, code) or ("gre",).
Layer = tuple[str, ...]

# tshark field per (protocol, position); occurrence=a gives every occurrence in tree order.
_FIELDS: dict[str, tuple[str, ...]] = {
    "ip": ("ip.src", "ip.dst"),
    "esp": ("esp.spi",),
    "udp": ("udp.srcport", "udp.dstport"),
    "tcp": ("tcp.srcport", "tcp.dstport"),
    "icmp": ("icmp.type", "icmp.code"),
    "gre": (),
}
_COLUMNS = ("frame.number", "frame.protocols", *(f for fields in _FIELDS.values() for f in fields))


@dataclass(frozen=True, slots=True)
class Packet:
    number: int
    layers: tuple[Layer, ...]

    @property
    def ip_headers(self) -> tuple[tuple[str, str], ...]:
        """Every visible IPv4 (src, dst) pair, outermost first."""
        return tuple((layer[1], layer[2]) for layer in self.layers if layer[0] == "ip")

    @property
    def shape(self) -> str:
        """The stack in one line, e.g. ``ip 100.64.0.10>192.0.2.1 / ip ... / esp``."""
        if not self.layers:
            return "(no IPv4: ARP, ...)"
        parts = []
        for layer in self.layers:
            if layer[0] == "ip":
                parts.append(f"ip {layer[1]}>{layer[2]}")
            elif layer[0] in ("udp", "tcp"):
                parts.append(f"{layer[0]} {layer[1]}>{layer[2]}")
            elif layer[0] == "icmp":
                parts.append(f"icmp {layer[1]}/{layer[2]}")
            else:
                parts.append(layer[0])  # esp: the SPI changes with every rekey, leave it out
        return " / ".join(parts)


def tshark_fields(pcap: Path | str) -> list[list[str]]:
    """tshark's per-frame columns (`_COLUMNS`), each cell holding all occurrences comma-joined."""
    argv = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=,"]
    for column in _COLUMNS:
        argv += ["-e", column]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise LabError(f"tshark failed on {pcap} (rc={done.returncode}):\n{done.stderr}")
    return [line.split("\t") for line in done.stdout.splitlines() if line.strip()]


def parse_rows(rows: Iterable[Sequence[str]]) -> list[Packet]:
    """Turn tshark rows into packets: walk frame.protocols, take each layer's next occurrence."""
    packets = []
    for row in rows:
        cells = dict(zip(_COLUMNS, [*row, *[""] * (len(_COLUMNS) - len(row))], strict=True))
        values = {column: iter(cells[column].split(",")) if cells[column] else iter(())
                  for column in _COLUMNS[2:]}
        layers: list[Layer] = []
        for protocol in cells["frame.protocols"].split(":"):
            if protocol not in _FIELDS:
                continue
            fields = tuple(next(values[column], "?") for column in _FIELDS[protocol])
            layers.append((protocol, *fields))
        packets.append(Packet(int(cells["frame.number"]), tuple(layers)))
    return packets


@lru_cache(maxsize=16)
def _decode(path: str, _mtime_ns: int, _size: int) -> tuple[Packet, ...]:
    return tuple(parse_rows(tshark_fields(path)))


def nesting_layers(pcap: Path | str) -> list[Packet]:
    """Per frame, the protocol stack with addresses (see the module docstring); tshark runs
    once per file version (it costs seconds under TCG), later calls reuse the decode."""
    stat = Path(pcap).stat()
    return list(_decode(str(pcap), stat.st_mtime_ns, stat.st_size))


def _in(address: str, prefixes: Sequence[IPv4Network]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return isinstance(parsed, IPv4Address) and any(parsed in prefix for prefix in prefixes)


def cleartext_leaks(pcap: Path | str | Iterable[Packet],
                    secure_prefixes: Sequence[str] = ("10.0.0.0/8",)) -> list[Packet]:
    """Packets whose visible (unencrypted) IP headers, at any depth, carry a secure-domain
    address: on an outside link that is secure-domain traffic in clear (DESIGN.md section 8)."""
    prefixes = [IPv4Network(prefix) for prefix in secure_prefixes]
    packets = nesting_layers(pcap) if isinstance(pcap, (str, Path)) else list(pcap)
    return [packet for packet in packets
            if any(_in(src, prefixes) or _in(dst, prefixes) for src, dst in packet.ip_headers)]


def summary(packets: Iterable[Packet], limit: int = 12) -> str:
    """The stack shapes seen, most frequent first, with counts: for test output and reports."""
    counts = Counter(packet.shape for packet in packets)
    lines = [f"{count:6d}  {shape}" for shape, count in counts.most_common(limit)]
    if len(counts) > limit:
        lines.append(f"        ... {len(counts) - limit} more shape(s)")
    return "\n".join(lines) or "      (no packets)"


@contextmanager
def record(world: World, host: str, device: str, pcap: Path, bpf: str = "") -> Iterator[Path]:
    """tcpdump -w `pcap` on one device of a lab host for the duration of the block.

    Not pure (it runs tcpdump in the host's namespace); the pcap is complete when the block
    ends. Full frames (-s 0), no name resolution, and --immediate-mode: without it the kernel
    hands packets to tcpdump in ring blocks retired every 1000 ms, and whatever sits in the
    current block when SIGINT arrives is lost (the last ping of a short block went missing).
    """
    pcap.parent.mkdir(parents=True, exist_ok=True)
    log = pcap.with_suffix(".tcpdump.log")
    log.unlink(missing_ok=True)
    daemon = Daemon(f"tcpdump {host}/{device}",
                    ["tcpdump", "-n", "--immediate-mode", "-U", "-s", "0", "-i", device, "-w", str(pcap), *bpf.split()],
                    log, world.ns(host),
                    ready=lambda: "listening on" in log.read_text(errors="replace"))
    daemon.start()
    try:
        yield pcap
    finally:
        time.sleep(0.3)  # the last packets of the block still on their way through the namespaces
        daemon.stop(signal.SIGINT)
