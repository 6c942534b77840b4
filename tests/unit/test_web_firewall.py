"""The LAN-only nftables ruleset text (applied for real in tests/netns/test_web_lan_only.py)."""

from __future__ import annotations

import pytest

from router.web.firewall import lan_only_ruleset


def test_ruleset_drops_the_port_off_the_lan() -> None:
    text = lan_only_ruleset("br-lan", 80)
    assert text.startswith("add table inet router_web\ndelete table inet router_web\n")
    assert 'tcp dport 80 iifname != { "br-lan", "lo" } counter drop' in text


@pytest.mark.parametrize(("interface", "port"), [
    ('br-lan" }; flush ruleset; #', 80), ("", 80), ("a" * 16, 80), ("br-lan", 0), ("br-lan", 65536)])
def test_hostile_or_wrong_arguments_are_refused(interface: str, port: int) -> None:
    with pytest.raises(ValueError):
        lan_only_ruleset(interface, port)
