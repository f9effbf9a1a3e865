"""The one place that talks to the upstream Gemma server.

One shared connection pool per app (opened in the lifespan), bounded, with explicit connect and
read timeouts; see `client.py` for why it is a small client of our own. Transport failures
become `BackendFailed` / `BackendTimeout`. What is sent (which client headers go upstream, which
come back) is the proxy's decision: `monitor.proxy.headers`. The backend's own key
(`backend_api_key`) goes with every request the monitor makes, not only the proxied ones: model
listings, `/ready`'s probe, health checks, the metrics scrape and the judge (a vLLM started with
`--api-key` answers 401 to anything without it, and the backend would look down).
"""

from __future__ import annotations

from asyncio import timeout as asyncio_timeout
from collections.abc import AsyncIterator
from typing import Any

import orjson

from monitor.config import Settings
from monitor.errors import BackendFailed, BackendTimeout
from monitor.upstream.client import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout


def backend_authorization(settings: Settings) -> tuple[str, str] | None:
    """The `Authorization` header for the backend, when a key is configured."""
    key = settings.backend_api_key
    return ("authorization", f"Bearer {key.get_secret_value()}") if key else None


class BackendClient:
    """Sends requests to the backend over one shared, pooled set of connections."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.backend_base
        self._settings = settings
        self._pool: UpstreamPool | None = None
        authorization = backend_authorization(settings)
        self.auth_headers: list[tuple[str, str]] = [authorization] if authorization else []
        """What every request of the monitor's own to the backend carries."""

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
                upstream = await self.pool.request(
                    "GET", path, [("accept", accept), *self.auth_headers]
                )
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
    except UpstreamError as exc:
        raise _mid_body(exc) from exc


async def read_body(upstream: UpstreamResponse) -> bytes:
    """The whole upstream body; transport failures mid-body become backend errors."""
    try:
        return await upstream.read()
    except UpstreamError as exc:
        raise _mid_body(exc) from exc


def _mid_body(exc: UpstreamError) -> BackendFailed:
    if isinstance(exc, UpstreamTimeout):
        return BackendTimeout(f"backend stalled mid-response: {exc}")
    return BackendFailed(f"backend connection broke mid-response: {exc}")
