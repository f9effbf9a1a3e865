"""W3C Trace Context on the request path: which client `traceparent` values are taken, and
what the backend is sent."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.proxy.tracecontext import (
    parse_traceparent,
    start_trace,
    traceparent,
    with_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", (TRACE, PARENT, True)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, False)),
        (f" 00-{TRACE}-{PARENT}-03 ", (TRACE, PARENT, True)),
        # a later version: read as 00, more fields after a dash allowed
        (f"cc-{TRACE}-{PARENT}-01-what-the-future-holds", (TRACE, PARENT, True)),
    ],
)
def test_valid_traceparents_are_read(value: str, expected: tuple[str, str, bool]) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TRACE}-{PARENT}-01",  # version ff is invalid
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{PARENT}-01",  # uppercase hex
        f"00-{TRACE[:-1]}x-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-0g",
        f"00_{TRACE}_{PARENT}_01",
        f"cc-{TRACE}-{PARENT}-01x",
    ],
)
def test_invalid_traceparents_are_refused(value: str) -> None:
    assert parse_traceparent(value) is None


def test_the_proxy_span_is_the_clients_child() -> None:
    extra: dict[str, Any] = {}
    start_trace(extra, [(b"accept", b"*/*"), (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())])
    assert extra["trace_id"] == TRACE and extra["parent_span_id"] == PARENT
    assert len(extra["span_id"]) == 16 and extra["span_id"] not in (PARENT, "0" * 16)
    assert "trace_sampled" not in extra
    assert traceparent(extra) == f"00-{TRACE}-{extra['span_id']}-01"


def test_without_a_valid_traceparent_a_new_trace_starts() -> None:
    for headers in ([], [(b"traceparent", b"00-nonsense")]):
        extra: dict[str, Any] = {}
        start_trace(extra, headers)
        assert "parent_span_id" not in extra
        assert len(extra["trace_id"]) == 32 and extra["trace_id"] != "0" * 32
    ids = set()
    for _ in range(100):
        extra = {}
        start_trace(extra, [])
        ids.add(extra["span_id"])
    assert len(ids) == 100


def test_a_client_that_does_not_sample_is_followed() -> None:
    extra: dict[str, Any] = {}
    start_trace(extra, [(b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())])
    assert extra["trace_sampled"] is False
    assert traceparent(extra).endswith("-00")


def test_the_backend_gets_the_proxy_span_as_parent() -> None:
    extra: dict[str, Any] = {"trace_id": TRACE, "span_id": "1" * 16, "parent_span_id": PARENT}
    headers = [
        ("accept", "*/*"),
        ("traceparent", f"00-{TRACE}-{PARENT}-01"),
        ("tracestate", "vendor=opaque"),
    ]
    sent = with_traceparent(headers, extra)
    assert dict(sent) == {
        "accept": "*/*",
        "tracestate": "vendor=opaque",
        "traceparent": f"00-{TRACE}-{'1' * 16}-01",
    }
    assert [name for name, _ in sent].count("traceparent") == 1


def test_tracestate_goes_with_an_invalid_traceparent() -> None:
    extra: dict[str, Any] = {"trace_id": TRACE, "span_id": "1" * 16}  # no valid client parent
    sent = dict(with_traceparent([("traceparent", "bad"), ("tracestate", "v=1")], extra))
    assert sent == {"traceparent": f"00-{TRACE}-{'1' * 16}-01"}
