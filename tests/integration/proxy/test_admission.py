"""API keys, rate limits (in memory and shared through real Redis), token budgets, usage."""

from __future__ import annotations

import hashlib
import os
import uuid

import httpx
import pytest

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
REDIS_URL = os.environ.get("MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "admin-token-for-tests-0123456789"


def principal(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def post(
    proxy: RunningProxy, key: str | None = None, route: str = "/v1/chat/completions", **headers: str
) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    body = CHAT if route.startswith("/v1") else {**CHAT, "stream": False}
    return httpx.post(f"{proxy.url}{route}", json=body, headers=headers)


def test_api_keys_are_required_when_configured(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(api_keys="sk-one,sk-two")
    missing = post(proxy)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "UNAUTHORIZED"
    wrong = post(proxy, "sk-three", route="/api/chat")
    assert wrong.status_code == 401 and wrong.json() == {
        "error": "invalid API key",
        "code": "UNAUTHORIZED",
        "request_id": wrong.headers["x-request-id"],
    }
    assert fake_backend.received == []
    ok = post(proxy, "sk-two")
    assert ok.status_code == 200
    record = proxy.record(ok.headers["x-request-id"])
    assert record.principal == principal("sk-two")
    refused = proxy.record(missing.headers["x-request-id"])
    assert (refused.outcome, refused.error_code, refused.http_status) == (
        "invalid",
        "UNAUTHORIZED",
        401,
    )


def test_rate_limit_refuses_with_headers(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(rate_limit="3/minute")
    remaining = []
    for _ in range(3):
        resp = post(proxy, "sk-a")
        assert resp.status_code == 200
        assert resp.headers["x-ratelimit-limit"] == "3"
        remaining.append(resp.headers["x-ratelimit-remaining"])
    assert remaining == ["2", "1", "0"]
    refused = post(proxy, "sk-a")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > 0
    assert len(fake_backend.received) == 3
    assert post(proxy, "sk-b").status_code == 200  # another principal has its own window
    record = proxy.record(refused.headers["x-request-id"])
    assert (record.outcome, record.error_code, record.http_status) == (
        "rate_limited",
        "RATE_LIMIT_EXCEEDED",
        429,
    )


def test_principal_from_user_header_or_address(make_proxy) -> None:
    proxy = make_proxy(rate_limit="1/minute", user_header="x-user-id")
    assert post(proxy, **{"x-user-id": "alice"}).status_code == 200
    assert post(proxy, **{"x-user-id": "alice"}).status_code == 429
    assert post(proxy, **{"x-user-id": "bob"}).status_code == 200
    assert post(proxy).status_code == 200  # by address: 127.0.0.1
    assert post(proxy).status_code == 429


def test_replicas_share_one_window_through_redis(make_proxy) -> None:
    key = f"sk-{uuid.uuid4().hex}"  # a fresh principal: keys from earlier runs do not count
    first = make_proxy(rate_limit="4/minute", redis_url=REDIS_URL)
    second = make_proxy(rate_limit="4/minute", redis_url=REDIS_URL)
    statuses = [
        post(proxy, key).status_code for proxy in (first, second, first, second, first, second)
    ]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_token_budget(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(rate_limit="100/minute", token_budget="10/minute")
    first = post(proxy, "sk-tokens")  # the fake backend reports 7 prompt + 3 completion tokens
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "10"
    proxy.record(first.headers["x-request-id"])  # charged once the response is done
    refused = post(proxy, "sk-tokens")
    assert refused.status_code == 429
    assert "token budget" in refused.json()["error"]["message"]


def test_admin_usage(make_proxy) -> None:
    proxy = make_proxy(rate_limit="5/hour", admin_token=ADMIN)
    post(proxy, "sk-usage")
    post(proxy, "sk-usage")
    url = f"{proxy.url}/admin/usage/{principal('sk-usage')}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    usage = httpx.get(url, headers={"authorization": f"Bearer {ADMIN}"}).json()
    assert usage["requests_last_hour"] == 2 and usage["remaining_requests"] == 3
    assert usage["reset_time"].endswith("Z") or "+00:00" in usage["reset_time"]


def test_admin_api_is_off_without_a_token(proxy: RunningProxy) -> None:
    assert httpx.get(f"{proxy.url}/admin/usage/abc").status_code == 404


@pytest.mark.parametrize("value", ["100/fortnight", "many/hour"])
def test_bad_rate_limit_setting_is_refused(make_proxy, value: str) -> None:
    from monitor.config import Settings, SettingsError

    with pytest.raises(SettingsError, match="rate_limit"):
        Settings.load(None, rate_limit=value)
