"""The JSON export: the seed's export format at its core, key for key, and the report beside it.

Keys, in order: `model_name`, `export_timestamp`, `report` (window, status, headline, notes,
thresholds), the seed's `performance_summary`, `quality_summary` and `current_alerts`, then
the sections the seed did not have (`requests`, `safety`, `system`, `gpu`, `health_checks`,
`alert_history`, `webhook_deliveries`, `series` for charts), and last the seed's per-request
lists `performance_metrics` and `quality_metrics`.

The lists are streamed: `iter_json` reads the window's rows from the store a page at a time
(`store.reports.iter_requests`, `iter_quality`) and yields the text as it goes, so exporting a
month of a busy store holds one page in memory, never the month. Without an engine the lists
are left out (the summary a scheduled report sends).

A `performance_metrics` entry: `timestamp` (ISO 8601, UTC), `response_time` (seconds, from
the record's `latency_ms`), `memory_usage_mb` and `gpu_memory_mb` (the probe samples in
effect when the request was made, see `store.reports.iter_requests`), `token_count`
(completion tokens), `tokens_per_second`, `model_name`, `input_length` (characters),
`success` (outcome `ok`), `error_message` (None when ok, else the outcome and error code),
and beside them `request_id`, `outcome` and `sample_weight` (the requests the entry stands
for: 1, or N for a success kept by "1 in N" sampling). A `quality_metrics` entry: `timestamp`
(when scored), `request_id`, and the seed's five scores (`store.reports.QUALITY_EXPORT` says
which scorer's metric each is), one entry per request and moment of scoring.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import IO, TYPE_CHECKING, Any

import orjson

from monitor.reports.model import HealthReport
from monitor.store.reports import ExportedQuality, ExportedRequest, iter_quality, iter_requests

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

BATCH = 500  # entries per yielded piece of text


def _entry(entry: dict[str, Any]) -> str:
    """One entry as compact JSON (orjson: a tenth of the standard encoder's time per entry,
    which counts at a million entries; a NaN would be null, never the invalid `NaN`)."""
    return orjson.dumps(entry).decode()


def document(report: HealthReport) -> dict[str, Any]:
    """The report without its per-request lists: small, whatever the window."""
    return {
        "model_name": report.model_name,
        "export_timestamp": report.export_timestamp.isoformat(),
        "report": {
            "since": report.since.isoformat(),
            "until": report.until.isoformat(),
            "status": report.status,
            "headline": report.headline,
            "reasons": list(report.reasons),
            "step_s": report.step_s,
            "thresholds": {
                metric: {
                    "rule": t.rule,
                    "comparison": t.comparison,
                    "value": t.value,
                    "description": t.description,
                }
                for metric, t in report.thresholds.items()
            },
            "notes": report.notes,
        },
        "performance_summary": report.performance_summary,
        "quality_summary": report.quality_summary,
        "current_alerts": report.current_alerts,
        "requests": report.requests,
        "safety": report.safety,
        "system": report.system,
        "gpu": report.gpu,
        "health_checks": report.health_checks,
        "alert_history": report.alert_history,
        "webhook_deliveries": report.webhook_deliveries,
        "series": {
            chart.key: {
                "title": chart.title,
                "unit": chart.unit,
                "threshold": chart.threshold,
                "series": {s.name: [[t.isoformat(), v] for t, v in s.points] for s in chart.series},
            }
            for chart in report.charts
        },
    }


def performance_entry(row: ExportedRequest) -> dict[str, Any]:
    ok = row.outcome == "ok"
    return {
        "timestamp": row.ts.isoformat(),
        "response_time": None if row.latency_ms is None else row.latency_ms / 1000,
        "memory_usage_mb": row.memory_mb,
        "gpu_memory_mb": row.gpu_memory_mb,
        "token_count": row.completion_tokens,
        "tokens_per_second": row.tokens_per_s,
        "model_name": row.model,
        "input_length": row.input_chars,
        "success": ok,
        "error_message": None if ok else _error(row),
        "request_id": row.id,
        "outcome": row.outcome,
        "sample_weight": row.weight,
    }


def quality_entry(row: ExportedQuality) -> dict[str, Any]:
    return {"timestamp": row.ts.isoformat(), "request_id": row.request_id, **row.scores}


def _error(row: ExportedRequest) -> str:
    return row.outcome if row.error_code is None else f"{row.outcome}: {row.error_code}"


def iter_json(report: HealthReport, engine: Engine | None = None) -> Generator[str, None, None]:
    """The export as pieces of text; with `engine`, the per-request lists streamed from it."""
    head = json.dumps(document(report), indent=2, ensure_ascii=False)
    if engine is None:
        yield head + "\n"
        return
    yield head[: head.rindex("}")].rstrip() + ',\n  "performance_metrics": ['
    since, until = report.since, report.until
    yield from _entries(performance_entry(r) for r in iter_requests(engine, since, until))
    yield '],\n  "quality_metrics": ['
    yield from _entries(quality_entry(r) for r in iter_quality(engine, since, until))
    yield "]\n}\n"


def _entries(entries: Iterator[dict[str, Any]]) -> Iterator[str]:
    batch: list[str] = []
    written = False
    for entry in entries:
        batch.append(_entry(entry))
        if len(batch) == BATCH:
            yield ("," if written else "") + "\n    " + ",\n    ".join(batch)
            batch, written = [], True
    if batch:
        yield ("," if written else "") + "\n    " + ",\n    ".join(batch)
        written = True
    if written:
        yield "\n  "


def write_json(report: HealthReport, out: IO[str], engine: Engine | None = None) -> None:
    """Write the export to `out` as it is produced."""
    for piece in iter_json(report, engine):
        out.write(piece)
