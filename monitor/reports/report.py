"""Health reports: one window of the store, as JSON, Markdown or HTML (`gemma-monitor report`).

A report holds the window's summary (`store.summaries`), requests by outcome, the alerts that
were firing in the window with their state, and the webhook deliveries by status. It reads
only the database, so it runs anywhere the database is reachable, beside or instead of the
admin API. The reading is `monitor.store`'s (`store.reports`); this module shapes what it reads
into the report and renders it.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from monitor.store.reports import (
    FiredAlert,
    alerts_fired_in,
    delivery_counts,
    outcome_counts,
)
from monitor.store.summaries import summarize

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class Window(TypedDict):
    since: str
    until: str


class AlertEntry(TypedDict):
    rule: str
    severity: str
    state: str
    fingerprint: str
    fired_at: str
    resolved_at: str | None
    value: float | None
    threshold: float | None


class Report(TypedDict):
    """The report as JSON renders it: keys in this order, counts sorted by name."""

    window: Window
    summary: dict[str, Any]
    outcomes: dict[str, int]
    alerts: list[AlertEntry]
    deliveries: dict[str, int]


# The summary's figures a report shows, in order: key, label, format.
_SHOWN = (
    ("total_requests", "requests", "{:.0f}"),
    ("successful_requests", "successful", "{:.0f}"),
    ("success_rate", "success rate", "{:.1%}"),
    ("blocked_rate", "blocked", "{:.1%}"),
    ("mean_response_time_s", "mean response time", "{:.3f} s"),
    ("p50_response_time_s", "p50", "{:.3f} s"),
    ("p95_response_time_s", "p95", "{:.3f} s"),
    ("p99_response_time_s", "p99", "{:.3f} s"),
    ("mean_tokens_per_s", "mean tokens/s", "{:.1f}"),
    ("total_tokens", "tokens", "{:.0f}"),
    ("process_memory_mb", "process memory", "{:.0f} MB"),
    ("mean_memory_mb", "host memory used", "{:.0f} MB"),
    ("gpu_memory_pct", "GPU memory (highest GPU)", "{:.1f} %"),
    ("gpu_temperature_c", "GPU temperature (highest GPU)", "{:.0f} °C"),
    ("backend_up", "backend up (latest check)", "{:.0f}"),
    ("energy_j_per_1k_tokens", "energy per 1k tokens", "{:.1f} J"),
    ("quality_overall", "quality (overall)", "{:.2f}"),
)


def build_report(engine: Engine, since: datetime, until: datetime) -> Report:
    """The report of `since <= ts < until` (alerts: those firing at any moment of it)."""
    return {
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "summary": summarize(engine, since, until).as_dict(),
        "outcomes": dict(sorted(outcome_counts(engine, since, until).items())),
        "alerts": [_alert_entry(alert) for alert in alerts_fired_in(engine, since, until)],
        "deliveries": dict(sorted(delivery_counts(engine, since, until).items())),
    }


def _alert_entry(alert: FiredAlert) -> AlertEntry:
    return {
        "rule": alert.rule,
        "severity": alert.severity,
        "state": alert.state,
        "fingerprint": alert.fingerprint,
        "fired_at": alert.fired_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "value": alert.value,
        "threshold": alert.threshold,
    }


def render(report: Report, fmt: str) -> str:
    """`report` as `fmt`: "json", "md" (Markdown) or "html" (one self-contained page)."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return _markdown(report)
    if fmt == "html":
        return _html(report)
    raise ValueError(f"unknown report format {fmt!r}: json, md or html")


def _figures(report: Report) -> list[tuple[str, str]]:
    summary = report["summary"]
    rows = []
    for key, label, fmt in _SHOWN:
        value = summary.get(key)
        rows.append((label, "-" if value is None else fmt.format(value)))
    return rows


def _alert_line(alert: AlertEntry) -> tuple[str, ...]:
    return (
        alert["rule"],
        alert["severity"],
        alert["state"],
        alert["fired_at"],
        alert["resolved_at"] or "",
    )


def _markdown(report: Report) -> str:
    w = report["window"]
    lines = ["# Gemma Monitor health report", "", f"{w['since']} to {w['until']}", ""]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in _figures(report)]
    lines += ["", "## Requests by outcome", ""]
    lines += [f"- {k}: {v}" for k, v in report["outcomes"].items()] or ["- none"]
    lines += ["", "## Alerts", ""]
    if report["alerts"]:
        lines += ["| rule | severity | state | fired | resolved |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_alert_line(a)) + " |" for a in report["alerts"]]
    else:
        lines.append("No alert fired in this window.")
    lines += ["", "## Webhook deliveries", ""]
    lines += [f"- {k}: {v}" for k, v in report["deliveries"].items()] or ["- none"]
    return "\n".join(lines) + "\n"


def _html(report: Report) -> str:
    e = html.escape
    w = report["window"]
    figures = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _figures(report))
    outcomes = "".join(f"<li>{e(k)}: {v}</li>" for k, v in report["outcomes"].items())
    alerts = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in _alert_line(a)) + "</tr>"
        for a in report["alerts"]
    )
    deliveries = "".join(f"<li>{e(k)}: {v}</li>" for k, v in report["deliveries"].items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Gemma Monitor report</title>"
        "</head><body><h1>Gemma Monitor health report</h1>"
        f"<p>{e(w['since'])} to {e(w['until'])}</p><table>{figures}</table>"
        f"<h2>Requests by outcome</h2><ul>{outcomes or '<li>none</li>'}</ul>"
        "<h2>Alerts</h2><table><tr><th>rule</th><th>severity</th><th>state</th><th>fired</th>"
        f"<th>resolved</th></tr>{alerts}</table>"
        f"<h2>Webhook deliveries</h2><ul>{deliveries or '<li>none</li>'}</ul></body></html>\n"
    )
