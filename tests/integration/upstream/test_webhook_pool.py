"""Webhook posts run in a bounded pool of their own: a slow receiver cannot starve the rest."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from monitor.upstream.webhook import ThreadedPost
from tests.support.servers import serve


async def _slow_receiver(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        while message["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(1.0)  # a receiver that takes its time
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_many_posts_to_a_slow_receiver_leave_the_default_executor_free() -> None:
    with serve(_slow_receiver) as receiver:
        post = ThreadedPost(timeout_s=10.0)
        pending = [asyncio.create_task(post(f"{receiver.url}/hook", b"{}", {})) for _ in range(40)]
        await asyncio.sleep(0.2)  # the posts are under way, more waiting
        started = time.monotonic()
        await asyncio.wait_for(asyncio.to_thread(lambda: None), 10.0)  # e.g. a recorder write
        elapsed = time.monotonic() - started
        post.close()  # the waiting posts are dropped; those under way finish
        results = await asyncio.gather(*pending, return_exceptions=True)

    assert elapsed < 0.2
    assert 1 <= results.count(204) <= 40
