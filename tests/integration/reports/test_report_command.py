"""`gemma-monitor report` as an operator runs it: each format, to a file or standard output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from monitor.store import migrate
from monitor.store.engine import make_engine
from tests.integration.reports.known_store import fill


def run(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MONITOR_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "report", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def test_report_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    refused = run(tmp_path, url, "--format", "json")
    assert refused.returncode == 2 and "db upgrade" in refused.stderr
    migrate.upgrade(url)
    engine = make_engine(url)
    fill(engine)  # a day ending 2026-02-03 12:00 UTC: inside any window up to now
    engine.dispose()

    out = tmp_path / "report.json"
    done = run(tmp_path, url, "--window", "3650d", "--format", "json", "--out", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["performance_summary"]["total_requests"] == 109 == len(doc["performance_metrics"])

    md = run(tmp_path, url, "--window", "3650d", "--format", "md")
    assert md.returncode == 0 and md.stdout.startswith("# Gemma Monitor health report")
    assert "| requests | 109 |" in md.stdout

    page = tmp_path / "report.html"
    html = run(tmp_path, url, "--window", "3650d", "--format", "html", "--out", str(page))
    assert html.returncode == 0 and page.read_text().count("<svg") >= 8

    for window in ("soon", "0"):
        bad = run(tmp_path, url, "--window", window)
        assert bad.returncode == 2 and "--window" in bad.stderr and "Traceback" not in bad.stderr
