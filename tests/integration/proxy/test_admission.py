"""Admission through the real proxy: API keys, principals (address, trusted proxies, user
header), rate limits (in memory and shared through real Redis), token budgets charged however a
request ends, `max_tokens` capped at the budget, `Host` and `Content-Type` checks, refusals
counted but not recorded, usage."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.config import Settings
from monitor.proxy import admission as admission_module
from monitor.proxy.admission import Admission
from monitor.store.queries import get_request
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
REDIS_URL = os.environ.get("MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "admin-token-for-tests-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def principal(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def post(
    proxy: RunningProxy,
    key: str | None = None,
    route: str = "/v1/chat/completions",
    body: dict[str, Any] | None = None,
    **headers: str,
) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    if body is None:
        body = CHAT if route.startswith("/v1") else {**CHAT, "stream": False}
    return httpx.post(f"{proxy.url}{route}", json=body, headers=headers)


def usage(proxy: RunningProxy, who: str) -> dict[str, Any]:
    resp = httpx.get(f"{proxy.url}/admin/usage/{who}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def metric(proxy: RunningProxy, line: str) -> bool:
    return line in httpx.get(f"{proxy.url}/metrics").text


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
    # refusals are counted, not recorded: unauthenticated traffic cannot grow the database
    assert get_request(proxy.engine, missing.headers["x-request-id"]) is None
    assert metric(
        proxy, 'gemma_monitor_requests_total{outcome="invalid",route="/v1/chat/completions"} 1.0'
    )
    assert metric(proxy, 'gemma_monitor_requests_total{outcome="invalid",route="/api/chat"} 1.0')


def test_keys_are_matched_on_the_full_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The short label is not what a key is checked against: were it, two keys sharing a
    label (64 bits today; one hex char here) would both get in."""
    monkeypatch.setattr(admission_module, "principal_id", lambda value: "0")
    admission = Admission(Settings.model_validate({"api_keys": "sk-real"}), None)

    def scope(key: str) -> dict[str, Any]:
        return {"headers": [(b"authorization", f"Bearer {key}".encode())], "client": None}

    assert admission.principal(scope("sk-real")) == principal("sk-real")
    with pytest.raises(admission_module.Unauthorized):
        admission.principal(scope("sk-forged"))


