"""The test webhook receiver, a real HTTP server, against real signed deliveries over httpx.

The outbox worker (wired by the app) is not here yet: these tests drive one `attempt` at a
time, through httpx, the way that worker will.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime

import httpx
import pytest

from monitor.alerts import webhooks
from monitor.alerts.delivery import AttemptResult, Post, attempt
from monitor.alerts.rules import default_rules, evaluate
from monitor.alerts.signing import SIGNATURE_HEADER, signature_header
from monitor.alerts.state import AlertTracker, Notification
from monitor.alerts.webhooks import OutgoingWebhook
from monitor.config_types import WebhookReceiver
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

SECRET = "s3cret"


@pytest.fixture
def receiver() -> RecordingReceiver:
    return RecordingReceiver(secret=SECRET)


@pytest.fixture
def server(receiver: RecordingReceiver) -> Iterator[ReceiverServer]:
    with ReceiverServer(receiver) as running:
        yield running


@pytest.fixture
async def post() -> AsyncIterator[Post]:
    async with httpx.AsyncClient(timeout=5) as client:

        async def send(url: str, body: bytes, headers: Mapping[str, str]) -> int:
            return (await client.post(url, content=body, headers=dict(headers))).status_code

        yield send


def firing() -> Notification:
    rule = default_rules()[5]  # backend_unhealthy, for 30s
    tracker = AlertTracker()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    tracker.step([evaluate(rule, {"backend_up": 0})], start)
    (notification,) = tracker.step([evaluate(rule, {"backend_up": 0})], start.replace(second=30))
    return notification


def outgoing(server: ReceiverServer, kind: str = "generic") -> OutgoingWebhook:
    config = WebhookReceiver(name="test", url=server.url, kind=kind, secret=SECRET)  # type: ignore[arg-type]
    return webhooks.prepare(config, firing())


async def test_signed_delivery_is_verified_and_recorded(
    server: ReceiverServer, receiver: RecordingReceiver, post: Post
) -> None:
    result = await attempt(outgoing(server), post, now=time.time(), secret=SECRET)
    assert result == AttemptResult(delivered=True, retryable=False, status=200)
    (delivery,) = receiver.wait_for(1)
    assert delivery.verified is True
    assert delivery.json()["alert"] == "backend_unhealthy"
    assert delivery.json()["state"] == "firing"
    assert delivery.key == firing().key
    assert delivery.headers["x-gemma-monitor-event"] == "firing"


@pytest.mark.parametrize("kind", ["slack", "alertmanager"])
async def test_every_payload_kind_is_delivered(
    server: ReceiverServer, receiver: RecordingReceiver, post: Post, kind: str
) -> None:
    result = await attempt(outgoing(server, kind), post, now=time.time(), secret=SECRET)
    assert result.delivered
    body = receiver.wait_for(1)[0].json()
    assert ("blocks" in body) if kind == "slack" else (body["version"] == "4")


async def test_tampered_body_wrong_secret_and_stale_signature_get_401(
    server: ReceiverServer, receiver: RecordingReceiver, post: Post
) -> None:
    out, now = outgoing(server), int(time.time())
    good = signature_header(out.body, SECRET, now)
    tampered = await post(
        server.url, out.body.replace(b"firing", b"resolved"), {SIGNATURE_HEADER: good}
    )
    wrong = await post(
        server.url, out.body, {SIGNATURE_HEADER: signature_header(out.body, "x", now)}
    )
    stale = await post(
        server.url, out.body, {SIGNATURE_HEADER: signature_header(out.body, SECRET, now - 3600)}
    )
    unsigned = await post(server.url, out.body, {})
    assert (tampered, wrong, stale, unsigned) == (401, 401, 401, 401)
    assert [d.verified for d in receiver.deliveries] == [False] * 4
    assert receiver.accepted == []


async def test_receiver_failing_n_times_then_accepting(
    server: ReceiverServer, receiver: RecordingReceiver, post: Post
) -> None:
    receiver.fail_next(2, status=503)
    out = outgoing(server)
    results = [await attempt(out, post, now=time.time(), secret=SECRET) for _ in range(3)]
    assert [(r.delivered, r.retryable, r.status) for r in results] == [
        (False, True, 503),
        (False, True, 503),
        (True, False, 200),
    ]
    assert [d.status for d in receiver.deliveries] == [503, 503, 200]
    assert len({d.key for d in receiver.deliveries}) == 1  # one notification, three attempts


async def test_receiver_down_then_back_on_the_same_port(
    server: ReceiverServer, receiver: RecordingReceiver, post: Post
) -> None:
    out = outgoing(server)
    server.down()
    refused = await attempt(out, post, now=time.time(), secret=SECRET)
    assert (refused.delivered, refused.retryable, refused.status) == (False, True, None)
    assert refused.error is not None and "ConnectError" in refused.error
    server.up()
    assert (await attempt(out, post, now=time.time(), secret=SECRET)).delivered
    assert len(receiver.wait_for(1)) == 1
