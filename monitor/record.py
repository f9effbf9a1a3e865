"""The request record: one per request, whatever its outcome (see DESIGN.md, "The request record").

A plain dataclass so the proxy can fill it without importing the store, and the recorder can
turn it into a row (or a spool line) without knowing about HTTP.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Outcome = Literal[
    "ok",
    "blocked_input",
    "blocked_output",
    "invalid",
    "rate_limited",
    "backend_error",
    "client_abort",
]


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request. Content is stored only when the settings allow."""

    id: str
    ts: datetime
    route: str
    protocol: str  # "openai" or "ollama": the client's protocol
    model: str | None = None
    backend: str | None = None
    principal: str | None = None
    stream: bool = False
    outcome: Outcome = "ok"
    error_code: str | None = None
    http_status: int = 200
    latency_ms: float | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False
    tokens_per_s: float | None = None
    input_chars: int | None = None
    input_messages: int | None = None
    guard_ms: float | None = None
    prompt_hash: str | None = None
    response_hash: str | None = None
    prompt_text: str | None = None
    response_text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # One `Verdict.as_dict()` per guard stage that ran. Not a column of `requests`: the store
    # writes them to `guard_verdicts`, in the same transaction as the request.
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """A flat dict: one key per column of the `requests` table, and `verdicts`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RequestRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known})


def utcnow() -> datetime:
    return datetime.now(UTC)
