"""A sampled record's weight survives the spool (a database outage), on SQLite and Postgres;
a spool line written before weights existed is replayed with weight 1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.record import RequestRecord
from monitor.store import migrate
from monitor.store.engine import make_engine
from monitor.store.inserts import record_row
from monitor.store.queries import get_request
from monitor.store.recorder import Recorder
from monitor.store.spool import Spool
from tests.support.databases import BOTH_DATABASES, database_url


@pytest.fixture(params=BOTH_DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        migrate.upgrade(url)
        yield url


def test_weights_are_replayed_from_the_spool(db_url: str, tmp_path: Path) -> None:
    ts = datetime.now(UTC)
    sampled = RequestRecord(id="kept-1-in-10", ts=ts, route="/v1/chat/completions",
                            protocol="openai", weight=10)  # fmt: skip
    old_line = record_row(RequestRecord(id="before-weights", ts=ts, route="/v1/chat/completions",
                                        protocol="openai"))  # fmt: skip
    del old_line["weight"]
    spool = Spool(tmp_path / "spool")
    spool.append([record_row(sampled), old_line])
    engine = make_engine(db_url)
    try:
        recorder = Recorder(engine, spool)
        assert recorder.replay_spool(force=True)
        stored = get_request(engine, "kept-1-in-10")
        assert stored is not None and stored.weight == 10
        old = get_request(engine, "before-weights")
        assert old is not None and old.weight == 1
    finally:
        spool.close()
        engine.dispose()
