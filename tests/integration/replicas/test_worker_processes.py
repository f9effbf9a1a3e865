"""`gemma-monitor serve` with `workers: 2`: one port, two worker processes, one monitor.

- Connections reach both workers, and the rate limit is one limit across them (Redis).
- Every admitted request is stored once; each worker spools in a directory of its own.
- `/metrics`, whichever worker answers, shows both workers' samples, labelled by worker, and
  exactly one of them leads; background workers keep their own `worker` label.
- A worker killed with SIGKILL is restarted under the same index while the other serves on;
  SIGTERM stops the supervisor and every worker.
- A worker that cannot start (a bad policy) stops the supervisor with the usage code instead
  of a restart loop.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from monitor.proxy.admission import principal_id
from tests.integration.replicas.cluster import wait_for
from tests.support.databases import postgres_schema, render
from tests.support.redis_db import redis_url
from tests.support.servers import free_port, metric_samples, start_serve

pytestmark = pytest.mark.postgres

LIMITED = f"k-{uuid.uuid4().hex}"
FREE = f"k-{uuid.uuid4().hex}"


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_schema() as url:
        yield render(url)


def _env(database: str, **more: str) -> dict[str, str]:
    return {
        "workers": "2",
        "database_url": database,
        "redis_url": redis_url(),
        "api_keys": f"{LIMITED},{FREE}",
        "rate_limit": "100000/minute",
        "rate_limits": json.dumps({principal_id(LIMITED.encode()): "20/minute"}),
        "probes__enabled": "false",
        "health__enabled": "false",
        "leader__interval_s": "0.2",
        "recorder_flush_interval_s": "0.05",
        "log_level": "info",
        **more,
    }


def _chat(url: str, key: str) -> int:
    """One request on a connection of its own (a new connection may reach either worker)."""
    with httpx.Client(timeout=30) as client:
        answer = client.post(
            f"{url}/v1/chat/completions",
            json={"model": "gemma", "messages": [{"role": "user", "content": "hello"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
    return answer.status_code


def _per_worker(samples: dict[str, float], name: str) -> dict[str, float]:
    """`name`'s samples summed by their worker process."""
    found: Counter[str] = Counter()
    for key, value in samples.items():
        if key.startswith(name + "{") and 'worker_process="' in key:
            worker = key.split('worker_process="', 1)[1].split('"', 1)[0]
            found[worker] += value
    return dict(found)


