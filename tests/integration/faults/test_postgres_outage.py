"""The monitor's database goes away under steady load, and the monitor is killed while its
spool holds records: no request notices, no record is lost or stored twice.

The database is a private Postgres cluster this module starts with initdb (see
`tests.support.private_postgres`), stopped with `pg_ctl stop -m fast` as an operator's restart
or a failover would; the shared test server is never touched. The monitor is a real
`gemma-monitor serve` process; the backend a process of its own, so the load, the proxy and the
backend do not share an interpreter.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.exc import SQLAlchemyError

from monitor.store.engine import make_engine
from monitor.store.queries import count_requests, request_ids
from tests.integration.faults.conftest import Monitor, report, scale
from tests.support.backend_process import BackendProcess
from tests.support.load import CHAT, median_ms, percentile_ms, steady
from tests.support.private_postgres import PrivatePostgres

pytestmark = pytest.mark.faults

RATE = 100.0  # requests a second
# Medians compared with a little absolute slack: on a busy 2-core runner a few milliseconds of
# scheduling noise would otherwise decide the test, while a request path that waited for the
# database (a connect timeout, a synchronous write) costs tens of milliseconds or seconds.
SLACK_MS = 3.0


def wait_stored(url: str, expected: int, within_s: float) -> int:
    engine = make_engine(url)
    try:
        deadline = time.monotonic() + within_s
        while True:
            try:
                stored = count_requests(engine)
            except SQLAlchemyError:  # the database is still starting: ask again
                stored = -1
            if stored >= expected or time.monotonic() > deadline:
                return stored
            time.sleep(0.25)
    finally:
        engine.dispose()


def test_postgres_stopped_under_steady_load(
    private_postgres: PrivatePostgres,
    backend: BackendProcess,
    start_monitor: Callable[..., Monitor],
) -> None:
    before_s, outage_s, after_s = scale(10, 30), scale(10, 30), scale(5, 10)
    url = private_postgres.database("outage")
    monitor = start_monitor(
        backend.url,
        database_url=url,
        recorder_retry_interval_s="0.5",
        health__enabled="false",  # only the load reaches the backend
    )
    events: dict[str, float] = {}

    def outage() -> None:
        time.sleep(before_s)
        events["stopping"] = time.monotonic()
        private_postgres.stop()
        events["stopped"] = time.monotonic()
        time.sleep(outage_s)
        events["starting"] = time.monotonic()
        private_postgres.start()
        events["started"] = time.monotonic()

    operator = threading.Thread(target=outage)
    operator.start()
    try:
        samples = asyncio.run(steady(monitor.url, RATE, before_s + outage_s + after_s))
    finally:
        operator.join(60)
        if not private_postgres.running:
            private_postgres.start()

    # every request answered, by the backend's answer
    failed = [(s.status, s.error) for s in samples if s.status != 200]
    assert failed == [], failed[:5]
    ids = {s.request_id for s in samples}
    assert None not in ids and len(ids) == len(samples)

    warm = samples[0].started + 2.0  # the first connections and a cold interpreter
    before = [s for s in samples if warm <= s.started < events["stopping"]]
    during = [s for s in samples if events["stopped"] <= s.started < events["starting"]]
    p50_before, p50_during = median_ms(before), median_ms(during)
    metrics = monitor.metrics()
    spooled = metrics["gemma_monitor_recorder_records_spooled_total"]

    stored = wait_stored(url, len(samples), within_s=60)
    engine = make_engine(url)
    try:
        assert request_ids(engine) == ids  # every record, after recovery
        assert count_requests(engine) == len(samples)  # once each
    finally:
        engine.dispose()
    report(
        "postgres outage",
        requests=len(samples),
        outage_s=outage_s,
        p50_before_ms=round(p50_before, 2),
        p50_during_ms=round(p50_during, 2),
        p99_before_ms=round(percentile_ms(before, 0.99), 2),
        p99_during_ms=round(percentile_ms(during, 0.99), 2),
        spooled=int(spooled),
        stored=stored,
    )
    assert spooled > 0  # the outage was real: records went through the spool
    assert metrics["gemma_monitor_recorder_records_dropped_total"] == 0
    assert p50_during <= 1.1 * p50_before + SLACK_MS, (p50_before, p50_during)


def test_sigkill_with_a_full_spool_then_restart_replays_it(
    private_postgres: PrivatePostgres,
    backend: BackendProcess,
    start_monitor: Callable[..., Monitor],
) -> None:
    url = private_postgres.database("killed")
    monitor = start_monitor(backend.url, database_url=url, health__enabled="false")
    private_postgres.stop()
    try:
        count = int(scale(200, 2000))
        with httpx.Client(timeout=10) as client:
            ids = []
            for i in range(count):
                resp = client.post(
                    f"{monitor.url}/v1/chat/completions", json={**CHAT, "stream": i % 3 == 0}
                )
                assert resp.status_code == 200
                ids.append(resp.headers["x-request-id"])
        # the recorder's last batch reaches the spool within its flush interval
        deadline = time.monotonic() + 15
        while monitor.metrics()["gemma_monitor_recorder_records_spooled_total"] < count:
            assert time.monotonic() < deadline, monitor.metrics()
            time.sleep(0.1)
        spooled_bytes = monitor.metrics()["gemma_monitor_recorder_spool_bytes"]
        monitor.kill()  # no shutdown, no flush: only what the spool holds on disk survives
    finally:
        private_postgres.start()
    assert spooled_bytes > 0
    restarted = start_monitor(
        backend.url, directory="monitor", database_url=url, health__enabled="false"
    )
    started = time.monotonic()
    stored = wait_stored(url, count, within_s=30)
    replay_s = time.monotonic() - started
    engine = make_engine(url)
    try:
        assert request_ids(engine) == set(ids)
        assert count_requests(engine) == count
    finally:
        engine.dispose()
    assert restarted.metrics()["gemma_monitor_recorder_spool_bytes"] == 0
    report("sigkill with spool", records=count, spooled_bytes=int(spooled_bytes),
           stored=stored, replayed_within_s=round(replay_s, 2))  # fmt: skip
