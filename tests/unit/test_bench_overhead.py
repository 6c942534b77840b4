"""Overhead arithmetic of bench/overhead.py, against hand-computed RFC layouts."""

from __future__ import annotations

import pytest

from bench.overhead import (
    EspTransform,
    ipip_overhead,
    largest_inner,
    nested_overhead,
    udp_tunnel_overhead,
)


def test_ipip_is_one_ipv4_header() -> None:
    assert ipip_overhead() == 20


def test_udp_tunnel_is_ip_udp_and_the_tunnel_data_header() -> None:
    assert udp_tunnel_overhead() == 20 + 8 + 4


@pytest.mark.parametrize(("inner", "pad"), [(1028, 2), (1029, 1), (1030, 0), (1031, 3), (1400, 2)])
def test_esp_gcm_pads_the_trailer_to_four_bytes(inner: int, pad: int) -> None:
    # outer IP 20 + SPI 4 + seq 4 + IV 8 + pad + pad length 1 + next header 1 + ICV 16
    assert EspTransform().overhead(inner) == 20 + 8 + 8 + pad + 2 + 16
    assert (inner + pad + 2) % 4 == 0


def test_esp_cbc_pads_to_the_cipher_block() -> None:
    cbc = EspTransform(iv=16, icv=16, block=16)  # AES-CBC with HMAC-SHA256-128
    overhead = cbc.overhead(1000)
    assert (1000 + overhead - 20 - 8 - 16 - 16) % 16 == 0


def test_nat_traversal_adds_a_udp_header() -> None:
    assert EspTransform(udp_encapsulated=True).overhead(1000) == EspTransform().overhead(1000) + 8


def test_nested_is_two_ipip_headers_around_esp_of_the_inner_tunnel() -> None:
    # 1400-byte LAN packet -> 1420 inside ESP (pad 2) -> 1476 -> 1496 on the wire.
    assert nested_overhead(1400) == 96
    assert 1400 + nested_overhead(1400) <= 1500


def test_largest_inner_fits_the_link() -> None:
    size = largest_inner(1500, nested_overhead)
    assert size + nested_overhead(size) <= 1500 < size + 1 + nested_overhead(size + 1)
    esp = largest_inner(1500, EspTransform().overhead)
    assert esp + EspTransform().overhead(esp) <= 1500


def test_non_positive_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        EspTransform().overhead(0)
