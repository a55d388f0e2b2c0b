"""Server-rendered SVG charts: pure functions from numbers to markup (no Flask, no DB, no JS).

The CSP forbids inline styles, so everything is drawn with SVG presentation attributes
(``fill=``, ``stroke=``), never ``style=``. Each chart carries ``<title>``/``<desc>`` and the
page shows the same numbers as a table for screen readers and printing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from markupsafe import Markup, escape

BAND_FILL = "#dbe7fb"
LINE = "#0b57d0"
BASE = "#5f6368"
GRID = "#d0d0d0"


@dataclasses.dataclass(frozen=True)
class Point:
    """One score: ``day`` on the x axis, ``value`` (None = not scorable), ``label`` for tooltips."""

    day: float
    value: float | None
    label: str


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"


def trajectory_svg(
    points: Sequence[Point],
    *,
    chart_id: str,
    title: str,
    desc: str,
    y_min: float,
    y_max: float,
    baseline: float | None = None,
    band: float | None = 10.0,
    width: int = 320,
    height: int = 150,
    x_label: str = "",
) -> Markup:
    """A line chart of one scale over time with the baseline line and a ±``band`` band around it.

    ``y_min``/``y_max`` are the scale's attainable range (0-100 for EORTC scales). Missing values
    break the line rather than being drawn as 0. ``chart_id`` must be unique in the page (it
    names the title/desc elements the chart is labelled by).
    """
    if y_max <= y_min:
        raise ValueError("y_max must be greater than y_min")
    left, right, top, bottom = 34, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    days = [p.day for p in points] or [0.0]
    d_min, d_max = min(days), max(days)
    span = (d_max - d_min) or 1.0

    def x(day: float) -> float:
        return left + (day - d_min) / span * plot_w if d_max > d_min else left + plot_w / 2

    def y(value: float) -> float:
        clamped = min(max(value, y_min), y_max)
        return top + (1 - (clamped - y_min) / (y_max - y_min)) * plot_h

    cid = escape(chart_id)
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-labelledby="{cid}-t {cid}-d">'
        ),
        f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>',
    ]
    if baseline is not None and band:
        lo, hi = y(baseline + band), y(baseline - band)
        parts.append(f'<rect x="{left}" y="{lo:.1f}" width="{plot_w}" height="{hi - lo:.1f}" fill="{BAND_FILL}"/>')
    for tick in (y_min, (y_min + y_max) / 2, y_max):
        ty = y(tick)
        parts.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{left + plot_w}" y2="{ty:.1f}" stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" font-size="10" fill="{BASE}">{_fmt(tick)}</text>'
        )
    if baseline is not None:
        by = y(baseline)
        parts.append(
            f'<line x1="{left}" y1="{by:.1f}" x2="{left + plot_w}" y2="{by:.1f}" stroke="{BASE}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    for segment in _segments(points):
        coords = " ".join(f"{x(p.day):.1f},{y(p.value):.1f}" for p in segment)  # type: ignore[arg-type]
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    for p in points:
        if p.value is None:
            continue
        parts.append(
            f'<circle cx="{x(p.day):.1f}" cy="{y(p.value):.1f}" r="3.5" fill="{LINE}">'
            f"<title>{escape(p.label)}: {_fmt(p.value)}</title></circle>"
        )
    if points:
        parts.append(f'<text x="{left}" y="{height - 6}" font-size="10" fill="{BASE}">{escape(points[0].label)}</text>')
        if len(points) > 1:
            parts.append(
                f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" font-size="10" '
                f'fill="{BASE}">{escape(points[-1].label)}</text>'
            )
    if x_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" '
            f'font-size="10" fill="{BASE}">{escape(x_label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _segments(points: Sequence[Point]) -> list[list[Point]]:
    """Runs of consecutive scored points (a missing score breaks the line)."""
    runs: list[list[Point]] = [[]]
    for p in points:
        if p.value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    return [run for run in runs if len(run) > 1]


def heat_level(value: float | None, *, low: float, high: float, kind: str = "graded") -> str:
    """A CSS class for one diary cell: ``h0`` (none) .. ``h4`` (worst), ``hskip`` when not answered.

    ``kind``: ``graded`` scales the code over [low, high]; ``temperature`` uses the alert
    thresholds (37.5 amber, 38.0 red); ``nominal`` marks any non-zero code as a finding.
    """
    if value is None:
        return "hskip"
    if kind == "temperature":
        return "h4" if value >= 38.0 else "h2" if value >= 37.5 else "h0"
    if kind == "nominal":
        return "h0" if value == 0 else "h4" if value >= high else "h3"
    if high <= low:
        return "h0"
    return f"h{round((min(max(value, low), high) - low) / (high - low) * 4)}"
