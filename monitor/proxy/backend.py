"""The one place that talks to the upstream Gemma server.

One shared connection pool per app (opened in the lifespan), bounded, with explicit connect and
read timeouts; see `upstream.py` for why it is a small client of our own. Transport failures
become `BackendFailed` / `BackendTimeout`.
"""

from __future__ import annotations

from asyncio import timeout as asyncio_timeout
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from monitor.config import Settings
from monitor.errors import BackendFailed, BackendTimeout
from monitor.proxy.upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout

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


class BackendClient:
    """Sends requests to the backend over one shared, pooled set of connections."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.backend_base
        self._settings = settings
        self._pool: UpstreamPool | None = None

    async def open(self) -> None:
        s = self._settings
        self._pool = UpstreamPool(
            self.base,
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.read_timeout_s,
            max_connections=s.max_connections,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise RuntimeError("BackendClient used before open()")
        return self._pool

    async def send(
        self, method: str, path: str, body: bytes | None, headers: list[tuple[str, str]]
    ) -> UpstreamResponse:
        """Send a request and return the response once its headers arrived (body unread)."""
        try:
            return await self.pool.request(method, path, headers, body)
        except UpstreamTimeout as exc:
            raise BackendTimeout(f"backend at {self.base}: {exc}") from exc
        except UpstreamError as exc:
            raise BackendFailed(f"backend unreachable at {self.base}: {exc}") from exc

    async def get_text(self, path: str, timeout_s: float = 5.0, limit: int = 8 << 20) -> str:
        """A GET of a text resource (the backend's Prometheus metrics)."""
        raw = await self._get(path, "text/plain", timeout_s, limit)
        return raw.decode("utf-8", "replace")

    async def get_json(self, path: str, timeout_s: float = 5.0) -> Any:
        """A small GET used by readiness checks and model listing."""
        raw = await self._get(path, "application/json", timeout_s)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BackendFailed(f"backend sent invalid JSON for GET {path}") from exc

    async def _get(
        self, path: str, accept: str, timeout_s: float, limit: int | None = None
    ) -> bytes:
        try:
            async with asyncio_timeout(timeout_s):
                upstream = await self.pool.request("GET", path, [("accept", accept)])
                try:
                    raw = await upstream.read(limit)
                finally:
                    upstream.release()
        except (UpstreamTimeout, TimeoutError) as exc:
            raise BackendTimeout(
                f"backend did not answer GET {path} within {timeout_s:g}s"
            ) from exc
        except UpstreamError as exc:
            raise BackendFailed(f"backend unreachable at {self.base}: {exc}") from exc
        if upstream.status >= 400:
            raise BackendFailed(
                f"backend answered {upstream.status} to GET {path}", upstream_status=upstream.status
            )
        return raw


async def iter_body(upstream: UpstreamResponse) -> AsyncIterator[bytes]:
    """The upstream body as it arrives; transport failures mid-body become backend errors."""
    try:
        async for chunk in upstream.chunks():
            yield chunk
    except UpstreamTimeout as exc:
        raise BackendTimeout(f"backend stalled mid-response: {exc}") from exc
    except UpstreamError as exc:
        raise BackendFailed(f"backend connection broke mid-response: {exc}") from exc
