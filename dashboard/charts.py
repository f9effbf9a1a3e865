"""Altair charts (Altair ships with Streamlit): time series with the seed's threshold drawn as
a dashed rule, and bars. Everything is embedded in the page; no network assets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
from monitor.dashboard.figures import Row, Threshold


def long_form(rows: Sequence[Row], columns: Sequence[str]) -> list[Row]:
    """(time, series, value) rows for the given columns, skipping missing values."""
    return [
        {"time": row["time"], "series": column, "value": row[column]}
        for row in rows
        for column in columns
        if row.get(column) is not None
    ]


def time_chart(
    rows: Sequence[Row],
    columns: Sequence[str],
    *,
    title: str,
    y_title: str,
    threshold: Threshold | None = None,
) -> alt.LayerChart | alt.Chart:
    """One line per column of `rows` (as `figures.request_rows` gives them)."""
    return _lines(long_form(rows, columns), title, y_title, threshold)


def series_chart(
    rows: Sequence[Row], *, value: str, series: str, title: str, y_title: str,
    threshold: Threshold | None = None,
) -> alt.LayerChart | alt.Chart:  # fmt: skip
    """One line per distinct `series` value of long-form `rows`."""
    shaped = [{"time": r["time"], "series": r[series], "value": r[value]} for r in rows]
    return _lines(shaped, title, y_title, threshold)


def _lines(
    data_rows: list[Row], title: str, y_title: str, threshold: Threshold | None
) -> alt.LayerChart | alt.Chart:
    lines = (
        alt.Chart(alt.Data(values=_jsonable(data_rows)), title=title)
        .mark_line(point=len({r["time"] for r in data_rows}) <= 30)
        .encode(
            x=_time_axis(),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[_time_tooltip(), "series:N", alt.Tooltip("value:Q", format=",.2f")],
        )
    )
    if threshold is None:
        return lines
    rule = alt.Chart(alt.Data(values=[{"y": threshold.value, "label": threshold.label}]))
    line = rule.mark_rule(color="#d62728", strokeDash=[6, 4]).encode(y="y:Q", tooltip=["label:N"])
    text = rule.mark_text(align="left", dx=4, dy=-6, color="#d62728").encode(
        y="y:Q", text="label:N", x=alt.value(0)
    )
    return alt.layer(lines, line, text)


def bar_chart(
    rows: Sequence[Row], *, x: str, y: str, title: str, color: str | None = None
) -> alt.Chart:
    timed = x == "time"
    encoding: dict[str, Any] = {
        "x": _time_axis() if timed else alt.X(f"{x}:N", title=None, sort=None),
        "y": alt.Y(f"{y}:Q", title=y),
        "tooltip": [_time_tooltip() if timed else f"{x}:N", f"{y}:Q"],
    }
    if color is not None:
        encoding["color"] = alt.Color(f"{color}:N", title=None, legend=alt.Legend(orient="bottom"))
    return (
        alt.Chart(alt.Data(values=_jsonable(list(rows))), title=title).mark_bar().encode(**encoding)
    )


# Times are shown in UTC on a 24-hour clock, as the window picker states them; a time scale
# would otherwise show the browser's local time on a 12-hour clock.
_TIME_FORMAT = "%d %b %H:%M"


def _time_axis() -> alt.X:
    return alt.X(
        "time:T", title=None, scale=alt.Scale(type="utc"), axis=alt.Axis(format=_TIME_FORMAT)
    )


def _time_tooltip() -> alt.Tooltip:
    return alt.Tooltip("time:T", title="time (UTC)", format=_TIME_FORMAT, formatType="utc")


def _jsonable(rows: list[Row]) -> list[Row]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows
    ]
