"""Which client headers reach the backend: an allowlist, checked at a real fake backend."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from monitor.proxy.headers import FORWARDED
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}

CLIENT_HEADERS = {
    # what the backend may use
    "accept": "application/json",
    "user-agent": "OpenAI/Python 1.50.0",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=opaque",
    "openai-organization": "org-1",
    "openai-project": "proj-1",
    # what identifies the client to the proxy, or is anything else
    "authorization": "Bearer sk-client-secret",
    "x-api-key": "sk-client-secret",
    "cookie": "session=s3cret",
    "proxy-authorization": "Basic dXNlcjpwYXNz",
    "x-forwarded-for": "203.0.113.9",
    "origin": "https://attacker.example",
    "x-stainless-lang": "python",
    "x-custom": "anything",
}
# what the proxy and its HTTP client set
OWN = {"host", "content-length", "content-type", "accept-encoding"}


def test_only_the_allowlisted_client_headers_reach_the_backend(
    proxy: RunningProxy, fake_backend: FakeBackend
) -> None:
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=CLIENT_HEADERS)
    assert resp.status_code == 200
    sent = fake_backend.last.headers
    assert set(sent) == OWN | {name.decode() for name in FORWARDED}
    for name in FORWARDED:
        assert sent[name.decode()] == CLIENT_HEADERS[name.decode()]
    assert sent["content-type"] == "application/json"
    assert "s3cret" not in str(sent) and "sk-client-secret" not in str(sent)


def test_the_client_authorization_only_when_configured_and_no_backend_key(
    make_proxy: Callable[..., RunningProxy], fake_backend: FakeBackend
) -> None:
    headers = {"authorization": "Bearer sk-client", "x-api-key": "sk-client"}
    forwarding = make_proxy(forward_client_authorization=True)
    httpx.post(f"{forwarding.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert fake_backend.last.headers["authorization"] == "Bearer sk-client"
    assert "x-api-key" not in fake_backend.last.headers
    keyed = make_proxy(forward_client_authorization=True, backend_api_key="sk-backend")
    httpx.post(f"{keyed.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert fake_backend.last.headers["authorization"] == "Bearer sk-backend"
    assert "x-api-key" not in fake_backend.last.headers
