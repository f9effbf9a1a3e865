"""Fixtures for the end-to-end tests: a real Gemma 3 270M behind llama.cpp's server.

The model server starts once per session (loading takes a few seconds; each test then pays
only for its own tokens). When llama-cpp-python is not installed the e2e tests are skipped,
except under CI (`CI` set), where a missing backend is a broken set-up and fails them.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator

import pytest

from monitor.backends.local import LocalGemmaServer
from tests.support.servers import free_port

START_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def gemma_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGemmaServer]:
    """A running LocalGemmaServer: `.url` for MONITOR_BACKEND_URL, `.base_url` for SDKs,
    `.model_alias` as the model name."""
    if importlib.util.find_spec("llama_cpp") is None:
        reason = (
            "llama-cpp-python is not installed (scripts/test.sh installs it via "
            "scripts/ensure_llama.sh)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"e2e tests cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    log_path = tmp_path_factory.mktemp("gemma-backend") / "llama-server.log"
    server = LocalGemmaServer(free_port(), log_path=log_path)
    started = time.monotonic()
    server.start(timeout=START_TIMEOUT_S)
    print(f"\nGemma backend ready on {server.url} in {time.monotonic() - started:.1f} s")
    try:
        yield server
    finally:
        server.stop()
