"""Line charts as inline SVG: no script, no font or stylesheet to fetch, printable.

`line_chart(chart, since, until)` draws every series of a `Chart` over the window, one colour
each, with a circle per point carrying its numbers (`data-series`, `data-t`, `data-v`: the
very values of the JSON export), and the threshold as a dashed red line (`data-threshold`).
A gap in a series (a step without data) breaks its line. Inline in HTML, an `<svg>` needs no
namespace declaration, so the page names no URL at all.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from monitor.reports.model import Chart

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 56
PALETTE = ("#1f6feb", "#d97706", "#7c3aed", "#059669", "#db2777", "#0891b2", "#65a30d", "#525252")
THRESHOLD_COLOUR = "#dc2626"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for none)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value:
            return float(factor * power)
    return 10.0 * power


def _number(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.3g}"


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def line_chart(chart: Chart, since: datetime, until: datetime) -> str:
    """The chart as one `<svg>` element (or a short note when it has nothing to draw)."""
    key = escape(chart.key)
    if not chart.has_data:
        note = escape(chart.empty or "no data in this window")
        return f'<p class="empty" data-chart="{key}">{escape(chart.title)}: {note}</p>'
    values = [v for s in chart.series for _, v in s.points if v is not None]
    top = nice_ceiling(max([*values, chart.threshold or 0.0]) * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = (until - since).total_seconds() or 1.0

    def x(t: datetime) -> float:
        return LEFT + plot_w * (t - since).total_seconds() / span

    def y(v: float) -> float:
        return TOP + plot_h - plot_h * max(v, 0.0) / top

    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" class="chart" data-chart="{key}" data-unit="{escape(chart.unit)}">',
        f"<title>{escape(chart.title)} ({escape(chart.unit)})</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#d4d4d4"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        gy = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{LEFT + plot_w}" y2="{gy:.1f}" '
            'stroke="#eeeeee"/>'
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" class="axis">'
            f"{_number(top * fraction)}</text>"
        )
    parts.append(
        f'<text x="{LEFT}" y="{TOP + plot_h + 16}" class="axis">{_when(since)}</text>'
        f'<text x="{LEFT + plot_w}" y="{TOP + plot_h + 16}" text-anchor="end" class="axis">'
        f"{_when(until)} UTC</text>"
    )
    if chart.threshold is not None:
        ty = y(chart.threshold)
        label = escape(chart.threshold_label or "threshold")
        parts.append(
            f'<line class="threshold" data-threshold="{chart.threshold!r}" x1="{LEFT}" '
            f'y1="{ty:.1f}" x2="{LEFT + plot_w}" y2="{ty:.1f}" stroke="{THRESHOLD_COLOUR}" '
            f'stroke-dasharray="6 4"/><text x="{LEFT + plot_w - 4}" y="{ty - 4:.1f}" '
            f'text-anchor="end" fill="{THRESHOLD_COLOUR}" class="axis">{label}</text>'
        )
    legend_x = LEFT
    for index, series in enumerate(chart.series):
        colour = PALETTE[index % len(PALETTE)]
        name = escape(series.name)
        parts.append(f'<g class="series" data-series="{name}" stroke="{colour}" fill="{colour}">')
        for run in _runs(series.points):
            if len(run) > 1:
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
                parts.append(f'<polyline points="{path}" fill="none" stroke-width="1.5"/>')
        for t, v in series.points:
            if v is not None:
                parts.append(
                    f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2" data-series="{name}" '
                    f'data-t="{t.isoformat()}" data-v="{v!r}"/>'
                )
        parts.append("</g>")
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 18}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT - 9}" class="legend">{name}</text>'
        )
        legend_x += 24 + 7 * len(series.name)
    parts.append("</svg>")
    return "".join(parts)


def _runs(
    points: tuple[tuple[datetime, float | None], ...],
) -> list[list[tuple[datetime, float]]]:
    """The series split at its gaps."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for t, v in points:
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    return [run for run in runs if run]
