"""Shared pieces of the fault tests: the scale (short in CI, full with MONITOR_FAULTS_FULL=1,
as `scripts/faults.sh` runs them), a private Postgres, the backend as a process, the monitor
as a `gemma-monitor serve` process, and reading its /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.backend_process import BackendProcess
from tests.support.private_postgres import PrivatePostgres
from tests.support.servers import metric_samples, start_serve

FULL = os.environ.get("MONITOR_FAULTS_FULL", "") not in ("", "0")


def scale(short: float, full: float) -> float:
    """`short` in the suite, `full` under MONITOR_FAULTS_FULL=1."""
    return full if FULL else short


def report(name: str, **figures: object) -> None:
    """Print a test's measured figures (shown with `pytest -s`, and by scripts/faults.sh)."""
    print(f"\n[faults] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres.create() as pg:
        yield pg


@pytest.fixture
def backend() -> Iterator[BackendProcess]:
    with BackendProcess() as process:
        yield process


@dataclass
class Monitor:
    """A running `gemma-monitor serve`: its process, base URL and the directory it runs in."""

    process: subprocess.Popen[bytes]
    url: str
    directory: Path
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=500))

    def __post_init__(self) -> None:
        # read its output as it comes: a full pipe would stall the server on its next log line
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        stream = self.process.stdout
        if stream is not None:
            for line in stream:
                self.lines.append(line.decode(errors="replace"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def metrics(self) -> dict[str, float]:
        """Every sample on /metrics, by name and labels: `name{a="x",b="y"}` or `name`."""
        return metric_samples(self.url)

    def output(self) -> str:
        """The last 500 lines the process printed."""
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def start_monitor(tmp_path: Path) -> Iterator[Callable[..., Monitor]]:
    """Start `gemma-monitor serve` (see `start_serve`) in `tmp_path/<directory>`, with `config`
    as its monitor.yaml and `settings` as MONITOR_* variables; stopped at the end of the test
    if still running. Rate limiting is off unless a test says otherwise."""
    started: list[Monitor] = []

    def start(
        backend_url: str,
        directory: str = "monitor",
        config: dict[str, Any] | None = None,
        **settings: str,
    ) -> Monitor:
        where = tmp_path / directory
        where.mkdir(exist_ok=True)
        if config is not None:  # monitor.yaml in its working directory
            (where / "monitor.yaml").write_text(yaml.safe_dump(config))
        settings.setdefault("rate_limit", "off")
        process, url = start_serve(where, backend_url, **settings)
        monitor = Monitor(process, url, where)
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        if monitor.process.poll() is None:
            monitor.process.terminate()
            try:
                monitor.process.wait(30)
            except subprocess.TimeoutExpired:
                monitor.kill()
