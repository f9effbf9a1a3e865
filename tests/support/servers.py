"""Real servers on real ports for tests: an ASGI app under uvicorn in a background thread."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1:<port> in a thread, with lifespan, until `stop()`."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
            **config,
        )
        self.server = uvicorn.Server(cfg)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 15.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server thread died during startup")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on {self.url} did not start in {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def serve(app: Any, port: int | None = None, **config: Any) -> Iterator[ThreadedServer]:
    server = ThreadedServer(app, port, **config).start()
    try:
        yield server
    finally:
        server.stop()


def wait_until_ok(url: str, process: Any, timeout: float) -> None:
    """Poll `url` until it answers 200, failing early (with its output) if `process` exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            output = process.stdout or process.stderr
            raise AssertionError(f"process exited: {output.read().decode() if output else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.1)


def start_serve(
    tmp_path: Path, backend_url: str, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`gemma-monitor serve --migrate` as its own process on a free port, on a SQLite file and a
    spool in `tmp_path`, in front of `backend_url`; `settings` are more MONITOR_* variables
    (`max_client_connections="3"`). Returns once /health answers; the caller stops it."""
    port = free_port()
    env = {
        **os.environ,
        "MONITOR_BACKEND_URL": backend_url,
        "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
        "MONITOR_PORT": str(port),
        "MONITOR_SPOOL_DIR": str(tmp_path / "spool"),
        **{f"MONITOR_{name.upper()}": value for name, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--migrate"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/health", process, timeout=30)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, url


def metric_samples(base_url: str) -> dict[str, float]:
    """Every sample on `base_url`/metrics, by name and labels: `name{a="x",b="y"}` or `name`."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
