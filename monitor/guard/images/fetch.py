"""Fetching an image URL for the `shieldgemma2` check, when its policy says `fetch_urls: true`.

The proxy's own HTTP client (`monitor.upstream.client`), one connection per fetch, closed after:
GET, http or https only, no redirects followed (a redirect is a failed fetch), a 200 answer
only, at most `max_bytes` read (a larger Content-Length is refused before the body), and one
`timeout_s` for the whole exchange. Errors say what went wrong and name the host, never the
path or query (they go into findings, and a URL can carry a token).

Fetching what a client names makes the proxy reach hosts on the client's behalf, which is why
it is off unless a policy turns it on, and why only public addresses are reached: the host
name is resolved before each connection, and a name with any loopback, private, link-local,
shared (carrier NAT), unspecified, multicast or reserved address is refused (IPv4 inside IPv6,
mapped or 6to4, is judged as IPv4). The connection then goes to the address that was checked,
so a DNS answer that changes between the check and the connection (DNS rebinding) cannot send
it elsewhere. `allow_internal=True` lifts the address rule (tests, which serve images on
127.0.0.1).

The path and query are percent-encoded (UTF-8) before they go on the wire: a URL with non-ASCII
characters, spaces or control characters is fetched as a browser would ask for it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import quote, urlsplit

from monitor.guard.images.check import ImageFetchError
from monitor.upstream.client import InvalidRequest, UpstreamError, UpstreamPool

_PATH_SAFE = "/%!$&'()*+,;=:@"  # RFC 3986 pchar; "%" keeps existing escapes as they are
_QUERY_SAFE = _PATH_SAFE + "?"


async def fetch_image(
    url: str, max_bytes: int, timeout_s: float, *, allow_internal: bool = False
) -> bytes:
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
            resolve=None if allow_internal else public_address,
        )
    except ValueError as exc:  # a port that is not a number, a non-ASCII host, and such
        raise ImageFetchError(f"not a URL the proxy can fetch: {exc}") from None
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
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
    except (UpstreamError, InvalidRequest) as exc:
        raise ImageFetchError(f"fetching from {host} failed: {exc}") from None
    finally:
        await pool.close()
    return data


async def public_address(host: str, port: int) -> str:
    """The address to connect to for `host`: the first it resolves to, when every one of them
    is public; else `ImageFetchError` naming the kind of address found."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImageFetchError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise ImageFetchError(f"{host} resolves to no address")
    for address in addresses:
        kind = internal_kind(ipaddress.ip_address(address.split("%", 1)[0]))
        if kind is not None:
            raise ImageFetchError(f"{host} resolves to a {kind} address: not fetched")
    return addresses[0]


def internal_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes `address` one the proxy must not reach for a client, or None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None
