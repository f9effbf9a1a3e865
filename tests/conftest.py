from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.guard.model_guard import ClassifierFactory
from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy, proxy_settings, start_proxy
from tests.support.servers import ThreadedServer


@pytest.fixture(scope="session")
def _fake_backend_server() -> Iterator[tuple[FakeBackend, ThreadedServer]]:
    backend = FakeBackend()
    server = ThreadedServer(backend).start()
    yield backend, server
    server.stop(timeout=5)


@pytest.fixture
def fake_backend(_fake_backend_server: tuple[FakeBackend, ThreadedServer]) -> FakeBackend:
    backend, _ = _fake_backend_server
    backend.reset()
    return backend


@pytest.fixture
def fake_backend_url(
    _fake_backend_server: tuple[FakeBackend, ThreadedServer], fake_backend: FakeBackend
) -> str:
    return _fake_backend_server[1].url


@pytest.fixture
def make_proxy(tmp_path: Path, fake_backend_url: str) -> Iterator[Callable[..., RunningProxy]]:
    """Start a proxy in front of the fake backend (or `backend_url=`), on SQLite unless told."""
    started: list[RunningProxy] = []

    def make(
        *,
        classifiers: ClassifierFactory | None = None,
        stock_protocol: bool = False,
        **overrides: Any,
    ) -> RunningProxy:
        overrides.setdefault("backend_url", fake_backend_url)
        directory = tmp_path / f"proxy{len(started)}"
        directory.mkdir()
        settings = proxy_settings(directory=directory, **overrides)
        proxy = start_proxy(settings, classifiers, stock_protocol=stock_protocol)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def proxy(make_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    return make_proxy()
