"""Gratuitous ARP frames (RFC 5944 §4.6, RFC 826 layout), byte for byte."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.net.arp import ArpOperation, gratuitous_arp_frame, parse_mac

HOME_AGENT_MAC = bytes.fromhex("020000000001")
HOME_ADDRESS = IPv4Address("10.10.0.50")


def test_request_frame_matches_the_hand_assembled_vector() -> None:
    rows = [
        "ffffffffffff 020000000001 0806",  # Ethernet: broadcast, from the home agent, ARP
        "0001 0800 06 04 0001",  # Ethernet, IPv4, hlen 6, plen 4, request
        "020000000001 0a0a0032",  # sender: home agent's MAC, the node's home address
        "000000000000 0a0a0032",  # target: MAC unused in a request, the same address
    ]
    assert gratuitous_arp_frame(HOME_AGENT_MAC, HOME_ADDRESS) == bytes.fromhex(" ".join(rows))


def test_reply_frame_repeats_the_hardware_address_as_target() -> None:
    frame = gratuitous_arp_frame(HOME_AGENT_MAC, HOME_ADDRESS, ArpOperation.REPLY)
    assert frame[20:22] == b"\x00\x02"
    assert frame[32:38] == HOME_AGENT_MAC
    assert len(frame) == 42


def test_frame_for_a_node_back_home_comes_from_the_home_agent() -> None:
    """§4.6: the ARP sender hardware address is the node's; the Ethernet source stays the
    sending interface's own (a switch must not learn the node's MAC on our port)."""
    node = bytes.fromhex("020000000050")
    rows = [
        "ffffffffffff 020000000001 0806",  # Ethernet: broadcast, from the home agent, ARP
        "0001 0800 06 04 0001",
        "020000000050 0a0a0032",  # sender: the node's own MAC and home address
        "000000000000 0a0a0032",
    ]
    frame = gratuitous_arp_frame(node, HOME_ADDRESS, ethernet_source=HOME_AGENT_MAC)
    assert frame == bytes.fromhex(" ".join(rows))


def test_wrong_hardware_address_length_is_refused() -> None:
    with pytest.raises(ValueError, match="must be 6 bytes, got 5"):
        gratuitous_arp_frame(b"\x02\x00\x00\x00\x01", HOME_ADDRESS)


def test_parse_mac() -> None:
    assert parse_mac("02:00:00:00:00:01") == HOME_AGENT_MAC
    with pytest.raises(ValueError, match="not a MAC address"):
        parse_mac("02:00:00")
