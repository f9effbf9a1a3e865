"""The quality worker without a database: sampling, the queue bound, scorers, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from monitor.config import QualitySettings
from monitor.quality.embedding import EmbeddingScorer, EmbeddingUnavailable
from monitor.quality.guard_safety import guard_safety
from monitor.record import RequestRecord
from monitor.store.samples import QualityScore
from monitor.workers.quality import QualityWorker, Sample, sampled
from tests.support.databases import sample_verdicts

PROMPT = "Explain how photosynthesis turns sunlight into chemical energy."
ANSWER = "Photosynthesis captures sunlight in chlorophyll and stores its energy as sugar."


def record(request_id: str = "req-1", **fields: object) -> RequestRecord:
    base: dict[str, object] = {
        "id": request_id,
        "ts": datetime(2026, 1, 1, tzinfo=UTC),
        "route": "/v1/chat/completions",
        "protocol": "openai",
        "model": "gemma",
    }
    return RequestRecord(**(base | fields))  # type: ignore[arg-type]


class Sink:
    """A write function that keeps what it was given, or fails while `down`."""

    def __init__(self) -> None:
        self.scores: list[QualityScore] = []
        self.down = False

    def __call__(self, scores: Sequence[QualityScore]) -> int:
        if self.down:
            raise ConnectionError("database unreachable")
        self.scores.extend(scores)
        return len(scores)

    def values(self, scorer: str) -> dict[str, float]:
        return {s.metric: s.value for s in self.scores if s.scorer == scorer}


def worker(sink: Sink, **settings: object) -> QualityWorker:
    return QualityWorker(QualitySettings.model_validate({"sample_rate": 1.0, **settings}), sink)


def test_sampling_is_a_stable_share_of_ids() -> None:
    ids = [f"{i:032x}" for i in range(20_000)]
    chosen = [i for i in ids if sampled(i, 0.1)]
    assert 1_800 < len(chosen) < 2_200
    assert chosen == [i for i in ids if sampled(i, 0.1)]  # the same ids every time
    assert set(chosen) <= {i for i in ids if sampled(i, 0.5)}  # a larger rate keeps them
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert not any(sampled(i, 0.0) for i in ids[:100])


def test_offer_keeps_only_ok_requests_with_output() -> None:
    w = worker(Sink())
    assert w.offer(record("a"), PROMPT, ANSWER)
    assert not w.offer(record("b", outcome="backend_error"), PROMPT, ANSWER)
    assert not w.offer(record("c"), PROMPT, "")
    assert not worker(Sink(), sample_rate=0.0).offer(record("d"), PROMPT, ANSWER)
    assert not worker(Sink(), scorers=[]).offer(record("e"), PROMPT, ANSWER)
    assert w.stats.queue_depth == 1


def test_a_full_queue_drops_and_counts_per_scorer() -> None:
    w = worker(Sink(), queue_size=2, scorers=["heuristic", "guard"])
    results = [w.offer(record(f"r{i}"), PROMPT, ANSWER) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert w.stats.dropped == {"heuristic": 3, "guard": 3}


def test_offer_never_raises() -> None:
    w = worker(Sink())
    assert not w.offer(None, PROMPT, ANSWER)  # type: ignore[arg-type]


async def test_heuristic_and_guard_scores() -> None:
    sink = Sink()
    w = worker(sink, scorers=["heuristic", "guard"])
    redacted = record(verdicts=sample_verdicts(1))  # an input verdict redacting an email
    await w.score_batch([Sample(redacted, PROMPT, ANSWER)])
    heuristic = sink.values("heuristic")
    assert set(heuristic) == {"relevance", "coherence", "safety", "factual_accuracy", "overall"}
    assert heuristic["overall"] == pytest.approx(
        sum(v for k, v in heuristic.items() if k != "overall") / 4
    )
    assert sink.values("guard") == {"safety": 0.5}
    assert w.stats.scored == {"heuristic": 1, "guard": 1}


def test_guard_safety_follows_the_strongest_action() -> None:
    assert guard_safety([]) == (1.0, {"action": "allow", "rule": None, "findings": 0})
    assert guard_safety(sample_verdicts(1))[0] == 0.5  # redact (a near miss costs nothing)
    value, detail = guard_safety(sample_verdicts(2))
    assert (value, detail["action"], detail["rule"]) == (0.0, "block", "secret.aws_key")
    flagged = [{"findings": [{"action": "flag", "rule": "injection.x"}]}]
    assert guard_safety(flagged)[0] == 0.75


async def test_tool_call_markers_are_not_scored_as_text() -> None:
    sink = Sink()
    w = worker(sink, scorers=["heuristic"])
    await w.score_batch([Sample(record(), PROMPT, ANSWER + "\x00\x00")])
    plain = Sink()
    await worker(plain, scorers=["heuristic"]).score_batch([Sample(record(), PROMPT, ANSWER)])
    assert sink.values("heuristic") == plain.values("heuristic")


async def test_judge_rating_becomes_a_score_and_failures_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers: list[str | Exception] = ["Rating: 4", "no idea", ConnectionError("down"), "5"]
    asked: list[str | None] = []

    async def ask(messages: list[dict[str, str]], model: str | None) -> str:
        asked.append(model)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sink = Sink()
    settings = QualitySettings(sample_rate=1.0, scorers=["judge"])
    w = QualityWorker(settings, sink, judge=ask)
    batch = [Sample(record(f"r{i}"), PROMPT, ANSWER) for i in range(4)]
    with caplog.at_level(logging.DEBUG, "monitor.workers.quality"):
        await w.score_batch(batch)
    assert [(s.request_id, s.metric, s.value, s.detail) for s in sink.scores] == [
        ("r0", "overall", 0.75, {"rating": 4}),
        ("r3", "overall", 1.0, {"rating": 5}),
    ]
    assert asked == ["gemma"] * 4
    assert w.stats.failed == {"judge": 2}
    assert w.stats.scored == {"judge": 2}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per run of failures; the rest at debug


async def test_a_judge_that_hangs_times_out() -> None:
    async def hang(messages: list[dict[str, str]], model: str | None) -> str:
        await asyncio.Event().wait()
        return ""

    settings = QualitySettings(sample_rate=1.0, scorers=["judge"])
    w = QualityWorker(settings, Sink(), judge=hang, judge_timeout_s=0.05)
    assert await w.score_batch([Sample(record(), PROMPT, ANSWER)]) == []
    assert w.stats.failed == {"judge": 1}


async def test_missing_embedding_extra_is_skipped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing() -> object:
        raise EmbeddingUnavailable("pip install 'gemma-monitor[quality]'")

    sink = Sink()
    settings = QualitySettings(sample_rate=1.0, scorers=["heuristic", "embedding"])
    w = QualityWorker(settings, sink, embedding=EmbeddingScorer(loader=missing))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "monitor.workers.quality"):
        for i in range(3):
            await w.score_batch([Sample(record(f"r{i}"), PROMPT, ANSWER)])
    assert {s.scorer for s in sink.scores} == {"heuristic"}
    assert len([r for r in caplog.records if "embedding" in r.getMessage()]) == 1
    assert w.stats.scored == {"heuristic": 3}


async def test_unreachable_database_drops_scores_with_one_warning_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    w = worker(sink, scorers=["heuristic", "guard"])
    sink.down = True
    with caplog.at_level(logging.INFO, "monitor.workers.quality"):
        for i in range(3):
            await w.score_batch([Sample(record(f"down{i}"), PROMPT, ANSWER)])
        sink.down = False
        await w.score_batch([Sample(record("up"), PROMPT, ANSWER)])
    assert w.stats.dropped == {"heuristic": 3, "guard": 3}
    assert w.stats.scored == {"heuristic": 1, "guard": 1}
    assert {s.request_id for s in sink.scores} == {"up"}
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len([m for level, m in messages if level == logging.WARNING]) == 1
    assert any("again" in m for level, m in messages if level == logging.INFO)


async def test_the_task_scores_what_is_offered_and_stop_drains() -> None:
    sink = Sink()
    w = worker(sink, scorers=["heuristic"])
    w.start()
    for i in range(20):
        assert w.offer(record(f"r{i}"), PROMPT, ANSWER)
    await w.stop()
    assert {s.request_id for s in sink.scores} == {f"r{i}" for i in range(20)}
    assert w.stats.scored == {"heuristic": 20}
    assert w.stats.queue_depth == 0
    assert not w.running


def test_counts_reach_prometheus_per_scorer() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from monitor.metrics import Metrics

    w = worker(Sink(), queue_size=1, scorers=["heuristic", "guard"])
    metrics = Metrics()
    metrics.track_quality(w.stats)
    for i in range(3):
        w.offer(record(f"r{i}"), PROMPT, ANSWER)
    w.stats.failed["judge"] += 1
    found = {
        (s.name, s.labels.get("scorer")): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if "quality" in s.name
    }
    assert found == {
        ("gemma_monitor_quality_queue_depth", None): 1.0,
        ("gemma_monitor_quality_dropped_total", "guard"): 2.0,
        ("gemma_monitor_quality_dropped_total", "heuristic"): 2.0,
        ("gemma_monitor_quality_failed_total", "judge"): 1.0,
    }


class CountingSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __call__(self, scores: Sequence[QualityScore]) -> int:
        self.writes += 1
        return super().__call__(scores)


async def test_requests_that_come_one_by_one_are_scored_and_written_together() -> None:
    """A batch costs two thread hops and one transaction whatever its size: the first request
    of a batch waits for others (`linger_s`) rather than being written alone."""
    sink = CountingSink()
    settings = QualitySettings.model_validate({"sample_rate": 1.0, "scorers": ["heuristic"]})
    w = QualityWorker(settings, sink, linger_s=0.5)
    w.start()
    try:
        for i in range(20):
            assert w.offer(record(f"r{i}"), PROMPT, ANSWER)
            await asyncio.sleep(0.005)  # as a busy proxy's requests end: a few ms apart
        await asyncio.wait_for(w._queue.join(), 5)
    finally:
        await w.stop()
    assert {s.request_id for s in sink.scores} == {f"r{i}" for i in range(20)}
    assert sink.writes == 1


async def test_a_full_batch_does_not_wait() -> None:
    sink = CountingSink()
    settings = QualitySettings.model_validate({"sample_rate": 1.0, "scorers": ["heuristic"]})
    w = QualityWorker(settings, sink, batch_size=8, linger_s=30.0)
    for i in range(8):
        assert w.offer(record(f"r{i}"), PROMPT, ANSWER)
    w.start()
    try:
        await asyncio.wait_for(w._queue.join(), 5)  # not the 30 s of lingering
    finally:
        await w.stop()
    assert sink.writes == 1 and len({s.request_id for s in sink.scores}) == 8
