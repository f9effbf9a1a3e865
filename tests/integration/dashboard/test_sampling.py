"""The dashboard on a sampled store (SQLite and Postgres): the Overview counts requests by their
weights, and the request list says how many requests its records stand for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.store.inserts import insert_rows
from monitor.store.rollups import rebuild
from tests.integration.dashboard.conftest import Store, app_for, metrics
from tests.support.databases import make_records

N = 10


def test_a_sampled_store_counts_requests_by_weight(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = empty_store.now - timedelta(minutes=30)
    records = make_records(40, prefix="w", start=start)
    for i, record in enumerate(records):
        record.ts = start + timedelta(seconds=20 * i)
        record.weight = N if record.outcome == "ok" else 1
    insert_rows(empty_store.engine, [r.to_row() for r in records])
    rebuild(empty_store.engine, start, empty_store.now)  # minutes behind the watermark
    represented = sum(r.weight for r in records)
    assert represented > 5 * len(records)

    at = app_for(empty_store.url, monkeypatch).run()
    assert not at.exception
    assert metrics(at)["Requests"] == f"{represented:,}"

    at.switch_page("pages/requests.py").run()
    assert not at.exception
    caption = at.caption[0].value
    assert caption.startswith(f"{len(records)} matching records (standing for {represented:,}")
