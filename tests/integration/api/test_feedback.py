"""POST /v1/feedback through the real proxy, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.store.queries import get_request
from monitor.store.samples import QualityScore, quality_scores_for
from tests.support.databases import BOTH_DATABASES, database_url
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

CHAT = {"model": "gemma", "messages": [{"role": "user", "content": "Name three primes."}]}
OFF = {"sample_rate": 0.0}  # no automatic scores: only the user's


@pytest.fixture(params=BOTH_DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    directory = tmp_path / "db"
    directory.mkdir()
    with database_url(request.param, directory) as url:
        yield url


@pytest.fixture
def start(db_url: str, make_proxy: Callable[..., RunningProxy]) -> Callable[..., RunningProxy]:
    def make(**overrides: Any) -> RunningProxy:
        overrides.setdefault("quality", OFF)
        return make_proxy(database_url=db_url, **overrides)

    return make


def answered(proxy: RunningProxy, **headers: str) -> str:
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert resp.status_code == 200
    return resp.headers["x-request-id"]


def feedback(proxy: RunningProxy, body: Any = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{proxy.url}/v1/feedback", json=body, **kwargs)


def user_score(proxy: RunningProxy, request_id: str) -> QualityScore:
    (score,) = [s for s in quality_scores_for(proxy.engine, [request_id]) if s.scorer == "user"]
    return score


def test_feedback_is_stored_and_replaced(start, fake_backend: FakeBackend) -> None:
    proxy = start()
    request_id = answered(proxy)
    proxy.record(request_id)
    resp = feedback(proxy, {"request_id": request_id, "score": 0.9, "comment": "Good answer"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"request_id": request_id, "score": 0.9, "stored": True}
    first = user_score(proxy, request_id)
    assert (first.metric, first.value) == ("satisfaction", 0.9)
    assert first.detail == {"comment_chars": 11}  # content storage is off: no comment text

    assert feedback(proxy, {"request_id": request_id, "rating": 2}).status_code == 200
    second = user_score(proxy, request_id)
    assert (second.value, second.detail) == (0.25, {"rating": 2})
    assert len(quality_scores_for(proxy.engine, [request_id])) == 1


def test_comment_is_kept_with_full_content_storage(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(quality=OFF, content_storage="full")
    request_id = answered(proxy)
    body = {"request_id": request_id, "rating": 5, "comment": "Exactly right"}
    assert feedback(proxy, body).status_code == 200
    assert user_score(proxy, request_id).detail == {
        "rating": 5,
        "comment_chars": 13,
        "comment": "Exactly right",
    }


def test_feedback_on_a_request_not_yet_stored(make_proxy, fake_backend: FakeBackend) -> None:
    # The recorder holds records for a long while here: the id is known from the handler.
    proxy = make_proxy(quality=OFF, recorder_flush_interval_s=60.0, recorder_batch_size=1000)
    request_id = answered(proxy)
    assert get_request(proxy.engine, request_id) is None
    assert feedback(proxy, {"request_id": request_id, "score": 1}).status_code == 200
    assert user_score(proxy, request_id).value == 1.0


def test_unknown_request_is_404(start, fake_backend: FakeBackend) -> None:
    proxy = start()
    resp = feedback(proxy, {"request_id": "0" * 32, "score": 0.5})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "NOT_FOUND",
        "request_id",
        "invalid_request_error",
    )
    assert error["request_id"] == resp.headers["x-request-id"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"score": 0.5}, 400, "request_id"),
        ({"request_id": 42, "score": 0.5}, 400, "request_id"),
        ({"request_id": "x" * 65, "score": 0.5}, 422, "request_id"),
        ({"request_id": "ID"}, 400, "score"),
        ({"request_id": "ID", "score": 0.5, "rating": 3}, 400, "score"),
        ({"request_id": "ID", "score": "high"}, 400, "score"),
        ({"request_id": "ID", "score": True}, 400, "score"),
        ({"request_id": "ID", "score": 1.5}, 422, "score"),
        ({"request_id": "ID", "score": -0.1}, 422, "score"),
        ({"request_id": "ID", "score": 4}, 422, "score"),  # a rating goes in `rating`
        ({"request_id": "ID", "rating": 0}, 422, "rating"),
        ({"request_id": "ID", "rating": 6}, 422, "rating"),
        ({"request_id": "ID", "rating": 3.5}, 400, "rating"),
        ({"request_id": "ID", "score": 0.5, "comment": ["a"]}, 400, "comment"),
        ({"request_id": "ID", "score": 0.5, "comment": "c" * 4001}, 422, "comment"),
        ({"request_id": "ID", "score": 0.5, "stars": 3}, 400, "stars"),
    ],
)
def test_bad_bodies(
    make_proxy, fake_backend: FakeBackend, body: dict[str, Any], status: int, param: str
) -> None:
    proxy = make_proxy(quality=OFF)
    request_id = answered(proxy)
    body = {k: (request_id if v == "ID" else v) for k, v in body.items()}
    resp = feedback(proxy, body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == ("VALIDATION_ERROR", param)
    assert quality_scores_for(proxy.engine, [request_id]) == []


def test_malformed_and_huge_bodies(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(quality=OFF)
    url = f"{proxy.url}/v1/feedback"
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b"\xff\xfe", 400, "UTF-8"),
        (b'{"request_id": "' + b"a" * 100_000 + b'"}', 413, "over"),
    ]
    for raw, status, words in cases:
        resp = httpx.post(url, content=raw, headers={"content-type": "application/json"})
        assert resp.status_code == status, raw[:20]
        error = resp.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and words in error["message"]


def test_api_keys_apply(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(quality=OFF, api_keys="sk-one")
    request_id = answered(proxy, authorization="Bearer sk-one")
    body = {"request_id": request_id, "score": 0.5}
    missing = feedback(proxy, body)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "UNAUTHORIZED"
    wrong = feedback(proxy, body, headers={"authorization": "Bearer sk-two"})
    assert wrong.status_code == 401
    assert quality_scores_for(proxy.engine, [request_id]) == []
    ok = feedback(proxy, body, headers={"x-api-key": "sk-one"})
    assert ok.status_code == 200
    scored = httpx.get(f"{proxy.url}/metrics").text
    assert 'gemma_monitor_quality_scored_total{scorer="user"} 1.0' in scored


def test_only_the_principal_that_made_a_request_may_rate_it(
    start, fake_backend: FakeBackend
) -> None:
    proxy = start(api_keys="sk-one,sk-two")
    request_id = answered(proxy, authorization="Bearer sk-one")
    body = {"request_id": request_id, "score": 0.1}
    other = feedback(proxy, body, headers={"authorization": "Bearer sk-two"})
    # the same answer as for an unknown id: a 403 would tell a guesser the id exists
    assert other.status_code == 404 and other.json()["error"]["code"] == "NOT_FOUND"
    assert quality_scores_for(proxy.engine, [request_id]) == []
    mine = feedback(proxy, body, headers={"authorization": "Bearer sk-one"})
    assert mine.status_code == 200
    # a stored request (another replica, or one the recent list forgot): the stored principal
    proxy.record(request_id)
    replica = start(api_keys="sk-one,sk-two")
    refused = feedback(replica, body, headers={"authorization": "Bearer sk-two"})
    assert refused.status_code == 404
    assert feedback(replica, body, headers={"authorization": "Bearer sk-one"}).status_code == 200


def test_without_keys_the_address_that_asked_may_rate(
    make_proxy, fake_backend: FakeBackend
) -> None:
    proxy = make_proxy(quality=OFF, trusted_proxies="127.0.0.1")
    request_id = answered(proxy, **{"x-forwarded-for": "203.0.113.1"})
    body = {"request_id": request_id, "rating": 1}
    assert feedback(proxy, body, headers={"x-forwarded-for": "203.0.113.2"}).status_code == 404
    assert feedback(proxy, body, headers={"x-forwarded-for": "203.0.113.1"}).status_code == 200


def test_feedback_is_rate_limited(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(quality=OFF, rate_limit="2/minute")
    request_id = answered(proxy)
    body = {"request_id": request_id, "score": 1}
    assert feedback(proxy, body).status_code == 200
    limited = feedback(proxy, body)
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
