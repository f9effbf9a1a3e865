"""`gemma-monitor demo`, as the README's run command starts it: a real Gemma backend and the
proxy on SQLite; SIGTERM takes both down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port, wait_until_ok

pytestmark = pytest.mark.e2e


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_serves_and_stops_with_its_backend(tmp_path: Path, gemma_backend: object) -> None:
    port, backend_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "demo",
            "--port",
            str(port),
            "--backend-port",
            str(backend_port),
        ],
        cwd=tmp_path,
        env={**os.environ, "MONITOR_SPOOL_DIR": str(tmp_path / "spool")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/ready", proc, timeout=120)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert (
            reply.status_code == 200
            and reply.json()["choices"][0]["message"]["content"] is not None
        )
        assert (tmp_path / "var" / "gemma-monitor.db").exists()  # the embedded default
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        deadline = time.monotonic() + 15
        while port_open(backend_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_open(backend_port), "the Gemma backend outlived the demo"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
