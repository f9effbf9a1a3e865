"""Property tests for the request and response decoders: whatever a client or a backend sends,
they answer with the documented error (`RequestInvalid` for a client, `BackendFailed` for a
backend) or a result, never another exception.

Examples are derandomized and no example database is kept, so a run is the same everywhere.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import BackendFailed, RequestInvalid
from monitor.proxy import protocols
from monitor.proxy.framing import EventSplitter, ndjson_data, sse_data
from monitor.proxy.protocols import RequestInfo, inspect_request, parse_json_object
from monitor.proxy.relay import OllamaRelay, OpenAIRelay, TranslatedOllamaRelay
from monitor.proxy.timing import RequestTimer
from monitor.proxy.translate import OllamaAnswer, models_to_tags, ollama_to_openai

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUTES = ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate")
KEYS = (
    "model", "messages", "prompt", "system", "stream", "options", "images", "tool_calls",
    "raw", "suffix", "format", "tools", "stream_options", "max_tokens", "temperature", "n",
    "role", "content", "type", "text", "function", "name", "arguments", "index", "choices",
    "delta", "message", "usage", "prompt_tokens", "completion_tokens", "finish_reason",
    "error", "done", "response", "data", "id", "created", "eval_count", "prompt_eval_count",
)  # fmt: skip

TEXT = st.text(max_size=40) | st.sampled_from(["user", "assistant", "system", "tool", "text"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=30,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "bot"]) | JSON},
    optional={
        "content": TEXT | JSON,
        "images": JSON,
        "tool_calls": JSON | st.lists(st.fixed_dictionaries({"function": JSON}), max_size=2),
        "tool_name": JSON,
    },
)
PAYLOAD = st.fixed_dictionaries(
    {},
    optional={
        "model": st.just("gemma") | JSON,
        "messages": st.lists(MESSAGE, max_size=4) | JSON,
        "prompt": TEXT | JSON,
        "system": TEXT | JSON,
        "stream": st.booleans() | JSON,
        "options": st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), JSON) | JSON,
        "images": JSON,
        "raw": JSON,
        "suffix": JSON,
        "format": st.just("json") | JSON,
        "tools": JSON,
    },
)


def _relays(route: str, payload: dict[str, Any], info: RequestInfo) -> list[Any]:
    relays: list[Any] = []
    for relay_class in (OpenAIRelay, OllamaRelay, TranslatedOllamaRelay):
        try:
            relays.append(relay_class(route, payload, info, RequestTimer()))
        except RequestInvalid:
            pass
    return relays


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_are_refused(body: bytes) -> None:
    try:
        payload = parse_json_object(body)
    except RequestInvalid:
        return
    assert isinstance(payload, dict)


ESCAPES = st.sampled_from(
    [b"\\ud800", b"\\udc00\\ud800", b"\\ud83d\\ude00", b"\\u0000", b"\\x41", b"\\", b"\xff",
     b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\\u00e9", b"\"", b"\\/", b"\x00"]
)  # fmt: skip


@FUZZ
@given(st.lists(ESCAPES | st.binary(max_size=4), max_size=6), st.sampled_from(ROUTES))
def test_escapes_and_bad_utf8_in_strings(pieces: list[bytes], route: str) -> None:
    content = b"".join(pieces)
    body = b'{"model":"m","messages":[{"role":"user","content":"' + content + b'"}],"prompt":"x"}'
    try:
        payload = parse_json_object(body)
    except RequestInvalid as error:
        assert error.status == 400
        return
    info = inspect_request(route, payload)
    info.prompt_text.encode("utf-8")  # what was decoded is text a hash or a store can take


@FUZZ
@given(st.sampled_from(ROUTES), PAYLOAD)
def test_requests_are_checked_and_translated_without_surprises(
    route: str, payload: dict[str, Any]
) -> None:
    try:
        info = inspect_request(route, payload)
    except RequestInvalid as error:
        assert error.status == 400 and error.message
        return
    assert info.input_messages >= 1 and info.input_chars == len(info.prompt_text)
    if route.startswith("/api/"):
        path, upstream = ollama_to_openai(route, payload, info.stream)
        assert path in ("/v1/chat/completions", "/v1/completions")
        orjson.dumps(upstream)
        if route == "/api/chat":  # what goes upstream is what the guard saw
            assert len(upstream["messages"]) == len(payload["messages"])
            assert [m.get("content") for m in upstream["messages"] if isinstance(
                m.get("content"), str)] == [m["content"] for m in payload["messages"]
                if isinstance(m.get("content"), str)
                and not (isinstance(m.get("images"), list) and m["images"])]  # fmt: skip
    for relay in _relays(route, payload, info):
        if relay.upstream_payload is not None:
            orjson.dumps(relay.upstream_payload)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6))
def test_options_never_replace_what_the_guard_checked(options: dict[str, Any]) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "checked"}]}
    _, upstream = ollama_to_openai("/api/chat", {**payload, "options": options}, False)
    assert upstream["messages"] == payload["messages"]
    assert upstream["model"] == "m" and upstream["stream"] is False
    _, raw = ollama_to_openai(
        "/api/generate", {"prompt": "checked", "raw": True, "options": options}, True
    )
    assert raw["prompt"] == "checked" and raw["stream"] is True


BACKEND_JSON = JSON | st.fixed_dictionaries(
    {},
    optional={
        "choices": JSON
        | st.lists(
            st.fixed_dictionaries(
                {}, optional={"message": JSON, "delta": JSON, "text": JSON, "finish_reason": JSON}
            ),
            max_size=3,
        ),
        "usage": JSON,
        "message": JSON,
        "response": JSON,
        "done": JSON,
        "error": JSON,
        "data": JSON,
    },
)
INFO = RequestInfo("m", True, 2, 1, "hi")


@FUZZ
@given(st.sampled_from(ROUTES), BACKEND_JSON | st.binary(max_size=200))
def test_backend_replies_are_relayed_or_refused(route: str, reply: Any) -> None:
    data = reply if isinstance(reply, bytes) else orjson.dumps(reply)
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi"}
    for relay in _relays(route, payload, INFO):
        try:
            out = relay.whole(data)
        except BackendFailed:
            continue
        assert isinstance(out, bytes)
        relay.rewrite_whole(str.upper)
        assert isinstance(relay.text, str)


@FUZZ
@given(
    st.sampled_from(ROUTES),
    st.lists(BACKEND_JSON | st.sampled_from(["[DONE]", ": comment", "data: x"]), max_size=6),
    st.integers(min_value=1, max_value=64),
)
def test_backend_streams_are_relayed_whatever_their_events(
    route: str, events: list[Any], cut: int
) -> None:
    sse = b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n"
        for e in events
    )
    ndjson = b"".join(
        (orjson.dumps(e) if not isinstance(e, str) else e.encode()) + b"\n" for e in events
    )
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi"}
    for relay in _relays(route, payload, INFO):
        stream = ndjson if isinstance(relay, OllamaRelay) else sse
        for start in range(0, len(stream), cut):
            assert isinstance(relay.feed(stream[start : start + cut]), bytes)
        assert isinstance(relay.close(), bytes)
        assert isinstance(relay.redacted_stream(relay.text), bytes)


@FUZZ
@given(BACKEND_JSON)
def test_ollama_answers_and_tags_from_any_backend_json(reply: Any) -> None:
    if not isinstance(reply, dict):
        return
    for route in ("/api/chat", "/api/generate"):
        answer = OllamaAnswer(route, "m", 0)
        orjson.loads(answer.whole(reply))
        line = answer.chunk(reply)
        if line is not None:
            orjson.loads(line)
        orjson.loads(answer.last(None, None))
    orjson.loads(models_to_tags(reply))
    protocols.openai_usage(reply)
    protocols.ollama_usage(reply)
    protocols.openai_delta_text(reply)
    protocols.ollama_response_text(reply)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=50), max_size=20))
@pytest.mark.parametrize("separator", [b"\n\n", b"\n"])
def test_splitting_does_not_depend_on_how_bytes_arrive(
    separator: bytes, data: bytes, cuts: list[int]
) -> None:
    whole = EventSplitter(separator)
    expected = [*whole.feed(data), whole.rest()]
    pieces = EventSplitter(separator)
    got: list[bytes] = []
    position = 0
    for cut in cuts:
        got += pieces.feed(data[position : position + cut])
        position += cut
    got += pieces.feed(data[position:])
    got.append(pieces.rest())
    assert b"".join(got) == b"".join(expected)
    for event in got:  # any event parses to JSON, DONE or None
        sse_data(event)
        ndjson_data(event)
