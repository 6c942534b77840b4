"""qemu.lab.traffic.largest_gap: the gap across a switch, a dead stream, a straggler."""

from __future__ import annotations

from qemu.lab.traffic import Arrival, largest_gap


def stream(times: list[float], first_seq: int = 0) -> list[Arrival]:
    return [Arrival(first_seq + i, t, "10.1.1.10") for i, t in enumerate(times)]


def test_the_gap_across_a_switch_counts_the_packets_missing_in_it() -> None:
    arrivals = stream([i * 0.02 for i in range(50)]) + stream([1.5 + i * 0.02 for i in range(50)], first_seq=70)
    gap = largest_gap(arrivals, 0.9, 2.5)
    assert round(gap.ms) == 520 and gap.lost == 20 and gap.resumed


def test_a_stream_that_died_is_a_gap_to_the_end_and_a_straggler_is_not_a_resumption() -> None:
    arrivals = stream([i * 0.02 for i in range(50)])
    gap = largest_gap(arrivals, 0.5, 3.0)
    assert round(gap.ms) == 2020 and gap.resumed  # packets after 0.5 then silence to 3.0
    straggler = stream([0.1, 0.2]) + stream([1.0], first_seq=40)
    assert not largest_gap(straggler, 0.9, 3.0).resumed
    assert not largest_gap(stream([0.1]), 0.5, 1.0).resumed
