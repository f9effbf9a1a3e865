"""The backend is killed (SIGKILL) under traffic and started again: clients get a clean
GENERATION_ERROR within the timeout, a stream in flight ends with an error event, the
backend_unhealthy alert fires and resolves, and a real webhook receiver gets exactly one
notification for each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from monitor.store.engine import make_engine
from monitor.store.queries import get_request
from tests.integration.faults.conftest import Monitor, report, scale
from tests.support.backend_process import BackendProcess
from tests.support.load import CHAT, Background
from tests.support.webhook_receiver import ReceiverServer, RecordingReceiver

pytestmark = pytest.mark.faults

SECRET = "hook-secret-0123456789"
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
ALERTS = {
    "interval_s": 0.2,
    "default_rules": False,
    "retry_base_s": 0.2,
    "retry_cap_s": 1.0,
    "rules": [
        {
            "name": "backend_unhealthy",
            "metric": "backend_up",
            "comparison": "<",
            "threshold": 1,
            "window": "2s",
            "for": "0.5s",
            "resolve_after": "1s",
            "severity": "critical",
            "no_data": "keep",
        }
    ],
}


@dataclass(frozen=True)
class Answer:
    at: float
    seconds: float
    status: int
    code: str | None


class Traffic(Background):
    """A client thread sending a request every `every_s` until stopped, keeping the answers."""

    def __init__(self, url: str, every_s: float = 0.05) -> None:
        super().__init__(every_s, timeout=READ_TIMEOUT_S + CONNECT_TIMEOUT_S + 10)
        self.url = url
        self.answers: list[Answer] = []

    def send(self, client: httpx.Client) -> None:
        start = time.monotonic()
        resp = client.post(f"{self.url}/v1/chat/completions", json=CHAT)
        code = resp.json()["error"]["code"] if resp.status_code != 200 else None
        self.answers.append(Answer(start, time.monotonic() - start, resp.status_code, code))


def test_backend_killed_and_restarted(start_monitor: Callable[..., Monitor]) -> None:
    down_s = scale(3, 30)
    backend = BackendProcess(chunks=20, chunk_s=0.1).start()  # a stream takes ~2 s
    receiver = RecordingReceiver(secret=SECRET)
    try:
        with ReceiverServer(receiver) as hook:
            monitor = start_monitor(
                backend.url,
                config={
                    "health": {"enabled": True, "interval_s": 0.2, "timeout_s": 1.0},
                    "alerts": ALERTS,
                },
                webhook_url=hook.url,
                webhook_secret=SECRET,
                connect_timeout_s=str(CONNECT_TIMEOUT_S),
                read_timeout_s=str(READ_TIMEOUT_S),
            )
            with Traffic(monitor.url) as traffic:
                time.sleep(1.0)
                stream_events: list[bytes] = []
                stream_id: list[str] = []

                def stream() -> None:
                    with httpx.stream(
                        "POST", f"{monitor.url}/v1/chat/completions",
                        json={**CHAT, "stream": True}, timeout=30,
                    ) as resp:  # fmt: skip
                        stream_id.append(resp.headers["x-request-id"])
                        stream_events.extend(e for e in resp.read().split(b"\n\n") if e.strip())

                streamer = threading.Thread(target=stream)
                streamer.start()
                time.sleep(0.5)  # a few tokens out
                killed_at, killed_wall = time.monotonic(), time.time()
                backend.kill()
                streamer.join(READ_TIMEOUT_S + 5)
                assert not streamer.is_alive()
                (firing,) = receiver.wait_for(1, timeout=20)
                fired_after = firing.received_at - killed_wall
                time.sleep(down_s)
                restarted_at = time.monotonic()
                backend.start()
                deliveries = receiver.wait_for(2, timeout=20)
                resolved_after = time.monotonic() - restarted_at
                time.sleep(1.5)  # the traffic goes on: any second notification would show
            assert len(receiver.deliveries) == 2, [(d.status, d.key) for d in receiver.deliveries]
    finally:
        backend.stop()

    # the stream in flight got its first tokens, then an error event, not a hang or a reset
    assert b"tok0" in stream_events[0] and b'"GENERATION_ERROR"' in stream_events[-1]
    engine = make_engine(f"sqlite:///{monitor.directory / 'monitor.db'}")
    record = get_request(engine, stream_id[0])
    engine.dispose()
    assert record is not None and (record.outcome, record.error_code) == (
        "backend_error",
        "GENERATION_ERROR",
    )
    # each request while the backend was down: a clean GENERATION_ERROR, within the timeouts
    down = [a for a in traffic.answers if killed_at + 0.2 < a.at < restarted_at]
    assert down and {(a.status, a.code) for a in down} == {(502, "GENERATION_ERROR")}
    assert max(a.seconds for a in down) < CONNECT_TIMEOUT_S + READ_TIMEOUT_S
    after = [a for a in traffic.answers if a.at > restarted_at + resolved_after]
    assert after and {a.status for a in after} == {200}
    # exactly one notification each, firing then resolved, signed, distinct keys
    assert [d.json()["state"] for d in deliveries] == ["firing", "resolved"]
    assert all(d.verified for d in deliveries) and deliveries[0].key != deliveries[1].key
    assert {d.json()["alert"] for d in deliveries} == {"backend_unhealthy"}
    report(
        "backend kill",
        down_s=down_s,
        requests_while_down=len(down),
        worst_error_ms=round(max(a.seconds for a in down) * 1000, 1),
        median_error_ms=round(sorted(a.seconds for a in down)[len(down) // 2] * 1000, 1),
        firing_after_s=round(fired_after, 2),
        resolved_after_restart_s=round(resolved_after, 2),
    )
