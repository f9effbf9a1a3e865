"""The alert worker's step: summarize, evaluate, step the state machine, store, enqueue.

`AlertEngine.step()` is one evaluation: a summary per distinct rule window (read from the
store), every rule evaluated on its window's summary, the `AlertTracker` stepped, and the
resulting alerts, events and notifications saved in one transaction (`store.alerts.save_step`),
one outbox row per notification and receiver that accepts its severity. The outbox worker
delivers them (`alerts.outbox`).

A step whose save fails (the database is down) keeps what it could not save and saves it with
the next step, so a notification is delayed by an outage, never dropped. The tracker's state
lives in memory and in the `alerts` table; `start()` restores the active alerts from the table
so a restart neither fires nor resolves anything twice.

With replicas on Postgres only the leader steps (`workers.leader`): `fence` gives the current
term, checked in the transaction of every restore and save (`store.leader_lock`), and
`reset()` forgets the in-memory state when leadership changes hands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.alerts.rules import Evaluation, evaluate_all
from monitor.alerts.state import Alert, AlertEvent, AlertTracker, Notification
from monitor.alerts.webhooks import prepare
from monitor.config_types import AlertRule, WebhookReceiver
from monitor.record import utcnow
from monitor.store import alerts as alert_store
from monitor.store.alerts import Enqueued
from monitor.store.leader_lock import Fence, NotLeader
from monitor.store.summaries import Summary, summarize_windows

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)


class AlertEngine:
    def __init__(
        self,
        engine: Engine,
        rules: Sequence[AlertRule],
        receivers: Sequence[WebhookReceiver],
        *,
        resolve_after_s: float = 60.0,
        external_url: str = "",
        now: Callable[[], datetime] = utcnow,
        fence: Callable[[], Fence | None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.rules = [r for r in rules if r.enabled]
        self.receivers = list(receivers)
        self.tracker = AlertTracker(resolve_after_s=resolve_after_s)
        self.external_url = external_url.rstrip("/")
        self._now = now
        self._fence = fence
        self._restored = False
        self._unsaved_events: list[AlertEvent] = []
        self._unsaved_alerts: dict[tuple[str, datetime], Alert] = {}
        self._unsaved_outbox: list[Enqueued] = []
        self.last_summaries: dict[float, Summary] = {}
        self.last_evaluations: list[Evaluation] = []
        self.notifications_total = 0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Restore the stored active alerts (once); a database that is down is retried at
        the next step."""
        if self._restored:
            return
        snapshots = await asyncio.to_thread(
            alert_store.active_snapshots, self.engine, self._fence()
        )
        self.tracker.restore(snapshots)
        self._restored = True
        if snapshots:
            logger.info("alerts: restored %d active alerts", len(snapshots))

    def reset(self) -> None:
        """Forget the active alerts and what is not stored yet: leadership changed hands, and
        the table is the truth the next `start()` restores."""
        self.tracker = AlertTracker(resolve_after_s=self.tracker.resolve_after_s)
        self._restored = False
        self._unsaved_events, self._unsaved_outbox = [], []
        self._unsaved_alerts = {}

    async def step(self) -> list[Notification]:
        """One evaluation; returns the notifications it produced (already enqueued, or
        waiting for the database to come back)."""
        async with self._lock:
            if not self._restored:
                await self.start()
            now = self._now()
            await self._sync_acknowledgements()
            summaries = await asyncio.to_thread(self._summaries, now)
            evaluations = [
                evaluation
                for rule in self.rules
                for evaluation in evaluate_all([rule], summaries[rule.window].fields)
            ]
            self.last_summaries, self.last_evaluations = summaries, evaluations
            notifications = self.tracker.step(evaluations, now)
            notifications += self.tracker.retire({r.name for r in self.rules}, now)
            self._stage(notifications)
            await self._save(now)
            return notifications

    async def acknowledge(self, fingerprint: str, by: str) -> bool:
        """Acknowledge an active alert (stored at once); False when none has that fingerprint."""
        async with self._lock:
            now = self._now()
            if not self.tracker.acknowledge(fingerprint, now, by):
                return False
            await self._save(now)
            return True

    async def _sync_acknowledgements(self) -> None:
        """Take over acknowledgements stored by others (the dashboard writes them to the
        store), so this step's save keeps them and the resolve notification carries them."""
        stored = await asyncio.to_thread(alert_store.stored_acknowledgements, self.engine)
        for alert in self.tracker.active():
            if alert.acknowledged_at is None and alert.fingerprint in stored:
                alert.acknowledged_at, alert.acknowledged_by = stored[alert.fingerprint]

    def _summaries(self, now: datetime) -> dict[float, Summary]:
        # each window's summary reads only what its rules compare (`summarize_windows`)
        wanted: dict[float, set[str]] = {}
        for rule in self.rules:
            names = wanted.setdefault(rule.window, set())
            names.add(rule.metric)
            if rule.baseline is not None:
                names.add(rule.baseline)
        return summarize_windows(self.engine, wanted, now)

    def _stage(self, notifications: Sequence[Notification]) -> None:
        for n in notifications:
            self.notifications_total += 1
            logger.warning(
                "alert %s %s: %s (value %s, threshold %s)",
                n.alert.rule.name,
                n.kind,
                n.alert.rule.description or n.alert.rule.metric,
                n.alert.value,
                n.alert.threshold,
            )
            self._unsaved_alerts[(n.alert.fingerprint, n.alert.pending_since)] = n.alert
            links = {"alerts": f"{self.external_url}/admin/alerts"} if self.external_url else None
            for receiver in self.receivers:
                if receiver.accepts(n.alert.severity):
                    outgoing = prepare(receiver, n, links, self.external_url)
                    self._unsaved_outbox.append(
                        Enqueued(outgoing, n.alert.fingerprint, n.alert.rule.name, n.kind)
                    )

    async def _save(self, now: datetime) -> None:
        self._unsaved_events += self.tracker.take_events()
        for alert in self.tracker.active():
            self._unsaved_alerts[(alert.fingerprint, alert.pending_since)] = alert.copy()
        alerts = list(self._unsaved_alerts.values())
        try:
            await asyncio.to_thread(
                alert_store.save_step,
                self.engine,
                alerts,
                self._unsaved_events,
                self._unsaved_outbox,
                now,
                self._fence(),
            )
        except NotLeader:
            logger.warning("alerts: deposed; this step's changes are the new leader's to make")
            raise
        except Exception as exc:
            logger.warning(
                "alerts: cannot store this step (%s); %d events and %d notifications wait for "
                "the next one",
                exc.__class__.__name__,
                len(self._unsaved_events),
                len(self._unsaved_outbox),
            )
            raise
        self._unsaved_events, self._unsaved_outbox = [], []
        self._unsaved_alerts = {}
