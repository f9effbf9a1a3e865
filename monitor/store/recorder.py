"""The recorder: request records go to the database in batches, off the request path.

    proxy ──submit()──▶ bounded queue ──batch──▶ write_batch() ──▶ database
                             │ full                   │ outage
                             ▼                        ▼
                           spool  ◀───────────────────┘   (replayed oldest first)

`submit` never blocks and never raises. One background task (`start`/`stop`) collects up to
`batch_size` records, waiting at most `flush_interval_s` after the first, and hands the batch to
`write_batch` in the recorder's own thread: not asyncio's default executor, which health pings,
feedback and other work share, so none of them can hold records back. When the database is
unreachable the batch goes to the spool, and while the spool holds anything new batches follow
it there, so replay keeps their order; the spool is replayed every `retry_interval_s` until it
is empty, then direct writes resume. Writes are idempotent (see `monitor.store.inserts`), so a
record is stored exactly once.

The queue is bounded twice: `queue_size` records and `queue_bytes` (estimated from the content
fields, which dominate: with `content_storage=full` one record can be megabytes). Past either
bound a record spills to the spool. A spool at its `max_bytes` (or a disk that refuses writes)
drops records: counted, and said in one log line when it starts and one when it ends.

With a `Sampler` keeping one plain success in N (`sampling.share`), `submit` sets each kept
record's `weight` and lets the others go before they cost a queue slot, a row or a write;
they are counted in `records_sampled_out_total`. Metrics are fed before `submit`, so
Prometheus still counts every request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.config import Settings
from monitor.record import RequestRecord
from monitor.store.engine import redact_url
from monitor.store.inserts import (
    Row,
    describe_error,
    insert_isolating,
    normalize_rows,
    record_row,
)
from monitor.store.rollup_build import note_late
from monitor.store.sampling import Sampler
from monitor.store.spool import Spool, SpoolFull

logger = logging.getLogger(__name__)

_STOP: Final = object()  # queued by `stop()`: everything before it is written, then the loop ends
# What a record without content takes in memory, roughly (tracemalloc: ~0.8 KB with no verdicts).
RECORD_OVERHEAD_BYTES: Final = 1024


def estimated_size(record: RequestRecord) -> int:
    """A record's size in memory, cheaply: a fixed overhead plus its content's characters."""
    size = RECORD_OVERHEAD_BYTES
    if record.prompt_text is not None:
        size += len(record.prompt_text)
    if record.response_text is not None:
        size += len(record.response_text)
    return size


class Recorder:
    """Batches records into the database, spooling them to disk while it is unreachable."""

    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        *,
        queue_size: int = 20_000,
        queue_bytes: int = 128 * 1024 * 1024,
        batch_size: int = 1000,
        flush_interval_s: float = 0.25,
        retry_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        late_after_s: float | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self.engine = engine
        self.sampler = sampler if sampler is not None else Sampler()
        # Records older than this when written (a spool replay, a long stream) may fall behind
        # the rollups' watermark: their span is marked to be rolled up again. None: never.
        self.late_after_s = late_after_s
        self.spool = spool
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self._clock = clock
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self.queue_bytes = queue_bytes
        self._queued_bytes = 0  # estimated_size() of what the queue holds
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False
        self._submitted = 0  # records queued so far
        self._processed = 0  # of those, records written or spooled
        self._progress = asyncio.Event()
        self._flush_waiters = 0
        self._outage = False
        self._retry_at = 0.0
        # counters, read by the metrics endpoint; the loop's thread and the worker thread both
        # count spooled and dropped records, hence the lock
        self._count_lock = threading.Lock()
        self.records_written_total = 0
        self.records_spooled_total = 0
        self.records_rejected_total = 0
        self.records_dropped_total = 0
        self.records_dropped_spool_full_total = 0  # of the dropped, refused at the spool's cap
        self._spool_refusing = False  # dropping records now: said once, until it stops
        self.write_errors_total = 0
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Recorder:
        return cls(
            engine,
            Spool(
                settings.spool_dir, fsync=settings.spool_fsync, max_bytes=settings.spool_max_bytes
            ),
            queue_size=settings.recorder_queue_size,
            queue_bytes=settings.recorder_queue_bytes,
            batch_size=settings.recorder_batch_size,
            flush_interval_s=settings.recorder_flush_interval_s,
            retry_interval_s=settings.recorder_retry_interval_s,
            # half the rollups' lag: whatever lands behind their watermark is older than this
            late_after_s=settings.rollups.lag_s / 2 if settings.rollups.enabled else None,
            sampler=Sampler(settings.sampling.keep_one_in),
        )

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def spool_bytes(self) -> int:
        return self.spool.pending_bytes

    @property
    def spool_max_bytes(self) -> int | None:
        return self.spool.max_bytes

    @property
    def spool_records(self) -> int:
        return self.spool.pending_records

    @property
    def records_sampled_out_total(self) -> int:
        """Successful requests sampling chose not to store."""
        return self.sampler.sampled_out_total

    @property
    def database_down(self) -> bool:
        """Whether the last write or replay failed for want of a database."""
        return self._outage

    # -- the request path ----------------------------------------------------------------------

    def submit(self, record: RequestRecord) -> None:
        """Hand a record over. Never blocks, never raises: a full queue spills to the spool."""
        try:
            weight = self.sampler.weight(record)
            if not weight:
                return
            record.weight = weight
            if not self._stopping:
                size = estimated_size(record)
                # an empty queue takes even a record past the bound: one is always let through
                if self._queued_bytes + size <= self.queue_bytes or self._queue.empty():
                    try:
                        self._queue.put_nowait(record)
                        self._submitted += 1
                        self._queued_bytes += size
                        return
                    except asyncio.QueueFull:
                        pass
            # on the event loop: not waiting for the disk (the recorder's thread syncs it)
            self._spill([record_row(record)], sync=False)
        except Exception:  # the request must not fail because its record could not be kept
            with self._count_lock:
                self.records_dropped_total += 1
            logger.exception("recorder: record %s lost", getattr(record, "id", "?"))

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("recorder already started")
        self._stopping = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-recorder")
        self._task = asyncio.create_task(self._run(), name="monitor-recorder")

    async def stop(self) -> None:
        """Write (or spool) everything submitted, then end the background task."""
        task, self._stopping = self._task, True
        if task is None:
            self._drain_to_spool()
            return
        if not task.done():
            await self._queue.put(_STOP)
        try:
            await task
        finally:
            self._task = None
            self._drain_to_spool()  # only left over if the task died
            self.spool.close()
            if self._executor is not None:
                self._executor.shutdown(wait=True)  # idle: every write was awaited
                self._executor = None

    async def flush(self) -> None:
        """Return once every record submitted so far is written or spooled."""
        target = self._submitted
        self._flush_waiters += 1
        try:
            while self._processed < target:
                if self._task is None or self._task.done():
                    raise RuntimeError("recorder is not running")
                self._progress.clear()
                await self._progress.wait()
        finally:
            self._flush_waiters -= 1

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.spool:  # left by an earlier run: replay it now, not after the first batch
                await loop.run_in_executor(self._executor, self._write_records, [])
            while True:
                batch, stop = await self._collect()
                self._queued_bytes -= sum(map(estimated_size, batch))
                if batch or self.spool:
                    await loop.run_in_executor(self._executor, self._write_records, batch)
                self._processed += len(batch)
                self._progress.set()
                if stop:
                    return
        finally:
            self._progress.set()  # wake `flush` callers so they see the task ended

    async def _collect(self) -> tuple[list[RequestRecord], bool]:
        """Up to `batch_size` records, and whether `stop()` was asked for."""
        # Idle with a spool: wake up to replay it even if no record arrives.
        idle_timeout = self.retry_interval_s if self.spool else None
        try:
            async with asyncio.timeout(idle_timeout):
                first = await self._queue.get()
        except TimeoutError:
            return [], False
        if first is _STOP:
            return [], True
        batch: list[RequestRecord] = [first]
        deadline = asyncio.get_running_loop().time() + self.flush_interval_s
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or self._flush_waiters:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    # -- one step, run in the recorder's thread --------------------------------------------------

    def write_batch(self, rows: list[Row]) -> None:
        """Store rows: directly when the database is up and the spool empty, else to the spool."""
        if (self.spool or self._outage) and not self.replay_spool():
            self._spill(rows)
            return
        if not rows:
            return
        try:
            rejected = insert_isolating(self.engine, rows)
        except (SQLAlchemyError, OSError) as exc:
            self._on_outage(exc)
            self._spill(rows)
            return
        self.records_written_total += len(rows) - len(rejected)
        self._reject(rejected)
        self._note_late(rows)

    def replay_spool(self, *, force: bool = False) -> bool:
        """Write spooled rows, oldest first; True once the spool is empty.

        During an outage, tries at most every `retry_interval_s` unless `force` is given.
        """
        if self._outage and not force and self._clock() < self._retry_at:
            return False
        replayed = 0
        try:
            for segment in self.spool.segments_to_replay():
                rows, bad = normalize_rows(self.spool.read_segment(segment))
                self._reject(bad)
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start : start + self.batch_size]
                    rejected = insert_isolating(self.engine, chunk)
                    self.records_written_total += len(chunk) - len(rejected)
                    self._reject(rejected)
                    self._note_late(chunk)
                self.spool.remove_segment(segment)
                replayed += segment.records
        except (SQLAlchemyError, OSError) as exc:
            self._on_outage(exc)
            return False
        if self._outage:
            self._outage = False
            logger.warning(
                "recorder: database %s reachable again; replayed %d spooled record(s)",
                redact_url(self.engine.url),
                replayed,
            )
        return True

    def _note_late(self, rows: list[Row]) -> None:
        """Have the rollups roll up again the span of rows written late (best effort: a
        failure is logged, the rows are stored all the same)."""
        if self.late_after_s is None:
            return
        times = [_aware(ts) for row in rows if isinstance(ts := row.get("ts"), datetime)]
        if not times or min(times) >= datetime.now(UTC) - timedelta(seconds=self.late_after_s):
            return
        try:
            note_late(self.engine, min(times), max(times) + timedelta(microseconds=1))
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("recorder: could not mark late records for the rollups: %s",
                           describe_error(exc))  # fmt: skip

    def _write_records(self, records: list[RequestRecord]) -> None:
        # Rows are built here, in the worker thread, to keep the event loop free for requests.
        self._write_batch_safely([record_row(record) for record in records])

    def _write_batch_safely(self, rows: list[Row]) -> None:
        try:
            self.write_batch(rows)
        except Exception:  # a bug must not kill the loop: keep the rows and carry on
            logger.exception("recorder: unexpected error writing %d record(s)", len(rows))
            self._spill(rows)

    def _on_outage(self, exc: BaseException) -> None:
        self.write_errors_total += 1
        self.last_error = describe_error(exc)
        self._retry_at = self._clock() + self.retry_interval_s
        if not self._outage:
            self._outage = True
            logger.warning(
                "recorder: database %s unreachable (%s); spooling records to %s until it returns",
                redact_url(self.engine.url),
                self.last_error,
                self.spool.directory,
            )

    def _spill(self, rows: list[Row], *, sync: bool = True) -> None:
        """Rows to the spool; when it refuses them (full, or the disk), count them lost and
        say so once per episode, not once per record."""
        if not rows:
            return
        try:
            self.spool.append(rows, sync=sync)
        except OSError as exc:
            with self._count_lock:
                self.records_dropped_total += len(rows)
                if isinstance(exc, SpoolFull):
                    self.records_dropped_spool_full_total += len(rows)
                first, self._spool_refusing = not self._spool_refusing, True
            if first:
                logger.error(
                    "recorder: %s; dropping records (counted in "
                    "gemma_monitor_recorder_records_dropped_total) until it takes them again",
                    exc if isinstance(exc, SpoolFull) else f"spool {self.spool.directory}: {exc}",
                )
            return
        with self._count_lock:
            self.records_spooled_total += len(rows)
            recovered, self._spool_refusing = self._spool_refusing, False
        if recovered:
            logger.warning("recorder: spool %s takes records again", self.spool.directory)

    def _reject(self, rejected: list[tuple[Row, str]]) -> None:
        for row, reason in rejected:
            self.records_rejected_total += 1
            logger.error("recorder: database refused record %s: %s", row.get("id"), reason)
            try:
                self.spool.reject([row], reason)
            except OSError:
                logger.exception("recorder: could not keep refused record %s", row.get("id"))

    def _drain_to_spool(self) -> None:
        rows = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                rows.append(record_row(item))
        self._queued_bytes = 0
        self._spill(rows)
        self._processed += len(rows)
        self._progress.set()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
