"""Guard verdicts on real databases: stored with their request, exactly once, whatever replays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from monitor.guard.verdict import Action, Finding, Stage, Verdict
from monitor.record import RequestRecord
from monitor.store.models import guard_verdicts_table
from monitor.store.queries import count_requests, count_verdicts, request_ids, verdicts_for
from monitor.store.recorder import Recorder
from monitor.store.spool import REJECTED_FILE, Spool
from tests.support.databases import make_records

_v = guard_verdicts_table.c


def _recorder(engine: Engine, spool_dir: Path) -> Recorder:
    return Recorder(engine, Spool(spool_dir), batch_size=100, flush_interval_s=0.01)


def _verdict_count(records: list[RequestRecord]) -> int:
    return sum(len(record.verdicts) for record in records)


def _assert_stored_once(engine: Engine, records: list[RequestRecord]) -> None:
    assert request_ids(engine) == {r.id for r in records}
    assert count_verdicts(engine) == _verdict_count(records)
    for record in records:
        assert verdicts_for(engine, record.id) == record.verdicts


def test_records_with_none_one_and_two_verdicts(engine: Engine, tmp_path: Path) -> None:
    records = make_records(30, verdicts=True)
    assert {len(r.verdicts) for r in records} == {0, 1, 2}
    _recorder(engine, tmp_path / "spool").write_batch([r.to_row() for r in records])

    _assert_stored_once(engine, records)
    assert count_verdicts(engine) == 30
    assert verdicts_for(engine, "missing") == []


def test_the_deciding_finding_and_the_top_score_become_columns(
    engine: Engine, tmp_path: Path
) -> None:
    near_miss = Finding("injection.jailbreak", "injection", Action.ALLOW, "inj", score=0.3)
    allowed = Verdict(Stage.INPUT, "strict", Action.ALLOW, (near_miss,), latency_us=7)
    record = make_records(1, "cols")[0]
    record.verdicts = [allowed.as_dict(), *make_records(3, verdicts=True)[2].verdicts]
    _recorder(engine, tmp_path / "spool").write_batch([record.to_row()])

    query = select(
        _v.request_id, _v.ts, _v.stage, _v.policy, _v.action, _v.category, _v.rule, _v.score
    ).order_by(_v.id)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(query)]
    assert rows == [
        # allow: no deciding finding, but the near miss's score is kept
        (record.id, record.ts, "input", "strict", "allow", None, None, 0.3),
        # redact: decided by the email, although the injection near miss scored higher
        (record.id, record.ts, "input", "default", "redact", "pii", "pii.email", 0.41),
        (record.id, record.ts, "output", "default", "block", "secret", "secret.aws_key", None),
    ]
    assert verdicts_for(engine, record.id) == record.verdicts


def test_write_batch_twice_stores_each_verdict_once(engine: Engine, tmp_path: Path) -> None:
    records = make_records(90, verdicts=True)
    rows = [r.to_row() for r in records]
    recorder = _recorder(engine, tmp_path / "spool")
    recorder.write_batch(rows[:40])
    recorder.write_batch(rows[:40])  # the same batch again: its acknowledgement was lost
    recorder.write_batch(rows[20:60])  # half stored already, half new
    recorder.write_batch(rows[50:] + rows[60:70])  # new requests twice in one batch
    _assert_stored_once(engine, records)


def test_a_spool_replay_of_stored_records_adds_only_the_missing_verdicts(
    engine: Engine, tmp_path: Path
) -> None:
    records = make_records(90, verdicts=True)
    rows = [r.to_row() for r in records]
    recorder = _recorder(engine, tmp_path / "spool")
    recorder.write_batch(rows[:50])
    # As after a commit whose acknowledgement never came: the batch went to the spool too.
    recorder.spool.append(rows[30:])
    assert recorder.replay_spool(force=True)

    assert not recorder.spool
    _assert_stored_once(engine, records)
    assert recorder.records_rejected_total == 0


async def test_the_recorder_stores_verdicts_submitted_with_records(
    engine: Engine, tmp_path: Path
) -> None:
    records = make_records(500, "sub", verdicts=True)
    recorder = _recorder(engine, tmp_path / "spool")
    await recorder.start()
    for record in records:
        recorder.submit(record)
    await recorder.flush()
    await recorder.stop()
    _assert_stored_once(engine, records)


def test_a_malformed_verdict_sets_its_record_aside(engine: Engine, tmp_path: Path) -> None:
    records = make_records(10, "bad", verdicts=True)
    rows = [r.to_row() for r in records]
    bad: dict[str, Any] = {
        rows[1]["id"]: [{"stage": "input", "action": "allow"}],  # no policy: NOT NULL
        rows[4]["id"]: ["block"],  # not a verdict at all
        rows[7]["id"]: [{**records[2].verdicts[0], "latency_us": None}],  # NOT NULL
    }
    for row in rows:
        row["verdicts"] = bad.get(row["id"], row["verdicts"])
    recorder = _recorder(engine, tmp_path / "spool")
    recorder.write_batch(rows)

    good = [r for r in records if r.id not in bad]
    assert request_ids(engine) == {r.id for r in good}
    assert count_verdicts(engine) == _verdict_count(good)
    assert recorder.records_rejected_total == len(bad)
    assert recorder.records_spooled_total == 0  # a row error, not an outage
    assert not recorder.database_down
    rejected = (tmp_path / "spool" / REJECTED_FILE).read_text()
    assert all(request_id in rejected for request_id in bad)


def test_verdicts_go_when_their_request_goes(engine: Engine, tmp_path: Path) -> None:
    records = make_records(6, verdicts=True)
    _recorder(engine, tmp_path / "spool").write_batch([r.to_row() for r in records])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM requests WHERE id = :id"), {"id": records[2].id})
    assert count_requests(engine) == 5
    assert verdicts_for(engine, records[2].id) == []
    assert count_verdicts(engine) == _verdict_count(records) - 2


def test_count_verdicts_with_filters(engine: Engine, tmp_path: Path) -> None:
    records = make_records(30, verdicts=True)  # 10 with one verdict, 10 with two
    _recorder(engine, tmp_path / "spool").write_batch([r.to_row() for r in records])
    assert count_verdicts(engine, action="redact") == 20
    assert count_verdicts(engine, action="block") == 10
    assert count_verdicts(engine, stage="output") == 10
    assert count_verdicts(engine, stage="input", action="block") == 0
    assert count_verdicts(engine, since=records[15].ts) == 15  # records 15..29 hold 15


def test_a_verdict_with_thousands_of_findings_is_stored_bounded(
    engine: Engine, tmp_path: Path
) -> None:
    """A hostile text's findings (a digit run every few characters) are listed up to the
    bound; the deciding one, one of each kind and the top score are kept, the rest counted."""
    phones = [
        Finding(
            "pii.phone", "pii", Action.REDACT, "pii", path="messages[0].content", span=(i, i + 9)
        )
        for i in range(0, 50_000, 10)
    ]
    late = [
        Finding("secret.aws_key", "secret", Action.BLOCK, "secrets", span=(60_000, 60_020)),
        Finding("injection.jailbreak", "injection", Action.ALLOW, "inj", score=0.4),
    ]
    verdict = Verdict(Stage.INPUT, "default", Action.BLOCK, (*phones, *late), latency_us=9)
    recorded = verdict.as_dict(100)
    assert [f["rule"] for f in recorded["findings"]] == ["pii.phone"] * 100 + [
        "secret.aws_key",
        "injection.jailbreak",
    ]
    assert recorded["findings_omitted"] == 5_000 - 100
    assert verdict.as_dict(10_000) == verdict.as_dict()  # under the bound: every finding
    assert "findings_omitted" not in verdict.as_dict()

    record = make_records(1, "many")[0]
    record.verdicts = [recorded]
    _recorder(engine, tmp_path / "spool").write_batch([record.to_row()])
    assert verdicts_for(engine, record.id) == [recorded]
    with engine.connect() as conn:
        row = conn.execute(select(_v.rule, _v.score, _v.findings_omitted)).one()
    assert tuple(row) == ("secret.aws_key", 0.4, 4_900)  # decided by the late block