def _workers(supervisor: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The supervisor's worker processes (multiprocessing's own helper excluded)."""
    return [c for c in psutil.Process(supervisor.pid).children() if _is_worker(c)]


def _two_workers(
    supervisor: subprocess.Popen[bytes], gone: psutil.Process | None = None
) -> list[psutil.Process] | None:
    workers = _workers(supervisor)
    return workers if len(workers) == 2 and gone not in workers else None


def _is_worker(process: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_two_workers_are_one_monitor(tmp_path: Path, fake_backend_url: str, database: str) -> None:
    process, url = start_serve(tmp_path, fake_backend_url, **_env(database))
    try:
        statuses: Counter[tuple[bool, int]] = Counter()
        lock = threading.Lock()

        def send(key: str, count: int) -> None:
            for _ in range(count):
                status = _chat(url, key)
                with lock:
                    statuses[(key == LIMITED, status)] += 1

        threads = [threading.Thread(target=send, args=(LIMITED, 10)) for _ in range(5)]
        threads += [threading.Thread(target=send, args=(FREE, 20)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # one limit over both workers: 20 of the limited key's 50, every free request
        assert statuses == {(True, 200): 20, (True, 429): 30, (False, 200): 80}, statuses

        samples = metric_samples(url)
        served = _per_worker(samples, "gemma_monitor_requests_total")
        assert set(served) == {"0", "1"}, served  # the kernel gave both workers connections
        assert all(count > 0 for count in served.values()), served
        ok = sum(
            v
            for k, v in samples.items()
            if k.startswith("gemma_monitor_requests_total{") and 'outcome="ok"' in k
        )
        assert ok == 100
        # a scrape shows both whichever worker answers: the next ones agree
        for _ in range(6):
            again = _per_worker(metric_samples(url), "gemma_monitor_requests_total")
            assert set(again) == {"0", "1"}
        leading = wait_for(
            lambda: (lambda s: s if sum(s.values()) == 1 else None)(
                _per_worker(metric_samples(url), "gemma_monitor_leader")
            ),
            20,
            "exactly one leading worker",
        )
        assert sorted(leading.values()) == [0.0, 1.0]
        failing = [k for k in samples if k.startswith("gemma_monitor_worker_failing{")]
        assert failing and all('worker="' in k and "worker_process=" in k for k in failing)

        # every admitted request stored once (refusals are counted, not stored)
        engine = create_engine(database)
        try:

            def stored() -> int | None:
                with engine.connect() as conn:
                    rows = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM requests"))
                    total, distinct = rows.one()
                assert total == distinct
                return total if total >= 100 else None

            assert wait_for(stored, 20, "100 records stored") == 100
        finally:
            engine.dispose()
        spools = sorted(p.name for p in (tmp_path / "spool").iterdir() if p.is_dir())
        assert spools == ["worker-0", "worker-1"]
        assert (tmp_path / "spool" / "hash.key").is_file()  # one key for both
    finally:
        assert _stop(process) == 0


def test_a_killed_worker_is_restarted_and_sigterm_stops_all(
    tmp_path: Path, fake_backend_url: str, database: str
) -> None:
    process, url = start_serve(tmp_path, fake_backend_url, **_env(database))
    try:
        workers = wait_for(lambda: _two_workers(process), 20, "two workers")
        victim = workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # the other worker serves on meanwhile
        assert all(_chat(url, FREE) == 200 for _ in range(10))
        replaced = wait_for(
            lambda: _two_workers(process, gone=victim), 30, "a new worker in the killed one's place"
        )
        assert workers[1] in replaced

        def both_scraped() -> bool:
            try:
                served = _per_worker(metric_samples(url), "gemma_monitor_inflight_requests")
            except httpx.TransportError:
                return False
            return set(served) == {"0", "1"}

        wait_for(both_scraped, 30, "both workers in a scrape after the restart")
        assert all(_chat(url, FREE) == 200 for _ in range(10))
    finally:
        code = _stop(process)
    assert code == 0
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in replaced)


def test_a_worker_that_cannot_start_stops_the_supervisor(
    tmp_path: Path, fake_backend_url: str, database: str
) -> None:
    env = {
        **os.environ,
        "MONITOR_BACKEND_URL": fake_backend_url,
        "MONITOR_SPOOL_DIR": str(tmp_path / "spool"),
        "MONITOR_PORT": str(free_port()),
        "MONITOR_POLICIES": str(tmp_path / "missing-policy.yaml"),
        **{f"MONITOR_{k.upper()}": v for k, v in _env(database).items()},
    }
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "serve", "--migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, output
    assert "missing-policy.yaml" in output
    assert "could not start" in output


def test_spools_no_worker_would_replay_are_named(
    tmp_path: Path, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor.config import Settings
    from monitor.serving import Supervisor

    spool = tmp_path / "spool"
    for directory in (spool, spool / "worker-1", spool / "worker-5"):
        directory.mkdir(parents=True)
        (directory / "segment-000000000001.jsonl").write_text("{}\n")
    settings = Settings.load(
        None, workers=2, database_url=database, rate_limit="off", spool_dir=spool, auto_migrate=True
    )
    with caplog.at_level(logging.WARNING, logger="monitor.serving"):
        Supervisor(settings)._prepare_store()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "single-process run" in warnings[0] and str(spool) in warnings[0]
    assert "worker-5" in warnings[1]  # worker-1 is a worker this run has: it replays its own
