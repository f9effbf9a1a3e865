"""EventSplitter, sse_data and ndjson_data: whole events out of bytes cut anywhere."""

from __future__ import annotations

import orjson
import pytest

from monitor.proxy.framing import (
    DONE,
    EventSplitter,
    ndjson_data,
    ndjson_splitter,
    sse_data,
    sse_splitter,
)

SSE_EVENTS = [
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
    b": keep-alive comment\n\n",
    b'event: message\ndata: {"id":"c1","choices":[{"index":0,"delta":{"content":"lo \xc3\xa9"}}]}\n\n',
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
    b"data: [DONE]\n\n",
]
SSE_STREAM = b"".join(SSE_EVENTS)

NDJSON_LINES = [
    b'{"model":"gemma","message":{"role":"assistant","content":"Hi"},"done":false}\n',
    b'{"model":"gemma","message":{"role":"assistant","content":" there"},"done":false}\n',
    b'{"model":"gemma","done":true,"done_reason":"stop","eval_count":2}\n',
]
NDJSON_STREAM = b"".join(NDJSON_LINES)


def feed_all(splitter: EventSplitter, pieces: list[bytes]) -> list[bytes]:
    events: list[bytes] = []
    for piece in pieces:
        events.extend(splitter.feed(piece))
    return events


# --- SSE -------------------------------------------------------------------------------------


def test_sse_whole_stream_at_once_gives_each_event_with_its_separator() -> None:
    splitter = sse_splitter()
    assert splitter.feed(SSE_STREAM) == SSE_EVENTS
    assert splitter.rest() == b""


def test_sse_stream_cut_at_any_byte_reassembles_identically() -> None:
    for cut in range(1, len(SSE_STREAM)):
        splitter = sse_splitter()
        events = feed_all(splitter, [SSE_STREAM[:cut], SSE_STREAM[cut:]])
        assert events == SSE_EVENTS, cut
        assert splitter.rest() == b"", cut


def test_sse_stream_fed_one_byte_at_a_time() -> None:
    splitter = sse_splitter()
    events = feed_all(splitter, [SSE_STREAM[i : i + 1] for i in range(len(SSE_STREAM))])
    assert events == SSE_EVENTS


def test_sse_events_come_out_only_once_complete() -> None:
    splitter = sse_splitter()
    first = SSE_EVENTS[1]
    assert splitter.feed(first[:-1]) == []  # one newline short of the separator
    assert splitter.feed(first[-1:]) == [first]


def test_sse_payloads_survive_every_three_way_cut() -> None:
    stream = SSE_EVENTS[1] + SSE_EVENTS[5]
    expected = [sse_data(e) for e in (SSE_EVENTS[1], SSE_EVENTS[5])]
    for i in range(1, len(stream)):
        for j in range(i, len(stream)):
            splitter = sse_splitter()
            events = feed_all(splitter, [stream[:i], stream[i:j], stream[j:]])
            assert [sse_data(e) for e in events] == expected, (i, j)


def test_sse_crlf_separators_are_normalised() -> None:
    crlf = SSE_STREAM.replace(b"\n", b"\r\n")
    assert sse_splitter().feed(crlf) == SSE_EVENTS


def test_sse_crlf_stream_cut_at_any_byte_including_between_cr_and_lf() -> None:
    crlf = SSE_STREAM.replace(b"\n", b"\r\n")
    for cut in range(1, len(crlf)):
        splitter = sse_splitter()
        assert feed_all(splitter, [crlf[:cut], crlf[cut:]]) == SSE_EVENTS, cut
        assert splitter.rest() == b"", cut


def test_sse_blank_separators_between_events_yield_no_empty_events() -> None:
    splitter = sse_splitter()
    assert splitter.feed(b"\n\n\n\ndata: 1\n\n\n\n") == [b"data: 1\n\n"]


def test_sse_rest_returns_unterminated_tail_once() -> None:
    splitter = sse_splitter()
    assert splitter.feed(b"data: 1\n\ndata: 2") == [b"data: 1\n\n"]
    assert splitter.rest() == b"data: 2"
    assert splitter.rest() == b""  # rest() empties the buffer


