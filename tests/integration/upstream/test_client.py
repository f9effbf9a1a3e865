"""The upstream client against real TCP servers that script the wire byte by byte."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from monitor.upstream.client import InvalidRequest, UpstreamError, UpstreamPool, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)

    async def __aenter__(self) -> UpstreamPool:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.pool = UpstreamPool(
            f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=1, max_connections=4
        )
        return self.pool

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def keepalive_json(server_requests: list[bytes], body: bytes = b'{"ok": true}') -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, payload = await read_request(reader)
            server_requests.append(head + payload)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()

    return handle


async def test_keep_alive_reuses_one_connection() -> None:
    requests: list[bytes] = []
    server = Server(keepalive_json(requests))
    async with server as pool:
        for i in range(5):
            resp = await pool.request("POST", "/v1/x", [("x-n", str(i))], b'{"a": 1}')
            assert resp.status == 200 and resp.header(b"content-type") == b"application/json"
            assert await resp.read() == b'{"ok": true}'
            resp.release()
    assert server.connections == 1
    assert len(requests) == 5
    assert requests[0].startswith(b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"\r\nx-n: 0\r\n" in requests[0] and b"content-length: 8" in requests[0]
    assert requests[0].endswith(b'{"a": 1}')


async def test_stale_pooled_connection_is_retried_on_a_fresh_one() -> None:
    async def one_request_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # closes without saying "connection: close": the client will find out on reuse

    server = Server(one_request_per_connection)
    async with server as pool:
        for _ in range(3):
            resp = await pool.request("POST", "/", [], b"{}")
            assert await resp.read() == b"ok"
            resp.release()
            await asyncio.sleep(0.05)
    assert server.connections == 3


def answers_once_then_hangs_up(heads: list[bytes]) -> Handler:
    """Answers the first request; reads the second on the same (reused) connection and hangs
    up without a byte: from the client's side, a backend that closed an idle connection as it
    was reused looks the same as one that took the request and died."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append((await read_request(reader))[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        heads.append((await read_request(reader))[0])

    return handle


async def test_a_get_on_a_reused_connection_closed_before_answering_is_retried_once() -> None:
    heads: list[bytes] = []
    server = Server(answers_once_then_hangs_up(heads))
    async with server as pool:
        for _ in range(2):
            resp = await pool.request("GET", "/v1/models", [])
            assert await resp.read() == b"ok"
            resp.release()
    assert server.connections == 2
    assert len(heads) == 3  # the second GET was sent twice


async def test_a_post_is_never_sent_twice() -> None:
    """A POST the backend may have started (a generation) is not retried: the caller sees the
    failure, and the backend saw the request once."""
    heads: list[bytes] = []
    server = Server(answers_once_then_hangs_up(heads))
    async with server as pool:
        resp = await pool.request("POST", "/v1/chat/completions", [], b"{}")
        assert await resp.read() == b"ok"
        resp.release()
        with pytest.raises(UpstreamError, match="closed the connection before answering"):
            await pool.request("POST", "/v1/chat/completions", [], b"{}")
        await asyncio.sleep(0.05)
    assert server.connections == 1
    assert len(heads) == 2


async def test_a_connection_idle_past_the_keepalive_expiry_is_not_reused() -> None:
    requests: list[bytes] = []
    server = Server(keepalive_json(requests))
    async with server as pool:
        pool.keepalive_expiry = 0.1
        for pause in (0.0, 0.0, 0.2):
            await asyncio.sleep(pause)
            resp = await pool.request("POST", "/", [], b"{}")
            await resp.read()
            resp.release()
    assert server.connections == 2  # reused once, then expired
    assert len(requests) == 3


@pytest.mark.parametrize(
    ("method", "path", "headers", "culprit"),
    [
        ("POST", "/", [("x-a", "1\r\nx-injected: 1")], "the value of header 'x-a'"),
        ("POST", "/", [("x-a", "1\nx-injected: 1")], "the value of header 'x-a'"),
        ("POST", "/", [("x-a", "1\rx")], "the value of header 'x-a'"),
        ("POST", "/", [("x-a", "1\0")], "the value of header 'x-a'"),
        ("POST", "/", [("x-a\r\nx-b", "1")], "a header name"),
        ("POST", "/ HTTP/1.1\r\nx-injected: 1\r\n\r\nGET /", [], "the request line"),
        ("GET\n", "/", [], "the request line"),
    ],
)
async def test_line_breaks_and_nul_in_a_request_are_refused_before_sending(
    method: str, path: str, headers: list[tuple[str, str]], culprit: str
) -> None:
    requests: list[bytes] = []
    server = Server(keepalive_json(requests))
    async with server as pool:
        with pytest.raises(InvalidRequest, match=f"{re.escape(culprit)}.* CR, LF or NUL"):
            await pool.request(method, path, headers, b"{}")
        with pytest.raises(InvalidRequest, match="outside Latin-1"):
            await pool.request("POST", "/", [("x-a", "\u2028")], b"{}")
        resp = await pool.request("POST", "/", [("x-a", "fine: \t and all")], b"{}")
        assert resp.status == 200  # the pool is still usable: nothing was taken or sent
        await resp.read()
        resp.release()
    assert server.connections == 1 and len(requests) == 1
    assert b"x-injected" not in requests[0]


