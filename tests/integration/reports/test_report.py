"""Health reports of a store with known contents (`known_store`), on SQLite and Postgres: the
seed's keys and exact figures, the streamed JSON export, the HTML page's charts, Markdown."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from monitor.record import RequestRecord
from monitor.reports.report import build_report, render, write_report
from monitor.store.histogram import GROWTH
from monitor.store.inserts import insert_rows, record_row
from monitor.store.reports import iter_quality, iter_requests
from monitor.store.samples import QualityScore, write_quality_scores
from tests.integration.reports.known_store import (
    EXACT_P95_MS,
    EXPECTED,
    HEURISTIC,
    MODEL,
    OK,
    SINCE,
    UNTIL,
    USER,
    fill,
    ok_time,
)

SEED_ENTRY_KEYS = {
    "timestamp", "response_time", "memory_usage_mb", "gpu_memory_mb", "token_count",
    "tokens_per_second", "model_name", "input_length", "success", "error_message",
}  # fmt: skip
SEED_QUALITY_KEYS = {
    "relevance_score", "coherence_score", "safety_score", "factual_accuracy", "user_satisfaction",
}  # fmt: skip
SEED_SUMMARY_KEYS = {
    "total_requests", "successful_requests", "success_rate", "avg_response_time",
    "avg_memory_usage", "avg_tokens_per_second", "p95_response_time", "total_tokens_generated",
    "avg_gpu_memory",
}  # fmt: skip


@pytest.fixture
def store(engine: Engine) -> Engine:
    fill(engine)
    return engine


def export(engine: Engine) -> dict[str, Any]:
    out = io.StringIO()
    write_report(build_report(engine, SINCE, UNTIL), "json", out, engine)
    parsed: dict[str, Any] = json.loads(out.getvalue())
    return parsed


def test_the_summary_holds_the_seed_keys_and_exact_figures(store: Engine) -> None:
    report = build_report(store, SINCE, UNTIL)

    summary = report.performance_summary
    assert set(summary) == SEED_SUMMARY_KEYS
    p95 = summary.pop("p95_response_time")
    assert summary == pytest.approx(EXPECTED)
    assert abs(p95 * 1000 - EXACT_P95_MS) <= EXACT_P95_MS * (GROWTH - 1)  # one bucket
    assert report.model_name == MODEL
    assert report.requests["outcomes"] == {
        "backend_error": 4, "blocked_input": 2, "invalid": 1, "ok": 100,
    }  # fmt: skip
    assert report.quality_summary["relevance_score"] == pytest.approx(0.8)
    assert report.quality_summary["factual_accuracy"] == pytest.approx(0.4)
    assert report.quality_summary["user_satisfaction"] == pytest.approx(5 / 6)
    assert report.quality_summary["scored_requests"] == 10
    assert report.safety["blocked_requests"] == 2
    assert report.safety["by_stage"] == {"input": {"block": 2}}
    assert report.safety["by_check"] == {"injection.ignore_previous": {"block": 2}}
    assert report.system["host_cpu_percent"] == {"mean": 50.0, "min": 50.0, "max": 50.0}
    assert report.gpu["available"] is True and set(report.gpu["gpus"]) == {"0", "1"}
    assert report.health_checks["up_share"] == 1.0 and report.health_checks["checks"] == 144
    assert [c["up"] for c in report.health_checks["latest"]] == [True]
    assert [(a["rule"], a["state"]) for a in report.alert_history] == [
        ("low_success_rate", "resolved"), ("high_memory", "firing"),
    ]  # fmt: skip
    assert [a["rule"] for a in report.current_alerts] == ["high_memory"]
    assert report.webhook_deliveries["by_status"] == {"delivered": 1, "failed": 1}
    assert [p["last_error"] for p in report.webhook_deliveries["problems"]] == ["410 Gone"]
    # a medium alert still firing at the window's end: degraded, not unhealthy
    assert report.status == "degraded"
    assert report.headline.startswith("degraded: 96.2 % success, p95 ")
    assert report.headline.endswith(", 2 alerts fired, 1 still firing")
    assert report.reasons == ("alert high_memory (medium) firing",)


def test_the_streamed_export_parses_and_matches_its_summary(store: Engine) -> None:
    doc = export(store)

    assert list(doc)[:2] == ["model_name", "export_timestamp"]
    summary = doc["performance_summary"]
    entries = doc["performance_metrics"]
    assert all(set(e) >= SEED_ENTRY_KEYS for e in entries)
    assert len(entries) == summary["total_requests"] == 107
    ok = [e for e in entries if e["success"]]
    assert len(ok) == summary["successful_requests"]
    served = [e for e in entries if e["outcome"] in ("ok", "backend_error")]
    assert summary["success_rate"] == pytest.approx(len(ok) / len(served))
    assert summary["avg_response_time"] == pytest.approx(
        sum(e["response_time"] for e in ok) / len(ok)
    )
    assert summary["total_tokens_generated"] == sum(e["token_count"] or 0 for e in entries)
    assert summary["avg_tokens_per_second"] == pytest.approx(
        sum(e["tokens_per_second"] for e in ok) / len(ok)
    )
    assert [e["timestamp"] for e in entries] == sorted(e["timestamp"] for e in entries)

    first = next(e for e in entries if e["request_id"] == "ok-000")
    assert first == {
        "timestamp": ok_time(0).isoformat(), "response_time": 0.01, "memory_usage_mb": 1000.0,
        "gpu_memory_mb": 6000.0, "token_count": 1, "tokens_per_second": 10.0,
        "model_name": MODEL, "input_length": 100, "success": True, "error_message": None,
        "request_id": "ok-000", "outcome": "ok", "sample_weight": 1,
    }  # fmt: skip
    late = next(e for e in entries if e["request_id"] == "ok-080")  # 16 h in: no GPU sample
    assert (late["memory_usage_mb"], late["gpu_memory_mb"]) == (2000.0, None)
    error = next(e for e in entries if e["outcome"] == "backend_error")
    assert error["success"] is False and error["error_message"] == "backend_error: GENERATION_ERROR"
    assert error["response_time"] == 30.0

    quality = doc["quality_metrics"]
    assert len(quality) == 10 and all(set(q) >= SEED_QUALITY_KEYS for q in quality)
    assert quality[0] == {
        "timestamp": ok_time(0).isoformat(), "request_id": "ok-000",
        "relevance_score": HEURISTIC["relevance"], "coherence_score": HEURISTIC["coherence"],
        "safety_score": HEURISTIC["safety"], "factual_accuracy": HEURISTIC["factual_accuracy"],
        "user_satisfaction": USER[0],
    }  # fmt: skip
    assert [q["user_satisfaction"] for q in quality] == [*USER, None, None, None, None]
    assert doc["quality_summary"]["user_satisfaction"] == pytest.approx(
        sum(q["user_satisfaction"] for q in quality if q["user_satisfaction"] is not None) / 6
    )
    assert "estimated" in doc["report"]["notes"] and "exact" in doc["report"]["notes"]


def test_pages_neither_skip_nor_repeat_rows(store: Engine) -> None:
    whole = [r.id for r in iter_requests(store, SINCE, UNTIL)]
    paged = [r.id for r in iter_requests(store, SINCE, UNTIL, page_size=7)]
    assert paged == whole and len(set(whole)) == len(whole) == 107
    assert whole[0] == "ok-000" and "before" not in whole and "after" not in whole


def test_a_window_without_data_is_an_empty_report(engine: Engine) -> None:
    doc = export(engine)
    assert doc["performance_metrics"] == [] and doc["quality_metrics"] == []
    assert doc["performance_summary"]["total_requests"] == 0
    assert doc["performance_summary"]["success_rate"] is None
    assert "avg_gpu_memory" not in doc["performance_summary"]  # no GPU, no key
    assert doc["report"]["headline"] == "healthy: no requests in this window, no alerts"
    page = render(build_report(engine, SINCE, UNTIL), "html")
    assert "no GPU was sampled in this window" in page


class Charts(HTMLParser):
    """Every chart's points and threshold, and every URL-bearing attribute, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.points: dict[str, dict[str, list[tuple[str, float]]]] = {}
        self.thresholds: dict[str, float] = {}
        self.tags: set[str] = set()
        self.references: list[str] = []
        self._chart: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.references += [v for k, v in a.items() if k in ("href", "src") and v]
        if tag == "svg":
            self._chart = a["data-chart"]
            self.points[str(self._chart)] = {}
        elif tag == "circle" and self._chart is not None:
            series = self.points[self._chart].setdefault(str(a["data-series"]), [])
            series.append((str(a["data-t"]), float(str(a["data-v"]))))
        elif tag == "line" and a.get("class") == "threshold" and self._chart is not None:
            self.thresholds[self._chart] = float(str(a["data-threshold"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None


def test_the_html_page_draws_the_report_s_numbers(store: Engine) -> None:
    report = build_report(store, SINCE, UNTIL)
    page = render(report, "html")
    doc = json.loads(render(report, "json"))
    parser = Charts()
    parser.feed(page)

    for key, chart in doc["series"].items():
        drawn = parser.points.get(key, {})
        expected = {
            name: [(t, v) for t, v in points if v is not None]
            for name, points in chart["series"].items()
        }
        assert drawn == {n: p for n, p in expected.items() if p}, key
    assert set(parser.points) >= {
        "latency", "throughput", "tokens_per_s", "success_rate", "outcomes", "blocked",
        "memory", "gpu_memory", "gpu_utilization", "quality",
    }  # fmt: skip
    assert sum(v for _, v in parser.points["throughput"]["requests"]) == 107
    assert sum(v for _, v in parser.points["blocked"]["blocked_input"]) == 2
    # the seed's thresholds, from the built-in rules, in each chart's unit
    assert parser.thresholds == {
        "latency": 10.0, "tokens_per_s": 5.0, "success_rate": 95.0, "memory": 8192.0,
    }  # fmt: skip
    assert report.headline in page
    assert "http://" not in page and "https://" not in page and parser.references == []
    assert not parser.tags & {"script", "link", "img", "iframe"}
    assert "@media print" in page


def test_markdown_shows_the_same_figures(store: Engine) -> None:
    report = build_report(store, SINCE, UNTIL)
    md = render(report, "md")
    assert md.startswith("# Gemma Monitor health report\n")
    assert f"**{report.headline}**" in md
    assert "| success rate | 96.2 % | alert when < 95.0 % |" in md
    assert "| mean response time | 0.505 s | alert when > 10.000 s |" in md
    assert "| requests | 107 |  |" in md
    assert "| high_memory | medium | firing |" in md
    assert "| delivered | 1 |" in md and "| failed | 1 |" in md


def test_long_windows_chart_by_the_day(store: Engine) -> None:
    report = build_report(store, UNTIL - timedelta(days=30), UNTIL)
    assert report.step_s == 86400
    assert report.performance_summary["total_requests"] == 108  # "before" is in this one
    throughput = next(c for c in report.charts if c.key == "throughput")
    assert len(throughput.series[0].points) == 30
    assert sum(v or 0 for _, v in throughput.series[0].points) == 108
    assert OK == 100


def test_pages_hold_rows_that_share_a_moment(engine: Engine) -> None:
    moment = SINCE + timedelta(hours=1)
    times = [moment] * 10 + [UNTIL - timedelta(minutes=1), SINCE]
    records = [
        RequestRecord(id=f"r{i:02d}", ts=ts, route="/v1/chat/completions", protocol="openai")
        for i, ts in enumerate(times)
    ]
    insert_rows(engine, [record_row(r) for r in records])
    scores = [
        QualityScore(f"r{i:02d}", moment, "heuristic", metric, i / 10)
        for i in range(10)
        for metric in ("relevance", "coherence", "overall")
    ]
    write_quality_scores(engine, scores)

    ids = [r.id for r in iter_requests(engine, SINCE, UNTIL, page_size=3)]
    assert ids == ["r11", *(f"r{i:02d}" for i in range(10)), "r10"]
    scored = list(iter_quality(engine, SINCE, UNTIL, page_size=2))
    assert [q.request_id for q in scored] == [f"r{i:02d}" for i in range(10)]
    assert [q.scores["coherence_score"] for q in scored] == [i / 10 for i in range(10)]
    assert {q.scores["user_satisfaction"] for q in scored} == {None}
