"""Fetching an image URL for the `shieldgemma2` check, when its policy says `fetch_urls: true`.

The proxy's own HTTP client (`monitor.upstream.client`), one connection per fetch, closed after:
GET, http or https only, no redirects followed (a redirect is a failed fetch), a 200 answer
only, at most `max_bytes` read (a larger Content-Length is refused before the body), and one
`timeout_s` for the whole exchange. Errors say what went wrong and name the host, never the
path or query (they go into findings, and a URL can carry a token).

Fetching what a client names makes the proxy reach hosts on the client's behalf (internal
addresses included), which is why it is off unless a policy turns it on.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from monitor.guard.images.check import ImageFetchError
from monitor.upstream.client import UpstreamError, UpstreamPool


async def fetch_image(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """The body of `url` (at most `max_bytes`), or `ImageFetchError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageFetchError("only http and https image URLs are fetched")
    host = parts.hostname
    if parts.username is not None or parts.password is not None:
        raise ImageFetchError(f"an image URL with credentials (at {host}) is not fetched")
    try:
        pool = UpstreamPool(
            f"{parts.scheme}://{parts.netloc}",
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            max_connections=1,
        )
    except ValueError as exc:  # a port that is not a number, and such
        raise ImageFetchError(f"not a URL the proxy can fetch: {exc}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [("accept", "image/*"), ("connection", "close"), ("user-agent", "gemma-monitor")]
    try:
        async with asyncio.timeout(timeout_s):
            response = await pool.request("GET", target, headers)
            try:
                if response.status != 200:
                    raise ImageFetchError(f"{host} answered {response.status}")
                length = response.header(b"content-length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise ImageFetchError(f"the image at {host} is larger than {max_bytes} bytes")
                data = await response.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise ImageFetchError(f"the image at {host} is larger than {max_bytes} bytes")
            finally:
                response.close()
    except TimeoutError:
        raise ImageFetchError(f"{host} did not send the image within {timeout_s:g}s") from None
    except UpstreamError as exc:
        raise ImageFetchError(f"fetching from {host} failed: {exc}") from None
    finally:
        await pool.close()
    return data
