"""The client's side of an exchange: under the proxy's own protocol the request's loop comes
with the scope's disconnect hook, so a request never asks asyncio for the running loop (each
ask is a system call for the process id)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.errors import BodyTimeout
from monitor.proxy.exchange import DISCONNECT_HOOK, DisconnectHook, Exchange, Message


def _receive(body: bytes) -> Any:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # nothing more until the test ends
        return {"type": "http.disconnect"}

    return receive


async def _send(message: Message) -> None:
    pass


def _scope(hook: DisconnectHook | None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http", "headers": [(b"content-length", b"5")]}
    if hook is not None:
        scope["extensions"] = {DISCONNECT_HOOK: hook}
    return scope


async def test_with_the_protocols_hook_the_loop_is_never_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = DisconnectHook(asyncio.get_running_loop())

    def no_lookup() -> asyncio.AbstractEventLoop:
        raise AssertionError("asked asyncio for the running loop")

    # what the exchange calls; asyncio's own functions look the loop up through `events`
    monkeypatch.setattr(asyncio, "get_running_loop", no_lookup)
    read: list[bytes] = []

    async def request() -> None:
        exchange = Exchange(_scope(hook), _receive(b"hello"), _send, "id")
        read.append(await exchange.read_body(100, 5.0))
        exchange.watch_disconnect()
        await asyncio.sleep(10)  # waiting on the backend

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    assert read == [b"hello"]
    hook.fire()  # the connection is lost: the request's task is cancelled
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_body_past_its_time_is_refused_with_the_hooks_loop() -> None:
    hook = DisconnectHook(asyncio.get_running_loop())

    async def slow() -> Message:
        await asyncio.sleep(10)
        return {"type": "http.request", "body": b"late", "more_body": False}

    exchange = Exchange(_scope(hook), slow, _send, "id")
    with pytest.raises(BodyTimeout):
        await exchange.read_body(100, 0.05)


async def test_without_a_hook_the_running_loop_is_used() -> None:
    exchange = Exchange(_scope(None), _receive(b"hello"), _send, "id")
    assert await exchange.read_body(100, 5.0) == b"hello"
    exchange.watch_disconnect()  # a task waits on receive() for the disconnect
    exchange.stop_watching()
