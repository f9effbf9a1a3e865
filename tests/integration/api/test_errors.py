"""Errors of the non-proxy routes, through the real app on a real port: the proxy's shape (OpenAI,
or Ollama's under /api/), its codes, and the request id in both the body and `X-Request-ID`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy
from tests.support.servers import free_port

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
POLICY = """
version: 1
name: reloadable
input:
  checks:
    - {type: pii, action: redact}
"""


def openai_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The OpenAI error object of `resp`, after checking status, code and request id."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["code"] == code
    assert len(resp.headers["x-request-id"]) == 32
    assert error["request_id"] == resp.headers["x-request-id"]
    return dict(error)


def ollama_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "code", "request_id"}
    assert isinstance(body["error"], str) and body["code"] == code
    assert body["request_id"] == resp.headers["x-request-id"]
    return dict(body)


@pytest.fixture
def admin_proxy(make_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    return make_proxy(admin_token=ADMIN_TOKEN)


def test_admin_without_the_token_is_401_with_a_challenge(admin_proxy: RunningProxy) -> None:
    for method, path in [("GET", "/admin/stats"), ("POST", "/admin/policies/reload")]:
        resp = httpx.request(method, f"{admin_proxy.url}{path}")
        error = openai_error(resp, 401, "UNAUTHORIZED")
        assert error["type"] == "authentication_error"
        assert resp.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{admin_proxy.url}/admin/stats", headers={"authorization": "Bearer nope"})
    openai_error(wrong, 401, "UNAUTHORIZED")


def test_admin_bad_window_is_422(admin_proxy: RunningProxy) -> None:
    resp = httpx.get(f"{admin_proxy.url}/admin/summary?window=banana", headers=ADMIN)
    error = openai_error(resp, 422, "VALIDATION_ERROR")
    assert (error["param"], error["type"]) == ("window", "invalid_request_error")
    too_long = httpx.get(f"{admin_proxy.url}/admin/stats?window=400d", headers=ADMIN)
    assert "at most 90 days" in openai_error(too_long, 422, "VALIDATION_ERROR")["message"]


def test_admin_query_validation(admin_proxy: RunningProxy) -> None:
    not_a_state = httpx.get(f"{admin_proxy.url}/admin/alerts?state=odd", headers=ADMIN)
    assert openai_error(not_a_state, 422, "VALIDATION_ERROR")["param"] == "state"
    too_many = httpx.get(f"{admin_proxy.url}/admin/deliveries?limit=5000", headers=ADMIN)
    assert openai_error(too_many, 422, "VALIDATION_ERROR")["param"] == "limit"
    not_a_number = httpx.get(f"{admin_proxy.url}/admin/alerts?limit=many", headers=ADMIN)
    assert openai_error(not_a_number, 400, "VALIDATION_ERROR")["param"] == "limit"
    bad_body = httpx.post(
        f"{admin_proxy.url}/admin/alerts/0123456789abcdef/ack",
        headers={**ADMIN, "content-type": "application/json"},
        content=b"{not json",
    )
    openai_error(bad_body, 400, "VALIDATION_ERROR")


def test_unknown_alert_fingerprint_is_404(admin_proxy: RunningProxy) -> None:
    resp = httpx.get(f"{admin_proxy.url}/admin/alerts/0123456789abcdef", headers=ADMIN)
    error = openai_error(resp, 404, "NOT_FOUND")
    assert error["param"] == "fingerprint" and "0123456789abcdef" in error["message"]
    ack = httpx.post(f"{admin_proxy.url}/admin/alerts/0123456789abcdef/ack", headers=ADMIN)
    openai_error(ack, 404, "NOT_FOUND")  # alerting is off in these tests


def test_admin_usage_without_rate_limits_is_404(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(admin_token=ADMIN_TOKEN, rate_limit="off")
    resp = httpx.get(f"{proxy.url}/admin/usage/0123456789abcdef", headers=ADMIN)
    assert "rate limiting is off" in openai_error(resp, 404, "NOT_FOUND")["message"]


def test_policy_reload_of_a_bad_file_is_400(
    make_proxy: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    proxy = make_proxy(policies=str(path), admin_token=ADMIN_TOKEN)
    path.write_text("version: 1\ninput: {checks: [{type: nonsense}]}\n")
    resp = httpx.post(f"{proxy.url}/admin/policies/reload", headers=ADMIN)
    error = openai_error(resp, 400, "VALIDATION_ERROR")
    assert str(path) in error["message"] and "Traceback" not in resp.text
    path.write_text(POLICY)
    ok = httpx.post(f"{proxy.url}/admin/policies/reload", headers=ADMIN)
    assert ok.status_code == 200 and len(ok.headers["x-request-id"]) == 32


def test_feedback_errors_carry_the_header_id(proxy: RunningProxy) -> None:
    url = f"{proxy.url}/v1/feedback"
    unknown = httpx.post(url, json={"request_id": "0" * 32, "score": 0.5})
    assert openai_error(unknown, 404, "NOT_FOUND")["param"] == "request_id"
    out_of_range = httpx.post(url, json={"request_id": "0" * 32, "score": 2})
    assert openai_error(out_of_range, 422, "VALIDATION_ERROR")["param"] == "score"
    malformed = httpx.post(url, content=b"[", headers={"content-type": "application/json"})
    openai_error(malformed, 400, "VALIDATION_ERROR")
    huge = httpx.post(url, content=b"x" * 20_000, headers={"content-type": "application/json"})
    openai_error(huge, 413, "VALIDATION_ERROR")
    wrong_method = httpx.get(url)
    assert "GET" in openai_error(wrong_method, 405, "METHOD_NOT_ALLOWED")["message"]
    assert wrong_method.headers["allow"] == "POST"


def test_feedback_without_a_key_is_401(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(api_keys="sk-one")
    resp = httpx.post(f"{proxy.url}/v1/feedback", json={"request_id": "x", "score": 1})
    openai_error(resp, 401, "UNAUTHORIZED")


def test_model_lists_with_the_backend_down(make_proxy: Callable[..., RunningProxy]) -> None:
    proxy = make_proxy(backend_url=f"http://127.0.0.1:{free_port()}")
    tags = httpx.get(f"{proxy.url}/api/tags")
    assert "unreachable" in ollama_error(tags, 502, "GENERATION_ERROR")["error"]
    models = httpx.get(f"{proxy.url}/v1/models")
    error = openai_error(models, 502, "GENERATION_ERROR")
    assert error["type"] == "server_error" and "unreachable" in error["message"]


def test_unknown_paths_are_404_in_the_clients_protocol(proxy: RunningProxy) -> None:
    openai = openai_error(httpx.get(f"{proxy.url}/v1/nothing-here"), 404, "NOT_FOUND")
    assert "/v1/nothing-here" in openai["message"]
    ollama_error(httpx.get(f"{proxy.url}/api/nothing-here"), 404, "NOT_FOUND")
    # admin routes are not mounted without a token: not found, not unauthorized
    openai_error(httpx.get(f"{proxy.url}/admin/stats"), 404, "NOT_FOUND")


def test_successful_answers_carry_a_request_id(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    seen = set()
    for path in ("/health", "/ready", "/metrics", "/v1/models", "/api/tags"):
        resp = httpx.get(f"{proxy.url}{path}")
        assert resp.status_code == 200, (path, resp.text)
        assert len(resp.headers["x-request-id"]) == 32
        assert resp.headers.get_list("x-request-id") == [resp.headers["x-request-id"]]
        seen.add(resp.headers["x-request-id"])
    assert len(seen) == 5  # one id per request


def test_an_unexpected_exception_is_a_logged_500(
    proxy: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise KeyError("secret-internal-detail")

    # fault injection: the readiness route asks the monitoring service for its health state
    proxy.app.services.monitoring.health_state = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="monitor.api.errors"):
        resp = httpx.get(f"{proxy.url}/ready")
    error = openai_error(resp, 500, "INTERNAL_ERROR")
    assert error["type"] == "server_error" and "KeyError" in error["message"]
    assert "secret-internal-detail" not in resp.text and "Traceback" not in resp.text
    (logged,) = [r for r in caplog.records if r.name == "monitor.api.errors"]
    assert resp.headers["x-request-id"] in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[0] is KeyError
    assert httpx.get(f"{proxy.url}/health").status_code == 200  # the server carries on
