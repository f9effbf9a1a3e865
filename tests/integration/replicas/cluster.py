"""Two `gemma-monitor serve` processes sharing one Postgres schema and one Redis, for the
replica tests: start them, send them traffic, ask each for its leadership, read the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from monitor.proxy.admission import principal_id
from tests.support.databases import postgres_schema, render
from tests.support.redis_db import redis_url
from tests.support.servers import metric_samples, start_serve

ADMIN_TOKEN = "replicas-admin-token"
ALERT_WINDOW_S = 2.0
# Fires as soon as the window's served requests mostly fail; resolves once the window is clear
# (no traffic is "ok": `no_data` clear) for a second.
ERROR_RULE = {
    "name": "replica_errors",
    "metric": "success_rate",
    "comparison": "<",
    "threshold": 0.5,
    "window": ALERT_WINDOW_S,
    "severity": "high",
    "resolve_after": 1.0,
}


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    output: list[str] = field(default_factory=list)

    def drain(self) -> None:
        """Read the process's log in a thread, so a full pipe never blocks it."""
        stream = self.process.stdout
        assert stream is not None

        def read() -> None:
            for line in stream:
                self.output.append(line.decode(errors="replace").rstrip())

        threading.Thread(target=read, daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stats(self) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.url}/admin/stats",
            params={"window": "1m"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        answer.raise_for_status()
        return dict(answer.json())

    def leadership(self) -> dict[str, Any]:
        return dict(self.stats()["leadership"])

    def metric(self, name: str) -> float | None:
        """An unlabelled sample of the replica's /metrics, None when it has none."""
        return metric_samples(self.url).get(name)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Cluster:
    replicas: list[Replica]
    db: Engine
    keys: dict[str, str]  # name -> API key

    def chat(self, replica: Replica, key: str, client: httpx.Client) -> httpx.Response:
        return client.post(
            f"{replica.url}/v1/chat/completions",
            json={"model": "gemma", "messages": [{"role": "user", "content": "hello"}]},
            headers={"Authorization": f"Bearer {self.keys[key]}"},
            timeout=30,
        )

    def leaders(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive and r.leadership()["leader"]]

    def one_leader(self, within_s: float = 20.0) -> Replica:
        return wait_for(lambda: _single(self.leaders()), within_s, "exactly one leader")

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(query), params))


def _single(leaders: list[Replica]) -> Replica | None:
    return leaders[0] if len(leaders) == 1 else None


T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], within_s: float, what: str) -> T:
    """Poll `probe` every 50 ms until it returns something truthy; fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        time.sleep(0.05)


@contextmanager
def cluster(tmp_path: Path, backend_url: str, webhook_url: str, **settings: str) -> Iterator[
    Cluster
]:  # fmt: skip
    """Two replicas, started one after the other (the first migrates the fresh schema)."""
    keys = {"limited": f"k-{uuid.uuid4().hex}", "traffic": f"k-{uuid.uuid4().hex}"}
    limited = principal_id(keys["limited"].encode())
    env = {
        "database_url": "",
        "redis_url": redis_url(),
        "api_keys": ",".join(keys.values()),
        "rate_limit": "10000/minute",
        "rate_limits": json.dumps({limited: "20/minute"}),
        "admin_token": ADMIN_TOKEN,
        "hash_key": "replicas-share-one-hash-key",
        "webhook_url": webhook_url,
        "probes__enabled": "false",
        "health__enabled": "false",
        "alerts__interval_s": "0.25",
        "alerts__default_rules": "false",
        "alerts__rules": json.dumps([ERROR_RULE]),
        "leader__interval_s": "0.2",
        "recorder_flush_interval_s": "0.05",
        "log_level": "info",
        **settings,
    }
    with postgres_schema() as url:
        env["database_url"] = render(url)
        db = create_engine(url)
        replicas: list[Replica] = []
        try:
            for name in ("a", "b"):
                home = tmp_path / name
                home.mkdir()
                process, base = start_serve(home, backend_url, **env)
                replicas.append(Replica(name, process, base))
                replicas[-1].drain()
            yield Cluster(replicas, db, keys)
        finally:
            for replica in replicas:
                replica.stop()
            db.dispose()
            if os.environ.get("REPLICA_LOGS"):
                for replica in replicas:
                    print(f"--- replica {replica.name}", *replica.output, sep="\n")
