"""Quality scoring through the real proxy (uvicorn, fake backend over HTTP) on SQLite and
Postgres, and the worker alone on a real database. Waits are bounded polls, never sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from monitor.config import QualitySettings
from monitor.quality import embedding
from monitor.quality.judge import SYSTEM_PROMPT
from monitor.record import utcnow
from monitor.store.samples import QualityScore, quality_scores_for, write_quality_scores
from monitor.store.summaries import summarize
from monitor.workers.quality import QualityWorker
from tests.support.asgi import read_body
from tests.support.databases import BOTH_DATABASES, database_url, make_records
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy
from tests.support.servers import ThreadedServer

CHAT = {"model": "gemma", "messages": [{"role": "user", "content": "Name three primes."}]}
HEURISTIC = {"relevance", "coherence", "safety", "factual_accuracy", "overall"}
PATIENCE_S = 30.0
MODEL_PATIENCE_S = 120.0  # the first embedding loads the model


@pytest.fixture(params=BOTH_DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    directory = tmp_path / "db"
    directory.mkdir()
    with database_url(request.param, directory) as url:
        yield url


@pytest.fixture
def start(db_url: str, make_proxy: Callable[..., RunningProxy]) -> Callable[..., RunningProxy]:
    """A proxy on the parametrised database (stopped before the database goes away)."""

    def make(**overrides: Any) -> RunningProxy:
        return make_proxy(database_url=db_url, **overrides)

    return make


def quality(**fields: Any) -> dict[str, Any]:
    return {"sample_rate": 1.0, **fields}


def chat(proxy: RunningProxy, body: dict[str, Any] | None = None, route: str = "") -> str:
    route = route or "/v1/chat/completions"
    resp = httpx.post(f"{proxy.url}{route}", json=body or CHAT)
    assert resp.status_code == 200, resp.text
    return resp.headers["x-request-id"]


def scores_of(
    engine: Engine, request_id: str, scorers: set[str], within_s: float = PATIENCE_S
) -> dict[tuple[str, str], QualityScore]:
    """(scorer, metric) → score of a request, once every scorer in `scorers` has written."""
    deadline = time.monotonic() + within_s
    while True:
        found = {(s.scorer, s.metric): s for s in quality_scores_for(engine, [request_id])}
        if scorers <= {scorer for scorer, _ in found}:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"scores {sorted(found)} after {within_s}s, wanted {scorers}")
        time.sleep(0.05)


def metric_values(proxy: RunningProxy, name: str) -> dict[str, float]:
    text = httpx.get(f"{proxy.url}/metrics").text
    return {
        s.labels.get("scorer", ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_every_ok_request_is_scored_at_rate_one(start, fake_backend: FakeBackend) -> None:
    proxy = start(quality=quality(scorers=["heuristic", "guard"]))
    since = utcnow()
    ids = [
        chat(proxy),
        chat(proxy, {**CHAT, "stream": True}),
        chat(proxy, {**CHAT, "stream": False}, "/api/chat"),
    ]
    refused = httpx.post(f"{proxy.url}/v1/chat/completions", json={"messages": []})
    assert refused.status_code == 400
    for request_id in ids:
        found = scores_of(proxy.engine, request_id, {"heuristic", "guard"})
        assert {m for s, m in found if s == "heuristic"} == HEURISTIC
        assert found[("guard", "safety")].value == 1.0
        assert all(0.0 <= s.value <= 1.0 for s in found.values())
    proxy.record(refused.headers["x-request-id"])  # stored, and never offered for scoring
    assert quality_scores_for(proxy.engine, [refused.headers["x-request-id"]]) == []

    summary = summarize(proxy.engine, since, utcnow() + timedelta(seconds=1))
    assert summary.fields["quality_overall"] == pytest.approx(summary.quality["heuristic.overall"])
    assert summary.quality["guard.safety"] == 1.0
    assert metric_values(proxy, "gemma_monitor_quality_scored_total") == {
        "heuristic": 3.0,
        "guard": 3.0,
    }


def test_rate_zero_scores_nothing(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(quality=quality(sample_rate=0.0))
    ids = [chat(proxy) for _ in range(5)]
    for request_id in ids:
        proxy.record(request_id)  # the hook ran before the record was submitted
    worker = proxy.app.services.quality
    assert worker.stats.queue_depth == 0 and not worker.stats.scored
    assert quality_scores_for(proxy.engine, ids) == []


def test_content_is_not_stored_with_the_scores(make_proxy, fake_backend: FakeBackend) -> None:
    fake_backend.script.text = "Two, three and five are primes."
    proxy = make_proxy(quality=quality(scorers=["heuristic", "guard"]))
    request_id = chat(proxy)
    found = scores_of(proxy.engine, request_id, {"heuristic", "guard"})
    stored = orjson.dumps([s.detail for s in found.values()]).decode()
    assert "primes" not in stored.lower()
    record = proxy.record(request_id)
    assert record.prompt_text is None and record.response_text is None


def test_guard_safety_of_a_request_with_redacted_personal_data(
    start, fake_backend: FakeBackend
) -> None:
    proxy = start(quality=quality(scorers=["guard"]))
    text = "Write a short note to jane.doe@example.com about the meeting."
    request_id = chat(proxy, {**CHAT, "messages": [{"role": "user", "content": text}]})
    found = scores_of(proxy.engine, request_id, {"guard"})
    safety = found[("guard", "safety")]
    assert safety.value == 0.5
    assert safety.detail == {"action": "redact", "rule": "pii.email", "findings": 1}
    assert proxy.record(request_id).verdicts[0]["action"] == "redact"


class JudgeBackend:
    """The fake backend, except for the judge's requests, which get `answer` (or `status`)."""

    def __init__(self, inner: FakeBackend) -> None:
        self.inner = inner
        self.answer = "Rating: 4"
        self.status = 200
        self.judged: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        body = await read_body(receive)
        payload = orjson.loads(body) if body else None
        messages = payload.get("messages") if isinstance(payload, dict) else None
        if messages and messages[0].get("content") == SYSTEM_PROMPT:
            self.judged.append(payload)
            reply = {"choices": [{"index": 0, "message": {"content": self.answer}}]}
            data = orjson.dumps(reply if self.status < 400 else {"error": "judge down"})
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await self.inner(scope, replay, send)


