"""`/admin/stats`, `/admin/summary`, `/admin/alerts`, `/admin/deliveries`: what the operator
asks the monitor, behind the same bearer token as the rest of `/admin`.

- `GET /admin/stats?window=1h`: the summary of the window, the backend's latest health check,
  the latest host and GPU readings, active alerts, the background workers' state and this
  replica's leadership (leader or follower, its term; `monitor.workers.leader`).
- `GET /admin/summary?window=15m` (or `since`/`until`, ISO 8601): the summary alone.
- `GET /admin/alerts?state=firing`: alert episodes, newest first.
- `GET /admin/alerts/{fingerprint}`: one alert's history (its events, oldest first).
- `POST /admin/alerts/{fingerprint}/ack` `{"by": "alice"}`: acknowledge an active alert.
- `GET /admin/deliveries?status=failed`: the webhook outbox.
- `GET /admin/report?window=24h&format=json|md|html`: the health report (`admin_report.py`).

A window that cannot be read, ends before it starts or spans more than `MAX_WINDOW` is 422
VALIDATION_ERROR; an unknown fingerprint is 404 NOT_FOUND (rendered by `monitor.api.errors`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import SecretStr

from monitor.api.admin import bearer_dependency
from monitor.api.admin_report import report_router
from monitor.config_types import parse_duration
from monitor.errors import NotFound, OutOfRange
from monitor.store import alerts as alert_store
from monitor.store.summaries import summarize
from monitor.workers.background import Monitoring

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MAX_WINDOW = timedelta(days=90)


def _window(window: str | None, since: datetime | None, until: datetime | None) -> tuple[
    datetime, datetime
]:  # fmt: skip
    end = _aware(until) if until is not None else datetime.now(UTC)
    if since is not None:
        start = _aware(since)
    else:
        try:
            seconds = parse_duration(window or "1h")
        except ValueError as exc:
            raise OutOfRange(str(exc), param="window") from exc
        start = end - timedelta(seconds=seconds)
    param = "window" if since is None else "since"
    if start >= end:
        raise OutOfRange("the window must start before it ends", param=param)
    if end - start > MAX_WINDOW:
        raise OutOfRange(f"a window is at most {MAX_WINDOW.days} days", param=param)
    return start, end


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def monitoring_router(token: SecretStr, monitoring: Monitoring, engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[bearer_dependency(token)])
    router.include_router(report_router(engine))  # GET /admin/report (admin_report.py)

    @router.get("/summary")
    async def summary(
        window: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        start, end = _window(window, since, until)
        found = await asyncio.to_thread(summarize, engine, start, end)
        return found.as_dict()

    @router.get("/stats")
    async def stats(window: str = "1h") -> dict[str, Any]:
        start, end = _window(window, None, None)
        found = await asyncio.to_thread(summarize, engine, start, end)
        runner = monitoring.runner
        system = runner.last_system
        alerts = monitoring.alerts
        return {
            "window": {"since": start.isoformat(), "until": end.isoformat()},
            "summary": found.as_dict(),
            "backend_health": monitoring.health_state(),
            "host": None
            if system is None
            else {
                "ts": system.ts.isoformat(),
                "cpu_percent": system.cpu_percent,
                "memory_used_mb": round(system.memory_used_bytes / 2**20, 1),
                "memory_percent": system.memory_percent,
                "proxy_rss_mb": None
                if system.proxy is None
                else round(system.proxy.rss_bytes / 2**20, 1),
                "backend_rss_mb": None
                if system.backend is None
                else round(system.backend.rss_bytes / 2**20, 1),
                "backend_error": system.backend_error,
            },
            "gpus": [
                {
                    "index": g.index,
                    "name": g.name,
                    "utilization_percent": g.utilization_percent,
                    "memory_percent": g.memory_percent,
                    "temperature_c": g.temperature_c,
                    "power_w": g.power_w,
                }
                for g in runner.last_gpus
            ],
            "gpu_probe": None
            if runner.gpu is None
            else ("available" if runner.gpu.available else runner.gpu.unavailable_reason),
            "energy": {
                "joules_total": round(runner.energy.joules_total, 3),
                "requests_measured": runner.energy.requests_total,
                "joules_per_1k_tokens": round(
                    1000 * runner.energy.joules_total / runner.energy.tokens_total, 3
                )
                if runner.energy.tokens_total
                else None,
            },
            "alerts": [_active(a) for a in alerts.tracker.active()] if alerts else [],
            "workers": monitoring.worker_states(),
            "leadership": monitoring.leadership.state(),
        }

    @router.get("/alerts")
    async def list_alerts(
        state: Literal["pending", "firing", "resolved", "cancelled"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(alert_store.list_alerts, engine, state=state, limit=limit)
        return {"alerts": found}

    @router.get("/alerts/{fingerprint}")
    async def alert_history(fingerprint: str) -> dict[str, Any]:
        events = await asyncio.to_thread(alert_store.alert_history, engine, fingerprint)
        if not events:
            raise NotFound(f"no alert with fingerprint {fingerprint}", param="fingerprint")
        return {"fingerprint": fingerprint, "events": events}

    @router.post("/alerts/{fingerprint}/ack")
    async def acknowledge(
        fingerprint: str, by: str = Body("admin", embed=True, max_length=200)
    ) -> dict[str, Any]:
        if monitoring.alerts is None:
            raise NotFound("alerting is off")
        if not await monitoring.acknowledge(fingerprint, by):
            raise NotFound(f"no active alert with fingerprint {fingerprint}", param="fingerprint")
        return {"fingerprint": fingerprint, "acknowledged_by": by}

    @router.get("/deliveries")
    async def deliveries(
        status: Literal["pending", "delivered", "failed"] | None = None,
        fingerprint: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(
            alert_store.list_deliveries, engine, status=status, fingerprint=fingerprint,
            limit=limit,
        )  # fmt: skip
        return {"deliveries": [d.as_dict() for d in found]}

    return router


def _active(alert: Any) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "rule": alert.rule.name,
        "severity": alert.severity,
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "pending_since": alert.pending_since.isoformat(),
        "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
        "acknowledged_by": alert.acknowledged_by,
    }
