"""Real OTLP receivers for the OpenTelemetry export's tests: what a collector would get.

`OtlpHttpReceiver` is an ASGI app (serve it with `ThreadedServer`) answering `POST /v1/traces`
and `POST /v1/metrics` as the OTLP/HTTP specification says: the body an
`ExportTraceServiceRequest` or `ExportMetricsServiceRequest` protobuf (gzip when the exporter
compresses), the answer the matching response message. `OtlpGrpcReceiver` is a grpcio server
implementing the collector's `TraceService` and `MetricsService`. Both decode what arrives
with opentelemetry-proto and keep it; `Received` flattens it for assertions and waits for it.
A test can make the HTTP receiver slow (`delay_s`) to fill the exporter's queue.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.asgi import read_body, serve_lifespan


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass
class Span:
    """One received span, flattened: ids in hex, attributes and events as dicts."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status_code: int
    status_message: str
    resource: dict[str, Any]


@dataclass
class Received:
    """Everything a receiver decoded, guarded by one condition for waiting."""

    trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(
        default_factory=list
    )
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, message: Any) -> None:
        with self.changed:
            if isinstance(message, trace_service_pb2.ExportTraceServiceRequest):
                self.trace_requests.append(message)
            else:
                self.metric_requests.append(message)
            self.changed.notify_all()

    def spans(self) -> list[Span]:
        out = []
        with self.changed:
            requests = list(self.trace_requests)
        for request in requests:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(
                            Span(
                                s.name,
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                s.kind,
                                s.start_time_unix_nano,
                                s.end_time_unix_nano,
                                attributes(s.attributes),
                                [
                                    (e.name, e.time_unix_nano, attributes(e.attributes))
                                    for e in s.events
                                ],
                                s.status.code,
                                s.status.message,
                                resource,
                            )
                        )
        return out

    def metrics(self) -> dict[str, Any]:
        """The latest export of each metric, by name (the `Metric` protobuf)."""
        out: dict[str, Any] = {}
        with self.changed:
            requests = list(self.metric_requests)
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        out[metric.name] = metric
        return out

    def wait(self, done: Callable[[Received], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the OTLP receiver did not get it within {timeout}s")
                self.changed.wait(min(left, 0.2))


class OtlpHttpReceiver:
    """OTLP/HTTP with protobuf bodies, as an ASGI app."""

    def __init__(self) -> None:
        self.received = Received()
        self.delay_s = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = dict(scope["headers"])
        if headers.get(b"content-encoding") == b"gzip":
            body = gzip.decompress(body)
        kinds: dict[str, tuple[Any, Any]] = {
            "/v1/traces": (
                trace_service_pb2.ExportTraceServiceRequest,
                trace_service_pb2.ExportTraceServiceResponse,
            ),
            "/v1/metrics": (
                metrics_service_pb2.ExportMetricsServiceRequest,
                metrics_service_pb2.ExportMetricsServiceResponse,
            ),
        }
        kind = kinds.get(scope["path"])
        if scope["method"] != "POST" or kind is None:
            await _answer(send, 404, b"")
            return
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        request_type, response_type = kind
        self.received.add(request_type.FromString(body))
        await _answer(send, 200, response_type().SerializeToString())


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/x-protobuf")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # the gRPC method
        self.received.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # the gRPC method
        self.received.add(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpGrpcReceiver:
    """OTLP/gRPC: the collector's trace and metrics services on 127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.received = Received()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _Traces(self.received), self.server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _Metrics(self.received), self.server
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpGrpcReceiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=1).wait()
