"""The report as one self-contained, printable HTML page.

Everything is inline: the stylesheet (with print rules: A4, no page break inside a chart), the
charts (`svg.line_chart`), no script, no font, no image to fetch; the page names no URL, so it
opens the same from a mail attachment on a machine without network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from monitor.reports import figures
from monitor.reports.model import HealthReport
from monitor.reports.svg import line_chart

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #171717; margin: 2rem auto; max-width: 960px;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; border-bottom: 1px solid #e5e5e5; padding-bottom: .2rem; margin-top: 2rem; }
.headline { font-size: 1.1rem; font-weight: 600; padding: .5rem .75rem; border-radius: 4px; }
.healthy { background: #dcfce7; } .degraded { background: #fef3c7; }
.unhealthy { background: #fee2e2; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #e5e5e5; padding: .2rem .6rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.crossed { color: #b91c1c; font-weight: 600; }
figure { margin: 1rem 0; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: .25rem; }
svg.chart { width: 100%; height: auto; }
svg .axis, svg .legend { font-size: 11px; fill: #525252; stroke: none; }
.empty { color: #737373; font-style: italic; }
.muted { color: #737373; }
@media print {
  @page { size: A4; margin: 14mm; }
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, figure { break-inside: avoid; page-break-inside: avoid; }
}
"""


def render_html(report: HealthReport) -> str:
    e = escape
    window = f"{report.since.isoformat()} to {report.until.isoformat()}"
    body = [
        "<h1>Gemma Monitor health report</h1>",
        f'<p class="muted">{e(window)} · model {e(report.model_name)} · exported '
        f"{e(report.export_timestamp.isoformat())}</p>",
        f'<p class="headline {e(report.status)}" data-status="{e(report.status)}">'
        f"{e(report.headline)}</p>",
    ]
    if report.reasons:
        body.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in report.reasons) + "</ul>")
    body.append("<h2>Performance</h2>")
    body.append(_summary_table(report))
    body.append(_table(("figure", "value"), figures.request_rows(report)))
    outcomes = report.requests.get("outcomes", {})
    body.append(_table(("outcome", "requests"), outcomes.items()) if outcomes else "")
    body.append("<h2>Charts</h2>")
    for chart in report.charts:
        body.append(
            f'<figure><figcaption>{e(chart.title)} <span class="muted">({e(chart.unit)})'
            f"</span></figcaption>{line_chart(chart, report.since, report.until)}</figure>"
        )
    body.append("<h2>Quality</h2>")
    body.append(_table(("score", "mean"), figures.quality_rows(report)))
    body.append("<h2>Safety</h2>")
    s = report.safety
    body.append(
        f"<p>Blocked requests: {s['blocked_requests']} (input {s['blocked_input']}, "
        f"output {s['blocked_output']}).</p>"
    )
    for key, title in (("by_stage", "stage"), ("by_check", "check"), ("by_policy", "policy")):
        if s[key]:
            body.append(_actions(title, s[key]))
    body.append("<h2>System</h2>")
    body.append(_stats(report.system) or '<p class="empty">No host or process sample.</p>')
    body.append("<h2>GPU</h2>")
    body.append(_gpu(report))
    body.append("<h2>Health checks</h2>")
    body.append(_health(report))
    body.append("<h2>Alerts</h2>")
    body.append(_alerts(report))
    body.append("<h2>Webhook deliveries</h2>")
    deliveries = report.webhook_deliveries
    by_status = deliveries["by_status"]
    body.append(
        _table(("status", "deliveries"), by_status.items()) if by_status else "<p>None.</p>"
    )
    if deliveries["problems"]:
        problems = [(p["receiver"], p["rule"], p["status"], p["attempts"], p["last_error"] or "")
                for p in deliveries["problems"]]  # fmt: skip
        body.append(_table(("receiver", "notification", "status", "attempts", "error"), problems))
    body.append("<h2>Notes</h2><ul>")
    body += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in report.notes.items()]
    body.append("</ul>")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Gemma Monitor health report: {e(report.status)}</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _cell(value: Any, cls: str = "") -> str:
    text = str(value)
    numeric = isinstance(value, int | float) or text[:1].isdigit() or text == "-"
    classes = " ".join(c for c in (cls, "num" if numeric else "") if c)
    return f'<td class="{classes}">{escape(text)}</td>' if classes else f"<td>{escape(text)}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_table(report: HealthReport) -> str:
    rows = []
    for label, value, limit in figures.summary_rows(report):
        crossed = "crossed" if limit.endswith("(crossed)") else ""
        rows.append(
            f"<tr><th>{escape(label)}</th>{_cell(value, crossed)}"
            f"<td class='muted'>{escape(limit)}</td></tr>"
        )
    return (
        "<table><tr><th>figure</th><th>value</th><th>alert threshold</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _actions(title: str, table: Mapping[str, Mapping[str, int]]) -> str:
    actions = sorted({a for counts in table.values() for a in counts})
    rows = [(name, *(counts.get(a, 0) for a in actions)) for name, counts in table.items()]
    return _table((title, *actions), rows)


def _stats(section: Mapping[str, Any]) -> str:
    rows = figures.stat_rows(section)
    return _table(("metric", "mean", "min", "max"), rows) if rows else ""


def _gpu(report: HealthReport) -> str:
    gpu = report.gpu
    if not gpu["available"]:
        return '<p class="empty">No GPU was sampled in this window.</p>'
    parts = [f"<h3>GPU {escape(t)}</h3>{_stats(stats)}" for t, stats in gpu["gpus"].items()]
    per_1k = gpu["energy_j_per_1k_tokens"]
    parts.append(f"<p>Energy per 1000 tokens: {'-' if per_1k is None else f'{per_1k:.1f} J'}</p>")
    return "".join(parts)


def _health(report: HealthReport) -> str:
    health = report.health_checks
    if not health["latest"]:
        return '<p class="empty">No health check in this window.</p>'
    checks = [(c["backend"], "up" if c["up"] else "DOWN", c["at"], c["detail"] or "")
            for c in health["latest"]]  # fmt: skip
    share = health["up_share"]
    shown = "-" if share is None else figures.percent(share)
    return _table(("backend", "latest check", "at", "detail"), checks) + (
        f"<p>{health['checks']} checks, up {shown}.</p>"
    )


def _alerts(report: HealthReport) -> str:
    parts = []
    if report.current_alerts:
        firing = [(a["rule"], a["severity"], a["message"], a["fired_at"] or "")
                for a in report.current_alerts]  # fmt: skip
        parts.append("<h3>Firing now</h3>" + _table(("rule", "severity", "what", "since"), firing))
    if report.alert_history:
        history = [(a["rule"], a["severity"], a["state"], a["fired_at"], a["resolved_at"] or "")
                for a in report.alert_history]  # fmt: skip
        parts.append(_table(("rule", "severity", "state", "fired", "resolved"), history))
    else:
        parts.append("<p>No alert fired in this window.</p>")
    return "".join(parts)
