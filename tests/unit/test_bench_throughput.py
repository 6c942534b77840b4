"""bench/throughput.py's rows from measured results (pure: no guest, no timing)."""

from __future__ import annotations

import math

from bench.overhead import EspTransform, nested_overhead
from bench.throughput import esp_bytes, esp_connection, throughput_rows


def measured() -> dict[str, dict[str, object]]:
    return {
        "plain": {"mbps": [40.0, 50.0, 45.0], "pmtu": 1500, "overhead": {1028: (0, 0), 1500: (0, 0)},
                  "complete": {"lan-host->cn": 1.0}},
        "esp": {"mbps": [20.0, 25.0, 30.0], "pmtu": 1446,
                "overhead": {1028: (56, EspTransform().overhead(1028)), 1446: (54, EspTransform().overhead(1446))},
                "complete": {"lan-host->cn": 1.0}},
        "nested": {"mbps": [18.0, 24.0, 27.0], "pmtu": 1400,
                   "overhead": {1028: (96, nested_overhead(1028)), 1400: (97, nested_overhead(1400))},
                   "complete": {"lan-host->cn": 1.0, "cn->lan-host": 0.5}},
    }


def by_name(rows: list) -> dict:  # type: ignore[type-arg]
    return {row.metric: row for row in rows}


def test_ratios_pair_rounds_of_the_same_index() -> None:
    rows = by_name(throughput_rows(measured()))
    assert rows["throughput.nested_vs_esp"].samples == [0.9, 0.96, 0.9]
    assert rows["throughput.nested_vs_esp"].value == 0.9 and rows["throughput.nested_vs_esp"].passed
    assert rows["throughput.nested_vs_plain"].samples == [0.45, 0.48, 0.6]
    assert rows["throughput.nested_mbps"].value == 24.0


def test_overhead_rows_compare_capture_with_arithmetic() -> None:
    rows = by_name(throughput_rows(measured()))
    assert rows["overhead.esp_bytes.1028"].target == "== 56" and rows["overhead.esp_bytes.1028"].passed
    assert rows["overhead.esp_bytes.full"].passed
    # A capture that disagrees with the computed layout is a MISS.
    assert rows["overhead.nested_bytes.full"].target == "== 96"
    assert not rows["overhead.nested_bytes.full"].passed
    assert rows["overhead.nested_wire_bytes"].value == 1497 and rows["overhead.nested_wire_bytes"].passed
    assert rows["path_mtu.nested_bytes"].passed and rows["path_mtu.nested_bytes"].target == ">= 1400"


def test_an_incomplete_transfer_is_a_miss() -> None:
    rows = by_name(throughput_rows(measured()))
    assert rows["tcp.df_bulk_complete.nested.lan-host->cn"].passed
    assert not rows["tcp.df_bulk_complete.nested.cn->lan-host"].passed


def test_a_failed_path_still_has_every_row_as_a_miss() -> None:
    complete = {row.metric for row in throughput_rows(measured())}
    partial = measured()
    del partial["esp"]
    partial["nested"] = {"mbps": [], "pmtu": 1400}  # failed after the path MTU
    rows = by_name(throughput_rows(partial))
    assert set(rows) == complete
    for name in ("throughput.esp_mbps", "throughput.nested_vs_esp", "path_mtu.esp_bytes",
                 "overhead.nested_bytes.full", "tcp.df_bulk_complete.nested.cn->lan-host"):
        assert math.isnan(rows[name].value), name
        assert not rows[name].passed, name
    assert rows["path_mtu.nested_bytes"].value == 1400


def test_esp_connection_sides_mirror_each_other() -> None:
    router = esp_connection(gateway_side=False)["bench"]
    gateway = esp_connection(gateway_side=True)["bench"]
    assert router["local"] == gateway["remote"] and router["remote"] == gateway["local"]
    ours, theirs = router["children"]["bench"], gateway["children"]["bench"]
    assert ours["local_ts"] == theirs["remote_ts"] == ["10.1.1.0/24"]
    assert ours["remote_ts"] == theirs["local_ts"] == ["10.20.0.0/24"]
    assert ours["esp_proposals"][0] == "aes128gcm16"  # what EspTransform's defaults model


def test_interleaved_rounds_give_the_design_ratio_when_present() -> None:
    results = measured()
    sequential = by_name(throughput_rows(results))["throughput.nested_vs_esp"]
    assert sequential.samples == [0.9, 0.96, 0.9]
    results["nested_interleaved"] = {"mbps": [20.0, 22.0]}
    results["esp_interleaved"] = {"mbps": [25.0, 22.0]}
    rows = by_name(throughput_rows(results))
    assert rows["throughput.nested_vs_esp"].samples == [0.8, 1.0]
    assert rows["throughput.nested_vs_esp.sequential"].samples == [0.9, 0.96, 0.9]
    assert rows["throughput.esp_interleaved_mbps"].value == 23.5


XFRM_STATE = """src 192.0.2.50 dst 192.0.2.2
\tproto esp spi 0xc2ad9343(3266155331) reqid 1(0x00000001) mode tunnel
\tlifetime current:
\t  999(bytes), 9(packets)
src 100.64.0.10 dst 192.0.2.2
\tproto esp spi 0xc2ad9344(3266155332) reqid 2(0x00000002) mode tunnel
\tsel src 0.0.0.0/0 dst 0.0.0.0/0
\tlifetime current:
\t  4112(bytes), 4(packets)
src 192.0.2.2 dst 100.64.0.10
\tlifetime current:
\t  77(bytes), 1(packets)
"""


def test_esp_bytes_reads_the_outbound_sa_counter() -> None:
    assert esp_bytes(XFRM_STATE, "100.64.0.10", "192.0.2.2") == 4112
    assert esp_bytes(XFRM_STATE, "192.0.2.50", "192.0.2.2") == 999
    assert esp_bytes(XFRM_STATE, "100.64.0.99", "192.0.2.2") == 0
