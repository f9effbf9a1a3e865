"""The spool on a real directory: order, rotation, restarts, torn lines."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.store.spool import REJECTED_FILE, Spool
from tests.support.databases import make_records


def _rows(count: int, prefix: str = "r", *, verdicts: bool = False) -> list[dict[str, object]]:
    return [record.to_row() for record in make_records(count, prefix, verdicts=verdicts)]


def _replay_all(spool: Spool) -> list[dict[str, object]]:
    rows = []
    for segment in spool.segments_to_replay():
        rows.extend(spool.read_segment(segment))
        spool.remove_segment(segment)
    return rows


def test_rows_come_back_in_order_with_datetimes_restored(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    written = _rows(5)
    spool.append(written[:2])
    spool.append(written[2:])

    assert spool.pending_records == 5
    assert spool.pending_bytes > 0
    read = _replay_all(spool)
    assert read == written
    assert isinstance(read[0]["ts"], datetime)
    assert read[0]["ts"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert not spool
    assert spool.pending_bytes == 0
    assert list(tmp_path.glob("segment-*")) == []


def test_verdicts_come_back_as_recorded(tmp_path: Path) -> None:
    written = _rows(6, verdicts=True)
    Spool(tmp_path).append(written)

    read = _replay_all(Spool(tmp_path))  # as after a restart
    assert read == written
    assert read[2]["verdicts"] == written[2]["verdicts"] != []  # nested lists and dicts
    assert read[1]["ts"] == written[1]["ts"]  # the request's datetime is restored


def test_replay_rotates_so_new_rows_go_to_a_new_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_rows(2, "old"))
    segments = spool.segments_to_replay()
    first = next(segments)
    spool.append(_rows(1, "new"))  # arrives while the old segment is being replayed

    assert [row["id"] for row in spool.read_segment(first)] == ["old-000000", "old-000001"]
    spool.remove_segment(first)
    assert list(segments) == []
    assert spool.pending_records == 1
    assert [row["id"] for row in _replay_all(spool)] == ["new-000000"]


def test_segments_survive_a_restart_oldest_first(tmp_path: Path) -> None:
    first_run = Spool(tmp_path)
    first_run.append(_rows(2, "a"))
    list(first_run.segments_to_replay())  # rotate: a second segment
    first_run.append(_rows(2, "b"))
    del first_run  # the process dies without closing anything

    second_run = Spool(tmp_path)
    assert second_run.pending_records == 4
    second_run.append(_rows(1, "c"))  # never appended to a segment from the earlier run
    ids = [row["id"] for row in _replay_all(second_run)]
    assert ids == ["a-000000", "a-000001", "b-000000", "b-000001", "c-000000"]


def test_a_torn_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append(_rows(3))
    spool.close()
    segment_file = next(tmp_path.glob("segment-*.jsonl"))
    data = segment_file.read_bytes()
    segment_file.write_bytes(data[: len(data) - 40])  # crash in the middle of the last row

    restarted = Spool(tmp_path)
    with caplog.at_level(logging.WARNING, logger="monitor.store.spool"):
        ids = [row["id"] for row in _replay_all(restarted)]
    assert ids == ["r-000000", "r-000001"]
    assert "torn last line" in caplog.text


def test_a_garbled_line_in_the_middle_does_not_stop_the_rest(tmp_path: Path) -> None:
    segment_file = tmp_path / "segment-000000000001.jsonl"
    segment_file.write_bytes(b'{"id": "x1"}\n{"id": \n[1, 2]\n{"id": "x2"}\n')
    spool = Spool(tmp_path)
    assert [row["id"] for row in _replay_all(spool)] == ["x1", "x2"]


def test_rejected_rows_are_kept_apart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.reject(_rows(1), "DataError: value too long")
    assert not spool
    assert b"value too long" in (tmp_path / REJECTED_FILE).read_bytes()


def test_unserializable_values_are_kept_as_text(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    row = _rows(1)[0] | {"extra": {"path": Path("/x"), 1: "int key"}}
    spool.append([row])
    (read,) = _replay_all(spool)
    assert read["extra"] == {"path": "/x", "1": "int key"}
