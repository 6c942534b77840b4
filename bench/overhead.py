"""Per-packet overhead of each path, computed from the headers (pure; checked against captures
by bench/throughput.py).

- IP-in-IP (RFC 2003 section 3): one outer IPv4 header without options, 20 bytes.
- ESP tunnel mode (RFC 4303 section 2; AES-GCM per RFC 4106 sections 3 and 6, the lab's and
  the product's `esp_proposals = aes128gcm16`): outer IPv4 header 20, SPI 4 + sequence 4,
  IV 8, then the inner packet, padding so that payload + pad + 2 ends on a 4-byte boundary
  (GCM has block size 1, so only the 4-byte alignment applies), Pad Length 1, Next Header 1,
  ICV 16. NAT traversal (RFC 3948) adds a UDP header of 8 between the outer IP and ESP.
- RFC 3519 UDP tunnel (section 3.3): outer IPv4 20, UDP 8, MIP Tunnel Data header 4 (type 4,
  next header, reserved), then the inner IP packet (next header 4: IP-in-UDP).
- The outside situation (DESIGN.md section 2): IP-in-IP(X -> T_HA)[ESP(T -> T_gw)[IP-in-IP(V ->
  S_HA)[packet]]]: the inner IP-in-IP is ESP's payload, the outer IP-in-IP carries the ESP packet.
"""

from __future__ import annotations

from dataclasses import dataclass

IPV4_HEADER = 20
UDP_HEADER = 8
MIP_TUNNEL_DATA_HEADER = 4  # RFC 3519 section 3.3


@dataclass(frozen=True, slots=True)
class EspTransform:
    """What one ESP SA adds; defaults: AES-GCM with a 16-byte ICV (rfc4106(gcm(aes)), 128 bits)."""

    iv: int = 8
    icv: int = 16
    block: int = 1  # cipher block size; the trailer is aligned to max(block, 4)
    udp_encapsulated: bool = False  # NAT-T, RFC 3948

    def overhead(self, inner: int) -> int:
        """Bytes ESP tunnel mode adds to an `inner`-byte IP packet (outer IP header included)."""
        if inner <= 0:
            raise ValueError(f"an IP packet has a positive length, not {inner}")
        align = max(self.block, 4)
        pad = -(inner + 2) % align
        udp = UDP_HEADER if self.udp_encapsulated else 0
        return IPV4_HEADER + udp + 4 + 4 + self.iv + pad + 2 + self.icv


def ipip_overhead() -> int:
    return IPV4_HEADER


def udp_tunnel_overhead() -> int:
    return IPV4_HEADER + UDP_HEADER + MIP_TUNNEL_DATA_HEADER


def nested_overhead(inner: int, esp: EspTransform = EspTransform()) -> int:
    """Bytes the outside situation's three layers add to an `inner`-byte LAN packet."""
    return ipip_overhead() + esp.overhead(inner + ipip_overhead()) + ipip_overhead()


def largest_inner(link_mtu: int, overhead_of: object) -> int:
    """The largest inner packet whose encapsulation still fits `link_mtu` (overhead varies with
    the padding, so search down from the first estimate)."""
    assert callable(overhead_of)
    size = link_mtu
    while size > 0 and size + overhead_of(size) > link_mtu:
        size -= 1
    return size
