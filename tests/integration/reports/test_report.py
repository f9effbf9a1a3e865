"""`gemma-monitor report`: a window of the store as JSON, Markdown and HTML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from monitor.config_types import AlertRule
from monitor.record import RequestRecord
from monitor.reports.report import build_report, render
from monitor.store import migrate
from monitor.store.inserts import insert_rows, record_row
from monitor.workers.alerting import AlertEngine


def seed(engine: Engine, now: datetime) -> None:
    records = [
        RequestRecord(
            id=f"r{i}",
            ts=now - timedelta(minutes=30, seconds=i),
            route="/v1/chat/completions",
            protocol="openai",
            outcome="ok" if i % 4 else "backend_error",
            latency_ms=200.0 + i,
            completion_tokens=10,
            tokens_per_s=25.0,
        )
        for i in range(20)
    ]
    insert_rows(engine, [record_row(r) for r in records])


async def test_report_holds_summary_outcomes_and_alerts(engine: Engine) -> None:
    now = datetime.now(UTC)
    seed(engine, now)
    rule = AlertRule.model_validate(
        {
            "name": "low_success_rate",
            "metric": "success_rate",
            "comparison": "<",
            "threshold": 0.95,
            "window": "1h",
            "severity": "high",
        }
    )
    await AlertEngine(engine, [rule], [], now=lambda: now).step()
    report = build_report(engine, now - timedelta(hours=1), now)
    assert report["outcomes"] == {"backend_error": 5, "ok": 15}
    assert report["summary"]["success_rate"] == 0.75
    (alert,) = report["alerts"]
    assert (alert["rule"], alert["state"]) == ("low_success_rate", "firing")
    md = render(report, "md")
    assert "| success rate | 75.0% |" in md and "| low_success_rate | high | firing |" in md
    page = render(report, "html")
    assert page.startswith("<!doctype html>") and "low_success_rate" in page
    assert json.loads(render(report, "json"))["outcomes"]["ok"] == 15
    empty = build_report(engine, now - timedelta(days=3), now - timedelta(days=2))
    assert empty["alerts"] == [] and "No alert fired" in render(empty, "md")


def test_report_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**os.environ, "MONITOR_DATABASE_URL": url}
    command = [sys.executable, "-m", "monitor", "report", "--format", "json", "--window", "2h"]
    refused = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert refused.returncode == 2 and "db upgrade" in refused.stderr
    migrate.upgrade(url)
    from monitor.store.engine import make_engine

    engine = make_engine(url)
    seed(engine, datetime.now(UTC))
    engine.dispose()
    out = tmp_path / "report.json"
    done = subprocess.run(
        [*command, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["summary"]["total_requests"] == 20
    bad = subprocess.run(
        [*command[:-1], "soon"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert bad.returncode == 2 and "--window" in bad.stderr