@pytest.fixture
def judge_backend(fake_backend: FakeBackend) -> Iterator[tuple[JudgeBackend, str]]:
    backend = JudgeBackend(fake_backend)
    server = ThreadedServer(backend).start()
    yield backend, server.url
    server.stop(timeout=5)


def test_judge_rates_through_the_backend(start, judge_backend: tuple[JudgeBackend, str]) -> None:
    backend, url = judge_backend
    proxy = start(backend_url=url, quality=quality(scorers=["judge"], judge_model="judge-gemma"))
    request_id = chat(proxy)
    judged = scores_of(proxy.engine, request_id, {"judge"})[("judge", "overall")]
    assert (judged.value, judged.detail) == (0.75, {"rating": 4})  # no answer: content off
    ask = backend.judged[0]
    assert (ask["model"], ask["temperature"], ask["stream"]) == ("judge-gemma", 0, False)
    assert ask["max_tokens"] <= 16
    assert "tok0" in ask["messages"][1]["content"]  # the answer being rated
    # the judge's own call is not a request of the proxy: one record only
    assert len(proxy.records(1)) == 1


def test_a_failing_judge_is_counted_not_retried(
    make_proxy, judge_backend: tuple[JudgeBackend, str]
) -> None:
    backend, url = judge_backend
    backend.status = 500
    proxy = make_proxy(backend_url=url, quality=quality(scorers=["heuristic", "judge"]))
    request_id = chat(proxy)
    found = scores_of(proxy.engine, request_id, {"heuristic"})
    deadline = time.monotonic() + PATIENCE_S
    while metric_values(proxy, "gemma_monitor_quality_failed_total").get("judge") != 1.0:
        assert time.monotonic() < deadline, "the judge's failure was not counted"
        time.sleep(0.05)
    assert len(backend.judged) == 1  # asked once
    assert not any(scorer == "judge" for scorer, _ in found)
    backend.status, backend.answer = 200, "I would rather not say."  # no rating in it
    second = chat(proxy)
    scores_of(proxy.engine, second, {"heuristic"})
    while metric_values(proxy, "gemma_monitor_quality_failed_total").get("judge") != 2.0:
        assert time.monotonic() < deadline, "the unreadable answer was not counted"
        time.sleep(0.05)
    assert {s.scorer for s in quality_scores_for(proxy.engine, [second])} == {"heuristic"}


@pytest.mark.skipif(not embedding.available(), reason="needs the quality extra")
def test_embedding_on_the_packaged_model(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(quality=quality(scorers=["embedding"]))
    ask = {**CHAT, "messages": [{"role": "user", "content": "How do I bake bread at home?"}]}
    fake_backend.script.text = "Mix flour, water, yeast and salt, knead, let it rise, then bake."
    related = chat(proxy, ask)
    fake_backend.script.text = "The stock market fell sharply after the central bank's report."
    unrelated = chat(proxy, ask)
    near = scores_of(proxy.engine, related, {"embedding"}, MODEL_PATIENCE_S)
    far = scores_of(proxy.engine, unrelated, {"embedding"}, MODEL_PATIENCE_S)
    assert near[("embedding", "similarity")].value > far[("embedding", "similarity")].value
    assert near[("embedding", "overall")].value == near[("embedding", "similarity")].value


# --- the worker alone, on a real database ---------------------------------------------------


async def test_full_queue_drops_and_counts(engine: Engine) -> None:
    settings = QualitySettings(sample_rate=1.0, queue_size=2, scorers=["heuristic", "guard"])
    worker = QualityWorker(settings, lambda scores: write_quality_scores(engine, scores))
    records = make_records(5, prefix="full")
    for r in records:
        r.outcome = "ok"
    taken = [worker.offer(r, "Name three primes.", "Two, three and five.") for r in records]
    assert taken == [True, True, False, False, False]
    assert worker.stats.dropped == {"heuristic": 3, "guard": 3}
    worker.start()
    await worker.stop()  # scores what was queued first
    stored = {s.request_id for s in quality_scores_for(engine, [r.id for r in records])}
    assert stored == {records[0].id, records[1].id}
    assert worker.stats.scored == {"heuristic": 2, "guard": 2}


async def test_a_dead_database_drops_scores_and_recovers(tmp_path: Path) -> None:
    from monitor.store import migrate
    from monitor.store.engine import make_engine

    url = f"sqlite:///{tmp_path / 'q.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    live = True

    def write(scores: Any) -> int:
        if not live:
            raise OSError("database is gone")
        return write_quality_scores(engine, scores)

    worker = QualityWorker(QualitySettings(sample_rate=1.0, scorers=["heuristic"]), write)
    first, second = make_records(2, prefix="dead")
    live = False
    worker.offer(first, "p", "an answer")
    worker.start()
    await worker.stop()
    live = True
    worker.offer(second, "p", "an answer")
    worker.start()
    await worker.stop()
    assert {s.request_id for s in quality_scores_for(engine, [first.id, second.id])} == {second.id}
    assert worker.stats.dropped == {"heuristic": 1}
    engine.dispose()
