"""A real webhook receiver for tests: a small ASGI app served by `servers.serve` on a real port.

It records every request it gets, verifies `X-Gemma-Monitor-Signature` when given a secret
(401 when it does not verify), can be told to fail the next N requests with a status, and,
through `ReceiverServer`, can be taken down (connection refused) and brought back up on the
same port, as a receiver that is down for minutes would be.

    receiver = RecordingReceiver(secret="s3cret")
    with ReceiverServer(receiver) as server:
        receiver.fail_next(2, status=503)
        ...  # deliver to server.url
        server.down(); ...; server.up()
        deliveries = receiver.wait_for(1)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from monitor.alerts.signing import SIGNATURE_HEADER, verify_signature
from monitor.alerts.webhooks import DELIVERY_HEADER
from tests.support.asgi import read_body, serve_lifespan
from tests.support.servers import ThreadedServer, free_port


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got, and how it answered."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    verified: bool | None  # None when the receiver has no secret
    status: int
    received_at: float

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def key(self) -> str | None:
        return self.headers.get(DELIVERY_HEADER.lower())

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingReceiver:
    """ASGI app: answers POSTs, records them; thread-safe to inspect from the test."""

    def __init__(
        self,
        secret: str | None = None,
        tolerance_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret, self.tolerance_s, self.clock = secret, tolerance_s, clock
        self.deliveries: list[Delivery] = []
        self._failures: list[int] = []
        self._changed = threading.Condition()

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` requests with `status` (before checking the signature)."""
        with self._changed:
            self._failures.extend([status] * count)

    def reset(self) -> None:
        with self._changed:
            self.deliveries.clear()
            self._failures.clear()

    @property
    def accepted(self) -> list[Delivery]:
        with self._changed:
            return [d for d in self.deliveries if d.accepted]

    def wait_for(self, accepted: int, timeout: float = 10.0) -> list[Delivery]:
        """Block until `accepted` requests were accepted; the accepted ones, in order."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(d.accepted for d in self.deliveries) < accepted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{accepted} accepted deliveries expected within {timeout}s, got "
                        f"{[(d.status, d.key) for d in self.deliveries]}"
                    )
                self._changed.wait(left)
            return [d for d in self.deliveries if d.accepted]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, verified = self._answer(scope["method"], headers, body)
        with self._changed:
            self.deliveries.append(
                Delivery(scope["path"], headers, body, verified, status, self.clock())
            )
            self._changed.notify_all()
        reply = json.dumps({"status": status}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    def _answer(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, bool | None]:
        verified = None
        if self.secret is not None:
            header = headers.get(SIGNATURE_HEADER.lower())
            verified = verify_signature(body, header, self.secret, self.tolerance_s, self.clock())
        with self._changed:
            if self._failures:
                return self._failures.pop(0), verified
        if method != "POST":
            return 405, verified
        if verified is False:
            return 401, verified
        return 200, verified


class ReceiverServer:
    """`receiver` under uvicorn on one fixed port that survives `down()` and `up()`."""

    def __init__(self, receiver: RecordingReceiver, port: int | None = None) -> None:
        self.receiver = receiver
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._server: ThreadedServer | None = None

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def up(self) -> ReceiverServer:
        if self._server is None:
            self._server = ThreadedServer(self.receiver, self.port).start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until `up()`."""
        if self._server is not None:
            self._server.stop(timeout=5)
            self._server = None

    def __enter__(self) -> ReceiverServer:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()
