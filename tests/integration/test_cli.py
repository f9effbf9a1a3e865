"""The `gemma-monitor` command as an operator runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from monitor.store.engine import make_engine
from monitor.store.queries import get_request
from tests.support.fake_backend import FakeBackend
from tests.support.servers import start_serve


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_invalid_settings_stop_startup_naming_the_field(tmp_path: Path) -> None:
    result = run_cli("serve", env={"MONITOR_PORT": "70000"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid setting 'port' from MONITOR_PORT" in result.stderr
    assert "Traceback" not in result.stderr

    (tmp_path / "bad.yaml").write_text("backend_protocol: grpc\n")
    result = run_cli("--config", str(tmp_path / "bad.yaml"), "serve", cwd=tmp_path)
    assert result.returncode == 2 and "backend_protocol" in result.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = run_cli("serve", "--database-url", url, cwd=tmp_path)
    assert result.returncode == 2
    assert "gemma-monitor db upgrade" in result.stderr and "Traceback" not in result.stderr

    upgraded = run_cli("db", "upgrade", "--database-url", url, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    current = run_cli("db", "current", "--database-url", url, cwd=tmp_path)
    assert current.returncode == 0 and "head is" in current.stdout


def test_eval_guard_as_the_value_of_another_command_is_not_routed_to_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    assert run_cli("db", "upgrade", "--database-url", url, cwd=tmp_path).returncode == 0
    result = run_cli(
        "report", "--window", "1h", "--database-url", url, "--out", "eval-guard", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "eval-guard").read_text().startswith("# Gemma Monitor health report")


def test_sigterm_drains_streams_and_flushes_records(
    tmp_path: Path, fake_backend: FakeBackend, fake_backend_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    fake_backend.script.chunks = 10
    fake_backend.script.chunk_s = 0.1
    proc, base = start_serve(tmp_path, fake_backend_url)
    try:
        result: dict[str, str | bytes] = {}

        def client() -> None:
            body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=10) as resp:
                result["id"] = resp.headers["x-request-id"]
                result["body"] = b"".join(resp.iter_raw())

        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(0.35)
        proc.send_signal(signal.SIGTERM)
        thread.join(15)
        # uvicorn re-raises the signal once its graceful shutdown is done
        assert proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert isinstance(result["body"], bytes) and result["body"].endswith(b"data: [DONE]\n\n")
    record = get_request(make_engine(url), str(result["id"]))
    assert record is not None and record.outcome == "ok" and record.completion_tokens == 10
