"""Postgres goes away in the middle of the load and comes back: no record (or verdict) lost or
doubled.

The recorder reaches Postgres through a TCP relay the test cuts (listener closed, live
connections killed, as when the server crashes) and restores on the same port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.queries import count_requests, count_verdicts, request_ids
from monitor.store.recorder import Recorder
from monitor.store.spool import Spool
from tests.support.databases import make_records, postgres_schema, render, wait_until
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema_url() -> Iterator[URL]:
    with postgres_schema() as url:
        migrate.upgrade(render(url))
        yield url


@pytest.fixture
def relay(schema_url: URL) -> Iterator[TcpRelay]:
    with TcpRelay(schema_url.host or "127.0.0.1", schema_url.port or 5432) as relay:
        yield relay


@pytest.fixture
def direct(schema_url: URL) -> Iterator[Engine]:
    """An engine that bypasses the relay, to look at what was stored."""
    engine = make_engine(schema_url)
    yield engine
    engine.dispose()


@pytest.fixture
def relayed(schema_url: URL, relay: TcpRelay) -> Iterator[Engine]:
    engine = make_engine(schema_url.set(host="127.0.0.1", port=relay.port))
    yield engine
    engine.dispose()


def _recorder(engine: Engine, spool_dir: Path) -> Recorder:
    return Recorder(
        engine,
        Spool(spool_dir),
        queue_size=5_000,
        batch_size=100,
        flush_interval_s=0.01,
        retry_interval_s=0.1,
    )


async def test_postgres_down_then_back(
    relay: TcpRelay, relayed: Engine, direct: Engine, tmp_path: Path
) -> None:
    records = make_records(500)
    recorder = _recorder(relayed, tmp_path / "spool")
    await recorder.start()
    relay.cut()
    for record in records:
        recorder.submit(record)
    await recorder.flush()
    assert recorder.database_down
    assert recorder.spool_records == 500
    assert count_requests(direct) == 0

    relay.restore()
    await wait_until(lambda: not recorder.spool)
    await recorder.stop()
    assert request_ids(direct) == {r.id for r in records}


async def test_postgres_cut_mid_load_loses_nothing_and_doubles_nothing(
    relay: TcpRelay, relayed: Engine, direct: Engine, tmp_path: Path
) -> None:
    records = make_records(3_000, "load", verdicts=True)
    recorder = _recorder(relayed, tmp_path / "spool")
    await recorder.start()

    for i in range(0, len(records), 25):
        if i == 1_000:
            relay.cut()
        if i == 2_000:
            relay.restore()
        for record in records[i : i + 25]:
            recorder.submit(record)
        await asyncio.sleep(0.002)  # a steady stream, so writes are in flight at the cut

    await recorder.flush()
    await wait_until(lambda: not recorder.spool)
    await recorder.stop()

    stored = request_ids(direct)
    assert stored == {r.id for r in records}
    assert count_requests(direct) == 3_000  # the primary key rules out doubles; count anyway
    assert count_verdicts(direct) == 3_000  # nothing rules these out but the inserts
    assert recorder.records_spooled_total > 0
    assert recorder.write_errors_total > 0
    assert recorder.records_written_total >= 3_000
    assert recorder.records_dropped_total == 0
    assert recorder.records_rejected_total == 0
    assert not recorder.database_down
    assert relay.connections_total >= 2  # the pool reconnected after the cut
