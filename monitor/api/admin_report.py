"""`GET /admin/report?window=24h&format=json|md|html`: the health report, behind the admin token.

The report is built in a worker thread, never on the event loop. JSON is streamed: one thread
reads the per-request lists page by page (one database connection, used by that thread only,
as SQLite wants) and hands the text over through a small bounded queue, so a month's export
holds a few pages in memory and a slow client slows the reading down instead of filling
memory. A client that goes away stops the reading.

A window that cannot be read, is not longer than zero, or spans more than `MAX_WINDOW`, and an
unknown format, are 400 VALIDATION_ERROR in the API's error shape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from monitor.config_types import parse_duration
from monitor.errors import RequestInvalid
from monitor.reports.report import FORMATS, MEDIA_TYPES, build_report, iter_report, render

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MAX_WINDOW = timedelta(days=90)
QUEUE_PIECES = 4
STOP_CHECK_S = 0.5


def report_window(window: str, now: datetime) -> tuple[datetime, datetime]:
    """`(since, until)` of a window ending `now`; RequestInvalid (400) when it is no window."""
    try:
        seconds = parse_duration(window)
    except ValueError as exc:
        raise RequestInvalid(str(exc), param="window") from exc
    if seconds <= 0:
        raise RequestInvalid("a report window is longer than zero", param="window")
    if seconds > MAX_WINDOW.total_seconds():
        raise RequestInvalid(f"a report window is at most {MAX_WINDOW.days} days", param="window")
    return now - timedelta(seconds=seconds), now


def report_router(engine: Engine) -> APIRouter:
    """The route, without prefix or guard: included in the admin router, which has both."""
    router = APIRouter()

    @router.get("/report")
    async def report(window: str = "24h", format: str = "json") -> Response:
        if format not in FORMATS:
            raise RequestInvalid(
                f"unknown report format {format!r}: json, md or html", param="format"
            )
        since, until = report_window(window, datetime.now(UTC))
        built = await asyncio.to_thread(build_report, engine, since, until)
        headers = {"Content-Disposition": f'inline; filename="health-report.{format}"'}
        if format != "json":
            text = await asyncio.to_thread(render, built, format)
            return Response(text, media_type=MEDIA_TYPES[format], headers=headers)
        pieces = stream_in_thread(lambda: iter_report(built, "json", engine))
        return StreamingResponse(pieces, media_type=MEDIA_TYPES["json"], headers=headers)

    return router


class _Stopped(Exception):
    """The reader of the stream went away."""


async def stream_in_thread(
    produce: Callable[[], Generator[str, None, None]],
) -> AsyncGenerator[bytes, None]:
    """The pieces `produce()` yields, produced in one thread of their own and handed over
    through a bounded queue. Closing this iterator (the client went away) stops the thread
    within `STOP_CHECK_S`, without waiting for it on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_PIECES)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                future.result(timeout=STOP_CHECK_S)
                return
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    future.cancel()
                    raise _Stopped from None

    def run() -> None:
        pieces = produce()
        try:
            for piece in pieces:
                if stop.is_set():
                    return
                put(piece.encode())
            put(None)
        except _Stopped:
            return
        except Exception as exc:
            with contextlib.suppress(_Stopped):
                put(exc)
        finally:
            pieces.close()  # its database connection goes back now, in this thread

    worker = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                logger.error("report export failed while streaming", exc_info=item)
                raise item
            yield item
    finally:
        stop.set()
    await worker
