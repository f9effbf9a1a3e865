"""SIGTERM with many streams in flight: streams that finish within the drain time finish, the
rest end at the drain time without leaving a client hanging, every record is flushed, and the
process is gone within the drain time (plus start-up of the shutdown itself).

(`tests/integration/test_cli.py` holds the one-stream case; SIGKILL with a full spool and the
restart that replays it is in `test_postgres_outage.py`, where the database can be down.)
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from monitor.store.engine import make_engine
from monitor.store.queries import get_request
from tests.integration.faults.conftest import Monitor, report
from tests.support.backend_process import BackendProcess
from tests.support.load import CHAT

pytestmark = pytest.mark.faults

STREAMS = 8
EXIT_SLACK_S = 5.0  # the lifespan's own shutdown (recorder flush, workers), on a busy runner


@dataclass
class Stream:
    request_id: str | None = None
    body: bytes = b""
    error: str | None = None
    ended_at: float = 0.0
    started: threading.Event = field(default_factory=threading.Event)


def run_stream(url: str, stream: Stream) -> None:
    try:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=60
        ) as resp:
            stream.request_id = resp.headers["x-request-id"]
            for chunk in resp.iter_raw():
                stream.body += chunk
                stream.started.set()
    except httpx.HTTPError as exc:
        stream.error = repr(exc)
    finally:
        stream.ended_at = time.monotonic()
        stream.started.set()


@pytest.mark.parametrize(
    ("case", "chunks", "drain_s"),
    [("streams end within the drain time", 15, 10), ("streams outlast the drain time", 200, 2)],
)
def test_sigterm_with_streams_in_flight(
    start_monitor: Callable[..., Monitor], case: str, chunks: int, drain_s: int
) -> None:
    with BackendProcess(chunks=chunks, chunk_s=0.1) as backend:
        monitor = start_monitor(backend.url, drain_timeout_s=str(drain_s))
        streams = [Stream() for _ in range(STREAMS)]
        threads = [
            threading.Thread(target=run_stream, args=(monitor.url, s), daemon=True) for s in streams
        ]
        for thread in threads:
            thread.start()
        for stream in streams:
            assert stream.started.wait(10)
        time.sleep(0.3)  # every stream a few tokens in
        sent = time.monotonic()
        monitor.process.send_signal(signal.SIGTERM)
        code = monitor.process.wait(drain_s + EXIT_SLACK_S + 10)
        exited_s = time.monotonic() - sent
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()  # no client left hanging

    assert code in (0, -signal.SIGTERM), monitor.output()
    assert exited_s <= drain_s + EXIT_SLACK_S, exited_s
    engine = make_engine(f"sqlite:///{monitor.directory / 'monitor.db'}")
    try:
        records = [get_request(engine, s.request_id or "") for s in streams]
    finally:
        engine.dispose()
    finished = [s for s in streams if s.body.endswith(b"data: [DONE]\n\n")]
    if chunks * 0.1 < drain_s:  # each completes
        assert len(finished) == STREAMS, [s.error for s in streams]
        assert all(r is not None and r.outcome == "ok" for r in records)
        assert all(r is not None and r.completion_tokens == chunks for r in records)
    else:  # each ends at the drain time, its record flushed before the process ends
        assert finished == []
        assert all(s.ended_at - sent <= drain_s + EXIT_SLACK_S for s in streams)
        # cleanly: a complete response whose last event says why, not a torn connection
        assert [s.error for s in streams] == [None] * STREAMS
        assert all(b'"GENERATION_ERROR"' in s.body[-600:] for s in streams)
        assert all(r is not None and r.error_code == "GENERATION_ERROR" for r in records)
        assert all(r is not None and r.outcome != "ok" for r in records), [
            (r and r.outcome, s.error, s.body[-80:]) for r, s in zip(records, streams, strict=True)
        ]
    assert all(r is not None for r in records)  # the queue was flushed: every record stored
    outcomes = sorted({r.outcome for r in records if r is not None})
    report(case, streams=STREAMS, drain_s=drain_s, exited_after_s=round(exited_s, 2),
           outcomes=outcomes, client_errors=sum(s.error is not None for s in streams))  # fmt: skip
