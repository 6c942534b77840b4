"""Rendering: formatters, SVG plots, the page's bindings, the schema sanitiser."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.web import fmt, page, svg
from router.web.schema import sanitise
from router.web.source import FakeStatusSource

NOW = 1_790_000_000.0


class Bindings(HTMLParser):
    """Collects data-b elements (path -> text) and every data-s / data-role attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bound: dict[str, str] = {}
        self.formats: dict[str, str] = {}
        self.state_paths: list[str] = []
        self.role_paths: list[str] = []
        self._open: list[tuple[str, str | None]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"] or "")
        if a.get("data-s"):
            self.state_paths.append(a["data-s"] or "")
        if a.get("data-role"):
            self.role_paths.append(a["data-role"] or "")
        path = a.get("data-b")
        if path and tag != "meter":
            self.formats[path] = a.get("data-f") or "text"
            self.bound.setdefault(path, "")
        if tag not in ("meter", "meta", "input", "br", "img", "polyline", "circle", "rect"):
            self._open.append((tag, path if tag != "meter" else None))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, path in reversed(self._open):
            if path:
                self.bound[path] += data
                break


def bindings_of(html: str) -> Bindings:
    parser = Bindings()
    parser.feed(html)
    parser.close()
    return parser


def resolve(status: Any, path: str) -> Any:
    value = status
    for part in path.split("."):
        if isinstance(value, list):
            value = value[int(part)]
        else:
            assert part in value, f"{path}: no {part!r}"
            value = value[part]
    return value


# --- formatters ---


@pytest.mark.parametrize(("kind", "value", "text"), [
    ("ms", 3.25, "3.3 ms"), ("ms", 3.24, "3.2 ms"), ("ms", 112.0, "112 ms"), ("ms", 9.96, "10.0 ms"),
    ("ms", None, fmt.DASH), ("ms", float("nan"), fmt.DASH), ("ms", True, fmt.DASH),
    ("dbm", -44.5, "-44 dBm"), ("dbm", -87, "-87 dBm"),
    ("pct", 1.5, "1.5 %"), ("pct", 0, "0.0 %"), ("pct", 25.5, "26 %"),
    ("size", 999, "999 B"), ("size", 18_734_112, "19 MB"), ("size", 2_044_001, "2.0 MB"), ("size", 0, "0 B"),
    ("dur", 45, "45s"), ("dur", 192, "3m 12s"), ("dur", 3725, "1h 02m"), ("dur", 90000, "1d 1h"),
    ("dur", -5, "0s"), ("yesno", True, "yes"), ("yesno", 1, fmt.DASH),
    ("clock", 3661.9, "01:01:01"), ("label", "outer_home", "outer home"),
    ("text", 3.0, "3"), ("text", 0, "0"), ("text", "", fmt.DASH), ("text", None, fmt.DASH),
])
def test_formatters(kind: str, value: Any, text: str) -> None:
    assert fmt.fmt(kind, value) == text


def test_age_is_relative_to_now() -> None:
    assert fmt.age(NOW - 192, NOW) == "3m 12s"


def test_every_python_formatter_has_a_javascript_twin() -> None:
    js_names = set(re.findall(r"^ (\w+):", fmt.JS_FORMATTERS, re.M))
    assert set(fmt.FORMATTERS) <= js_names


# --- SVG ---

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
any_float = st.floats(allow_nan=True, allow_infinity=True)


@given(st.lists(st.tuples(st.one_of(finite, any_float), st.one_of(finite, any_float)), max_size=60),
       st.text(max_size=40))
def test_sparkline_is_well_formed_and_inside_its_box(points: list[tuple[float, float]], label: str) -> None:
    # Put some points inside the window so both the drawing and the empty case are exercised.
    points = [(NOW - abs(t) % 600 if math.isfinite(t) else t, v) for t, v in points]
    out = svg.sparkline(points, label=label, kind="ms", now=NOW, width=150, height=34)
    root = ET.fromstring(out)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" or root.tag == "svg"
    assert "style" not in out.split(">", 1)[0]
    for line in root.iter("polyline"):
        for pair in (line.get("points") or "").split():
            x, y = map(float, pair.split(","))
            assert 0 <= x <= 150 and 0 <= y <= 34
    for circle in root.iter("circle"):
        assert 0 <= float(circle.get("cx") or -1) <= 150 and 0 <= float(circle.get("cy") or -1) <= 34


def test_sparkline_without_points_says_so() -> None:
    assert "no data" in svg.sparkline([], label="RTT wlan", now=NOW)
    assert "no data" in svg.sparkline([(NOW - 5000, 1.0)], label="RTT wlan", now=NOW)  # too old


def test_flat_series_is_drawn_in_the_middle() -> None:
    out = svg.sparkline([(NOW - 10, 5.0), (NOW, 5.0)], label="x", now=NOW, height=34)
    ys = {float(p.split(",")[1]) for p in re.search(r'points="([^"]+)"', out).group(1).split()}  # type: ignore[union-attr]
    assert ys == {17.0}


@given(st.lists(st.fixed_dictionaries({"name": st.text(max_size=10), "at_ms": st.one_of(finite, any_float, st.none())}),
                max_size=8), st.one_of(finite, any_float, st.none()))
def test_phase_bar_is_well_formed(phases: list[dict[str, Any]], gap: Any) -> None:
    out = svg.phase_bar(phases, gap, width=260, height=14)
    root = ET.fromstring(out)
    for rect in root.iter("rect"):
        x, w = float(rect.get("x") or 0), float(rect.get("width") or 0)
        assert x >= 0 and w >= 0 and x + w <= 260 + 1e-6


# --- the page ---


def test_every_binding_resolves_in_the_snapshot_and_matches_its_formatter() -> None:
    for situation in ("inside", "outside", "outer_home", "unknown"):
        source = FakeStatusSource(clock=lambda: NOW, situation=situation)
        status = sanitise(source.status())
        html = page.render_page(status, source.series(), nonce="n0nce", actions_enabled=True)
        found = bindings_of(html)
        assert len(found.bound) > 40
        for path, text in found.bound.items():
            value = resolve(status, path)
            assert text == fmt.fmt(found.formats[path], value, NOW), path
        for path in found.state_paths + found.role_paths:
            resolve(status, path)
        assert len(found.ids) == len(set(found.ids)), "duplicate element ids"


def test_shape_changes_when_the_page_layout_must() -> None:
    source = FakeStatusSource(clock=lambda: NOW)
    before = page.shape_of(source.status())
    source.set_situation("outside")
    assert page.shape_of(source.status()) == before  # values only: bound in place
    source.handovers.insert(0, {**source.handovers[0], "at": NOW})
    assert page.shape_of(source.status()) != before


def test_page_without_token_has_no_action_controls() -> None:
    source = FakeStatusSource(clock=lambda: NOW)
    html = page.render_page(source.status(), source.series(), nonce="n", actions_enabled=False)
    assert 'id="act-token"' not in html and "Actions are off" in html


def test_empty_snapshot_still_renders() -> None:
    html = page.render_page({}, {}, nonce="n")
    assert "no uplinks configured" in html and "no handovers yet" in html


def test_sanitise() -> None:
    out = sanitise({"a": (1, float("inf")), 2: {"token": "t", "key_file": "/etc/k", "psk": "p"},
                    "obj": object.__name__, "deep": [[[{"password": 1}]]]})
    assert out == {"a": [1, None], "2": {"token": "<redacted>", "key_file": "/etc/k", "psk": "<redacted>"},
                   "obj": "object", "deep": [[[{"password": "<redacted>"}]]]}
