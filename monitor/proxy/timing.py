"""Per-request timing: end-to-end latency, time to first token, inter-token latency, tokens/s.

Times come from `time.perf_counter()`; the timer is told about each output event as the relay
sees it, so streamed numbers are what the client saw, within the proxy's own few microseconds.
"""

from __future__ import annotations

from time import perf_counter


class RequestTimer:
    __slots__ = ("end", "first_token", "last_token", "start", "token_events")

    def __init__(self) -> None:
        self.start = perf_counter()
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.end: float | None = None
        self.token_events = 0

    def token(self) -> None:
        """An output event with content has been passed on to the client."""
        now = perf_counter()
        if self.first_token is None:
            self.first_token = now
        self.last_token = now
        self.token_events += 1

    def finish(self) -> None:
        if self.end is None:
            self.end = perf_counter()

    @property
    def latency_ms(self) -> float:
        end = self.end if self.end is not None else perf_counter()
        return (end - self.start) * 1000.0

    @property
    def ttft_ms(self) -> float | None:
        if self.first_token is None:
            return None
        return (self.first_token - self.start) * 1000.0

    @property
    def itl_ms(self) -> float | None:
        """Mean gap between consecutive output events (needs at least two)."""
        if self.token_events < 2 or self.first_token is None or self.last_token is None:
            return None
        return (self.last_token - self.first_token) * 1000.0 / (self.token_events - 1)

    def tokens_per_s(self, completion_tokens: int | None, streamed: bool) -> float | None:
        """Completion tokens over generation time.

        Streamed: from the first token to the end of the stream (decode speed; the first token
        is the prefill's). Not streamed: over the whole latency, the only span there is.
        """
        if not completion_tokens:
            return None
        end = self.end if self.end is not None else perf_counter()
        if streamed and self.first_token is not None and completion_tokens > 1:
            span, tokens = end - self.first_token, completion_tokens - 1
        else:
            span, tokens = end - self.start, completion_tokens
        return tokens / span if span > 0 else None
