"""Bounded fuzzing of every parser that reads outside input (issue 9 item 1).

Each target in ``tests.fuzz.targets`` gets a few hundred Hypothesis examples, derandomized
(the same inputs every run): raw bytes, valid encodings, and valid encodings with
structure-aware mutations. The long run is ``python3 -m tests.fuzz`` (atheris).

The tests at the end keep the minimal inputs of the contract violations the fuzzers found
(wpa_supplicant replies with non-ASCII digits, odd VICI list-sas shapes), fixed since.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from router.config import ConfigError, load_home_agent_config
from router.uplink.wlan import WpaParseError, describe_disconnect, parse_event, parse_list_networks
from router.vpn.strongswan import parse_sas
from tests.fuzz.targets import TARGETS, ContractViolation, Target

EXAMPLES = {"web": 200, "config_router": 200, "config_home_agent": 200}
DEFAULT_EXAMPLES = 300
# Targets whose parser has a known, reported bug (see the test_known_bug_* tests below). They
# still run (XPASS once fixed: then drop the entry), without shrinking, which only costs time.
KNOWN_BUGS: dict[str, str] = {}


def _bounded_params() -> list[object]:
    return [pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_BUGS[name], strict=False))
            if name in KNOWN_BUGS else name for name in sorted(TARGETS)]


@pytest.mark.parametrize("name", _bounded_params())
def test_fuzz_bounded(name: str) -> None:
    target: Target = TARGETS[name]
    phases = [Phase.explicit, Phase.generate] if name in KNOWN_BUGS else list(Phase)

    @settings(max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES), derandomize=True, database=None,
              deadline=None, phases=phases, suppress_health_check=list(HealthCheck))
    @given(target.inputs())
    def fuzz(data: bytes) -> None:
        target.check(data)

    fuzz()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_valid_inputs_pass(name: str) -> None:
    """The seeds themselves satisfy the contract (guards the harness, not only the parser)."""
    target = TARGETS[name]

    @settings(max_examples=20, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(target.valid)
    def valid(data: bytes) -> None:
        target.check(data)

    valid()


def test_config_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Found by the config fuzzer (UnicodeDecodeError escaped); fixed in router/config.py."""
    path = tmp_path / "ha.toml"
    path.write_bytes(b"\x80")
    with pytest.raises(ConfigError):
        load_home_agent_config(path)


def test_contract_violation_is_reported() -> None:
    """The harness itself catches an escaping exception and an ERROR log line."""
    import logging

    def boom(data: bytes) -> None:
        raise KeyError(data)

    def loud(data: bytes) -> None:
        logging.getLogger("router.fuzz.selftest").error("hostile input is not our error")

    for run in (boom, loud):
        probe = Target("selftest", "-", run, TARGETS["dhcp"].valid)
        with pytest.raises(ContractViolation):
            probe.check(b"x")


# --- Bugs the fuzzers found, now fixed: each minimal input stays as a regression test ----------


def test_wlan_list_networks_superscript_digit() -> None:
    # str.isdigit() accepts '\u00b2', which int() refuses: it must be a WpaParseError.
    with pytest.raises(WpaParseError):
        parse_list_networks("network id / ssid / bssid / flags\n\u00b2\tlab\tany\t")


def test_wlan_disconnect_reason_superscript_digit() -> None:
    event = parse_event("<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:01:00 reason=\u00b2")
    assert describe_disconnect(event) == "no reason given"


def test_vici_connection_not_a_section() -> None:
    assert not parse_sas(iter([{"corp": b"x"}]), "corp").up


def test_vici_child_sas_not_a_section() -> None:
    state = parse_sas(iter([{"corp": {"state": b"ESTABLISHED", "child-sas": b""}}]), "corp")
    assert state.up and not state.child_up


@pytest.mark.parametrize("ike", [
    {"state": b"ESTABLISHED", "established": b"ED"},
    {"state": b"ESTABLISHED", "child-sas": {"corp-1": {"state": b"INSTALLED", "bytes-in": b"x"}}},
])
def test_vici_non_numeric_counter(ike: dict[str, object]) -> None:
    state = parse_sas(iter([{"corp": ike}]), "corp")
    assert state.up and state.bytes_in == 0
