"""Which headers cross the proxy: the client's going upstream, and the backend's coming back.

Upstream, an allowlist: the backend gets only what an OpenAI or Ollama server can use, never
what identifies or authenticates the client to the proxy (`X-API-Key`, `Cookie`, `Proxy-*`,
the client's `Authorization`, forwarded only when `forward_client_authorization` is on and no
`backend_api_key` replaces it). A new client header is dropped until it is named here:

    accept                                  the client's preferred reply type
    user-agent                              the SDK and version, for the backend's logs
    traceparent, tracestate                 W3C trace context, to follow one request through
    openai-organization, openai-project     OpenAI SDK routing headers (hosted backends)

The proxy sets `Content-Type` (it sends JSON it has read), `Accept-Encoding: identity` (the
relay reads the events it passes on), the backend's `Authorization` when a key is configured,
and the pool sets `Host` and `Content-Length`. One frozenset lookup per client header.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.config import Settings
from monitor.upstream.backend import backend_authorization
from monitor.upstream.client import UpstreamResponse

FORWARDED = frozenset(
    {
        b"accept",
        b"user-agent",
        b"traceparent",
        b"tracestate",
        b"openai-organization",
        b"openai-project",
    }
)
_NOT_RETURNED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
    }
)


def request_headers(
    client_headers: Iterable[tuple[bytes, bytes]], settings: Settings
) -> list[tuple[str, str]]:
    """Headers sent upstream: the client's allowed ones (and its Authorization, when configured
    and no backend key replaces it); plus the backend key when one is configured."""
    out: list[tuple[str, str]] = []
    authorization = backend_authorization(settings)
    forward_authorization = settings.forward_client_authorization and authorization is None
    for raw_name, raw_value in client_headers:
        name = raw_name.lower()  # ASGI servers send them lowercased: a copy, no work
        if name in FORWARDED or (forward_authorization and name == b"authorization"):
            out.append((name.decode("latin-1"), raw_value.decode("latin-1")))
    if authorization is not None:
        out.append(authorization)
    out.append(("content-type", "application/json"))
    out.append(("accept-encoding", "identity"))  # the relay reads the events it passes on
    return out


def response_headers(upstream: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    """The backend's response headers for the client, minus hop-by-hop ones. The backend's own
    request id (llama.cpp and vLLM send one) is kept as `x-backend-request-id`: `x-request-id`
    is ours, the id of the record."""
    out = []
    for name, value in upstream.headers:
        if name == b"x-request-id":
            out.append((b"x-backend-request-id", value))
        elif name not in _NOT_RETURNED:
            out.append((name, value))
    return out
