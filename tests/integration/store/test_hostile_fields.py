"""Whatever a client puts in a request, its record is stored: on Postgres and SQLite alike.

Postgres refuses a NUL character in text and JSON, a lone surrogate, a value past its
`varchar(n)` and an index entry past a page: each used to send the row to `rejected.jsonl`,
out of summaries and alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from monitor.record import utcnow
from monitor.store.inserts import record_row
from monitor.store.queries import get_request
from monitor.store.recorder import Recorder
from monitor.store.spool import REJECTED_FILE, Spool
from monitor.store.storable import LABEL_CHARS
from monitor.store.summaries import summarize
from tests.support.databases import make_records, render, wait_until
from tests.support.proxy import RunningProxy

BAD = "\ufffd"


def test_values_the_database_would_refuse_are_cleaned_and_the_row_stored(
    engine: Engine, tmp_path: Path
) -> None:
    hostile, huge = make_records(2, "hostile")
    hostile.model = "gem\x00ma"
    hostile.route = "/v1/chat/completions\x00" + "x" * 1000
    hostile.principal = "user\x00" + "u" * 200  # a user header value
    hostile.error_code = "e" * 100
    hostile.prompt_text = "a\x00b\ud800c" + "p" * 5000  # content: cleaned, never cut
    hostile.response_text = "ok\x00"
    hostile.extra = {"note\x00": ["v\x00", {"deep": "\udfff"}]}
    huge.model = "m" * 100_000  # past a btree index entry on Postgres
    recorder = Recorder(engine, Spool(tmp_path / "spool"))
    recorder.write_batch([record_row(hostile), record_row(huge)])

    assert recorder.records_rejected_total == 0
    assert not (tmp_path / "spool" / REJECTED_FILE).exists()
    stored = get_request(engine, hostile.id)
    assert stored is not None
    assert stored.model == f"gem{BAD}ma"
    assert stored.route == ("/v1/chat/completions" + BAD + "x" * 1000)[:LABEL_CHARS]
    assert stored.principal == ("user" + BAD + "u" * 200)[:64]
    assert stored.error_code == "e" * 64
    assert stored.prompt_text == f"a{BAD}b{BAD}c" + "p" * 5000
    assert stored.response_text == f"ok{BAD}"
    assert stored.extra == {f"note{BAD}": [f"v{BAD}", {"deep": BAD}]}
    stored_huge = get_request(engine, huge.id)
    assert stored_huge is not None and stored_huge.model == "m" * LABEL_CHARS


async def test_a_record_spilled_from_a_full_queue_is_cleaned_too(
    engine: Engine, tmp_path: Path
) -> None:
    records = make_records(3, "spilled")
    for record in records:
        record.prompt_text = "lone \ud800 surrogate"  # JSON in the spool refuses it as is
    recorder = Recorder(engine, Spool(tmp_path / "spool"), queue_size=1, flush_interval_s=0.01,
                        retry_interval_s=0.05)  # fmt: skip
    await recorder.start()
    for record in records:
        recorder.submit(record)
    assert recorder.records_spooled_total == 2 and recorder.records_dropped_total == 0
    await recorder.flush()
    await wait_until(lambda: not recorder.spool)
    await recorder.stop()
    for record in records:
        stored = get_request(engine, record.id)
        assert stored is not None and stored.prompt_text == f"lone {BAD} surrogate"


def test_a_request_with_nul_in_its_model_is_stored_and_summarized(
    engine: Engine, make_proxy: Callable[..., RunningProxy]
) -> None:
    proxy = make_proxy(database_url=render(engine.url))
    since = utcnow() - timedelta(minutes=1)
    body = b'{"model": "gem\\u0000ma", "messages": [{"role": "user", "content": "Hi"}]}'
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    record = proxy.record(resp.headers["x-request-id"])
    assert record.model == f"gem{BAD}ma"
    summary = summarize(engine, since, utcnow() + timedelta(minutes=1), baseline=None)
    assert summary.fields["total_requests"] == 1
    assert not (proxy.settings.spool_dir / REJECTED_FILE).exists()
