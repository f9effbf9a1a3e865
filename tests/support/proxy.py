"""The proxy under test: `create_app(settings)` served by uvicorn on a real port."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.api.http_protocol import with_header_timeout
from monitor.app import MonitorApp, create_app
from monitor.config import Settings
from monitor.guard.model_guard import ClassifierFactory
from monitor.record import RequestRecord
from monitor.store.queries import get_request, recent_requests
from tests.support.servers import ThreadedServer


@dataclass
class RunningProxy:
    url: str
    app: MonitorApp
    settings: Settings
    server: ThreadedServer

    @property
    def engine(self) -> Any:
        return self.app.services.recorder.engine

    def record(self, request_id: str, timeout: float = 10.0) -> RequestRecord:
        """The stored record of a request, waiting for the recorder to write it."""
        deadline = time.monotonic() + timeout
        while True:
            found = get_request(self.engine, request_id)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no record {request_id} after {timeout}s")
            time.sleep(0.05)

    def records(self, count: int, timeout: float = 10.0) -> list[RequestRecord]:
        """At least `count` stored records (newest first), waiting for them."""
        deadline = time.monotonic() + timeout
        while True:
            found = recent_requests(self.engine, limit=max(count, 100))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} records after {timeout}s, expected {count}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()


def proxy_settings(backend_url: str, directory: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend_url": backend_url,
        "database_url": f"sqlite:///{directory / 'monitor.db'}",
        "auto_migrate": True,
        "spool_dir": directory / "spool",
        "recorder_flush_interval_s": 0.05,
        "recorder_retry_interval_s": 0.2,
        "read_timeout_s": 10.0,
        "drain_timeout_s": 10.0,
        # Background workers stay off unless a test turns them on: a health check would be
        # one more request at the fake backend, which many tests count.
        "probes": {"enabled": False},
        "health": {"enabled": False},
        "alerts": {"enabled": False},
    }
    values.update(overrides)
    return Settings.model_validate(values)


def start_proxy(
    settings: Settings,
    classifiers: ClassifierFactory | None = None,
    monitoring_options: dict[str, Any] | None = None,
    *,
    stock_protocol: bool = False,
) -> RunningProxy:
    """Served as `serve` serves it (the proxy's own HTTP protocol class), or with
    `stock_protocol` by uvicorn's own, as another ASGI server would."""
    app = create_app(settings, classifiers=classifiers, monitoring_options=monitoring_options)
    protocol = (
        {} if stock_protocol else {"http": with_header_timeout(settings.request_header_timeout_s)}
    )
    server = ThreadedServer(
        app,
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
        proxy_headers=False,  # as `serve` runs it: admission reads X-Forwarded-For itself
        **protocol,
    ).start()
    return RunningProxy(server.url, app, settings, server)
