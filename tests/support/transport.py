"""A real asyncio transport with every write it is asked for kept, to count a protocol's writes."""

from __future__ import annotations

import asyncio
from typing import Any


class RecordingTransport:
    """`transport`, with each `write`'s bytes appended to `writes` before it is passed on."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
