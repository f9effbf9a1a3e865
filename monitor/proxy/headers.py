"""Which headers cross the proxy: the client's going upstream, and the backend's coming back."""

from __future__ import annotations

from collections.abc import Iterable

from monitor.config import Settings
from monitor.upstream.client import UpstreamResponse

# Hop-by-hop headers (RFC 9110 §7.6.1) and headers the proxy sets itself.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "authorization",
        "x-request-id",
        "expect",
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
    """Headers sent upstream: the client's, minus hop-by-hop ones and (unless configured) its
    Authorization; plus the backend key when one is configured."""
    out: list[tuple[str, str]] = []
    for raw_name, raw_value in client_headers:
        name = raw_name.decode("latin-1").lower()
        if name == "content-type":
            continue
        if name not in _NOT_FORWARDED or (
            name == "authorization"
            and settings.forward_client_authorization
            and not settings.backend_api_key
        ):
            out.append((name, raw_value.decode("latin-1")))
    if settings.backend_api_key:
        out.append(("authorization", f"Bearer {settings.backend_api_key}"))
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
