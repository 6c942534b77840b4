"""Server-side inline SVG: sparklines of a time series and a handover's phase timeline.

Output is a self-contained ``<svg>`` element with presentation attributes only (no ``style``
attributes, which the page's Content-Security-Policy forbids) and every piece of text escaped.
Non-finite points are dropped; a constant series is drawn flat in the middle; an empty one
says "no data". Coordinates always lie inside the viewBox.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from html import escape as _html_escape
from typing import Any

from router.web import fmt

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def escape(text: str) -> str:
    """HTML/XML escaping that also drops control characters (not allowed in XML 1.0)."""
    return _html_escape(_CONTROL.sub("", text), quote=True)


def _finite_points(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for point in points:
        try:
            t, v = float(point[0]), float(point[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            out.append((t, v))
    out.sort(key=lambda p: p[0])
    return out


def sparkline(points: Iterable[tuple[float, float]], *, label: str, kind: str = "num",
              now: float | None = None, window_s: float = 600.0, width: int = 150,
              height: int = 34, css_class: str = "spark") -> str:
    """A small line chart of ``points`` over the last ``window_s`` seconds before ``now``.

    ``kind`` is a :mod:`router.web.fmt` formatter name used for the min/max/last text.
    """
    data = _finite_points(points)
    end = now if now is not None and math.isfinite(now) else (data[-1][0] if data else 0.0)
    start = end - window_s
    data = [p for p in data if start <= p[0] <= end]
    pad = 2.0
    label_text = escape(label)
    head = (f'<svg class="{escape(css_class)}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" ')
    if not data:
        return (head + f'aria-label="{label_text}: no data"><title>{label_text}: no data</title>'
                f'<text x="{width / 2:.0f}" y="{height / 2 + 4:.0f}" text-anchor="middle" '
                f'class="nodata">no data</text></svg>')
    values = [v for _, v in data]
    low, high = min(values), max(values)
    span = high - low
    usable_h = height - 2 * pad

    def x_of(t: float) -> float:
        return pad + (t - start) / window_s * (width - 2 * pad) if window_s > 0 else width - pad

    def y_of(v: float) -> float:
        if span <= 0:
            return height / 2
        if not math.isfinite(span):  # high - low overflowed (values near the float limits)
            return pad + (1.0 - (v / 2 - low / 2) / (high / 2 - low / 2)) * usable_h
        return pad + (1.0 - (v - low) / span) * usable_h

    coords = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in data)
    last_t, last_v = data[-1]
    summary = (f"{label}: last {fmt.fmt(kind, last_v)}, min {fmt.fmt(kind, low)}, "
               f"max {fmt.fmt(kind, high)}")
    summary_text = escape(summary)
    return (head + f'aria-label="{summary_text}"><title>{summary_text}</title>'
            f'<polyline points="{coords}" fill="none" stroke="currentColor" stroke-width="1.5" '
            f'stroke-linejoin="round" stroke-linecap="round" vector-effect="non-scaling-stroke"/>'
            f'<circle cx="{x_of(last_t):.1f}" cy="{y_of(last_v):.1f}" r="2.2" fill="currentColor"/>'
            f"</svg>")


PHASE_COLOURS = ("#3b82f6", "#10b981", "#f59e0b", "#8b5cf6", "#ef4444", "#14b8a6", "#ec4899")


def phase_bar(phases: Sequence[dict[str, Any]], gap_ms: Any, *, width: int = 260,
              height: int = 14) -> str:
    """A timeline of one handover: each phase a segment from its start to the next one's."""
    marks: list[tuple[str, float]] = []
    for phase in phases:
        if not isinstance(phase, dict):
            continue
        at = phase.get("at_ms")
        if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
            marks.append((str(phase.get("name", "?")), max(0.0, float(at))))
    marks.sort(key=lambda m: m[1])
    gap = float(gap_ms) if isinstance(gap_ms, int | float) and math.isfinite(gap_ms) else 0.0
    total = max([gap, *(at for _, at in marks), 1.0])
    head = (f'<svg class="phases" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'preserveAspectRatio="none" role="img" ')
    if not marks:
        return head + 'aria-label="no phases"><title>no phases</title></svg>'
    parts = []
    for index, (name, at) in enumerate(marks):
        end = marks[index + 1][1] if index + 1 < len(marks) else total
        x0 = at / total * width
        x1 = max(end / total * width, x0 + 2.0)
        x1 = min(x1, float(width))
        x0 = min(x0, x1 - 1.0) if x1 >= 1.0 else 0.0
        title = escape(f"{name} at {fmt.ms(at)}")
        parts.append(f'<rect x="{x0:.1f}" y="0" width="{x1 - x0:.1f}" height="{height}" '
                     f'fill="{PHASE_COLOURS[index % len(PHASE_COLOURS)]}"><title>{title}</title></rect>')
    if gap > 0:
        gx = min(gap / total * width, width - 1.5)
        parts.append(f'<rect x="{gx:.1f}" y="0" width="1.5" height="{height}" fill="currentColor">'
                     f'<title>LAN traffic flowing again at {escape(fmt.ms(gap))}</title></rect>')
    label = escape(", ".join(f"{name} {fmt.ms(at)}" for name, at in marks))
    return head + f'aria-label="{label}">' + "".join(parts) + "</svg>"


def phase_colour(index: int) -> str:
    return PHASE_COLOURS[index % len(PHASE_COLOURS)]
