"""The one place that talks to the upstream Gemma server.

One shared aiohttp session per app (opened in the lifespan), with a bounded connection pool and
explicit connect and read timeouts. aiohttp measured faster than httpx on this path (see README,
Performance). Transport failures become `BackendFailed` / `BackendTimeout`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp

from monitor.config import Settings
from monitor.errors import BackendFailed, BackendTimeout

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
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)


def request_headers(
    client_headers: Iterable[tuple[bytes, bytes]], settings: Settings
) -> dict[str, str]:
    """Headers sent upstream: the client's, minus hop-by-hop ones and (unless configured) its
    Authorization; plus the backend key when one is configured."""
    out: dict[str, str] = {}
    for raw_name, raw_value in client_headers:
        name = raw_name.decode("latin-1").lower()
        if (
            name == "authorization" and settings.forward_client_authorization
        ) or name not in _NOT_FORWARDED:
            out[name] = raw_value.decode("latin-1")
    if settings.backend_api_key:
        out["authorization"] = f"Bearer {settings.backend_api_key}"
    out["content-type"] = "application/json"
    return out


def response_headers(upstream: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream.headers.items()
        if name.lower() not in _NOT_RETURNED
    ]


class BackendClient:
    """Sends requests to the backend over one shared, pooled session."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.backend_base
        self._connect_timeout = settings.connect_timeout_s
        self._read_timeout = settings.read_timeout_s
        self._limit = settings.max_connections
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=self._limit, ttl_dns_cache=300, keepalive_timeout=30
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("BackendClient used before open()")
        return self._session

    async def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """Send a request and return the response once its headers arrived (body unread)."""
        try:
            return await self.session.request(
                method, self.base + path, data=body, headers=headers, allow_redirects=False
            )
        except TimeoutError as exc:
            raise BackendTimeout(f"backend did not answer within {self._read_timeout:g}s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise BackendFailed(f"backend unreachable at {self.base}: {exc.os_error}") from exc
        except aiohttp.ClientError as exc:
            raise BackendFailed(f"backend request failed: {exc.__class__.__name__}: {exc}") from exc

    async def get_json(self, path: str, timeout_s: float = 5.0) -> Any:
        """A small GET used by readiness checks and model listing."""
        try:
            async with self.session.get(
                self.base + path, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                if resp.status >= 400:
                    raise BackendFailed(
                        f"backend answered {resp.status} to GET {path}", upstream_status=resp.status
                    )
                return await resp.json(content_type=None)
        except TimeoutError as exc:
            raise BackendTimeout(
                f"backend did not answer GET {path} within {timeout_s:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise BackendFailed(f"backend unreachable at {self.base}: {exc}") from exc
        except ValueError as exc:
            raise BackendFailed(f"backend sent invalid JSON for GET {path}") from exc


async def iter_body(upstream: aiohttp.ClientResponse, read_timeout: float) -> AsyncIterator[bytes]:
    """The upstream body as it arrives; transport failures mid-body become backend errors."""
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except TimeoutError as exc:
        raise BackendTimeout(
            f"backend stalled for more than {read_timeout:g}s mid-response"
        ) from exc
    except aiohttp.ClientError as exc:
        raise BackendFailed(
            f"backend connection broke mid-response: {exc.__class__.__name__}"
        ) from exc
