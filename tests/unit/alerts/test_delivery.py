"""One delivery attempt through an injected post, and the backoff schedule."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping

import pytest

from monitor.alerts.delivery import AttemptResult, attempt, is_retryable, next_attempt_delay
from monitor.alerts.signing import SIGNATURE_HEADER, verify_signature
from monitor.alerts.webhooks import OutgoingWebhook

OUT = OutgoingWebhook(
    receiver="ops",
    url="http://127.0.0.1:9/hook",
    body=b'{"state":"firing"}',
    headers={"Content-Type": "application/json"},
    key="k-firing",
)


@pytest.mark.parametrize("attempt_no", range(1, 30))
def test_backoff_stays_within_the_full_jitter_bounds(attempt_no: int) -> None:
    rng = random.Random(attempt_no)
    ceiling = min(300.0, 2.0 * 2 ** (attempt_no - 1))
    delays = [next_attempt_delay(attempt_no, base=2.0, cap=300.0, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.8  # the whole range is used: full jitter, not a fixed step


def test_backoff_ceiling_doubles_then_caps() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    top = Top()
    assert [next_attempt_delay(n, base=1.0, cap=60.0, rng=top) for n in range(1, 9)] == [
        1, 2, 4, 8, 16, 32, 60, 60,
    ]  # fmt: skip
    assert next_attempt_delay(10_000, base=1.0, cap=60.0, rng=top) == 60.0  # no overflow


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    first = [next_attempt_delay(n, rng=random.Random(7)) for n in range(1, 6)]
    again = [next_attempt_delay(n, rng=random.Random(7)) for n in range(1, 6)]
    assert first == again


@pytest.mark.parametrize(("n", "base", "cap"), [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_backoff_rejects_nonsense(n: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        next_attempt_delay(n, base, cap)


@pytest.mark.parametrize(
    ("status", "retry"),
    [(500, True), (502, True), (503, True), (429, True), (408, True), (425, True),
     (400, False), (401, False), (404, False), (410, False)],
)  # fmt: skip
def test_retryable_statuses(status: int, retry: bool) -> None:
    assert is_retryable(status) is retry


class Recorder:
    def __init__(self, status: int = 200, error: Exception | None = None, delay: float = 0) -> None:
        self.status, self.error, self.delay = status, error, delay
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.calls.append((url, body, dict(headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return self.status


async def test_attempt_posts_the_signed_request_once() -> None:
    post = Recorder(204)
    result = await attempt(OUT, post, now=1_700_000_000, secret="s3cret")
    assert result == AttemptResult(delivered=True, retryable=False, status=204)
    ((url, body, headers),) = post.calls
    assert (url, body) == (OUT.url, OUT.body)
    assert verify_signature(body, headers[SIGNATURE_HEADER], "s3cret", now=1_700_000_000)


async def test_attempt_without_secret_sends_no_signature() -> None:
    post = Recorder(200)
    await attempt(OUT, post, now=0)
    assert SIGNATURE_HEADER not in post.calls[0][2]


async def test_attempt_server_error_is_retryable_client_error_is_not() -> None:
    assert await attempt(OUT, Recorder(503), now=0) == AttemptResult(False, True, 503, "HTTP 503")
    assert await attempt(OUT, Recorder(400), now=0) == AttemptResult(False, False, 400, "HTTP 400")


async def test_attempt_transport_error_is_retryable() -> None:
    result = await attempt(OUT, Recorder(error=ConnectionRefusedError("refused")), now=0)
    assert result == AttemptResult(False, True, None, "ConnectionRefusedError: refused")


async def test_attempt_timeout_is_retryable() -> None:
    result = await attempt(OUT, Recorder(delay=5), now=0, timeout_s=0.05)
    assert result == AttemptResult(False, True, None, "no response within 0.05s")
