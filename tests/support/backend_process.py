"""The fake backend (`tests.support.fake_backend`) as a process of its own, on a fixed port, so
a fault test can kill it for real (SIGKILL: sockets reset, no goodbye) and start it again, and
so its work does not share the test's interpreter (and GIL) with the load it measures.

    backend = BackendProcess(chunks=3, chunk_s=0.0).start()
    backend.url ...; backend.kill(); backend.start()   # same port
    backend.stop()

Run directly: `python -m tests.support.backend_process --port 8081 --chunks 3`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.support.servers import free_port, wait_until_ok

ROOT = Path(__file__).resolve().parents[2]


class BackendProcess:
    """`python -m tests.support.backend_process` on one port that survives kill and start."""

    def __init__(self, *, chunks: int = 3, chunk_s: float = 0.0, think_s: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--chunks", str(chunks), "--chunk-s", str(chunk_s), "--think-s", str(think_s)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> BackendProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.backend_process", "--port", str(self.port),
             *self.args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_until_ok(f"{self.url}/v1/models", self.process, timeout=30)
        return self

    def kill(self) -> None:
        """SIGKILL: the backend dies mid-whatever, as a crashed inference server does."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    import uvicorn

    from tests.support.fake_backend import FakeBackend

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--chunk-s", type=float, default=0.0)
    parser.add_argument("--think-s", type=float, default=0.0)
    args = parser.parse_args()
    backend = FakeBackend()
    backend.script.chunks, backend.script.chunk_s = args.chunks, args.chunk_s
    backend.script.think_s = args.think_s
    backend.received = _Forgetful()  # a soak sends a million requests: keep none of them
    uvicorn.run(backend, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


class _Forgetful(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
