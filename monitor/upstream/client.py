"""A small HTTP/1.1 client for the one upstream: keep-alive pool, httptools parser, asyncio protocol.

Why not httpx or aiohttp: on the proxy path the general clients cost 120-300 µs of CPU per
request on these machines (profiled: request objects, header multidicts, payload registries,
stream readers); this client writes a request in one `write` and hands body chunks straight to
the relay, for a fraction of that. It speaks only what the proxy needs: one origin, HTTP/1.1,
Content-Length request bodies, Content-Length / chunked / close-delimited responses; over TLS
for https:// origins (the system's trust store, the host name verified).

What it refuses to do:
- send a CR, LF or NUL inside the method, path, a header name or a header value (it would end
  the header early and let the rest be read as another header or another request);
- send a request twice when the backend may have started on it. A pooled connection the
  backend closed while idle is found out when it is reused; then only an idempotent request
  (GET, HEAD, ...) is sent again on a fresh connection: a POST may be a generation already
  running (the backend can close after reading it), so its failure is the caller's to see.
  To keep that race rare, a connection idle longer than `keepalive_expiry` (4 s: under the
  5 s keep-alive of uvicorn, vLLM's server, and of cpp-httplib, llama.cpp's) is closed, not
  reused, and one the loop already saw closing is skipped before anything is written to it.

    ValueError
    └── InvalidRequest          the request cannot be written safely (nothing was sent)
    UpstreamError               the connection failed: refused, reset, closed early, bad HTTP
    └── UpstreamTimeout         connect or read timeout
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn
from urllib.parse import urlsplit

import httptools

_READ_HIGH_WATER = 1 << 20  # stop reading from the socket when this much is unread
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 §9.2.2

Resolver = Callable[[str, int], Awaitable[str]]
"""`resolve(host, port)`: the address to connect to, checked by the caller (or an exception)."""


class InvalidRequest(ValueError):
    """The request cannot be written safely: a CR, LF or NUL in its method, path, a header name
    or value, or a character outside Latin-1. Raised before anything is sent."""


class UpstreamError(Exception):
    """The upstream connection failed before a complete response."""


class UpstreamTimeout(UpstreamError):
    """No connection, or no byte, within the timeout."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; a response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: BaseException | None = None
        self.reused = False
        self.idle_since = 0.0
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.length_known = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("backend tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"backend sent invalid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and not self.length_known and exc is None:
            self.complete = True  # a close-delimited body ends with the connection
        elif not self.complete and self.error is None:
            self.error = UpstreamError(
                "backend closed the connection"
                + (" mid-response" if self.got_bytes else " before answering")
                + (f": {exc}" if exc else "")
            )
        self._wake()

    def pause_writing(self) -> None:  # the request fits the socket buffer; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.length_known = True
        self.headers.append((lowered, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _READ_HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # valid only inside this callback
        self._wake()

    # the client's side
    def _fail(self, error: BaseException) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Until the protocol has news (headers, a chunk, the end, an error), or `seconds` pass.

        A timer handle rather than `asyncio.timeout`: this runs for every chunk of every stream,
        and a plain handle costs a fraction of a cancellation scope."""
        waiter = self.loop.create_future()
        self.waiter = waiter
        timer = self.loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> bytes:
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered < _READ_HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("timed out"))


class UpstreamResponse:
    """A response whose headers have arrived; the body is read with `read()` or `chunks()`."""

    __slots__ = ("_conn", "_pool", "_released", "headers", "status")

    def __init__(self, pool: UpstreamPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self._released = False
        self.status = conn.status
        self.headers = conn.headers

    @property
    def complete(self) -> bool:
        """The whole body has been read."""
        return self._conn.complete and not self._conn.chunks

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            while conn.chunks:
                yield conn.take()
            if conn.complete:
                return
            await self._more()

    async def read(self, limit: int | None = None) -> bytes:
        """The body (its first `limit` bytes), in one piece. A loop of its own rather than
        `chunks()`: a whole answer is read for most requests, and an async generator's frames
        and steps cost more than the rest of reading a body that has already arrived."""
        conn = self._conn
        parts: list[bytes] = []
        size = 0
        while True:
            while conn.chunks:
                chunk = conn.take()
                parts.append(chunk)
                size += len(chunk)
                if limit is not None and size >= limit:
                    return b"".join(parts)[:limit]
            if conn.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await self._more()

    async def _more(self) -> None:
        """Wait for more of the body; raises the connection's error, or `UpstreamTimeout`."""
        conn = self._conn
        if conn.error is not None:
            raise conn.error
        timeout = self._pool.read_timeout
        try:
            await conn.wait(timeout)
        except UpstreamTimeout as exc:
            raise UpstreamTimeout(f"backend sent nothing for {timeout:g}s mid-response") from exc

    def release(self) -> None:
        """Give the connection back when the response was read to its end; else close it."""
        if self._released:
            return
        self._released = True
        self._pool._give_back(self._conn)

    def close(self) -> None:
        """End the exchange now (aborted or unread): the connection is closed, not reused."""
        if self._released:
            return
        self._released = True
        self._conn.complete = False
        self._pool._give_back(self._conn)


class UpstreamPool:
    """Keep-alive connections to one origin, at most `max_connections` at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive_expiry: float = 4.0,
        resolve: Resolver | None = None,
    ) -> None:
        """`resolve`, when given, is awaited before every new connection (a retry included) and
        names the address to connect to: the caller checks what the name resolves to, and the
        connection goes to that checked address, so a DNS answer that changes in between cannot
        redirect it. Over TLS the certificate is still verified against the host name."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"only http:// and https:// are supported, not {parts.scheme}://")
        self.host = parts.hostname or "127.0.0.1"
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc or self.host
        self.host_header.encode("ascii")  # a UnicodeEncodeError (a ValueError) now, not later
        _check_line(self.prefix + self.host_header, "the base URL")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_expiry = keepalive_expiry
        self.resolve = resolve
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> UpstreamResponse:
        """Send a request; return once the response headers are in.

        `InvalidRequest` (nothing sent) for a CR, LF or NUL in the method, path or a header."""
        text = f"{method} {self.prefix}{path} HTTP/1.1\r\nhost: {self.host_header}" + "".join(
            [f"\r\n{name}: {value}" for name, value in headers]
        )
        # each line ends with the one CRLF put there above: any other CR or LF came in a value
        lines = len(headers) + 1
        if text.count("\r") != lines or text.count("\n") != lines or "\0" in text:
            _refuse_line_breaks(method, path, headers)
        if body is not None or method == "POST":
            text += f"\r\ncontent-length: {len(body) if body else 0}"
        try:
            head = (text + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"the request to {self.host} has a character outside Latin-1 in its path or a "
                "header"
            ) from None
        message = head + body if body else head
        await self._slots.acquire()
        try:
            conn = await self._connection()
            try:
                return await self._exchange(conn, message)
            except UpstreamError:
                if (
                    method not in _IDEMPOTENT
                    or not conn.reused
                    or conn.got_bytes
                    or isinstance(conn.error, UpstreamTimeout)
                ):
                    raise
            # the backend had closed the idle connection as we reused it, and sending the
            # same GET again is harmless: once more, on a fresh connection
            conn = await self._connect()
            return await self._exchange(conn, message)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(self, conn: _Connection, message: bytes) -> UpstreamResponse:
        assert conn.transport is not None
        conn.transport.write(message)
        while not conn.headers_done:
            if conn.error is not None:
                conn.transport.close()
                raise conn.error
            try:
                await conn.wait(self.read_timeout)
            except UpstreamTimeout:
                conn.error = UpstreamTimeout(
                    f"backend did not answer within {self.read_timeout:g}s"
                )
                conn.transport.close()
                raise conn.error from None
            except BaseException:
                conn.transport.close()  # cancelled (client gone): the backend must see it
                raise
        return UpstreamResponse(self, conn)

    async def _connection(self) -> _Connection:
        if self._idle:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                transport = conn.transport
                if conn.closed or transport is None or transport.is_closing():
                    continue
                if now - conn.idle_since > self.keepalive_expiry:
                    transport.close()  # the backend may be closing it right now
                    continue
                conn.reused = True
                return conn
        return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()

        async def open_connection() -> _Connection:
            host = self.host if self.resolve is None else await self.resolve(self.host, self.port)
            tls_name = self.host if self.tls is not None and host != self.host else None
            _, conn = await loop.create_connection(
                lambda: _Connection(loop), host, self.port, ssl=self.tls, server_hostname=tls_name
            )
            return conn

        try:
            conn = await asyncio.wait_for(open_connection(), self.connect_timeout)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout:g}s"
            ) from exc
        except OSError as exc:
            raise UpstreamError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        return conn

    def _give_back(self, conn: _Connection) -> None:
        self._slots.release()
        if conn.reusable() and not self._closed:
            conn._reset_response()
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        elif conn.transport is not None and not conn.closed:
            conn.transport.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing


def _check_line(text: str, what: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise InvalidRequest(f"{what} contains a CR, LF or NUL")


def _refuse_line_breaks(method: str, path: str, headers: list[tuple[str, str]]) -> NoReturn:
    """Name what carries the CR, LF or NUL (never its value: a header can hold a secret)."""
    _check_line(method + path, "the request line (method or path)")
    for name, value in headers:
        _check_line(name, f"a header name ({name!r})")
        _check_line(value, f"the value of header {name!r}")
    raise InvalidRequest("the request contains a CR, LF or NUL")
