"""Alert evaluation over real records in a real database, with an injected clock, and the
outbox delivering to a real webhook receiver (signatures, downtime, 500s, order, restarts)."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import and_, delete, event, or_, update
from sqlalchemy.engine import Engine

from monitor.alerts.rules import default_rules
from monitor.alerts.signing import SIGNATURE_HEADER
from monitor.config_types import AlertRule, WebhookReceiver
from monitor.record import RequestRecord
from monitor.store import alerts as alert_store
from monitor.store import rollups
from monitor.store.inserts import insert_rows, record_row
from monitor.store.models import quality_scores_table, requests_table, rollup_state_table
from monitor.store.samples import ProbeValue, QualityScore, write_probe_values, write_quality_scores
from monitor.store.summaries import summarize, summarize_windows
from monitor.upstream.webhook import ThreadedPost
from monitor.workers.alerting import AlertEngine
from monitor.workers.outbox import OutboxWorker
from tests.integration.store.test_rollups import random_records
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECRET = "receiver-secret-123"


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def success_rule(**overrides: object) -> AlertRule:
    values: dict[str, object] = {
        "name": "low_success_rate",
        "metric": "success_rate",
        "comparison": "<",
        "threshold": 0.95,
        "window": "60s",
        "for": "20s",
        "resolve_after": "30s",
        "severity": "high",
        "description": "Success rate below 95 %",
    }
    values.update(overrides)
    return AlertRule.model_validate(values)


def traffic(engine: Engine, at: datetime, outcome: str, count: int, prefix: str) -> None:
    records = [
        RequestRecord(
            id=f"{prefix}-{i}",
            ts=at + timedelta(milliseconds=i),
            route="/v1/chat/completions",
            protocol="openai",
            outcome=outcome,  # type: ignore[arg-type]
            http_status=200 if outcome == "ok" else 502,
            latency_ms=100.0 + i,
            completion_tokens=10,
            tokens_per_s=50.0,
        )
        for i in range(count)
    ]
    insert_rows(engine, [record_row(r) for r in records])


def receiver_config(server: ReceiverServer, **overrides: object) -> WebhookReceiver:
    values: dict[str, object] = {"name": "ops", "url": server.url, "secret": SECRET, "timeout_s": 5}
    values.update(overrides)
    return WebhookReceiver.model_validate(values)


def outbox_for(
    engine: Engine, receivers: list[WebhookReceiver], clock: Clock, **kwargs: object
) -> OutboxWorker:
    return OutboxWorker(
        engine,
        receivers,
        ThreadedPost(),
        now=clock,
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(autouse=True)
def nothing_rolled_up(engine: Engine) -> None:
    """The rollups' watermark before every record of these tests. The migration puts it at
    its own time, and these records, written straight into the store at an earlier time (not
    through the recorder, which has late records rolled up again), are not rolled up: a
    summary reads what the rollups hold before the watermark."""
    with engine.begin() as conn:
        conn.execute(update(rollup_state_table).values(sealed_until=T0 - timedelta(days=3)))


async def test_summary_reads_requests_probes_and_the_baseline(engine: Engine) -> None:
    traffic(engine, T0, "ok", 8, "ok")
    traffic(engine, T0 + timedelta(seconds=1), "backend_error", 2, "err")
    traffic(engine, T0 + timedelta(seconds=2), "blocked_input", 2, "blk")
    traffic(engine, T0 + timedelta(seconds=3), "rate_limited", 3, "rl")
    write_probe_values(
        engine,
        [
            ProbeValue(T0, "system", "proxy_rss_mb", 100.0, "proxy:1"),
            ProbeValue(T0 + timedelta(seconds=5), "system", "proxy_rss_mb", 300.0, "proxy:1"),
            ProbeValue(T0, "gpu", "gpu_memory_pct", 50.0, "0"),
            ProbeValue(T0, "gpu", "gpu_memory_pct", 97.0, "1"),
            ProbeValue(T0, "health", "backend_up", 1.0, "b"),
            ProbeValue(T0 + timedelta(seconds=9), "health", "backend_up", 0.0, "b"),
        ],
    )
    found = summarize(engine, T0, T0 + timedelta(minutes=1))
    f = found.fields
    assert f["total_requests"] == 15
    assert f["successful_requests"] == 8
    assert f["success_rate"] == pytest.approx(8 / 10)  # refusals of ours are not failures
    assert f["blocked_rate"] == pytest.approx(2 / 15)
    assert f["mean_response_time_s"] == pytest.approx(0.1035)  # of the 8 ok: 100..107 ms
    assert f["p50_response_time_s"] == pytest.approx(0.1035)
    assert f["mean_tokens_per_s"] == 50.0
    assert f["process_memory_mb"] == 200.0
    assert f["gpu_memory_pct"] == 97.0
    assert f["backend_up"] == 0.0  # the latest check wins
    assert f["blocked_rate_baseline"] == pytest.approx(2 / 15)
    (one,) = summarize_windows(engine, [60.0], T0 + timedelta(minutes=1)).values()
    assert one.fields == f  # the alert worker's batch read gives the same figures
    empty = summarize(engine, T0 + timedelta(hours=2), T0 + timedelta(hours=3)).fields
    assert empty["total_requests"] == 0
    assert empty["successful_requests"] is None  # idle is not an outage
    assert empty["success_rate"] is None and empty["backend_up"] is None


PROBES = (
    "process_memory_mb", "mean_memory_mb", "mean_cpu_percent", "mean_gpu_memory_mb",
    "gpu_memory_pct", "gpu_temperature_c", "backend_up", "energy_j_per_request",
    "energy_j_per_1k_tokens",
)  # fmt: skip


async def test_each_window_reads_only_what_its_rules_compare(engine: Engine) -> None:
    traffic(engine, T0, "ok", 8, "ok")
    traffic(engine, T0 + timedelta(seconds=1), "blocked_input", 2, "blk")
    write_probe_values(engine, [ProbeValue(T0, "health", "backend_up", 1.0, "b")])
    until = T0 + timedelta(minutes=1)
    asked = {
        60.0: {"backend_up"},
        300.0: {"success_rate", "blocked_rate", "blocked_rate_baseline"},
        600.0: {"p95_response_time_s"},
        900.0: {"no_such_field"},  # none of the queries gives it: everything is read
    }
    found = summarize_windows(engine, asked, until)
    one = summarize(engine, until - timedelta(minutes=1), until).fields
    # the probes are one query (a few rows a minute): all of their fields come with it
    assert found[60.0].fields["backend_up"] == 1.0
    assert found[60.0].fields == {k: one[k] for k in PROBES}
    five = summarize(engine, until - timedelta(minutes=5), until).fields
    assert found[300.0].fields == {
        name: five[name]
        for name in (
            "total_requests", "successful_requests", "success_rate", "blocked_rate",
            "mean_response_time_s", "mean_tokens_per_s", "total_tokens", "blocked_rate_baseline",
        )
    }  # fmt: skip
    assert found[300.0].fields["blocked_rate"] == pytest.approx(2 / 10)
    assert found[600.0].fields == {
        f"p{p}_response_time_s": summarize(engine, until - timedelta(minutes=10), until).fields[
            f"p{p}_response_time_s"
        ]
        for p in (50, 95, 99)
    }
    assert found[900.0].fields == summarize(engine, until - timedelta(minutes=15), until).fields


async def test_the_default_rules_sort_no_latencies(engine: Engine) -> None:
    """No default rule compares a percentile, so an evaluation never sorts a window's
    latencies: the query that does (a window function, or `percentile_cont`) reads every
    successful request of the window, and the worker runs every 15 s."""
    traffic(engine, T0 - timedelta(seconds=30), "ok", 20, "ok")
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.lower())

    alerts = AlertEngine(engine, default_rules(), [], now=Clock())
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await alerts.step()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert any("requests" in s for s in statements)  # the rules' windows were read
    assert not [s for s in statements if " over (" in s or "percentile_cont" in s]
    custom = success_rule(metric="p95_response_time_s", comparison=">", threshold=1.0)
    alerts = AlertEngine(engine, [custom], [], now=Clock())
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await alerts.step()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [s for s in statements if " over (" in s or "percentile_cont" in s]


async def test_the_day_and_the_windows_read_the_rollups_with_the_raw_rows_figures(
    engine: Engine,
) -> None:
    """The day-long baseline and a window's request and quality figures are read from the
    rollups where they hold them, from the raw rows elsewhere, and come out as the raw rows
    alone give them (the latency percentiles are read from the raw rows: not compared here)."""
    rng = random.Random(11)
    until = T0 + timedelta(seconds=17)
    start = until - timedelta(hours=24)
    records = random_records(
        rng, 1200, start - timedelta(minutes=5), timedelta(hours=24, minutes=5)
    )
    for i, record in enumerate(records):
        record.weight = 1 + i % 3  # sampling's weights count
    insert_rows(engine, [record_row(r) for r in records])
    write_quality_scores(
        engine,
        [
            QualityScore(r.id, r.ts, scorer, "overall", rng.random())
            for r in records[::4]
            for scorer in ("heuristic", "embedding")
        ],
    )

    def baselines() -> tuple[float | None, float | None]:
        fields = summarize(engine, until - timedelta(minutes=1), until).fields
        return fields["blocked_rate_baseline"], fields["quality_overall_baseline"]

    windows = (timedelta(minutes=10), timedelta(hours=1), timedelta(hours=5, seconds=7))

    def request_figures() -> list[dict[str, float | None]]:
        found = summarize_windows(
            engine, {w.total_seconds(): {"success_rate", "quality_overall"} for w in windows}, until
        )
        return [found[w.total_seconds()].fields for w in windows]

    from_raw = baselines()
    assert from_raw[0] is not None and from_raw[1] is not None
    windows_from_raw = request_figures()
    assert all(
        f["total_requests"] and f["mean_response_time_s"] and f["quality_overall"]
        for f in windows_from_raw
    )
    watermark = until - timedelta(minutes=3, seconds=17)
    rollups.rebuild(engine, start - timedelta(hours=1), watermark)
    # what the rollups hold, gone from the raw tables (as retention prunes them): no summary
    # may need it any more. Kept: the first minute of the day and of each window, which they
    # read from the raw rows (it is only partly theirs)
    first_whole = start.replace(second=0) + timedelta(minutes=1)
    edges = [(until - w).replace(second=0, microsecond=0) for w in windows]
    with engine.begin() as conn:
        conn.execute(update(rollup_state_table).values(sealed_until=watermark))
        for table in (requests_table, quality_scores_table):
            ts = table.c.ts
            kept = [and_(ts >= edge, ts < edge + timedelta(minutes=1)) for edge in edges]
            conn.execute(delete(table).where(ts >= first_whole, ts < watermark, ~or_(*kept)))
    blocked, quality = baselines()
    assert blocked == pytest.approx(from_raw[0], rel=1e-9)
    assert quality == pytest.approx(from_raw[1], rel=1e-9)
    for rolled, raw in zip(request_figures(), windows_from_raw, strict=True):
        assert rolled == pytest.approx(raw, rel=1e-9)


async def test_the_windows_read_the_minutes_not_rolled_up_once(engine: Engine) -> None:
    """Every window ends now, so each reads the minutes the rollups do not hold yet from the
    raw rows: one evaluation reads each piece of them once, cut where a window begins, and
    each window still gets the figures it gets alone."""
    rng = random.Random(5)
    until = T0 + timedelta(seconds=17)
    records = random_records(rng, 900, until - timedelta(hours=2), timedelta(hours=2))
    insert_rows(engine, [record_row(r) for r in records])
    watermark = T0 - timedelta(minutes=2)  # the rollups' lag: two minutes and a bit
    rollups.rebuild(engine, until - timedelta(hours=3), watermark)
    with engine.begin() as conn:
        conn.execute(update(rollup_state_table).values(sealed_until=watermark))
    windows = (60.0, 300.0, 600.0, 3600.0)
    reads: list[str] = []

    def seen(conn: object, cursor: object, statement: str, params: object, *args: object) -> None:
        text = " ".join(statement.lower().split())
        if "sum(requests.weight)" in text and "from requests where" in text:
            reads.append(repr(params))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        found = summarize_windows(
            engine,
            dict.fromkeys(windows, frozenset({"success_rate", "blocked_rate_baseline"})),
            until,
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # the tail cut where the one-minute window begins (2), and the ragged first minute of
    # the 5- and 10-minute windows, the hour and the day (4): nine reads, three of the tail,
    # before the windows shared them
    assert len(reads) == len(set(reads)) == 6
    for w in windows:
        alone = summarize(engine, until - timedelta(seconds=w), until).fields
        assert found[w].fields == pytest.approx({k: alone[k] for k in found[w].fields}, rel=1e-9)
        assert found[w].fields["total_requests"]


async def test_token_sums_pass_32_bits(engine: Engine) -> None:
    """A long prompt sampled 1 in 1,000 stands for three billion tokens: summed in 64 bits,
    not refused by Postgres as out of range."""
    traffic(engine, T0, "ok", 3, "big")
    with engine.begin() as conn:
        conn.execute(
            update(requests_table)
            .where(requests_table.c.id == "big-1")
            .values(prompt_tokens=3_000_000, weight=1000)
        )
    until = T0 + timedelta(minutes=1)
    found = summarize_windows(engine, {60.0: {"total_requests"}}, until)
    assert found[60.0].fields["total_tokens"] == 3_000_000 * 1000 + 10 * 1000 + 2 * 10


async def test_fires_once_resolves_once_and_delivers_signed(engine: Engine) -> None:
    clock = Clock()
    receiver = RecordingReceiver(secret=SECRET)
    with ReceiverServer(receiver) as server:
        receivers = [receiver_config(server)]
        alerts = AlertEngine(engine, [success_rule()], receivers, now=clock)
        outbox = outbox_for(engine, receivers, clock)

        traffic(engine, clock.now - timedelta(seconds=30), "backend_error", 10, "down")
        assert await alerts.step() == []  # pending: breaching, but not yet for 20 s
        assert [a.state for a in alerts.tracker.active()] == ["pending"]
        clock.advance(10)
        assert await alerts.step() == []
        clock.advance(15)
        fired = await alerts.step()
        assert [n.kind for n in fired] == ["firing"]
        clock.advance(5)
        assert await alerts.step() == []  # still breaching: no second notification

        assert await outbox.step() == 1
        (firing,) = receiver.wait_for(1)
        assert firing.verified is True
        assert SIGNATURE_HEADER.lower() in firing.headers
        payload = firing.json()
        assert (payload["alert"], payload["state"], payload["severity"]) == (
            "low_success_rate",
            "firing",
            "high",
        )
        assert payload["value"] == 0.0 and payload["threshold"] == 0.95

        # recovery: good traffic replaces the bad in the window, clear for 30 s → resolved
        clock.advance(61)
        traffic(engine, clock.now - timedelta(seconds=5), "ok", 10, "up")
        assert await alerts.step() == []
        clock.advance(31)
        traffic(engine, clock.now - timedelta(seconds=5), "ok", 10, "up2")
        resolved = await alerts.step()
        assert [n.kind for n in resolved] == ["resolved"]
        await outbox.step()
        deliveries = receiver.wait_for(2)
        assert [d.headers["x-gemma-monitor-event"] for d in deliveries] == ["firing", "resolved"]
        assert await outbox.step() == 0  # nothing left: exactly once per transition
    stored = alert_store.list_alerts(engine)
    assert [(a["rule"], a["state"]) for a in stored] == [("low_success_rate", "resolved")]
    events = alert_store.alert_history(engine, stored[0]["fingerprint"])
    assert [e["kind"] for e in events] == ["pending", "firing", "resolved"]
    rows = alert_store.list_deliveries(engine)
    assert {(d.kind, d.status, d.attempts) for d in rows} == {
        ("firing", "delivered", 1),
        ("resolved", "delivered", 1),
    }


async def test_receiver_down_then_500s_loses_nothing_and_keeps_order(engine: Engine) -> None:
    clock = Clock()
    receiver = RecordingReceiver(secret=SECRET)
    server = ReceiverServer(receiver)  # not up yet: connection refused
    receivers = [receiver_config(server)]
    alerts = AlertEngine(
        engine, [success_rule(**{"for": 0, "resolve_after": 0})], receivers, now=clock
    )
    outbox = outbox_for(engine, receivers, clock, retry_base_s=2.0, retry_cap_s=20.0)

    traffic(engine, clock.now - timedelta(seconds=10), "backend_error", 5, "a")
    assert [n.kind for n in await alerts.step()] == ["firing"]
    clock.advance(120)  # the bad traffic leaves the window
    traffic(engine, clock.now - timedelta(seconds=10), "ok", 5, "b")
    assert [n.kind for n in await alerts.step()] == ["resolved"]

    # down: the firing one is attempted (refused) and rescheduled; the resolved one waits
    for _ in range(3):
        assert await outbox.step() == 1
        clock.advance(30)
    pending = alert_store.list_deliveries(engine, status="pending")
    assert len(pending) == 2
    firing_row = next(d for d in pending if d.kind == "firing")
    assert firing_row.attempts == 3 and firing_row.last_status is None
    assert "Connection refused" in (firing_row.last_error or "") or firing_row.last_error

    server.up()
    try:
        receiver.fail_next(1, status=503)
        assert await outbox.step() == 1  # firing again: 503, retryable
        clock.advance(30)
        assert await outbox.step() == 1  # firing delivered
        clock.advance(1)
        assert await outbox.step() == 1  # then resolved
        deliveries = receiver.wait_for(2)
        assert [d.headers["x-gemma-monitor-event"] for d in deliveries] == ["firing", "resolved"]
        assert all(d.verified for d in deliveries)
        keys = [d.key for d in receiver.deliveries]
        assert len(set(keys)) == 2  # retries reuse the notification's idempotency key
    finally:
        server.down()
    rows = {d.kind: d for d in alert_store.list_deliveries(engine)}
    assert rows["firing"].status == "delivered" and rows["firing"].attempts == 5
    assert rows["resolved"].status == "delivered"


async def test_permanent_refusal_and_removed_receiver_are_failed(engine: Engine) -> None:
    clock = Clock()
    receiver = RecordingReceiver()
    with ReceiverServer(receiver) as server:
        receivers = [receiver_config(server, secret=None), receiver_config(server, name="gone")]
        alerts = AlertEngine(engine, [success_rule(**{"for": 0})], receivers, now=clock)
        traffic(engine, clock.now - timedelta(seconds=10), "backend_error", 5, "a")
        await alerts.step()
        outbox = outbox_for(engine, receivers[:1], clock)  # "gone" left the configuration
        receiver.fail_next(1, status=404)
        assert await outbox.step() == 2
        clock.advance(600)
        assert await outbox.step() == 0
    rows = {d.receiver: d for d in alert_store.list_deliveries(engine)}
    assert rows["ops"].status == "failed" and rows["ops"].last_status == 404
    assert rows["gone"].status == "failed"
    assert rows["gone"].last_error == "receiver no longer configured"
    assert rows["gone"].attempts == 0


async def test_a_restart_neither_fires_nor_resolves_twice(engine: Engine) -> None:
    clock = Clock()
    rule = success_rule(**{"for": 0})
    first = AlertEngine(engine, [rule], [], now=clock)
    traffic(engine, clock.now - timedelta(seconds=10), "backend_error", 5, "a")
    assert [n.kind for n in await first.step()] == ["firing"]

    clock.advance(5)
    second = AlertEngine(engine, [rule], [], now=clock)  # a new process on the same database
    assert await second.step() == []
    assert [a.state for a in second.tracker.active()] == ["firing"]
    assert await second.acknowledge(second.tracker.active()[0].fingerprint, "alice")
    (stored,) = alert_store.list_alerts(engine, state="firing")
    assert stored["acknowledged_by"] == "alice"


async def test_a_dead_database_delays_notifications_without_losing_them(
    engine: Engine,
) -> None:
    clock = Clock()
    receiver = RecordingReceiver()
    with ReceiverServer(receiver) as server:
        receivers = [receiver_config(server, secret=None)]
        alerts = AlertEngine(engine, [success_rule(**{"for": 0})], receivers, now=clock)
        await alerts.start()
        traffic(engine, clock.now - timedelta(seconds=10), "backend_error", 5, "a")
        summaries = alerts._summaries(clock.now)  # read while the database is up

        def broken_save(*args: object, **kwargs: object) -> None:
            raise ConnectionError("database unreachable")

        real_save = alert_store.save_step
        alerts._summaries = lambda now: summaries  # type: ignore[method-assign]
        alert_store.save_step = broken_save  # type: ignore[assignment]
        try:
            with pytest.raises(ConnectionError):
                await alerts.step()
        finally:
            alert_store.save_step = real_save  # type: ignore[assignment]
        assert alert_store.list_deliveries(engine) == []
        clock.advance(5)
        assert await alerts.step() == []  # no new transition, but the saved-up one is stored
        outbox = outbox_for(engine, receivers, clock)
        await outbox.step()
        (delivery,) = receiver.wait_for(1)
        assert json.loads(delivery.body)


async def test_concurrent_outbox_workers_deliver_each_notification_once(engine: Engine) -> None:
    clock = Clock()
    receiver = RecordingReceiver()
    with ReceiverServer(receiver) as server:
        receivers = [receiver_config(server, secret=None)]
        rules = [success_rule(name=f"rule_{i}", **{"for": 0}) for i in range(6)]
        alerts = AlertEngine(engine, rules, receivers, now=clock)
        traffic(engine, clock.now - timedelta(seconds=10), "backend_error", 5, "a")
        assert len(await alerts.step()) == 6
        one, two = outbox_for(engine, receivers, clock), outbox_for(engine, receivers, clock)
        counts = await asyncio.gather(one.step(), two.step())
        assert sum(counts) == 6
        receiver.wait_for(6)
        assert len(receiver.deliveries) == 6


async def test_the_webhook_pool_the_workers_built_is_closed_when_they_stop(
    engine: Engine, tmp_path: Path
) -> None:
    from monitor.config import Settings
    from monitor.upstream.backend import BackendClient
    from monitor.workers.background import Monitoring

    settings = Settings(
        database_url="sqlite:///unused.db",
        spool_dir=str(tmp_path / "spool"),
        probes={"enabled": False},
        health={"enabled": False},
    )
    monitoring = Monitoring.from_settings(settings, engine, BackendClient(settings))
    assert monitoring.outbox is not None and isinstance(monitoring.outbox.post, ThreadedPost)
    await monitoring.start()
    await monitoring.stop()
    with pytest.raises(RuntimeError, match="shutdown"):  # its threads are gone with it
        await monitoring.outbox.post("http://127.0.0.1:9/", b"{}", {})


async def test_a_receivers_url_is_stored_without_its_path_or_query(engine: Engine) -> None:
    """Receiver URLs often carry their credential (Slack's path, a `?token=`): the outbox row
    keeps the origin only, for the operator to see where it went; delivery reads the URL from
    the configuration."""
    clock = Clock()
    receiver = RecordingReceiver(secret=SECRET)
    with ReceiverServer(receiver) as server:
        url = f"{server.url}/services/T000/B000/secret-token?key=hunter2"
        receivers = [receiver_config(server, url=url)]
        alerts = AlertEngine(engine, [success_rule()], receivers, now=clock)
        outbox = outbox_for(engine, receivers, clock)
        traffic(engine, clock.now - timedelta(seconds=30), "backend_error", 10, "down")
        await alerts.step()
        clock.advance(25)
        assert [n.kind for n in await alerts.step()] == ["firing"]
        assert await outbox.step() == 1
        (delivered,) = receiver.wait_for(1)
    assert delivered.path.endswith("/services/T000/B000/secret-token")
    (row,) = alert_store.list_deliveries(engine)
    assert row.status == "delivered"
    origin = urlsplit(server.url)
    assert row.url == f"http://{origin.hostname}:{origin.port}/…"
    assert "secret-token" not in row.url and "hunter2" not in row.url
