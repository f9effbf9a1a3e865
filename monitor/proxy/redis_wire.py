"""A lean Redis client for the rate limiter's one command: EVALSHA (EVAL on NOSCRIPT), on one
pipelined connection.

The limiter runs one script call per request. Through redis-py's asyncio client that call
cost about 180 µs of CPU here (a connection checked out of a pool and back, the command packed
and the reply parsed through several layers), against 5 µs for the whole in-memory decision;
with several worker processes sharing Redis that was most of the request path's CPU. This
client writes each call on one connection without waiting for the previous reply (Redis
answers in order) and matches replies to calls first in, first out: a call is one write and one
parse of an array of integers.

It speaks what the script needs of RESP2 (simple strings, errors, integers, bulk strings,
arrays), authenticates and selects the database of a `redis://`, `rediss://` or `unix://` URL
when it connects, and connects again on the next call after a failure. Errors keep redis-py's
types, so the limiter's handling is the same for both clients: `ConnectionError` and
`TimeoutError` (refused, reset, no answer within `timeout_s`: the connection is closed, since a
late reply would be matched to the wrong call), `NoScriptError`, and `ResponseError` for any
other error reply.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_CRLF = b"\r\n"


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def pack(*args: str | int | bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse(buffer: bytes | bytearray, start: int = 0) -> tuple[Any, int]:
    """One reply from `buffer` at `start`: (value, where the next begins). An error reply is
    returned as a `ResponseError` (not raised); `_Incomplete` when the reply is not all there."""
    end = buffer.find(_CRLF, start)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : end])
    after = end + 2
    if kind == b":":
        return int(line), after
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(buffer, after)
            items.append(item)
        return items, after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _Incomplete
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        message = line.decode(errors="replace")
        if message.startswith("NOSCRIPT"):
            return NoScriptError(message), after
        return ResponseError(message), after
    raise RedisConnectionError(f"unexpected reply from Redis: {bytes(buffer[start:end])[:80]!r}")


class _Wire(asyncio.Protocol):
    """One connection: replies handed to the waiting calls in the order they were sent.

    Commands are written once per turn of the event loop: the calls that requests make in one
    turn go out in one write, and Redis's replies to them come back together, so that under load
    one system call each way serves many requests."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []  # commands not yet written, in `waiting`'s order
        self.buffer = bytearray()
        self.lost: Exception | None = None

    def send(self, command: bytes, loop: asyncio.AbstractEventLoop) -> None:
        if not self.outgoing:
            loop.call_soon(self.flush)
        self.outgoing.append(command)

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if outgoing and self.lost is None and self.transport is not None:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        try:
            while start < len(buffer) and self.waiting:
                try:
                    value, start = parse(buffer, start)
                except _Incomplete:
                    break
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(value)
        except (ValueError, RedisConnectionError) as exc:  # not RESP: nothing more can match
            self.fail(RedisConnectionError(f"bad reply from Redis: {exc}"))
            return
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self.outgoing.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class ScriptClient:
    """`evalsha` and `eval` with redis-py's signatures, on one pipelined connection."""

    def __init__(self, url: str, *, connect_timeout_s: float = 0.5, timeout_s: float = 0.5) -> None:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        self._unix = options.get("connection_class") is UnixDomainSocketConnection
        self._tls = (
            ssl.create_default_context()
            if options.get("connection_class") is SSLConnection
            else None
        )
        self._host = options.get("host", "localhost")
        self._port = int(options.get("port", 6379))
        self._path = options.get("path")
        self._db = int(options.get("db", 0) or 0)
        self._username = options.get("username")
        self._password = options.get("password")
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._wire: _Wire | None = None
        self._connecting: asyncio.Lock | None = None

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: str | int) -> Any:
        return await self._call(pack("EVALSHA", sha, numkeys, *keys_and_args))

    async def eval(self, script: str, numkeys: int, *keys_and_args: str | int) -> Any:
        return await self._call(pack("EVAL", script, numkeys, *keys_and_args))

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.fail(RedisConnectionError("client closed"))
            self._wire = None

    async def _call(self, command: bytes) -> Any:
        wire = self._wire
        if wire is None or wire.lost is not None:
            wire = await self._connect()
        value = await self._send(wire, command)
        if isinstance(value, ResponseError):
            raise value
        return value

    async def _send(self, wire: _Wire, command: bytes) -> Any:
        transport = wire.transport
        if transport is None or wire.lost is not None:
            raise wire.lost or RedisConnectionError("not connected to Redis")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        wire.waiting.append(future)
        wire.send(command, loop)
        timer = loop.call_later(self.timeout_s, self._late, wire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _late(self, wire: _Wire, future: asyncio.Future[Any]) -> None:
        if not future.done():  # a reply after this would be matched to the next call: close
            wire.fail(RedisTimeoutError(f"Redis did not answer within {self.timeout_s:g}s"))

    async def _connect(self) -> _Wire:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # calls arriving meanwhile share the one connection
            if self._wire is not None and self._wire.lost is None:
                return self._wire
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    if self._unix:
                        _, wire = await loop.create_unix_connection(_Wire, self._path)
                    else:
                        _, wire = await loop.create_connection(
                            _Wire, self._host, self._port, ssl=self._tls
                        )
            except TimeoutError as exc:
                raise RedisTimeoutError(
                    f"no connection to Redis within {self.connect_timeout_s:g}s"
                ) from exc
            except OSError as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
            try:
                if self._password is not None:
                    auth = [self._username, self._password] if self._username else [self._password]
                    self._check(await self._send(wire, pack("AUTH", *auth)))
                if self._db:
                    self._check(await self._send(wire, pack("SELECT", self._db)))
            except BaseException:
                wire.fail(RedisConnectionError("Redis refused the connection's set-up"))
                raise
            self._wire = wire
            return wire

    @staticmethod
    def _check(reply: Any) -> None:
        if isinstance(reply, ResponseError):
            raise RedisConnectionError(f"Redis refused the connection's set-up: {reply}")
