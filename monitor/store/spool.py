"""An append-only, crash-safe spool on disk for records the database could not take yet.

The spool is a directory of segment files, `segment-<sequence>.jsonl`, one row per line
(JSON via orjson; datetimes as ISO 8601 strings, turned back into datetimes on read). Rows are
appended to the newest segment. To replay, `segments_to_replay()` closes that segment (new rows
go to a fresh one) and hands out the closed segments oldest first; each is read, written to the
database, then removed. Segments left behind by a previous process are found at startup and
replayed like any other.

A crash in the middle of a write leaves a torn last line: it is skipped with a warning when the
segment is read, and the segment is never appended to again (a new process starts a new one).
Rows the database rejects for good go to `rejected.jsonl` beside the segments, for a human.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^segment-(\d{12})\.jsonl$")
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
REJECTED_FILE = "rejected.jsonl"


@dataclass(frozen=True, slots=True)
class Segment:
    """One closed segment file: `records` and `size` as counted when it was written or found."""

    sequence: int
    path: Path
    size: int
    records: int


class Spool:
    """Rows waiting on disk for the database. Thread-safe: appends and replays may overlap."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: bool = False,
        datetime_fields: Collection[str] = ("ts",),
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._datetime_fields = frozenset(datetime_fields)
        self._lock = threading.Lock()
        self._closed: dict[int, Segment] = {}
        self._file: IO[bytes] | None = None
        self._current_size = 0
        self._current_records = 0
        for path in sorted(self.directory.iterdir()):
            match = _SEGMENT.match(path.name)
            if match:
                seq = int(match.group(1))
                data = path.read_bytes()
                self._closed[seq] = Segment(seq, path, len(data), data.count(b"\n"))
        # Never append to a segment found on disk: its last line may be torn.
        self._sequence = max(self._closed, default=0) + 1
        if self._closed:
            logger.info(
                "spool %s holds %d record(s) from an earlier run; they will be replayed",
                self.directory,
                self.pending_records,
            )

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return self._current_size + sum(s.size for s in self._closed.values())

    @property
    def pending_records(self) -> int:
        """Rows waiting (lines written; a torn line found at startup counts too)."""
        with self._lock:
            return self._current_records + sum(s.records for s in self._closed.values())

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._closed) or self._current_records > 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to the current segment. Raises OSError when the disk refuses them."""
        if not rows:
            return
        data = b"".join(orjson.dumps(row, default=str, option=_DUMPS_OPTIONS) for row in rows)
        with self._lock:
            if self._file is None:
                path = self._segment_path(self._sequence)
                self._file = path.open("ab")
            try:
                self._file.write(data)
                self._file.flush()
                if self._fsync:
                    os.fsync(self._file.fileno())
            except OSError:
                # Part of `data` may be on disk: close this segment so no later row is glued
                # to a torn line, and let the caller decide what to do with these rows.
                self._close_current()
                raise
            self._current_size += len(data)
            self._current_records += len(rows)

    def segments_to_replay(self) -> Iterator[Segment]:
        """Close the current segment and yield every closed segment, oldest first."""
        with self._lock:
            self._close_current()
            segments = [self._closed[seq] for seq in sorted(self._closed)]
        yield from segments

    def read_segment(self, segment: Segment) -> list[dict[str, Any]]:
        """The rows of a segment, in order, skipping (with a warning) lines that do not parse."""
        rows: list[dict[str, Any]] = []
        lines = segment.path.read_bytes().split(b"\n")
        last = len(lines) - 1
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                what = "torn last line" if number == last else f"unreadable line {number + 1}"
                logger.warning("spool %s: skipping %s", segment.path.name, what)
                continue
            if not isinstance(row, dict):
                logger.warning("spool %s: skipping line %d, not a row", segment.path, number + 1)
                continue
            rows.append(self._restore(row))
        return rows

    def remove_segment(self, segment: Segment) -> None:
        """Delete a segment once its rows are safely in the database."""
        with self._lock:
            self._closed.pop(segment.sequence, None)
            segment.path.unlink(missing_ok=True)

    def reject(self, rows: list[dict[str, Any]], reason: str) -> None:
        """Keep rows the database refused for good (bad data), with why, for a human to see."""
        lines = (
            orjson.dumps({"reason": reason, "row": row}, default=str, option=_DUMPS_OPTIONS)
            for row in rows
        )
        with self._lock, (self.directory / REJECTED_FILE).open("ab") as file:
            file.write(b"".join(lines))

    def close(self) -> None:
        with self._lock:
            self._close_current()

    def _close_current(self) -> None:
        if self._file is None:
            return
        self._file.close()
        self._file = None
        seq = self._sequence
        self._closed[seq] = Segment(
            seq, self._segment_path(seq), self._current_size, self._current_records
        )
        self._sequence += 1
        self._current_size = 0
        self._current_records = 0

    def _segment_path(self, sequence: int) -> Path:
        return self.directory / f"segment-{sequence:012d}.jsonl"

    def _restore(self, row: dict[str, Any]) -> dict[str, Any]:
        for name in self._datetime_fields:
            value = row.get(name)
            if isinstance(value, str):
                try:
                    row[name] = datetime.fromisoformat(value)
                except ValueError:
                    logger.warning("spool: field %s is not a datetime: %r", name, value)
        return row
