"""Interface byte counters for the status page (router.observe), from /proc/net/dev text."""

from __future__ import annotations

from pathlib import Path

from router.observe import (
    CounterCache,
    InterfaceCounters,
    parse_proc_net_dev,
    read_interface_counters,
)

# The kernel's layout (net/core/net-procfs.c, dev_seq_printf_stats: "%6s:" then 16 counters);
# the header lines are the host's own, the values made up to look like the lab's router.
PROC_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1344      16    0    0    0     0          0         0     1344      16    0    0    0     0       0          0
 wlan0: 91220874   70211    0   12    0     0          0       311 18734112   40118    0    0    0     0       0          0
  ppp0: 7912310    9023    0    0    0     0          0         0  2044001    8800    0    0    0     0       0          0
mip-inner: 18446744073709551615 3 0 0 0 0 0 0 4294967296 2 0 0 0 0 0 0
"""


def test_parse_reads_bytes_and_packets_per_interface() -> None:
    counters = parse_proc_net_dev(PROC_NET_DEV)
    assert set(counters) == {"lo", "wlan0", "ppp0", "mip-inner"}
    assert counters["wlan0"] == InterfaceCounters(rx_bytes=91220874, tx_bytes=18734112, rx_packets=70211, tx_packets=40118)
    assert (counters["ppp0"].rx_bytes, counters["ppp0"].tx_bytes) == (7912310, 2044001)
    # 64-bit counters stay exact; a name longer than the 6-char column still parses.
    assert counters["mip-inner"].rx_bytes == 2**64 - 1 and counters["mip-inner"].tx_bytes == 2**32


def test_parse_skips_headers_and_odd_lines() -> None:
    text = PROC_NET_DEV + "  eth9: 1 2 3\n  bad0: x 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\nno colon here\n"
    assert set(parse_proc_net_dev(text)) == {"lo", "wlan0", "ppp0", "mip-inner"}
    assert parse_proc_net_dev("") == {}


def test_read_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_interface_counters(tmp_path / "nope") == {}


def test_read_this_namespace_has_loopback() -> None:
    counters = read_interface_counters()
    assert "lo" in counters and counters["lo"].rx_bytes >= 0


def test_cache_rereads_only_when_stale(tmp_path: Path) -> None:
    path = tmp_path / "dev"
    path.write_text(PROC_NET_DEV)
    clock = [100.0]
    cache = CounterCache(path, max_age_s=1.0, clock=lambda: clock[0])
    assert cache.get("ppp0") is not None and cache.get("ppp0").tx_bytes == 2044001  # type: ignore[union-attr]
    path.write_text(PROC_NET_DEV.replace("2044001", "2049999"))
    clock[0] += 0.5
    assert cache.get("ppp0").tx_bytes == 2044001  # type: ignore[union-attr]
    assert cache.reads == 1
    clock[0] += 0.5
    assert cache.get("ppp0").tx_bytes == 2049999  # type: ignore[union-attr]
    assert cache.reads == 2
    assert cache.get("wlan9") is None
