"""The read side on real databases: what the recorder stored comes back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from monitor.record import RequestRecord
from monitor.store.inserts import insert_rows
from monitor.store.queries import count_requests, get_request, recent_requests
from tests.support.databases import make_records, sample_verdicts


@pytest.fixture
def records(engine: Engine) -> list[RequestRecord]:
    records = make_records(20)
    insert_rows(engine, [r.to_row() for r in records])
    return records


def test_get_request_round_trips_every_field(engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    record = RequestRecord(
        id="full",
        ts=datetime(2026, 3, 1, 13, 30, 15, 123456, tzinfo=paris),
        route="/api/chat",
        protocol="ollama",
        model="gemma3:270m",
        backend="ollama",
        principal="0123456789abcdef",
        stream=True,
        outcome="blocked_output",
        error_code="RESPONSE_FILTERED",
        http_status=200,
        latency_ms=1234.5,
        ttft_ms=100.25,
        itl_ms=12.5,
        prompt_tokens=11,
        completion_tokens=22,
        tokens_estimated=True,
        tokens_per_s=17.5,
        input_chars=300,
        input_messages=3,
        guard_ms=4.5,
        prompt_hash="a" * 64,
        response_hash="b" * 64,
        prompt_text="hello ✓",
        response_text="world",
        extra={"policy": "default", "categories": ["pii"], "nested": {"score": 0.9}},
        verdicts=sample_verdicts(2),
    )
    insert_rows(engine, [record.to_row()])

    stored = get_request(engine, "full")
    assert stored is not None
    assert stored.ts == record.ts  # same instant ...
    assert stored.ts.tzinfo is not None and stored.ts.utcoffset() == timedelta(0)  # ... in UTC
    assert stored.to_row() | {"ts": record.ts} == record.to_row()
    assert get_request(engine, "missing") is None


def test_count_with_filters(engine: Engine, records: list[RequestRecord]) -> None:
    assert count_requests(engine) == 20
    assert count_requests(engine, outcome="ok") == sum(r.outcome == "ok" for r in records)
    assert count_requests(engine, model="gemma-3-1b") == 10
    assert count_requests(engine, outcome="ok", model="gemma-3-1b") == sum(
        r.outcome == "ok" and r.model == "gemma-3-1b" for r in records
    )
    since = records[5].ts
    until = records[15].ts
    assert count_requests(engine, since=since, until=until) == 10
    assert count_requests(engine, since=datetime(2030, 1, 1, tzinfo=UTC)) == 0


def test_recent_requests_carry_their_verdicts(engine: Engine) -> None:
    records = make_records(9, "v", verdicts=True)
    insert_rows(engine, [r.to_row() for r in records])
    recent = recent_requests(engine, limit=9)
    assert [r.verdicts for r in recent] == [r.verdicts for r in reversed(records)]


def test_recent_requests_newest_first(engine: Engine, records: list[RequestRecord]) -> None:
    recent = recent_requests(engine, limit=5)
    assert [r.id for r in recent] == [r.id for r in reversed(records[-5:])]
    blocked = recent_requests(engine, outcome="blocked_input")
    assert blocked and all(r.outcome == "blocked_input" for r in blocked)
    assert recent[0].extra == records[-1].extra