def test_sse_rest_ignores_whitespace_only_tail() -> None:
    splitter = sse_splitter()
    splitter.feed(b"data: 1\n\n \n")
    assert splitter.rest() == b""


def test_feeding_nothing_changes_nothing() -> None:
    splitter = sse_splitter()
    assert splitter.feed(b"data: partial") == []
    assert splitter.feed(b"") == []
    assert splitter.feed(b"\n\n") == [b"data: partial\n\n"]


# --- NDJSON ----------------------------------------------------------------------------------


def test_ndjson_whole_stream_at_once() -> None:
    assert ndjson_splitter().feed(NDJSON_STREAM) == NDJSON_LINES


def test_ndjson_stream_cut_at_any_byte_reassembles_identically() -> None:
    for cut in range(1, len(NDJSON_STREAM)):
        splitter = ndjson_splitter()
        events = feed_all(splitter, [NDJSON_STREAM[:cut], NDJSON_STREAM[cut:]])
        assert events == NDJSON_LINES, cut
        assert splitter.rest() == b"", cut


def test_ndjson_crlf_lines_cut_between_cr_and_lf() -> None:
    crlf = NDJSON_STREAM.replace(b"\n", b"\r\n")
    for cut in range(1, len(crlf)):
        splitter = ndjson_splitter()
        assert feed_all(splitter, [crlf[:cut], crlf[cut:]]) == NDJSON_LINES, cut


def test_ndjson_blank_lines_are_skipped() -> None:
    assert ndjson_splitter().feed(b'\n{"a":1}\n\n  \n{"b":2}\n') == [b'{"a":1}\n', b'{"b":2}\n']


def test_ndjson_last_line_without_newline_is_the_rest() -> None:
    splitter = ndjson_splitter()
    assert splitter.feed(b'{"a":1}\n{"done":true}') == [b'{"a":1}\n']
    assert ndjson_data(splitter.rest()) == {"done": True}


# --- sse_data --------------------------------------------------------------------------------


def test_sse_data_decodes_json_payload() -> None:
    assert sse_data(b'data: {"a": [1, 2]}\n\n') == {"a": [1, 2]}


def test_sse_data_without_space_after_colon() -> None:
    assert sse_data(b'data:{"a":1}\n\n') == {"a": 1}


def test_sse_data_done_marker() -> None:
    assert sse_data(b"data: [DONE]\n\n") is DONE
    assert sse_data(b"data:[DONE]\n\n") is DONE


def test_sse_data_comment_only_event_is_none() -> None:
    assert sse_data(b": ping\n\n") is None


def test_sse_data_event_without_data_field_is_none() -> None:
    assert sse_data(b"event: ping\nid: 3\n\n") is None


def test_sse_data_ignores_other_fields_and_comments_around_data() -> None:
    event = b': note\nevent: completion\nid: 7\ndata: {"x": 1}\nretry: 10\n\n'
    assert sse_data(event) == {"x": 1}


def test_sse_data_joins_multi_line_data_with_newlines() -> None:
    event = b'data: {"text":\ndata: "two lines"}\n\n'
    assert sse_data(event) == {"text": "two lines"}
    # the join is a newline, so a JSON string split across lines stays invalid, not merged
    assert sse_data(b'data: {"t": "a\ndata: b"}\n\n') is None


def test_sse_data_non_json_is_none() -> None:
    assert sse_data(b"data: hello world\n\n") is None
    assert sse_data(b"data: {broken\n\n") is None


def test_sse_data_json_scalars_are_returned_as_is() -> None:
    assert sse_data(b"data: 42\n\n") == 42
    assert sse_data(b'data: "x"\n\n') == "x"


def test_sse_data_keeps_unicode() -> None:
    assert sse_data(SSE_EVENTS[3])["choices"][0]["delta"]["content"] == "lo \u00e9"


# --- ndjson_data -----------------------------------------------------------------------------


def test_ndjson_data_decodes_a_line_with_its_newline() -> None:
    assert ndjson_data(NDJSON_LINES[2]) == orjson.loads(NDJSON_LINES[2])


@pytest.mark.parametrize("line", [b"not json\n", b"{\n", b"", b"\n"])
def test_ndjson_data_invalid_is_none(line: bytes) -> None:
    assert ndjson_data(line) is None
