"""ICMP prober against the loopback device (root: raw sockets)."""

from __future__ import annotations

import asyncio

from router.uplink.probe import checksum, echo_request, parse_echo_reply


def test_checksum_of_request_verifies_to_zero() -> None:
    assert checksum(echo_request(0x1234, 7)) == 0


def test_prober_matches_replies_on_loopback() -> None:
    from router.uplink.probe import IcmpProber

    async def main() -> list[int]:
        answered: list[int] = []
        got = asyncio.Event()

        def on_answer(sequence: int) -> None:
            answered.append(sequence)
            if len(answered) == 3:
                got.set()

        prober = IcmpProber("lo", "127.0.0.1", "127.0.0.1", on_answer)
        prober.open()
        sent = [prober.send() for _ in range(3)]
        await asyncio.wait_for(got.wait(), 5)
        prober.close()
        assert sorted(answered) == sorted(sent)
        return answered

    assert len(asyncio.run(main())) == 3


def test_parse_ignores_requests_and_short_packets() -> None:
    ip_header = bytes([0x45]) + bytes(19)
    assert parse_echo_reply(ip_header + echo_request(1, 2)) is None
    assert parse_echo_reply(b"\x45") is None
