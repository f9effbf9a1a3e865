"""Scheduled health reports, delivered to the webhook receivers through the alert outbox.

`ReportScheduler.step()` runs every `reports.interval_s`. Each schedule defines slots: `daily`
is every day at `reports.at` (UTC), an interval such as `6h` is every multiple of it since
midnight UTC (1970-01-01). When the latest slot has passed and its report is not in the outbox
yet, the step builds the report of the `reports.window` ending at the slot and enqueues one
delivery per receiver; the outbox worker (`workers.outbox`) sends it, signed and retried like
an alert notification.

Idempotent: a slot's deliveries carry the key `report:<slot>`, and the outbox keeps one row
per (receiver, key), so two replicas, or a restart, enqueue a slot once. After a restart only
the latest slot is caught up, never a backlog.

What a receiver gets, by its `kind`:

- ``generic``: JSON with the report's `status`, `headline`, window, the `format` and the
  rendered `body` (Markdown or HTML), and `summary`: the JSON export without its per-request
  lists;
- ``slack``: a message whose text is the headline and the Markdown report;
- ``alertmanager``: nothing (that format describes alerts, not reports).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from monitor.alerts.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    PAYLOAD_VERSION,
    SOURCE,
    OutgoingWebhook,
    encode,
)
from monitor.config import ReportSettings
from monitor.config_types import WebhookReceiver, parse_duration
from monitor.record import utcnow
from monitor.reports.export import document
from monitor.reports.model import HealthReport
from monitor.reports.report import build_report, render
from monitor.store import reports as report_store
from monitor.store.alerts import Enqueued

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

FINGERPRINT = "health-report"  # one outbox queue per receiver for every report
RULE = "health_report"
KIND = "report"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SLACK_TEXT_LIMIT = 3500


def latest_slot(schedule: str, at: str, now: datetime) -> datetime | None:
    """The latest scheduled moment at or before `now`; None when the schedule is off."""
    if schedule == "off":
        return None
    if schedule == "daily":
        hour, minute = (int(part) for part in at.split(":"))
        today = datetime.combine(now.date(), time(hour, minute), tzinfo=UTC)
        return today if today <= now else today - timedelta(days=1)
    step = parse_duration(schedule)
    elapsed = (now - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=step * (elapsed // step))


def report_key(slot: datetime) -> str:
    return f"report:{slot.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


class ReportScheduler:
    def __init__(
        self,
        engine: Engine,
        settings: ReportSettings,
        receivers: Sequence[WebhookReceiver],
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        chosen = set(settings.receivers)
        self.receivers = [
            r for r in receivers if r.kind != "alertmanager" and (not chosen or r.name in chosen)
        ]
        self._now = now
        self._done: datetime | None = None
        self.reports_total = 0

    async def step(self) -> int:
        """Enqueue the latest slot's report if it is due and not enqueued yet; returns how many
        deliveries were enqueued (0 when nothing was due)."""
        slot = latest_slot(self.settings.schedule, self.settings.at, self._now())
        if slot is None or slot == self._done or not self.receivers:
            return 0
        key = report_key(slot)
        if await asyncio.to_thread(report_store.notification_exists, self.engine, key):
            self._done = slot  # another replica, or this one before a restart
            return 0
        since = slot - timedelta(seconds=self.settings.window)
        report = await asyncio.to_thread(build_report, self.engine, since, slot)
        body = await asyncio.to_thread(render, report, self.settings.format)
        enqueued = [
            Enqueued(self._outgoing(r, key, report, body), FINGERPRINT, RULE, KIND)
            for r in self.receivers
        ]
        await asyncio.to_thread(
            report_store.enqueue_notifications, self.engine, enqueued, self._now()
        )
        self._done = slot
        self.reports_total += 1
        logger.info("report %s (%s) enqueued for %d receivers", key, report.status, len(enqueued))
        return len(enqueued)

    def _outgoing(
        self, receiver: WebhookReceiver, key: str, report: HealthReport, body: str
    ) -> OutgoingWebhook:
        payload: dict[str, Any]
        if receiver.kind == "slack":
            markdown = body if self.settings.format == "md" else render(report, "md")
            payload = {"text": f"*{report.headline}*\n{markdown[:SLACK_TEXT_LIMIT]}"}
        else:
            payload = {
                "version": PAYLOAD_VERSION,
                "id": key,
                "source": SOURCE,
                "kind": KIND,
                "status": report.status,
                "headline": report.headline,
                "since": report.since.isoformat(),
                "until": report.until.isoformat(),
                "format": self.settings.format,
                "body": body,
                "summary": document(report),
            }
        headers = {
            **receiver.headers,
            "Content-Type": "application/json",
            "User-Agent": SOURCE,
            EVENT_HEADER: KIND,
            DELIVERY_HEADER: key,
        }
        url = receiver.url.get_secret_value()
        return OutgoingWebhook(receiver.name, url, encode(payload), headers, key)
