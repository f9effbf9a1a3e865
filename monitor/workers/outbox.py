"""The outbox worker's step: deliver the due webhook notifications, retry the failed ones.

`OutboxWorker.step()` claims the due rows of `alert_deliveries`, POSTs each (signed at that
attempt's time when its receiver has a secret) and stores the outcome: `delivered`; `pending`
again after a full-jitter exponential backoff (`alerts.delivery.next_attempt_delay`) when the
failure is retryable; `failed` for a permanent refusal, a receiver no longer in the
configuration, or a notification still undelivered after `give_up_after_s`.

Order per receiver and alert is kept: a row is claimed only when no older row of the same
receiver and fingerprint is still pending, so a `resolved` never overtakes its `firing`.
Rows live in the database, so a receiver down for minutes or a restart of the proxy loses
nothing: the next worker to run picks them up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.alerts.delivery import Post, attempt, next_attempt_delay
from monitor.alerts.webhooks import OutgoingWebhook
from monitor.config_types import WebhookReceiver
from monitor.record import utcnow
from monitor.store import alerts as alert_store
from monitor.store.alerts import Delivery

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

LEASE_MARGIN_S = 5.0


class OutboxWorker:
    def __init__(
        self,
        engine: Engine,
        receivers: Sequence[WebhookReceiver],
        post: Post,
        *,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 300.0,
        give_up_after_s: float = 86400.0,
        batch: int = 50,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.receivers = {r.name: r for r in receivers}
        self.post = post
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.give_up_after_s = give_up_after_s
        self.batch = batch
        self._now = now
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock  # signatures carry the real time, whatever `now` says
        self.delivered_total = 0
        self.failed_attempts_total = 0
        self.given_up_total = 0

    async def step(self) -> int:
        """Attempt every due notification once; returns how many were attempted."""
        now = self._now()
        longest = max((r.timeout_s for r in self.receivers.values()), default=10.0)
        lease = timedelta(seconds=longest + LEASE_MARGIN_S)
        due = await asyncio.to_thread(alert_store.claim, self.engine, now, lease, self.batch)
        if due:
            await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _deliver(self, delivery: Delivery) -> None:
        receiver = self.receivers.get(delivery.receiver)
        now = self._now()
        if receiver is None:
            await self._finish(delivery, "failed", False, None, "receiver no longer configured")
            self.given_up_total += 1
            return
        outgoing = OutgoingWebhook(
            receiver.name,
            receiver.url.get_secret_value(),
            delivery.body.encode(),
            {**delivery.headers, **receiver.headers},
            delivery.key,
        )
        secret = receiver.secret.get_secret_value() if receiver.secret else None
        signed_at = self._wall_clock()
        result = await attempt(outgoing, self.post, signed_at, secret, receiver.timeout_s)
        if result.delivered:
            self.delivered_total += 1
            await self._finish(delivery, "delivered", True, result.status, None)
            return
        self.failed_attempts_total += 1
        attempts = delivery.attempts + 1
        age = (now - delivery.created_at).total_seconds()
        if not result.retryable or age >= self.give_up_after_s:
            why = result.error if not result.retryable else f"gave up: {result.error}"
            logger.error(
                "webhook %s: %s notification for %s failed for good: %s",
                receiver.name,
                delivery.kind,
                delivery.rule,
                why,
            )
            self.given_up_total += 1
            await self._finish(delivery, "failed", True, result.status, why)
            return
        delay = next_attempt_delay(attempts, self.retry_base_s, self.retry_cap_s, self._rng)
        if attempts == 1:
            logger.warning(
                "webhook %s: delivery failed (%s); retrying with backoff", receiver.name,
                result.error,
            )  # fmt: skip
        await self._finish(
            delivery, "pending", True, result.status, result.error, now + timedelta(seconds=delay)
        )

    async def _finish(
        self,
        delivery: Delivery,
        status: str,
        attempted: bool,
        last_status: int | None,
        error: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        await asyncio.to_thread(
            alert_store.finish,
            self.engine,
            delivery.id,
            status=status,
            attempted=attempted,
            last_status=last_status,
            last_error=error,
            next_attempt_at=next_attempt_at,
            now=self._now(),
        )
