"""W3C Trace Context for the request path: the proxy's span as the client's child, and the
backend's `traceparent` as the proxy span's child.

Used only when OpenTelemetry export is on (`monitor.telemetry`); with it off the handler never
calls in here and the client's `traceparent` crosses unchanged, like any allowlisted header.

On a request, `start_trace` reads the client's `traceparent` (version 00, or a later version
read as 00, as the specification asks) and picks the proxy span's id: the trace id is the
client's, or a new one when the header is missing or invalid. The ids go into the record's
`extra` (`trace_id`, `span_id`, `parent_span_id`, and `trace_sampled: false` when the client
said not to sample), so the span built later, off the request path, from the finished record
has the ids the backend already saw, and a stored record leads to its trace.

`with_traceparent` rewrites the headers sent upstream: the backend's parent is the proxy
span. A client `tracestate` is kept with a valid `traceparent` and dropped with an invalid one
(the specification's rule). Ids come from `random.getrandbits`, as the OpenTelemetry SDK's.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a `traceparent` value, or None if invalid."""
    value = value.strip()
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if version == "ff" or not _hex(version) or not _hex(flags):
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":  # a later version: more fields after a dash
        return None
    if not _hex(trace_id) or not _hex(span_id) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _hex(text: str) -> bool:
    return all(c in _HEX for c in text)


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def start_trace(extra: dict[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Put the proxy span's trace context into a record's `extra`, child of the client's
    `traceparent` when it sent a valid one."""
    parent = None
    for name, value in headers:
        if name == b"traceparent":
            parent = parse_traceparent(value.decode("latin-1"))
            break
    if parent is None:
        extra["trace_id"] = new_trace_id()
    else:
        extra["trace_id"], extra["parent_span_id"], sampled = parent
        if not sampled:
            extra["trace_sampled"] = False
    extra["span_id"] = new_span_id()


def traceparent(extra: dict[str, Any]) -> str:
    """The `traceparent` whose parent is the proxy span of the record with this `extra`."""
    flags = "00" if extra.get("trace_sampled") is False else "01"
    return f"00-{extra['trace_id']}-{extra['span_id']}-{flags}"


def with_traceparent(
    headers: list[tuple[str, str]], extra: dict[str, Any]
) -> list[tuple[str, str]]:
    """The upstream headers with the client's `traceparent` replaced by the proxy span's."""
    client_valid = "parent_span_id" in extra
    out = [
        (name, value)
        for name, value in headers
        if name != "traceparent" and (client_valid or name != "tracestate")
    ]
    out.append(("traceparent", traceparent(extra)))
    return out
