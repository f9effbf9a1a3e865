"""`QualityWorker`: scores a sample of completed requests, off the request path.

The proxy handler calls `offer(record, prompt, response)` for each request that ended `ok`
with some output. `offer` is O(1) and never blocks nor raises: it keeps the request when its id
falls in the sample (`quality.sample_rate`, decided by a hash of the id, so replicas and
retries agree on which requests are scored) and drops it, counted, when the bounded queue is
full. One task owned by the app's lifespan takes queued requests in batches (of up to
`BATCH_SIZE`, the first waiting up to `LINGER_S` for others) and scores them with the
configured scorers:

- `heuristic`: the seed's four scores and their mean (`overall`), `monitor.quality.heuristic`;
- `embedding`: prompt/response cosine similarity (`similarity`, and the same as `overall`),
  the model loaded on first use in a thread; without the `quality` extra it is skipped, with
  one warning;
- `judge`: the backend's model rates the answer 1..5 (`overall` = (rating - 1) / 4, the rating
  in `detail`); one call per request, bounded by a timeout, never retried; an error or an
  unreadable answer is logged and counted as a failure;
- `guard`: `safety` from the guard's verdicts on the request (`monitor.quality.guard_safety`).

CPU work (heuristics, embeddings) runs in a worker thread, never on the event loop; the judge
is one awaited HTTP call. Scores are written with one upsert per batch, in a thread.

Content lives in memory only while its request waits and is scored: nothing of it is stored
here (the judge's raw answer goes into `detail` only when `store_content` is on, and then the
prompt and response are in the record already). A database that cannot take a batch drops it:
scores are samples, not records; the first failure of an outage is logged as a warning, its
end at info, and every dropped score is counted per scorer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.config import QualitySettings
from monitor.quality import heuristic
from monitor.quality.embedding import EmbeddingScorer, EmbeddingUnavailable
from monitor.quality.guard_safety import guard_safety
from monitor.quality.judge import Message, judge
from monitor.record import RequestRecord, utcnow
from monitor.store.samples import QualityScore

log = logging.getLogger(__name__)

Write = Callable[[Sequence[QualityScore]], object]  # blocking; called in a thread
Judge = Callable[[list[Message], str | None], Awaitable[str]]  # (messages, model) → answer

MAX_TEXT_CHARS = 64 * 1024  # per text kept for scoring: bounds the queue's memory
BATCH_SIZE = 64
# How long the first request of a batch waits for others to join it. A batch costs two hops
# to a thread and back (scoring, writing) and one write transaction, whatever its size, and
# each hop takes the interpreter lock from the event loop: with batches of whatever had
# queued (a few requests) a 10 % sample at 4,000 requests a second cost the proxy about
# 35 µs of CPU a request, most of it in those hops and the database's commits.
LINGER_S = 0.2


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is in the sample: the same answer for the same id, everywhere."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2.0**64


@dataclass(frozen=True, slots=True)
class Sample:
    """A request waiting to be scored, with its texts (in memory only)."""

    record: RequestRecord
    prompt: str
    response: str


@dataclass
class QualityStats:
    """Per scorer: requests scored (written), dropped (queue full, database down) and failed
    (the scorer raised, timed out, or could not read the judge's answer)."""

    scored: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    queue_depth: int = 0
    # the `overall` scores written, per scorer: their sum and count (a mean for Prometheus)
    overall_sum: dict[str, float] = field(default_factory=dict)
    overall_count: Counter[str] = field(default_factory=Counter)


class QualityWorker:
    """Owns the queue of sampled requests and the task that scores them."""

    def __init__(
        self,
        settings: QualitySettings,
        write: Write,
        *,
        embedding: EmbeddingScorer | None = None,
        judge: Judge | None = None,
        store_content: bool = False,
        judge_timeout_s: float = 30.0,
        batch_size: int = BATCH_SIZE,
        linger_s: float = LINGER_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sample_rate = settings.sample_rate
        self.scorers = tuple(dict.fromkeys(settings.scorers))
        if "embedding" in self.scorers and embedding is None:
            embedding = EmbeddingScorer()
        if "judge" in self.scorers and judge is None:
            raise ValueError("the judge scorer needs a judge callable")
        self._embedding = embedding
        self._judge = judge
        self._write = write
        self._store_content = store_content
        self._judge_timeout_s = judge_timeout_s
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._clock = clock
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._embedding_off = False
        self._store_down = False
        self._judge_failing = False
        self.stats = QualityStats()

    # --- the request path ---------------------------------------------------------------

    def offer(self, record: RequestRecord, prompt: str, response: str) -> bool:
        """Queue a finished request for scoring if it is `ok`, has output and is sampled.
        O(1), never blocks, never raises; True when it was queued."""
        try:
            if not self.scorers or record.outcome != "ok" or not response:
                return False
            if not sampled(record.id, self.sample_rate):
                return False
            try:
                self._queue.put_nowait(
                    Sample(record, prompt[:MAX_TEXT_CHARS], response[:MAX_TEXT_CHARS])
                )
            except asyncio.QueueFull:
                self.stats.dropped.update(self.scorers)
                return False
            self.stats.queue_depth = self._queue.qsize()
            return True
        except Exception:  # a defect here must not fail the request that was just answered
            log.exception("quality: could not queue a finished request")
            return False

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("quality worker already running")
        self._task = asyncio.create_task(self.run(), name="quality")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Score what is queued (for at most `drain_s` seconds), then end the task; what is
        still queued then is counted as dropped."""
        task, self._task = self._task, None
        if task is None:
            return
        if drain_s > 0 and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_s)
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("quality: worker ended with an error", exc_info=task.exception())
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self.stats.dropped.update(self.scorers)
        self.stats.queue_depth = 0

    async def run(self) -> None:
        """Score batches as they come, forever."""
        while True:
            batch = [await self._queue.get()]
            if self._linger_s > 0 and self._queue.qsize() < self._batch_size - 1:
                await asyncio.sleep(self._linger_s)  # let others join: see LINGER_S
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.score_batch(batch)
            except Exception:  # a defect in a scorer: counted there; the loop must go on
                log.exception("quality: scoring a batch failed")
            finally:
                for _ in batch:
                    self._queue.task_done()
                self.stats.queue_depth = self._queue.qsize()

    # --- one batch ------------------------------------------------------------------------------

    async def score_batch(self, batch: Sequence[Sample]) -> list[QualityScore]:
        """Score a batch with every configured scorer and write the scores; returns them."""
        scores = await asyncio.to_thread(self._score_in_thread, batch)
        if "judge" in self.scorers:
            for sample in batch:
                scores.extend(await self._judged(sample))
        await self._store(scores)
        return scores

    def _score_in_thread(self, batch: Sequence[Sample]) -> list[QualityScore]:
        now = self._clock()
        out: list[QualityScore] = []
        for name in self.scorers:
            if name == "judge":
                continue
            try:
                out.extend(self._score_cpu(name, batch, now))
            except EmbeddingUnavailable as exc:
                self._embedding_off = True
                log.warning("quality: embedding scorer off: %s", exc)
            except Exception:
                self.stats.failed[name] += len(batch)
                log.exception("quality: the %s scorer failed on %d requests", name, len(batch))
        return out

    def _score_cpu(self, name: str, batch: Sequence[Sample], now: datetime) -> list[QualityScore]:
        out: list[QualityScore] = []
        if name == "heuristic":
            for s in batch:
                result = heuristic.score(s.prompt, _text(s.response))
                for metric, value in result.as_dict().items():
                    out.append(QualityScore(s.record.id, now, "heuristic", metric, value))
        elif name == "guard":
            for s in batch:
                value, detail = guard_safety(s.record.verdicts)
                out.append(QualityScore(s.record.id, now, "guard", "safety", value, detail))
        elif name == "embedding" and self._embedding is not None and not self._embedding_off:
            pairs = [(s.prompt, _text(s.response)) for s in batch]
            for s, value in zip(batch, self._embedding.score_many(pairs), strict=True):
                for metric in ("similarity", "overall"):
                    out.append(QualityScore(s.record.id, now, "embedding", metric, value))
        return out

    async def _judged(self, sample: Sample) -> list[QualityScore]:
        if self._judge is None:
            return []
        ask, model = self._judge, sample.record.model

        async def complete(messages: list[Message]) -> str:
            return await ask(messages, model)

        try:
            async with asyncio.timeout(self._judge_timeout_s):
                result = await judge(sample.prompt, _text(sample.response), complete)
        except Exception as exc:
            self._judge_failed(sample, f"{exc.__class__.__name__}: {exc}")
            return []
        if result is None:
            self._judge_failed(sample, "the answer holds no rating")
            return []
        if self._judge_failing:
            self._judge_failing = False
            log.info("quality: the judge answers again")
        detail: dict[str, Any] = {"rating": result.rating}
        if self._store_content:
            detail["answer"] = result.answer
        now = self._clock()
        return [QualityScore(sample.record.id, now, "judge", "overall", result.score, detail)]

    def _judge_failed(self, sample: Sample, why: str) -> None:
        self.stats.failed["judge"] += 1
        level = logging.DEBUG if self._judge_failing else logging.WARNING
        log.log(level, "quality: judge failed on request %s: %s", sample.record.id, why)
        self._judge_failing = True

    async def _store(self, scores: list[QualityScore]) -> None:
        scorers = Counter(scorer for _, scorer in {(s.request_id, s.scorer) for s in scores})
        if not scores:
            return
        try:
            await asyncio.to_thread(self._write, scores)
        except Exception as exc:
            self.stats.dropped.update(scorers)
            if not self._store_down:
                self._store_down = True
                log.warning("quality: scores dropped while the database is unreachable: %s", exc)
            return
        if self._store_down:
            self._store_down = False
            log.info("quality: the database takes scores again")
        self.stats.scored.update(scorers)
        for score in scores:
            if score.metric == "overall":
                sums = self.stats.overall_sum
                sums[score.scorer] = sums.get(score.scorer, 0.0) + score.value
                self.stats.overall_count[score.scorer] += 1


def _text(response: str) -> str:
    """The response as scored: tool-call fragments (marked by NUL in the relayed text) out."""
    return response.replace("\x00", "") if "\x00" in response else response