def test_rate_limit_refuses_with_headers(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(rate_limit="3/minute", api_keys="sk-a,sk-b")
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
    proxy.records(4)
    assert get_request(proxy.engine, refused.headers["x-request-id"]) is None
    assert metric(
        proxy,
        'gemma_monitor_requests_total{outcome="rate_limited",route="/v1/chat/completions"} 1.0',
    )


def test_without_keys_the_principal_is_the_address(make_proxy) -> None:
    """Any bearer, X-API-Key or user header a client invents is not a fresh window."""
    proxy = make_proxy(rate_limit="2/minute", user_header="x-user-id")
    assert post(proxy, f"sk-{uuid.uuid4().hex}").status_code == 200
    assert post(proxy, **{"x-api-key": uuid.uuid4().hex}).status_code == 200
    for headers in (
        {"authorization": f"Bearer sk-{uuid.uuid4().hex}"},
        {"x-api-key": uuid.uuid4().hex},
        {"x-user-id": "mallory"},
        {"x-forwarded-for": "203.0.113.9"},
    ):
        assert post(proxy, **headers).status_code == 429, headers
    record = proxy.records(2)[0]
    assert record.principal == principal("127.0.0.1")


def test_forwarded_for_and_user_header_from_a_trusted_proxy(make_proxy) -> None:
    proxy = make_proxy(rate_limit="1/minute", user_header="x-user-id", trusted_proxies="127.0.0.1")
    # the right-most address our proxy did not write is the client's; the left part is whatever
    # the client sent
    first = post(proxy, **{"x-forwarded-for": "198.51.100.1, 203.0.113.7"})
    assert first.status_code == 200
    assert post(proxy, **{"x-forwarded-for": "198.51.100.2, 203.0.113.7"}).status_code == 429
    assert post(proxy, **{"x-forwarded-for": "203.0.113.8, 127.0.0.1"}).status_code == 200
    assert proxy.record(first.headers["x-request-id"]).principal == principal("203.0.113.7")
    assert post(proxy, **{"x-user-id": "alice"}).status_code == 200
    assert post(proxy, **{"x-user-id": "alice"}).status_code == 429
    assert post(proxy, **{"x-user-id": "bob"}).status_code == 200


def test_replicas_share_one_window_through_redis(make_proxy) -> None:
    key = f"sk-{uuid.uuid4().hex}"  # a fresh principal: keys from earlier runs do not count
    first = make_proxy(rate_limit="4/minute", redis_url=REDIS_URL, api_keys=key)
    second = make_proxy(rate_limit="4/minute", redis_url=REDIS_URL, api_keys=key)
    statuses = [
        post(proxy, key).status_code for proxy in (first, second, first, second, first, second)
    ]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_token_budget(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(rate_limit="100/minute", token_budget="10/minute", api_keys="sk-tokens")
    first = post(proxy, "sk-tokens")  # the fake backend reports 7 prompt + 3 completion tokens
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "10"
    proxy.record(first.headers["x-request-id"])  # charged once the response is done
    refused = post(proxy, "sk-tokens")
    assert refused.status_code == 429
    assert "token budget" in refused.json()["error"]["message"]


def budget_proxy(make_proxy, **overrides: Any) -> RunningProxy:
    return make_proxy(
        rate_limit="100/minute",
        token_budget="100000/minute",
        api_keys="sk-t",
        admin_token=ADMIN,
        **overrides,
    )


def test_a_client_that_hangs_up_mid_stream_is_charged(
    make_proxy, fake_backend: FakeBackend
) -> None:
    proxy = budget_proxy(make_proxy)
    fake_backend.script.chunks = 50
    fake_backend.script.chunk_s = 0.05
    headers = {"authorization": "Bearer sk-t"}
    with httpx.stream(
        "POST", f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
    ) as resp:
        request_id = resp.headers["x-request-id"]
        lines = resp.iter_lines()
        for _ in range(3):
            next(lines)
    record = proxy.record(request_id)
    assert record.outcome == "client_abort" and record.completion_tokens
    spent = usage(proxy, principal("sk-t"))["tokens"]
    assert spent >= record.completion_tokens + 1  # the prompt too, estimated


def test_a_stream_the_backend_cuts_is_charged(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = budget_proxy(make_proxy)
    fake_backend.script.chunks = 10
    fake_backend.script.mode = "drop_mid_stream"
    fake_backend.script.drop_after = 4
    resp = post(proxy, "sk-t", body={**CHAT, "stream": True})
    record = proxy.record(resp.headers["x-request-id"])
    assert record.outcome == "backend_error" and record.completion_tokens == 4
    assert usage(proxy, principal("sk-t"))["tokens"] == 4 + 1  # "Hi": one token, estimated


def test_a_blocked_reply_is_charged(make_proxy, fake_backend: FakeBackend, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nname: block-output\noutput:\n  checks:\n"
        "    - {type: denylist, id: words, category: test, terms: [forbidden], action: block}\n"
    )
    proxy = budget_proxy(make_proxy, policies=str(policy))
    fake_backend.script.text = "this answer is forbidden here"
    resp = post(proxy, "sk-t")
    assert resp.status_code == 400
    assert proxy.record(resp.headers["x-request-id"]).outcome == "blocked_output"
    assert usage(proxy, principal("sk-t"))["tokens"] == 7 + 3  # the backend's usage


@pytest.mark.parametrize(
    ("route", "asked", "field"),
    [
        ("/v1/chat/completions", {"max_tokens": 100_000}, "max_tokens"),
        ("/v1/chat/completions", {}, "max_tokens"),
        ("/v1/chat/completions", {"max_completion_tokens": 5000}, "max_completion_tokens"),
        ("/v1/chat/completions", {"max_tokens": 12}, "max_tokens"),
        ("/api/chat", {"options": {"num_predict": -1}}, "num_predict"),
        ("/api/generate", {}, "num_predict"),
    ],
)
def test_max_tokens_is_capped_at_the_remaining_budget(
    make_proxy, fake_backend: FakeBackend, route: str, asked: dict[str, Any], field: str
) -> None:
    proxy = make_proxy(rate_limit="100/minute", token_budget="60/minute")
    body: dict[str, Any] = {**CHAT, "stream": False, **asked}
    if route == "/api/generate":
        body = {"model": "m", "prompt": "Hi", "stream": False}
    first = post(proxy, route=route, body=body)
    assert first.status_code == 200, first.text
    name = "max_tokens" if field == "num_predict" else field  # Ollama clients are translated
    # 60 left, less the prompt ("Hi": one token, estimated); a smaller ask stays
    small = asked.get("max_tokens") == 12
    assert fake_backend.last.body.get(name) == (12 if small else 59), fake_backend.last.body
    proxy.record(first.headers["x-request-id"])
    post(proxy, route=route, body=body)  # 7 + 3 charged by now: 49 left after the prompt
    assert fake_backend.last.body.get(name) == (12 if small else 49)


def test_model_lists_go_through_admission(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(api_keys="sk-list", rate_limit="2/minute")
    for path in ("/v1/models", "/api/tags"):
        refused = httpx.get(f"{proxy.url}{path}")
        assert refused.status_code == 401, path
    assert fake_backend.received == []
    auth = {"authorization": "Bearer sk-list"}
    ok = httpx.get(f"{proxy.url}/v1/models", headers=auth)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining"] == "1"
    assert httpx.get(f"{proxy.url}/api/tags", headers=auth).status_code == 200
    limited = httpx.get(f"{proxy.url}/api/tags", headers=auth)
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert metric(proxy, 'gemma_monitor_requests_total{outcome="invalid",route="/api/tags"} 1.0')
    assert metric(
        proxy, 'gemma_monitor_requests_total{outcome="rate_limited",route="/api/tags"} 1.0'
    )


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_json_routes_refuse_what_a_browser_sends_cross_origin(
    proxy: RunningProxy, fake_backend: FakeBackend, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    for route in ("/v1/chat/completions", "/api/chat", "/v1/feedback"):
        resp = httpx.post(f"{proxy.url}{route}", content=b'{"model": "m"}', headers=headers)
        assert resp.status_code == 415, (route, resp.text)
        code = resp.json()["code"] if route.startswith("/api/") else resp.json()["error"]["code"]
        assert code == "UNSUPPORTED_MEDIA_TYPE"
    assert fake_backend.received == []
    fine = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}]}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert fine.status_code == 200


def test_a_keyless_proxy_answers_only_local_host_names(
    make_proxy, fake_backend: FakeBackend
) -> None:
    proxy = make_proxy()
    rebound = {"host": "attacker.example:8000"}
    for method, path in (
        ("POST", "/v1/chat/completions"),
        ("GET", "/metrics"),
        ("GET", "/v1/models"),
    ):
        resp = httpx.request(method, f"{proxy.url}{path}", json=CHAT, headers=rebound)
        assert resp.status_code == 421, path
        assert resp.json()["error"]["code"] == "HOST_NOT_ALLOWED"
    assert fake_backend.received == []
    assert httpx.get(f"{proxy.url}/health", headers=rebound).status_code == 200  # probes
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert post(proxy, host=host).status_code == 200, host
    named = make_proxy(allowed_hosts="monitor.internal,*.example.com")
    assert post(named, host="monitor.internal:8000").status_code == 200
    assert post(named, host="api.example.com").status_code == 200
    assert post(named, host="localhost").status_code == 421
    with_keys = make_proxy(api_keys="sk-k")  # the keys protect it: any host
    assert post(with_keys, "sk-k", host="anything.example").status_code == 200


def test_admin_usage(make_proxy) -> None:
    proxy = make_proxy(rate_limit="5/hour", admin_token=ADMIN, api_keys="sk-usage")
    post(proxy, "sk-usage")
    post(proxy, "sk-usage")
    url = f"{proxy.url}/admin/usage/{principal('sk-usage')}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    found = httpx.get(url, headers=AUTH).json()
    assert found["requests_last_hour"] == 2 and found["remaining_requests"] == 3
    assert found["reset_time"].endswith("Z") or "+00:00" in found["reset_time"]


def test_admin_api_is_off_without_a_token(proxy: RunningProxy) -> None:
    assert httpx.get(f"{proxy.url}/admin/usage/abc").status_code == 404


@pytest.mark.parametrize("value", ["100/fortnight", "many/hour"])
def test_bad_rate_limit_setting_is_refused(make_proxy, value: str) -> None:
    from monitor.config import SettingsError

    with pytest.raises(SettingsError, match="rate_limit"):
        Settings.load(None, rate_limit=value)


def test_bad_trusted_proxy_setting_is_refused() -> None:
    from monitor.config import SettingsError

    with pytest.raises(SettingsError, match="trusted_proxies"):
        Settings.load(None, trusted_proxies="10.0.0.0/8,not-an-address")


def test_several_choices_share_the_remaining_budget(make_proxy, fake_backend: FakeBackend) -> None:
    proxy = make_proxy(rate_limit="100/minute", token_budget="60/minute")
    resp = post(proxy, body={**CHAT, "stream": False, "n": 4})
    assert resp.status_code == 200, resp.text
    # 60 left, less the prompt ("Hi": one token, estimated), for 4 choices: 14 each
    assert fake_backend.last.body["max_tokens"] == 14