async def test_resolve_names_the_address_connected_to_for_every_connection() -> None:
    """The connection goes to the address the resolver checked, whatever the name resolves to
    later; and the resolver is asked again for each new connection."""
    requests: list[bytes] = []
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> str:
        asked.append((host, port))
        return "127.0.0.1"

    server = Server(keepalive_json(requests))
    async with server as local:
        port = local.port
        pool = UpstreamPool(
            f"http://images.invalid:{port}",  # a name no DNS resolves
            connect_timeout=2,
            read_timeout=1,
            max_connections=1,
            keepalive_expiry=0.05,
            resolve=resolve,
        )
        try:
            for pause in (0.0, 0.1):
                await asyncio.sleep(pause)
                resp = await pool.request("GET", "/cat.png", [])
                assert await resp.read() == b'{"ok": true}'
                resp.release()
        finally:
            await pool.close()
    assert asked == [("images.invalid", port)] * 2
    assert requests[0].startswith(b"GET /cat.png HTTP/1.1\r\nhost: images.invalid:%d" % port)


async def test_chunked_and_close_delimited_bodies() -> None:
    async def chunked_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with Server(chunked_then_close) as pool:
        resp = await pool.request("POST", "/", [], b"{}")
        assert [c async for c in resp.chunks()] == [b"data: 1\n\n", b"data: 2\n\n"]
        resp.release()
        resp = await pool.request("POST", "/", [], b"{}")
        assert await resp.read() == b"until the end"
        resp.release()


async def test_read_waits_for_every_piece_and_stops_at_its_limit() -> None:
    """`read()` joins a body that arrives in pieces with pauses between them; `read(limit)`
    returns its first `limit` bytes as soon as they are in, without waiting for the rest."""
    parts = (b"first ", b"second ", b"third")

    async def in_pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in parts:
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0.05)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with Server(in_pieces) as pool:
        resp = await pool.request("POST", "/", [], b"{}")
        assert await resp.read() == b"first second third"
        assert resp.complete
        resp.release()
        resp = await pool.request("POST", "/", [], b"{}")
        assert await resp.read(10) == b"first seco"
        assert not resp.complete  # the third piece had not been read
        resp.close()


async def test_large_body_with_flow_control() -> None:
    blob = bytes(range(256)) * 16 * 1024  # 4 MiB, past the read high-water mark

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(blob))
        writer.write(blob)
        await writer.drain()

    async with Server(big) as pool:
        resp = await pool.request("POST", "/", [], b"{}")
        await asyncio.sleep(0.2)  # let the socket fill the buffer before reading
        assert await resp.read() == blob
        resp.release()


async def test_connection_limit_is_respected() -> None:
    active = 0
    peak = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        while True:
            await read_request(reader)
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()

    async with Server(slow) as pool:

        async def one() -> None:
            resp = await pool.request("POST", "/", [], b"{}")
            await resp.read()
            resp.release()

        await asyncio.gather(*(one() for _ in range(12)))
    assert peak == 4


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "mid-response"),
        (b"this is not http\r\n\r\n", "invalid HTTP"),
        (b"", "before answering"),
    ],
)
async def test_broken_replies_are_upstream_errors(reply: bytes, message: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with Server(broken) as pool:
        with pytest.raises(UpstreamError, match=message):
            resp = await pool.request("POST", "/", [], b"{}")
            await resp.read()
            resp.release()


async def test_silence_is_a_timeout_and_the_connection_is_not_reused() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server = Server(silent)
    async with server as pool:
        with pytest.raises(UpstreamTimeout, match="did not answer within 1s"):
            await pool.request("POST", "/", [], b"{}")
        assert pool._idle == []


async def test_refused_connection() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = UpstreamPool(
        f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=1, max_connections=2
    )
    with pytest.raises(UpstreamError, match="cannot connect"):
        await pool.request("GET", "/", [])
    await pool.close()


async def test_cancelled_request_closes_the_connection() -> None:
    closed = asyncio.Event()

    async def waits(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # returns at EOF: the client hung up
        closed.set()

    async with Server(waits) as pool:
        task = asyncio.create_task(pool.request("POST", "/", [], b"{}"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 2)
