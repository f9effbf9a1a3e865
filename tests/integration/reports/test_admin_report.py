"""`GET /admin/report` through the real app: behind the admin token, JSON streamed, errors in
the API's shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from monitor.record import RequestRecord
from monitor.store import rollups
from monitor.store.inserts import insert_rows, record_row
from tests.support.proxy import RunningProxy

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def test_admin_report(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(admin_token=ADMIN_TOKEN)
    now = datetime.now(UTC)
    records = [
        RequestRecord(
            id=f"a{i}",
            ts=now - timedelta(hours=2, seconds=i),
            route="/v1/chat/completions",
            protocol="openai",
            model="m",
            outcome="ok" if i % 5 else "backend_error",
            latency_ms=100.0 + i,
            completion_tokens=3,
        )
        for i in range(50)
    ]
    insert_rows(proxy.engine, [record_row(r) for r in records])
    rollups.rebuild(proxy.engine, now - timedelta(hours=3), now)
    url = f"{proxy.url}/admin/report"

    assert httpx.get(url, params={"window": "24h"}).status_code == 401
    with httpx.stream("GET", url, params={"window": "24h"}, headers=ADMIN, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/json")
        assert "content-length" not in resp.headers  # streamed, not buffered
        body = b"".join(resp.iter_bytes())
    doc = json.loads(body)
    assert doc["performance_summary"]["total_requests"] == 50 == len(doc["performance_metrics"])
    assert doc["performance_summary"]["success_rate"] == 0.8

    md = httpx.get(url, params={"window": "24h", "format": "md"}, headers=ADMIN)
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# Gemma Monitor health report")
    page = httpx.get(url, params={"window": "6h", "format": "html"}, headers=ADMIN)
    assert page.status_code == 200 and "<svg" in page.text

    for params in ({"window": "soon"}, {"window": "0"}, {"window": "400d"}, {"format": "pdf"}):
        bad = httpx.get(url, params=params, headers=ADMIN)
        assert bad.status_code == 400, params
        error = bad.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["param"] in ("window", "format")
