"""The webhook receiver is down (connection refused) while an alert fires and resolves several
times: once it is back, every notification arrives, in the order the transitions happened,
exactly once each.

The transitions are real: the backend process is killed and started again, each time the
backend_unhealthy rule fires and resolves, inside a real `gemma-monitor serve`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.faults.conftest import Monitor, report, scale
from tests.integration.faults.test_backend_kill import ALERTS, SECRET
from tests.support.backend_process import BackendProcess
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

pytestmark = pytest.mark.faults

CYCLES = 3
NOTIFICATIONS = "gemma_monitor_alert_notifications_total"


def wait_metric(monitor: Monitor, name: str, at_least: float, within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while monitor.metrics().get(name, 0) < at_least:
        assert time.monotonic() < deadline, f"{name} < {at_least} after {within_s}s"
        time.sleep(0.1)


def test_receiver_down_then_back_gets_everything_in_order_once(
    start_monitor: Callable[..., Monitor],
) -> None:
    down_s = scale(20, 300)
    retry_cap_s = scale(2, 10)
    receiver = RecordingReceiver(secret=SECRET)
    hook = ReceiverServer(receiver)  # not up: connection refused
    backend = BackendProcess().start()
    try:
        monitor = start_monitor(
            backend.url,
            config={
                "health": {"enabled": True, "interval_s": 0.2, "timeout_s": 1.0},
                "alerts": {**ALERTS, "retry_cap_s": retry_cap_s},
            },
            webhook_url=hook.url,
            webhook_secret=SECRET,
        )
        went_down = time.monotonic()
        for cycle in range(CYCLES):
            backend.kill()
            wait_metric(monitor, NOTIFICATIONS, 2 * cycle + 1)  # firing
            backend.start()
            wait_metric(monitor, NOTIFICATIONS, 2 * cycle + 2)  # resolved
        failed = monitor.metrics()["gemma_monitor_webhook_failed_attempts_total"]
        assert failed > 0 and receiver.deliveries == []  # tried, refused, kept
        time.sleep(max(0.0, down_s - (time.monotonic() - went_down)))
        hook.up()
        back = time.monotonic()
        deliveries = receiver.wait_for(2 * CYCLES, timeout=retry_cap_s * 2 + 20)
        all_in_s = time.monotonic() - back
        time.sleep(retry_cap_s + 1)  # a retry of anything delivered would show here
        attempts = len(receiver.deliveries)
    finally:
        hook.down()
        backend.stop()

    bodies = [d.json() for d in deliveries]
    assert attempts == 2 * CYCLES  # once each: nothing delivered twice
    assert len({d.key for d in deliveries}) == 2 * CYCLES
    assert all(d.verified for d in deliveries)
    assert [b["state"] for b in bodies] == ["firing", "resolved"] * CYCLES
    happened = [b["starts_at"] if b["state"] == "firing" else b["ends_at"] for b in bodies]
    assert happened == sorted(happened)  # in the order the transitions happened
    assert monitor.metrics()["gemma_monitor_webhook_deliveries_total"] == 2 * CYCLES
    report(
        "webhook receiver outage",
        down_s=round(back - went_down, 1),
        notifications=2 * CYCLES,
        failed_attempts=int(failed),
        delivered_within_s=round(all_in_s, 2),
    )
