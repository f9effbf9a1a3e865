"""The admin route's hand-over of a report's text from one reading thread to the event loop."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from monitor.api.admin_report import stream_in_thread


async def test_every_piece_arrives_in_order_from_one_thread() -> None:
    threads: set[int] = set()

    def produce() -> Generator[str, None, None]:
        for i in range(50):
            threads.add(threading.get_ident())
            yield f"{i},"

    got = [piece async for piece in stream_in_thread(produce)]
    assert b"".join(got) == "".join(f"{i}," for i in range(50)).encode()
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_a_reader_that_goes_away_stops_the_thread() -> None:
    produced: list[int] = []
    finished = threading.Event()

    def produce() -> Generator[str, None, None]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield "x" * 100
        finally:
            finished.set()

    stream = stream_in_thread(produce)
    assert await anext(stream) == b"x" * 100
    await stream.aclose()
    assert finished.wait(5)  # the generator was closed, not left blocked
    assert len(produced) < 20  # a few pieces ahead at most: the queue is bounded


async def test_an_error_while_producing_reaches_the_reader() -> None:
    def produce() -> Generator[str, None, None]:
        yield "a"
        raise RuntimeError("database gone")

    stream = stream_in_thread(produce)
    assert await anext(stream) == b"a"
    with pytest.raises(RuntimeError, match="database gone"):
        await anext(stream)
