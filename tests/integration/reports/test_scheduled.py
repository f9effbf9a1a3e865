"""Scheduled reports through the real outbox to a real HTTP receiver: signed like alerts, once
per slot however many schedulers run."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from monitor.config import ReportSettings, Settings
from monitor.config_types import WebhookReceiver
from monitor.store.alerts import list_deliveries
from monitor.upstream.backend import BackendClient
from monitor.upstream.webhook import ThreadedPost
from monitor.workers.background import Monitoring
from monitor.workers.outbox import OutboxWorker
from monitor.workers.reports import ReportScheduler
from tests.integration.reports.known_store import EXPECTED, UNTIL, fill
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

SECRET = "receiver-secret-123"


async def test_a_daily_report_is_delivered_once_and_signed(engine: Engine) -> None:
    fill(engine)
    settings = ReportSettings.model_validate({"schedule": "daily", "at": "12:00", "window": "24h"})
    now = UNTIL + timedelta(minutes=3)  # the 12:00 slot has just passed

    def clock() -> datetime:
        return now

    receiver = RecordingReceiver(secret=SECRET)
    with ReceiverServer(receiver) as server:
        receivers = [
            WebhookReceiver.model_validate(
                {"name": "ops", "url": server.url, "secret": SECRET, "timeout_s": 5}
            ),
            WebhookReceiver.model_validate(
                {"name": "am", "url": server.url, "kind": "alertmanager"}
            ),
        ]
        first = ReportScheduler(engine, settings, receivers, now=clock)
        replica = ReportScheduler(engine, settings, receivers, now=clock)
        assert await first.step() == 1  # one receiver: alertmanager takes no reports
        assert await first.step() == 0 and await replica.step() == 0
        outbox = OutboxWorker(engine, receivers, ThreadedPost(), now=clock, rng=random.Random(1))
        assert await outbox.step() == 1
        (delivery,) = receiver.wait_for(1)

    assert delivery.verified is True and delivery.key == "report:2026-02-03T12:00:00Z"
    assert delivery.headers["x-gemma-monitor-event"] == "report"
    payload = delivery.json()
    assert payload["kind"] == "report" and payload["format"] == "md"
    assert payload["since"] == (UNTIL - timedelta(hours=24)).isoformat()
    assert payload["headline"].startswith("degraded: 96.2 % success")
    assert payload["body"].startswith("# Gemma Monitor health report")
    summary = payload["summary"]
    assert summary["performance_summary"]["total_requests"] == EXPECTED["total_requests"]
    assert "performance_metrics" not in summary and "quality_metrics" not in summary
    reports = [d for d in list_deliveries(engine) if d.kind == "report"]
    assert [(d.receiver, d.status) for d in reports] == [("ops", "delivered")]

    now = UNTIL + timedelta(hours=5)  # same slot, later: still nothing new
    assert await ReportScheduler(engine, settings, receivers, now=clock).step() == 0


async def test_the_scheduler_and_an_outbox_run_with_alerting_off(
    engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(
        database_url="sqlite:///unused.db",
        spool_dir=str(tmp_path / "spool"),
        probes={"enabled": False},
        health={"enabled": False},
        alerts={"enabled": False},
        reports={"schedule": "6h"},
    )
    monitoring = Monitoring.from_settings(settings, engine, BackendClient(settings))
    names = {w.name for w in monitoring.workers}
    assert {"reports", "outbox"} <= names and "alerts" not in names
    assert monitoring.outbox is not None
    await monitoring.start()
    await monitoring.stop()
    off = Settings(
        database_url="sqlite:///unused.db",
        spool_dir=str(tmp_path / "spool2"),
        probes={"enabled": False},
        health={"enabled": False},
        alerts={"enabled": False},
    )
    quiet = Monitoring.from_settings(off, engine, BackendClient(off))
    assert "reports" not in {w.name for w in quiet.workers} and quiet.outbox is None
