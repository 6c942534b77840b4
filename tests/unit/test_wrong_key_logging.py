"""A wrong key, seen from both daemons' logs: the home agent logs its 131 denial; the router
cannot authenticate that denial (so it must not act on it, RFC 5944 §3.6.2.1) but logs the
unverified code with a hint, and its retransmissions back off."""

from __future__ import annotations

import itertools
import logging

import pytest

from router.ha.daemon import LoggingLogic
from router.mip.homeagent import HomeAgentLogic
from router.mip.mobilenode import RegistrationMachine, State
from router.system import LoggingMachine
from tests.unit.test_mip_pair import (
    COA_3G,
    HA_ADDRESS,
    deterministic_random,
    ha_config,
    make_sa,
    mn_config,
)


def test_wrong_key_denial_is_logged_on_both_sides_and_requests_back_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    machine = RegistrationMachine(mn_config(security_association=make_sa(key=b"wrong key 16 byt")),
                                  random_bytes=deterministic_random(1))
    node = LoggingMachine("inner", machine)
    home_agent = LoggingLogic(HomeAgentLogic(ha_config(), random_bytes=deterministic_random(2)))
    now = 0.0
    machine.register(COA_3G, now)
    sent_at = []
    while now < 20.0:
        for data, _ in node.datagrams_to_send(now):
            sent_at.append(now)
            home_agent.receive_datagram(data, (str(COA_3G), 40000), now)
            for reply, _ in home_agent.datagrams_to_send(now):
                node.receive_datagram(reply, (str(HA_ADDRESS), 434), now)
        timer = node.get_timer()
        assert timer is not None
        now = timer
        node.handle_timer(now)
    assert machine.state is State.REGISTERING  # the unverified denial changed nothing
    assert 3 <= len(sent_at) <= 6, sent_at  # 1, 2, 4, 8 s apart: backing off, not flooding
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(sent_at))
    text = caplog.text
    assert text.count("denied 131 (mobile node failed authentication)") == len(sent_at)
    assert text.count("unverified denial 131") == len(sent_at) == node.unverified_denials
    assert "check the key" in text
    assert "wrong key" not in text and "00112233" not in text
