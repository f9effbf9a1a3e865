"""An acknowledgement made through the store (the dashboard's way) is taken over by the
running alert worker: its next steps keep it, and the resolve notification carries it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from monitor.store import alerts as alert_store
from monitor.store import views
from monitor.workers.alerting import AlertEngine
from tests.integration.workers.test_alerting import (  # noqa: F401 (a fixture)
    Clock,
    nothing_rolled_up,
    success_rule,
    traffic,
)

# the traffic is written straight into the store, at a time the rollups count as rolled up
pytestmark = pytest.mark.usefixtures("nothing_rolled_up")


async def test_the_alert_worker_keeps_an_acknowledgement_stored_by_the_dashboard(
    engine: Engine,
) -> None:
    clock = Clock()
    alerts = AlertEngine(engine, [success_rule(**{"for": 0, "resolve_after": 0})], [], now=clock)
    traffic(engine, clock.now - timedelta(seconds=10), "backend_error", 5, "a")
    assert [n.kind for n in await alerts.step()] == ["firing"]
    (firing,) = views.alert_board(engine).firing

    acknowledged_at = clock.now
    assert views.acknowledge_alert(engine, firing.fingerprint, "alice", acknowledged_at)
    assert not views.acknowledge_alert(engine, firing.fingerprint, "bob", clock.now)

    clock.advance(5)
    assert await alerts.step() == []  # still firing: the step rewrites the row
    (stored,) = views.alert_board(engine).firing
    assert (stored.acknowledged_by, stored.acknowledged_at) == ("alice", acknowledged_at)
    assert alerts.tracker.active()[0].acknowledged_by == "alice"

    clock.advance(120)  # the bad traffic leaves the window
    traffic(engine, clock.now - timedelta(seconds=10), "ok", 5, "b")
    (resolved,) = await alerts.step()
    assert resolved.kind == "resolved"
    assert resolved.alert.acknowledged_by == "alice"
    kinds = [e["kind"] for e in alert_store.alert_history(engine, firing.fingerprint)]
    assert kinds == ["pending", "firing", "acknowledged", "resolved"]
