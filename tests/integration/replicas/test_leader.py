"""Two `gemma-monitor serve` replicas on one Postgres and one Redis behave as one monitor.

- The rate limit is one limit: the sum of what both replicas admit respects it.
- Every record is stored once, whichever replica served it.
- One replica, the leader, evaluates alerts: a firing and its resolve are notified exactly once
  to a real webhook receiver, though the traffic went to the other replica.
- Failover: the leader killed with SIGKILL, the other takes over (the time is measured and
  printed), restores the firing alert from the table, and notifies its resolve: nothing is
  notified twice, nothing is lost.
- A leader whose lock connection is terminated in Postgres steps down and another replica
  leads; still exactly one firing and one resolve.

Set REPLICA_LOGS=1 to print both replicas' logs after each test.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from monitor.alerts.webhooks import EVENT_HEADER
from tests.integration.replicas.cluster import Cluster, Replica, cluster, wait_for
from tests.support.fake_backend import FakeBackend, Script
from tests.support.load import Background
from tests.support.webhook_receiver import Delivery, ReceiverServer, RecordingReceiver

pytestmark = pytest.mark.postgres

FAILOVER_BOUND_S = 15.0  # generous for a loaded runner; the measured time is printed


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingReceiver, str]]:
    recording = RecordingReceiver()
    with ReceiverServer(recording) as server:
        yield recording, server.url


class FailingTraffic(Background):
    """Requests (key "traffic") to one replica every 100 ms, in a thread, while the backend
    answers 500: enough for the error rule to breach and stay breaching."""

    def __init__(self, group: Cluster, target: Replica) -> None:
        super().__init__(0.1)
        self.group, self.target = group, target
        self.statuses: Counter[int] = Counter()
        self.ids: list[str] = []

    def send(self, client: httpx.Client) -> None:
        answer = self.group.chat(self.target, "traffic", client)
        self.statuses[answer.status_code] += 1
        self.ids.append(answer.headers["x-request-id"])


def events(receiver: RecordingReceiver) -> list[tuple[str, str | None]]:
    return [(d.headers[EVENT_HEADER.lower()], d.key) for d in receiver.accepted]


def wait_delivered(group: Cluster, count: int) -> None:
    """Until `count` outbox rows are marked delivered (so no replica will send them again)."""
    query = "SELECT count(*) FROM alert_deliveries WHERE status = 'delivered'"
    wait_for(lambda: group.sql(query)[0][0] >= count, 20, f"{count} deliveries marked delivered")


def assert_notified_once(group: Cluster, receiver: RecordingReceiver) -> list[Delivery]:
    """Exactly one firing then one resolve reached the receiver, and the store agrees; waits a
    little longer first, so a duplicate would have time to arrive."""
    time.sleep(1.5)
    accepted = receiver.accepted
    assert [kind for kind, _ in events(receiver)] == ["firing", "resolved"], events(receiver)
    assert len(receiver.deliveries) == 2 and len({d.key for d in accepted}) == 2
    rows = group.sql("SELECT kind FROM alert_events WHERE rule = 'replica_errors' ORDER BY id")
    assert [kind for (kind,) in rows] == ["pending", "firing", "resolved"]
    assert group.sql("SELECT count(*) FROM alert_deliveries")[0][0] == 2
    return accepted


def resolve(group: Cluster, fake_backend: FakeBackend, receiver: RecordingReceiver) -> None:
    """Heal the backend and let the window clear: the resolve is the second delivery."""
    fake_backend.reset()
    receiver.wait_for(2, timeout=30)


def test_replicas_share_the_limit_store_once_and_notify_once(
    tmp_path: Path,
    fake_backend: FakeBackend,
    fake_backend_url: str,
    receiver: tuple[RecordingReceiver, str],
) -> None:
    recording, hook = receiver
    with cluster(tmp_path, fake_backend_url, hook) as group:
        leader = group.one_leader()
        follower = next(r for r in group.replicas if r is not leader)
        states = {w["name"]: w["running"] for w in follower.stats()["workers"]}
        assert states["alerts"] is False and states["retention"] is False
        assert states["rollups"] is True and states["outbox"] is True
        assert follower.leadership()["role"] == "follower"
        assert leader.metric("gemma_monitor_leader") == 1.0
        assert follower.metric("gemma_monitor_leader") == 0.0

        # 50 requests of one key over both replicas, 8 at a time: one limit of 20 a minute
        with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda i: (i % 2, group.chat(group.replicas[i % 2], "limited", client)),
                         range(50))
            )  # fmt: skip
        admitted = Counter(i for i, r in responses if r.status_code == 200)
        assert Counter(r.status_code for _, r in responses) == {200: 20, 429: 30}
        assert admitted[0] and admitted[1], "both replicas admitted some"

        # every admitted request stored exactly once, whichever replica answered (a refusal
        # at admission leaves no row: see the README's Storage section)
        ids = [r.headers["x-request-id"] for _, r in responses]
        served = [r.headers["x-request-id"] for _, r in responses if r.status_code == 200]
        assert len(set(ids)) == 50
        query = "SELECT id, count(*) FROM requests WHERE id = ANY(:ids) GROUP BY id"
        wait_for(lambda: len(group.sql(query, ids=ids)) >= 20, 20, "20 records stored")
        time.sleep(0.5)  # the recorders flush every 50 ms: a duplicate would be in by now
        assert sorted(group.sql(query, ids=ids)) == sorted((i, 1) for i in served)

        # errors served by the follower fire the alert, evaluated by the leader alone
        fake_backend.script = Script(status=500)
        with FailingTraffic(group, follower) as traffic:
            recording.wait_for(1, timeout=20)
        assert set(traffic.statuses) == {502}
        wait_for(lambda: len(group.sql(query, ids=traffic.ids)) >= len(traffic.ids), 20,
                 "the failing requests' records")  # fmt: skip
        stored = group.sql(query, ids=traffic.ids)
        assert sorted(stored) == sorted((i, 1) for i in traffic.ids)
        resolve(group, fake_backend, recording)
        assert_notified_once(group, recording)
        assert leader.metric("gemma_monitor_alert_notifications_total") == 2.0
        assert follower.metric("gemma_monitor_alert_notifications_total") == 0.0


def test_the_leader_killed_the_other_takes_over_without_repeating_or_losing(
    tmp_path: Path,
    fake_backend: FakeBackend,
    fake_backend_url: str,
    receiver: tuple[RecordingReceiver, str],
) -> None:
    recording, hook = receiver
    with cluster(tmp_path, fake_backend_url, hook) as group:
        leader = group.one_leader()
        survivor = next(r for r in group.replicas if r is not leader)
        fake_backend.script = Script(status=500)
        with FailingTraffic(group, survivor):
            recording.wait_for(1, timeout=20)  # firing, notified by the leader
            wait_delivered(group, 1)
            killed_at = time.monotonic()
            leader.kill()
            wait_for(lambda: survivor.leadership()["leader"], FAILOVER_BOUND_S, "a new leader")
            failover_s = time.monotonic() - killed_at
            ticks = {w["name"]: w["ticks"] for w in survivor.stats()["workers"]}
            wait_for(
                lambda: (
                    {w["name"]: w["ticks"] for w in survivor.stats()["workers"]}["alerts"]
                    > ticks["alerts"]
                ),
                10,
                "a step of the new leader",
            )
            first_step_s = time.monotonic() - killed_at
            time.sleep(1.0)  # still breaching under the new leader: no second firing
        print(f"\nfailover: leader after {failover_s:.3f} s, first alert step by "
              f"{first_step_s:.3f} s")  # fmt: skip
        assert survivor.leadership()["elections"] == 1
        resolve(group, fake_backend, recording)  # the restored alert resolves, once
        assert_notified_once(group, recording)
        assert survivor.metric("gemma_monitor_alert_notifications_total") == 1.0  # the resolve


def test_a_leader_whose_connection_drops_steps_down(
    tmp_path: Path,
    fake_backend: FakeBackend,
    fake_backend_url: str,
    receiver: tuple[RecordingReceiver, str],
) -> None:
    recording, hook = receiver
    with cluster(tmp_path, fake_backend_url, hook) as group:
        leader = group.one_leader()
        other = next(r for r in group.replicas if r is not leader)
        fake_backend.script = Script(status=500)
        with FailingTraffic(group, other):
            recording.wait_for(1, timeout=20)
            wait_delivered(group, 1)
            pid = leader.leadership()["lock_pid"]
            assert group.sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :pid AND "
                "granted", pid=pid
            )[0][0] == 1  # fmt: skip
            terminated_at = time.monotonic()
            group.sql("SELECT pg_terminate_backend(:pid)", pid=pid)
            wait_for(lambda: leader.leadership()["stepdowns"] == 1, 10, "the leader steps down")
            stepped_down_s = time.monotonic() - terminated_at
            new_leader = group.one_leader()
            print(
                f"\nconnection terminated: stepped down after {stepped_down_s:.3f} s, "
                f"{new_leader.name} leads after {time.monotonic() - terminated_at:.3f} s"
            )
            assert new_leader.leadership()["lock_pid"] != pid
            assert leader.alive and other.alive
            time.sleep(1.0)
        assert any("leader: stepping down: lost the lock's connection" in line
                   for line in leader.output)  # fmt: skip
        resolve(group, fake_backend, recording)
        assert_notified_once(group, recording)
