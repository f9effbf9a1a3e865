"""The report as Markdown, for tickets and chat: the headline, then the same figures as the
HTML page in tables (GitHub-flavoured), without charts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from monitor.reports import figures
from monitor.reports.model import HealthReport


def render_markdown(report: HealthReport) -> str:
    lines = [
        "# Gemma Monitor health report",
        "",
        f"**{report.headline}**",
        "",
        f"Window: {report.since.isoformat()} to {report.until.isoformat()} "
        f"(model: {report.model_name})",
    ]
    if report.reasons:
        lines += ["", *(f"- {reason}" for reason in report.reasons)]
    lines += ["", "## Performance", ""]
    lines += _table(("figure", "value", "alert threshold"), figures.summary_rows(report))
    lines += ["", *_table(("figure", "value"), figures.request_rows(report))]
    outcomes = report.requests.get("outcomes", {})
    lines += ["", "### Requests by outcome", ""]
    lines += _table(("outcome", "requests"), outcomes.items()) if outcomes else ["None."]
    lines += ["", "## Quality", ""]
    lines += _table(("score", "mean"), figures.quality_rows(report))
    lines += ["", "## Safety", ""]
    safety = report.safety
    lines.append(
        f"Blocked requests: {safety['blocked_requests']} "
        f"(input {safety['blocked_input']}, output {safety['blocked_output']})."
    )
    for key, title in (("by_stage", "stage"), ("by_check", "check"), ("by_policy", "policy")):
        if safety[key]:
            lines += ["", *_actions(title, safety[key])]
    lines += ["", "## System", ""]
    lines += _stats(report.system) or ["No host or process sample in this window."]
    lines += ["", "## GPU", ""]
    gpu = report.gpu
    if gpu["available"]:
        for target, stats in gpu["gpus"].items():
            lines += [f"GPU {target}:", "", *_stats(stats), ""]
        per_1k = gpu["energy_j_per_1k_tokens"]
        lines.append(f"Energy per 1000 tokens: {'-' if per_1k is None else f'{per_1k:.1f} J'}")
    else:
        lines.append("No GPU was sampled in this window.")
    lines += ["", "## Health checks", ""]
    health = report.health_checks
    if health["latest"]:
        checks = [(c["backend"], "up" if c["up"] else "DOWN", c["at"], c["detail"] or "")
                for c in health["latest"]]  # fmt: skip
        lines += _table(("backend", "latest check", "at", "detail"), checks)
        share = health["up_share"]
        lines.append("")
        lines.append(
            f"{health['checks']} checks, up {'-' if share is None else figures.percent(share)}."
        )
    else:
        lines.append("No health check in this window.")
    lines += ["", "## Alerts", ""]
    if report.current_alerts:
        firing = [(a["rule"], a["severity"], a["message"], a["fired_at"] or "")
                for a in report.current_alerts]  # fmt: skip
        lines += ["Firing now:", "", *_table(("rule", "severity", "what", "since"), firing), ""]
    if report.alert_history:
        history = [(a["rule"], a["severity"], a["state"], a["fired_at"], a["resolved_at"] or "")
                for a in report.alert_history]  # fmt: skip
        lines += _table(("rule", "severity", "state", "fired", "resolved"), history)
    else:
        lines.append("No alert fired in this window.")
    lines += ["", "## Webhook deliveries", ""]
    deliveries = report.webhook_deliveries
    by_status = deliveries["by_status"]
    lines += _table(("status", "deliveries"), by_status.items()) if by_status else ["None."]
    if deliveries["problems"]:
        problems = [(p["receiver"], p["rule"], p["status"], str(p["attempts"]), p["last_error"] or "")
                for p in deliveries["problems"]]  # fmt: skip
        lines += [
            "",
            *_table(("receiver", "notification", "status", "attempts", "error"), problems),
        ]
    lines += ["", "## Notes", "", *(f"- {k}: {v}" for k, v in report.notes.items())]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _actions(title: str, table: Mapping[str, Mapping[str, int]]) -> list[str]:
    actions = sorted({a for counts in table.values() for a in counts})
    rows = [(name, *(counts.get(a, 0) for a in actions)) for name, counts in table.items()]
    return _table((title, *actions), rows)


def _stats(section: Mapping[str, Any]) -> list[str]:
    rows = figures.stat_rows(section)
    return _table(("metric", "mean", "min", "max"), rows) if rows else []
