"""/metrics: a strict line-by-line parser of the Prometheus text format (0.0.4) and the content."""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from router.web.metrics import escape_label, render_metrics
from router.web.source import FakeStatusSource
from tests.unit.test_web_http import NOW, exchange, get, run

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"((?:[^"\\\n]|\\[\\"n])*)"'
HELP_LINE = re.compile(rf"^# HELP ({NAME}) ((?:[^\\\n]|\\[\\n])*)$")
TYPE_LINE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE_LINE = re.compile(rf"^({NAME})(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*)?\}})? (\S+)$")
LABEL = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)={LABEL_VALUE}")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse_exposition(text: str) -> tuple[dict[str, str], Samples]:
    """Families -> type, and samples; asserts on every rule we rely on."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    finished: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        if match := HELP_LINE.match(line):
            name = match.group(1)
            assert name not in helps and name not in finished, f"line {number}: second HELP for {name}"
            helps.add(name)
            if current and current != name:
                finished.add(current)
            current = name
        elif match := TYPE_LINE.match(line):
            name = match.group(1)
            assert name not in types, f"line {number}: second TYPE for {name}"
            assert name == current, f"line {number}: TYPE {name} without its HELP just before"
            types[name] = match.group(2)
        elif match := SAMPLE_LINE.match(line):
            name = match.group(1)
            assert name == current and name in types, f"line {number}: sample {name} outside its family"
            labels = tuple((m.group(1), unescape(m.group(2))) for m in LABEL.finditer(match.group(2) or ""))
            assert len({k for k, _ in labels}) == len(labels), f"line {number}: repeated label"
            value = float(match.group(5))
            assert (name, labels) not in samples, f"line {number}: duplicate sample"
            samples[(name, labels)] = value
        else:
            raise AssertionError(f"line {number} is not valid exposition format: {line!r}")
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total"), name
    return types, samples


def sample(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, tuple(labels.items()))]


def test_metrics_over_http_parse_and_carry_the_numbers() -> None:
    reply = run(lambda s: exchange(s.port, get("/metrics")))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse_exposition(reply.body.decode())
    assert types["router_registrations_total"] == "counter"
    assert sample(samples, "router_registrations_total", system="inner", result="accepted") == 14
    assert sample(samples, "router_registration_denials_total", system="inner", code="133") == 1
    assert sample(samples, "router_handovers_total", cause="better_uplink") == 3
    assert sample(samples, "router_input_dropped_total", reason="bad_authenticator") == 4
    assert sample(samples, "router_uplink_rtt_seconds", uplink="wlan", kind="wlan") == 0.0032
    assert sample(samples, "router_uplink_loss_ratio", uplink="cell", kind="3g") == 0.015
    assert sample(samples, "router_uplink_score", uplink="cell", kind="3g") == 6
    assert sample(samples, "router_uplink_signal_dbm", uplink="cell", kind="3g") == -87
    assert sample(samples, "router_uplink_transmit_bytes_total", uplink="wlan", kind="wlan") == 18_734_112
    assert sample(samples, "router_vpn_up") == 0
    assert sample(samples, "router_situation", situation="inside") == 1
    assert sample(samples, "router_situation", situation="outside") == 0
    assert sample(samples, "router_lan_clients") == 2
    assert sample(samples, "router_http_events_total", event="connections") >= 1
    assert types["router_vpn_receive_bytes_total"] == "counter"


def test_vpn_up_and_missing_values_are_omitted_not_zero() -> None:
    source = FakeStatusSource(clock=lambda: NOW, situation="outside")
    status = source.status()
    status["uplinks"][1]["rtt_ms"] = None
    status["uplinks"][1]["signal_dbm"] = float("nan")
    _, samples = parse_exposition(render_metrics(status))
    assert sample(samples, "router_vpn_up") == 1
    assert ("router_uplink_rtt_seconds", (("uplink", "cell"), ("kind", "3g"))) not in samples
    assert ("router_uplink_signal_dbm", (("uplink", "cell"), ("kind", "3g"))) not in samples
    assert sample(samples, "router_uplink_rtt_seconds", uplink="wlan", kind="wlan") == 0.0032


def test_label_values_are_escaped() -> None:
    status: dict[str, Any] = FakeStatusSource(clock=lambda: NOW).status()
    weird = 'we"ird\\na\nme'
    status["uplinks"][0]["name"] = weird
    status["counters"] = {'odd "counter"\nname': 3, "handovers.a\\b": 1}
    _, samples = parse_exposition(render_metrics(status))
    assert sample(samples, "router_uplink_score", uplink=weird, kind="wlan") == 10
    assert sample(samples, "router_events_total", name='odd "counter"\nname') == 3
    assert sample(samples, "router_handovers_total", cause="a\\b") == 1
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


@given(st.dictionaries(st.text(max_size=30), st.integers(min_value=0, max_value=2**53), max_size=8),
       st.text(max_size=20), st.text(max_size=20))
def test_any_counters_and_names_render_parseable(counters: dict[str, int], uplink: str, version: str) -> None:
    status: dict[str, Any] = FakeStatusSource(clock=lambda: NOW).status()
    status["counters"] = counters
    status["uplinks"][0]["name"] = uplink
    status["version"] = version
    _, samples = parse_exposition(render_metrics(status))
    assert all(not math.isnan(v) for v in samples.values())
