from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from monitor.app import create_app
from tests.support.fake_backend import FakeBackend
from tests.support.inprocess import InProcessApp
from tests.support.proxy import proxy_settings
from tests.support.servers import ThreadedServer


@pytest.fixture(scope="module")
def start_app(
    tmp_path_factory: pytest.TempPathFactory,
    _fake_backend_server: tuple[FakeBackend, ThreadedServer],
) -> Iterator[Callable[..., InProcessApp]]:
    """Build the real app in front of the fake backend (SQLite, settings overridden by the
    keyword arguments), driven in-process; every app started is stopped with the module."""
    backend, server = _fake_backend_server
    backend.reset()
    started: list[InProcessApp] = []

    def start(**overrides: Any) -> InProcessApp:
        directory = tmp_path_factory.mktemp("fuzz")
        app = InProcessApp(create_app(proxy_settings(server.url, directory, **overrides)))
        started.append(app)
        return app

    yield start
    for app in started:
        app.close()
    backend.reset()  # the many requests it kept
