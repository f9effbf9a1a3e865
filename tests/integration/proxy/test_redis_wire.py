"""The limiter's own Redis client against a real Redis (and against servers that misbehave):
RESP parsing, pipelined calls matched to their replies, the database of the URL, NOSCRIPT,
error replies, a server that never answers, a cancelled call, reconnecting."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from monitor.proxy.redis_wire import ScriptClient, _Incomplete, pack, parse
from tests.support.redis_db import redis_prefix, redis_url
from tests.support.servers import free_port
from tests.support.transport import RecordingTransport

ECHO = "return {tonumber(ARGV[1]), redis.call('INCR', KEYS[1])}"
# a script that keeps Redis busy for about 20 ms (or to the next whole second)
BUSY_20MS = """
local t = redis.call('TIME')
while redis.call('TIME')[1] == t[1] and redis.call('TIME')[2] - t[2] < 20000 do end
return 1
"""


def test_pack_and_parse() -> None:
    assert (
        pack("EVALSHA", "ab", 1, b"k")
        == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n"
    )
    reply = b"*3\r\n:1\r\n*2\r\n:-2\r\n$3\r\nabc\r\n+OK\r\n:7\r\n"
    value, end = parse(reply)
    assert value == [1, [-2, b"abc"], "OK"] and reply[end:] == b":7\r\n"
    assert parse(b"$-1\r\n") == (None, 5)
    for cut in range(1, len(reply) - 4):  # every prefix of a reply waits for the rest
        with pytest.raises(_Incomplete):
            parse(reply[:cut])
    error, _ = parse(b"-NOSCRIPT No matching script\r\n")
    assert isinstance(error, NoScriptError)
    error, _ = parse(b"-ERR wrong\r\n")
    assert isinstance(error, ResponseError) and not isinstance(error, NoScriptError)


def wire_client(url: str | None = None) -> ScriptClient:
    """The client for tests of what a call does, not of how long it may take: generous limits,
    so that a stall of the test machine is not taken for Redis's (the defaults, 0.5 s, once
    timed out a loopback connect on a loaded 2-core machine). The timeout tests set their own."""
    return ScriptClient(url or redis_url(), connect_timeout_s=5.0, timeout_s=5.0)


@pytest.fixture
async def redis() -> Iterator[tuple[Redis, str]]:
    async with redis_prefix() as client_and_prefix:
        yield client_and_prefix


async def test_pipelined_calls_get_their_own_replies(redis: tuple[Redis, str]) -> None:
    _, prefix = redis
    client = wire_client()
    try:
        key = prefix + "count"
        replies = await asyncio.gather(*(client.eval(ECHO, 1, key, i) for i in range(300)))
        assert [r[0] for r in replies] == list(range(300))  # each call its own reply
        assert sorted(r[1] for r in replies) == list(range(1, 301))  # atomic increments
        assert client._wire is not None and len(client._wire.waiting) == 0
    finally:
        await client.aclose()


async def test_calls_made_in_one_turn_go_out_in_one_write(redis: tuple[Redis, str]) -> None:
    """Requests that call in the same turn of the loop share one write (and one system call)."""
    _, prefix = redis
    key = prefix + "count"
    client = wire_client()
    try:
        await client.eval(ECHO, 1, key, 0)  # connected
        wire = client._wire
        assert wire is not None and wire.transport is not None
        writes: list[bytes] = []
        wire.transport = RecordingTransport(wire.transport, writes)  # type: ignore[assignment]
        replies = await asyncio.gather(*(client.eval(ECHO, 1, key, i) for i in range(100)))
        assert [r[0] for r in replies] == list(range(100))
        assert len(writes) == 1 and writes[0].count(b"$4\r\nEVAL\r\n") == 100
        assert await client.eval(ECHO, 1, key, 7) == [7, 102]  # alone: a write of its own
        assert len(writes) == 2
    finally:
        await client.aclose()


def test_on_uvloop_as_served(redis: tuple[Redis, str]) -> None:
    """The server runs on uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def run() -> list[int]:
        client = wire_client(redis_url().rsplit("/", 1)[0] + "/5")  # AUTH/SELECT on connect
        try:
            return list(
                await asyncio.gather(*(client.eval("return ARGV[1] + 0", 0, i) for i in range(50)))
            )
        finally:
            await client.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(run()) == list(range(50))


async def test_the_database_of_the_url(redis: tuple[Redis, str]) -> None:
    _, prefix = redis
    base = redis_url().rsplit("/", 1)[0]
    client, other = wire_client(f"{base}/7"), Redis.from_url(f"{base}/7")
    try:
        await client.eval("return redis.call('SET', KEYS[1], '1') and 1", 1, prefix + "db7")
        assert await other.get(prefix + "db7") == b"1"
        await other.delete(prefix + "db7")
    finally:
        await client.aclose()
        await other.aclose()


async def test_noscript_and_error_replies(redis: tuple[Redis, str]) -> None:
    client = wire_client()
    try:
        with pytest.raises(NoScriptError):
            await client.evalsha("0" * 40, 0)
        with pytest.raises(ResponseError):
            await client.eval("return redis.call('NOSUCHCOMMAND')", 0)
        assert await client.eval("return 5", 0) == 5  # the connection goes on after errors
    finally:
        await client.aclose()


async def test_a_cancelled_call_does_not_shift_the_replies(redis: tuple[Redis, str]) -> None:
    client = wire_client()
    try:
        slow = asyncio.create_task(client.eval(BUSY_20MS, 0))
        await asyncio.sleep(0.005)
        slow.cancel()
        assert await client.eval("return 2", 0) == 2
        assert await client.eval("return 3", 0) == 3
    finally:
        await client.aclose()


class _Silent:
    """A TCP server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


async def test_no_answer_times_out_and_closes_then_reconnects() -> None:
    silent = _Silent()
    client = ScriptClient(f"redis://127.0.0.1:{silent.port}/0", timeout_s=0.2)
    try:
        calls = [asyncio.ensure_future(client.eval("return 1", 0)) for _ in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        first = client._wire
        assert first is not None and first.transport is not None and first.transport.is_closing()
        with pytest.raises(RedisTimeoutError):
            await client.eval("return 1", 0)
        assert client._wire is not first  # a new connection for the next call
        assert len(silent.accepted) == 2
    finally:
        await client.aclose()
        silent.close()


async def test_refused_connection_is_a_connection_error() -> None:
    client = ScriptClient(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError):
        await client.eval("return 1", 0)
    await client.aclose()
