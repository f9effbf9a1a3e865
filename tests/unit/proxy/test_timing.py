"""RequestTimer: latency, time to first token, inter-token latency and tokens per second."""

from __future__ import annotations

import pytest

from monitor.proxy.timing import RequestTimer


def timer(
    start: float = 100.0,
    first: float | None = None,
    last: float | None = None,
    end: float | None = None,
    events: int = 0,
) -> RequestTimer:
    t = RequestTimer()
    t.start, t.first_token, t.last_token, t.end, t.token_events = start, first, last, end, events
    return t


def test_new_timer_has_seen_nothing() -> None:
    t = RequestTimer()
    assert (t.first_token, t.last_token, t.end, t.token_events) == (None, None, None, 0)
    assert t.ttft_ms is None
    assert t.itl_ms is None


def test_latency_is_start_to_end_in_ms() -> None:
    assert timer(start=10.0, end=11.25).latency_ms == pytest.approx(1250.0)


def test_latency_before_finish_is_still_running_and_positive() -> None:
    t = RequestTimer()
    assert t.latency_ms >= 0.0


def test_ttft_is_start_to_first_token() -> None:
    assert timer(start=5.0, first=5.2, last=5.2, events=1).ttft_ms == pytest.approx(200.0)


def test_itl_needs_two_events() -> None:
    assert timer(first=100.1, last=100.1, events=1).itl_ms is None


def test_itl_is_mean_gap_between_events() -> None:
    # 5 events between 100.5 and 101.3: four gaps of 200 ms
    assert timer(first=100.5, last=101.3, events=5).itl_ms == pytest.approx(200.0)


def test_token_sets_first_once_and_last_each_time() -> None:
    t = RequestTimer()
    t.token()
    first = t.first_token
    assert first is not None and first >= t.start
    t.token()
    t.token()
    assert t.first_token == first
    assert t.last_token is not None and t.last_token >= first
    assert t.token_events == 3


def test_finish_keeps_the_first_end() -> None:
    t = RequestTimer()
    t.finish()
    end = t.end
    assert end is not None
    t.finish()
    assert t.end == end


def test_tokens_per_s_streamed_excludes_the_first_token() -> None:
    # 11 tokens, first at 0.5 s, end at 2.5 s: 10 decode tokens in 2 s
    t = timer(start=0.0, first=0.5, last=2.4, end=2.5, events=11)
    assert t.tokens_per_s(11, streamed=True) == pytest.approx(5.0)


def test_tokens_per_s_not_streamed_uses_whole_latency() -> None:
    t = timer(start=0.0, end=2.0)
    assert t.tokens_per_s(10, streamed=False) == pytest.approx(5.0)


def test_tokens_per_s_not_streamed_ignores_first_token_time() -> None:
    t = timer(start=0.0, first=1.0, last=1.0, end=2.0, events=1)
    assert t.tokens_per_s(10, streamed=False) == pytest.approx(5.0)


def test_tokens_per_s_streamed_single_token_uses_whole_latency() -> None:
    t = timer(start=0.0, first=0.5, last=0.5, end=0.5, events=1)
    assert t.tokens_per_s(1, streamed=True) == pytest.approx(2.0)


def test_tokens_per_s_streamed_without_first_token_uses_whole_latency() -> None:
    assert timer(start=0.0, end=4.0).tokens_per_s(8, streamed=True) == pytest.approx(2.0)


@pytest.mark.parametrize("tokens", [None, 0])
def test_tokens_per_s_without_tokens_is_none(tokens: int | None) -> None:
    assert timer(start=0.0, end=1.0).tokens_per_s(tokens, streamed=False) is None


def test_tokens_per_s_with_zero_span_is_none() -> None:
    assert timer(start=1.0, end=1.0).tokens_per_s(5, streamed=False) is None
    assert timer(start=0.0, first=1.0, end=1.0, events=3).tokens_per_s(5, streamed=True) is None
