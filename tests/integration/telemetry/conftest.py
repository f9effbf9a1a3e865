from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from tests.support.servers import ThreadedServer


@pytest.fixture
def http_receiver() -> Iterator[tuple[OtlpHttpReceiver, str]]:
    """A real OTLP/HTTP receiver on a free port: (the receiver, its base URL)."""
    receiver = OtlpHttpReceiver()
    server = ThreadedServer(receiver).start()
    yield receiver, server.url
    server.stop(timeout=5)


@pytest.fixture
def grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    receiver = OtlpGrpcReceiver().start()
    yield receiver
    receiver.stop()
