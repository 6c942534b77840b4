"""Identification and replay protection (RFC 5944 §5.7): timestamps, nonces, 133 resync."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from router.mip.identification import (
    NTP_UNIX_OFFSET,
    HomeAgentReplayState,
    IdentificationGenerator,
    ReplayMethod,
    ReplayVerdict,
    high32,
    low32,
    ntp_seconds,
)

# A wall clock of 2026-11-29 expressed as "monotonic now + offset" = NTP seconds.
CLOCK = 1_795_000_000 + NTP_UNIX_OFFSET


def counter_bytes(start: int = 1):
    """Deterministic 'random' source: 4-byte big-endian counter values."""
    counter = itertools.count(start)

    def random_bytes(n: int) -> bytes:
        return next(counter).to_bytes(n, "big")

    return random_bytes


def constant_bytes(value: int):
    def random_bytes(n: int) -> bytes:
        return value.to_bytes(n, "big")

    return random_bytes


def test_timestamp_high_bits_are_ntp_seconds_and_low_bits_random() -> None:
    gen = IdentificationGenerator(
        ReplayMethod.TIMESTAMPS, clock_offset=CLOCK, random_bytes=constant_bytes(0xDEADBEEF)
    )
    ident = gen.next_identification(now=100.25)
    assert high32(ident) == (CLOCK + 100) & 0xFFFFFFFF
    assert low32(ident) == 0xDEADBEEF


def test_timestamps_strictly_increase_even_within_one_second() -> None:
    # The random low half would go down; the generator must still increase (§5.7.1).
    values = iter([0xFFFFFFFF, 0x00000001, 0x00000000])
    gen = IdentificationGenerator(
        ReplayMethod.TIMESTAMPS,
        clock_offset=CLOCK,
        random_bytes=lambda n: next(values).to_bytes(n, "big"),
    )
    a = gen.next_identification(5.0)
    b = gen.next_identification(5.1)
    c = gen.next_identification(5.2)
    assert a < b < c


def test_home_agent_accepts_fresh_timestamp_and_rejects_replay() -> None:
    gen = IdentificationGenerator(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    ha = HomeAgentReplayState(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    ident = gen.next_identification(10.0)
    assert ha.check(ident, 10.5) is ReplayVerdict.FRESH
    ha.consume(ident)
    assert ha.check(ident, 10.6) is ReplayVerdict.NOT_INCREASING
    assert ha.reply_identification(ident, valid=True, now=10.5) == ident


def test_timestamp_window_default_is_seven_seconds() -> None:
    ha = HomeAgentReplayState(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    ident = ((CLOCK + 100) << 32) | 0
    assert ha.check(ident, 106.9) is ReplayVerdict.FRESH
    assert ha.check(ident, 107.5) is ReplayVerdict.CLOCK_SKEW
    assert ha.check(ident, 93.5) is ReplayVerdict.FRESH
    assert ha.check(ident, 92.5) is ReplayVerdict.CLOCK_SKEW
    narrow = HomeAgentReplayState(ReplayMethod.TIMESTAMPS, tolerance=4.0, clock_offset=CLOCK)
    assert narrow.check(ident, 105.0) is ReplayVerdict.CLOCK_SKEW


def test_133_resync_with_far_off_home_agent_clock() -> None:
    # The home agent's clock is one day ahead of ours.
    gen = IdentificationGenerator(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    ha = HomeAgentReplayState(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK + 86400)
    ident = gen.next_identification(50.0)
    assert ha.check(ident, 50.0) is ReplayVerdict.CLOCK_SKEW
    reply = ha.reply_identification(ident, valid=False, now=50.0)
    # §5.7.1: low 32 copied, high 32 from the home agent's own time of day.
    assert low32(reply) == low32(ident)
    assert high32(reply) == ntp_seconds(50.0, CLOCK + 86400)
    assert gen.reply_matches(ident, reply)
    gen.resynchronise(reply, now=50.2)
    again = gen.next_identification(50.3)
    assert ha.check(again, 50.4) is ReplayVerdict.FRESH


def test_resync_when_home_agent_is_behind_resets_the_floor() -> None:
    gen = IdentificationGenerator(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    ha = HomeAgentReplayState(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK - 3600)
    ident = gen.next_identification(1.0)
    assert ha.check(ident, 1.0) is ReplayVerdict.CLOCK_SKEW
    gen.resynchronise(ha.reply_identification(ident, valid=False, now=1.0), now=1.0)
    assert ha.check(gen.next_identification(2.0), 2.0) is ReplayVerdict.FRESH


def test_nonce_mode_self_synchronises() -> None:
    gen = IdentificationGenerator(ReplayMethod.NONCES, random_bytes=counter_bytes(100))
    ha = HomeAgentReplayState(ReplayMethod.NONCES, random_bytes=counter_bytes(7000))
    first = gen.next_identification(0.0)
    # No nonce issued yet: the first request cannot match (§5.7.2 self-synchronising).
    assert ha.check(first, 0.0) is ReplayVerdict.NONCE_MISMATCH
    reply = ha.reply_identification(first, valid=False, now=0.0)
    assert low32(reply) == low32(first)
    gen.resynchronise(reply, now=0.0)
    second = gen.next_identification(1.0)
    assert high32(second) == high32(reply)
    assert low32(second) != low32(first)
    assert ha.check(second, 1.0) is ReplayVerdict.FRESH
    ha.consume(second)
    # The nonce is single use.
    assert ha.check(second, 1.1) is ReplayVerdict.NONCE_MISMATCH
    accepted = ha.reply_identification(second, valid=True, now=1.0)
    assert high32(accepted) != high32(reply)
    gen.accept_reply(accepted)
    third = gen.next_identification(2.0)
    assert high32(third) == high32(accepted)
    assert ha.check(third, 2.0) is ReplayVerdict.FRESH


def test_nonce_low_half_differs_from_previous_even_if_random_repeats() -> None:
    values = iter([5, 5, 5, 9])
    gen = IdentificationGenerator(
        ReplayMethod.NONCES, random_bytes=lambda n: next(values).to_bytes(n, "big")
    )
    a = gen.next_identification(0.0)
    b = gen.next_identification(0.0)
    assert low32(a) == 5 and low32(b) == 9


def test_unauthenticated_reply_does_not_rotate_nonce() -> None:
    ha = HomeAgentReplayState(ReplayMethod.NONCES, random_bytes=counter_bytes(42))
    issued = ha.reply_identification(0x1, valid=False, now=0.0)
    forged = ha.unauthenticated_reply_identification(0xABCD)
    assert high32(forged) == high32(issued) and low32(forged) == 0xABCD
    assert ha.check((high32(issued) << 32) | 7, 0.0) is ReplayVerdict.FRESH


def test_reply_low_bits_mismatch_detected() -> None:
    gen = IdentificationGenerator(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    ident = gen.next_identification(0.0)
    assert not gen.reply_matches(ident, ident ^ 1)
    # Only the low half is compared (§3.6.2.1).
    assert gen.reply_matches(ident, ident ^ (1 << 40))


@given(st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=50))
def test_timestamps_always_increase_for_any_sequence_of_now(times: list[float]) -> None:
    gen = IdentificationGenerator(ReplayMethod.TIMESTAMPS, clock_offset=CLOCK)
    previous = -1
    for now in sorted(times):
        ident = gen.next_identification(now)
        assert ident > previous
        assert 0 <= ident < 2**64
        previous = ident
