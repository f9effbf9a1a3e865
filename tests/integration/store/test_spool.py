"""The spool on a real directory: order, rotation, restarts, torn lines."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from monitor.store.spool import REJECTED_FILE, Spool, SpoolFull, SpoolLocked
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


def test_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    old = os.umask(0)  # the most permissive: files would be world-writable
    try:
        spool = Spool(directory)
        spool.append(_rows(2))
        spool.reject(_rows(1), "DataError: value too long")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [*directory.glob("segment-*.jsonl"), directory / REJECTED_FILE, directory / ".lock"]
    assert len(files) == 3
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {
        path.name: 0o600 for path in files
    }


def test_an_existing_open_directory_is_made_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    Spool(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_second_process_on_the_directory_is_refused_at_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    other = subprocess.run(
        [sys.executable, "-c", f"from monitor.store.spool import Spool; Spool({str(tmp_path)!r})"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode != 0
    assert "SpoolLocked" in other.stderr
    assert f"in use by another process (pid {os.getpid()})" in other.stderr
    with pytest.raises(SpoolLocked):  # a second spool in this process, too
        Spool(tmp_path)

    spool.close()  # released: the next process may start
    Spool(tmp_path).close()


def test_rows_appended_after_close_take_the_lock_for_that_write(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close()
    spool.append(_rows(1, "late"))  # a straggler at shutdown: written, lock released again
    restarted = Spool(tmp_path)
    assert [row["id"] for row in _replay_all(restarted)] == ["late-000000"]
    with pytest.raises(SpoolLocked):
        spool.append(_rows(1, "later"))  # the directory has a new owner now


def test_the_byte_cap_refuses_rows_past_it_and_writes_nothing_of_them(tmp_path: Path) -> None:
    one = len(orjson.dumps(_rows(1)[0], default=str)) + 1
    spool = Spool(tmp_path, max_bytes=one * 5 + one // 2)
    spool.append(_rows(3, "a"))
    with pytest.raises(SpoolFull, match="is full"):
        spool.append(_rows(3, "b"))  # would make 6 rows: refused whole
    spool.append(_rows(2, "c"))  # 5 fit
    assert spool.pending_records == 5
    assert spool.pending_bytes == sum(p.stat().st_size for p in tmp_path.glob("segment-*"))
    with pytest.raises(SpoolFull):
        spool.append(_rows(1, "d"))
    assert [row["id"][0] for row in _replay_all(spool)] == ["a"] * 3 + ["c"] * 2
    spool.append(_rows(1, "e"))  # replayed: room again
    assert spool.pending_records == 1


def test_segments_found_at_start_count_against_the_cap(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append(_rows(4))
    first.close()
    restarted = Spool(tmp_path, max_bytes=first.pending_bytes + 10)
    assert restarted.pending_bytes == first.pending_bytes
    with pytest.raises(SpoolFull):
        restarted.append(_rows(1, "more"))


def test_a_segment_that_disappears_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append(_rows(2))
    (segment,) = spool.segments_to_replay()
    segment.path.unlink()  # removed by hand, or the volume was swapped
    with caplog.at_level(logging.WARNING, logger="monitor.store.spool"):
        assert spool.read_segment(segment) == []
    spool.remove_segment(segment)
    assert not spool and spool.pending_bytes == 0
    assert "disappeared; its 2 record(s) are lost" in caplog.text


def test_with_fsync_each_write_and_each_new_segment_name_reach_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the real fsync, noting what it was given
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool = Spool(tmp_path / "on")  # fsync is the default
    spool.append(_rows(1))
    spool.append(_rows(1, "b"))
    list(spool.segments_to_replay())  # rotate: the next append creates a second segment
    spool.append(_rows(1, "c"))
    directory = str(tmp_path / "on")
    assert synced == [
        directory,
        f"{directory}/segment-000000000001.jsonl",
        f"{directory}/segment-000000000001.jsonl",
        directory,
        f"{directory}/segment-000000000002.jsonl",
    ]

    synced.clear()  # an append that does not wait for the disk is synced by the next that does
    spool.append(_rows(1, "d"), sync=False)
    assert synced == []
    spool.append(_rows(1, "e"))
    assert synced == [f"{directory}/segment-000000000002.jsonl"]

    synced.clear()  # ... or when its segment is closed
    list(spool.segments_to_replay())
    spool.append(_rows(1, "f"), sync=False)
    spool.close()
    assert synced == [directory, f"{directory}/segment-000000000003.jsonl"]

    synced.clear()
    off = Spool(tmp_path / "off", fsync=False)
    off.append(_rows(1))
    off.close()
    assert synced == []
