"""A store with known contents, and the figures a report of it must show.

One day, `SINCE` to `UNTIL`: 100 `ok` requests every 12 minutes with latencies 10, 20, ...
1000 ms, 4 backend errors, 2 requests blocked on input (with a blocking verdict), 1 invalid;
one request just before the window and one at its end (both outside). Process memory sampled
every 10 minutes, 1000 MB for the first 12 hours and 2000 MB after; two GPUs (4000 and
2000 MB) for the first 12 hours only; the backend up at every check. Ten requests scored by
the heuristic scorer, six by users. Two alerts fired: one resolved, one (medium) still
firing. Two webhook deliveries, one delivered, one failed. Rollups rebuilt over it all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from monitor.alerts.state import Alert, AlertState
from monitor.alerts.webhooks import OutgoingWebhook
from monitor.config_types import AlertRule
from monitor.guard.verdict import Action, Finding, Stage, Verdict
from monitor.record import RequestRecord
from monitor.store import rollups
from monitor.store.alerts import Enqueued, finish, list_deliveries, save_step
from monitor.store.inserts import insert_rows, record_row
from monitor.store.samples import ProbeValue, QualityScore, write_probe_values, write_quality_scores

UNTIL = datetime(2026, 2, 3, 12, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=24)
OK = 100
MODEL = "gemma-3-1b"

EXPECTED = {
    "total_requests": 107,
    "successful_requests": 100,
    "success_rate": 100 / 104,
    "avg_response_time": 0.505,  # mean of 10 ... 1000 ms
    "avg_memory_usage": 1500.0,
    "avg_tokens_per_second": 12.0,
    "total_tokens_generated": 5050,
    "avg_gpu_memory": 6000.0,
}
EXACT_P95_MS = 950.5  # linear interpolation between closest ranks, as Postgres computes it


def ok_time(k: int) -> datetime:
    return SINCE + timedelta(minutes=12 * k, seconds=30)


def _block_verdict() -> dict[str, object]:
    finding = Finding(
        "injection.ignore_previous", "injection", Action.BLOCK, "injection",
        path="messages[0].content", score=0.97,
    )  # fmt: skip
    verdict = Verdict(
        stage=Stage.INPUT, policy="default", action=Action.BLOCK, findings=(finding,),
        latency_us=50,
    )  # fmt: skip
    return verdict.as_dict()


def _records() -> list[RequestRecord]:
    def record(rid: str, ts: datetime, **fields: object) -> RequestRecord:
        return RequestRecord(
            id=rid, ts=ts, route="/v1/chat/completions", protocol="openai", model=MODEL,
            backend="http://127.0.0.1:8080", **fields,  # type: ignore[arg-type]
        )  # fmt: skip

    records = [
        record(
            f"ok-{k:03d}",
            ok_time(k),
            outcome="ok",
            latency_ms=10.0 * (k + 1),
            prompt_tokens=5,
            completion_tokens=k + 1,
            tokens_per_s=10.0 + k % 5,
            input_chars=100 + k,
        )
        for k in range(OK)
    ]
    records += [
        record(
            f"err-{j}",
            SINCE + timedelta(minutes=30) + j * timedelta(hours=5),
            outcome="backend_error",
            error_code="GENERATION_ERROR",
            http_status=502,
            latency_ms=30000.0,
        )
        for j in range(4)
    ]
    records += [
        record(
            f"blocked-{j}",
            SINCE + timedelta(hours=1) + j * timedelta(hours=7),
            outcome="blocked_input",
            error_code="CONTENT_FILTERED",
            http_status=400,
            latency_ms=3.0,
            verdicts=[_block_verdict()],
        )
        for j in range(2)
    ]
    records.append(
        record(
            "invalid",
            SINCE + timedelta(hours=2),
            outcome="invalid",
            error_code="VALIDATION_ERROR",
            http_status=400,
        )
    )
    records.append(record("before", SINCE - timedelta(microseconds=1), latency_ms=99.0))
    records.append(record("after", UNTIL, latency_ms=99.0))
    return records


def _probes() -> list[ProbeValue]:
    values = []
    for n in range(144):
        ts = SINCE + timedelta(minutes=10 * n)
        values.append(ProbeValue(ts, "system", "backend_rss_mb", 1000.0 if n < 72 else 2000.0,
                                 "backend"))  # fmt: skip
        values.append(ProbeValue(ts, "system", "proxy_rss_mb", 300.0, "proxy"))
        values.append(ProbeValue(ts, "system", "host_cpu_percent", 50.0, "host"))
        values.append(ProbeValue(ts, "health", "backend_up", 1.0, "http://127.0.0.1:8080",
                                 "healthy"))  # fmt: skip
        if n < 72:
            values.append(ProbeValue(ts, "gpu", "gpu_memory_used_mb", 4000.0, "0"))
            values.append(ProbeValue(ts, "gpu", "gpu_memory_used_mb", 2000.0, "1"))
            values.append(ProbeValue(ts, "gpu", "gpu_utilization_percent", 80.0, "0"))
    return values


HEURISTIC = {"relevance": 0.8, "coherence": 0.6, "safety": 1.0, "factual_accuracy": 0.4,
             "overall": 0.7}  # fmt: skip
USER = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # ok-000 ... ok-005


def _scores() -> list[QualityScore]:
    scores = [
        QualityScore(f"ok-{k:03d}", ok_time(k), "heuristic", metric, value)
        for k in range(10)
        for metric, value in HEURISTIC.items()
    ]
    scores += [
        QualityScore(f"ok-{k:03d}", ok_time(k), "user", "satisfaction", value)
        for k, value in enumerate(USER)
    ]
    return scores


def _alert(name: str, metric: str, severity: str, state: AlertState, fired: datetime,
           resolved: datetime | None) -> Alert:  # fmt: skip
    rule = AlertRule.model_validate(
        {"name": name, "metric": metric, "comparison": ">", "threshold": 1, "window": "5m",
         "severity": severity, "description": f"{name} description"}
    )  # fmt: skip
    return Alert(
        fingerprint=name[:16], rule=rule, labels={}, state=state,
        pending_since=fired - timedelta(minutes=1), value=2.0, threshold=1.0,
        fired_at=fired, resolved_at=resolved,
    )  # fmt: skip


def fill(engine: Engine) -> None:
    insert_rows(engine, [record_row(r) for r in _records()])
    write_probe_values(engine, _probes())
    write_quality_scores(engine, _scores())
    alerts = [
        _alert("low_success_rate", "success_rate", "high", "resolved",
               SINCE + timedelta(hours=2), SINCE + timedelta(hours=3)),
        _alert("high_memory", "process_memory_mb", "medium", "firing",
               SINCE + timedelta(hours=20), None),
    ]  # fmt: skip
    enqueued = [
        Enqueued(OutgoingWebhook("ops", "http://127.0.0.1:9/hook", b"{}", {}, f"k{i}"),
                 "low_success_rate", "low_success_rate", "firing")
        for i in range(2)
    ]  # fmt: skip
    save_step(engine, alerts, [], enqueued, SINCE + timedelta(hours=2))
    first, second = sorted(list_deliveries(engine), key=lambda d: d.id)
    done = SINCE + timedelta(hours=2, seconds=5)
    finish(engine, first.id, status="delivered", attempted=True, last_status=200,
           last_error=None, next_attempt_at=None, now=done)  # fmt: skip
    finish(engine, second.id, status="failed", attempted=True, last_status=410,
           last_error="410 Gone", next_attempt_at=None, now=done)  # fmt: skip
    rollups.rebuild(engine, SINCE - timedelta(hours=1), UNTIL + timedelta(hours=1))
