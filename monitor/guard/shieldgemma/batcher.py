"""Coalesces the prompts of concurrent callers into batches for one worker thread.

A forward pass over 16 prompts costs far less than 16 passes over one, and the guard asks
ShieldGemma several questions per text (one per harm) for many requests at once. Callers
`submit` rendered prompts and wait for their scores; one task owned by the batcher takes
what is queued (up to `batch_size`, waiting at most `max_wait_s` for the batch to fill) and
runs `score_batch` in the executor. The executor has a single thread: that thread is the
classifier's concurrency limit, and while it works the queue fills for the next batch.

A caller that gives up (timeout, cancellation) only stops waiting: the batch it was part of
goes on for the others. A prompt nobody waits for any more is dropped before it is scored;
the same prompt asked twice while queued is scored once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from monitor.guard.classifier import ClassifierError

ScoreBatch = Callable[[list[str]], list[float]]


@dataclass(eq=False, slots=True)
class _Job:
    key: str
    prompt: str
    future: asyncio.Future[float]
    waiters: int = field(default=1)


class MicroBatcher:
    """Scores prompts in batches of at most `batch_size`, one batch at a time in `executor`.

    Bound to the event loop of its first `submit`; `score` from another loop (a new test's)
    starts a fresh queue and task there.
    """

    def __init__(
        self,
        score_batch: ScoreBatch,
        executor: Executor,
        *,
        batch_size: int = 16,
        max_wait_s: float = 0.005,
        on_scored: Callable[[str, float], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._score_batch = score_batch
        self._executor = executor
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self._on_scored = on_scored
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._queued: dict[str, _Job] = {}
        self._closed = False
        self.batches = 0  # forward passes run, for tests and the bench
        self.scored = 0  # prompts scored

    async def score(self, requests: Sequence[tuple[str, str]], timeout_s: float) -> list[float]:
        """Scores of (key, prompt) pairs, in order. Raises `TimeoutError` after `timeout_s`
        (the batch goes on without this caller), `ClassifierError` if scoring failed."""
        if not requests:
            return []
        jobs = [self._submit(key, prompt) for key, prompt in requests]
        try:
            _, pending = await asyncio.wait([j.future for j in jobs], timeout=timeout_s)
            if pending:
                raise TimeoutError(f"no score within {timeout_s:g}s")
            return [j.future.result() for j in jobs]
        finally:
            for job in jobs:
                job.waiters -= 1

    def _submit(self, key: str, prompt: str) -> _Job:
        if self._closed:
            raise ClassifierError("the classifier is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._start(loop)
        assert self._queue is not None
        job = self._queued.get(key)
        if job is not None and not job.future.done():
            job.waiters += 1
            return job
        job = _Job(key, prompt, loop.create_future())
        self._queued[key] = job
        self._queue.put_nowait(job)
        return job

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue = asyncio.Queue()
        self._queued = {}
        self._task = loop.create_task(self._run(self._queue), name="shieldgemma-batcher")

    async def _run(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            batch = await self._collect(queue)
            if batch:
                await self._run_batch(batch)

    async def _collect(self, queue: asyncio.Queue[_Job]) -> list[_Job]:
        """The next batch: the first queued job, then more until full or `max_wait_s` passed;
        jobs nobody waits for any more are dropped."""
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await queue.get())
            except TimeoutError:
                break
        live = []
        for job in batch:
            if job.waiters > 0:
                live.append(job)
            else:
                self._forget(job)
                job.future.cancel()
        return live

    async def _run_batch(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        prompts = [job.prompt for job in batch]
        try:
            scores = await loop.run_in_executor(self._executor, self._score_batch, prompts)
            if len(scores) != len(batch):
                raise ClassifierError(f"{len(scores)} scores for {len(batch)} prompts")
        except asyncio.CancelledError:  # closed mid-pass
            for job in batch:
                self._forget(job)
                if not job.future.done():
                    job.future.set_exception(ClassifierError("the classifier was closed"))
                    job.future.exception()
            raise
        except Exception as exc:
            error = exc if isinstance(exc, ClassifierError) else ClassifierError(str(exc))
            if error is not exc:
                error.__cause__ = exc
            for job in batch:
                self._forget(job)
                if not job.future.done():
                    job.future.set_exception(error)
                    if job.waiters <= 0:
                        job.future.exception()  # nobody will read it: no "never retrieved"
            return
        self.batches += 1
        self.scored += len(batch)
        for job, value in zip(batch, scores, strict=True):
            self._forget(job)
            if self._on_scored is not None:
                self._on_scored(job.key, value)
            if not job.future.done():
                job.future.set_result(value)

    def _forget(self, job: _Job) -> None:
        if self._queued.get(job.key) is job:
            del self._queued[job.key]

    async def aclose(self) -> None:
        """Stop the batching task; callers still waiting get `ClassifierError`."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for job in list(self._queued.values()):
            if not job.future.done():
                job.future.set_exception(ClassifierError("the classifier was closed"))
                job.future.exception()
        self._queued.clear()
