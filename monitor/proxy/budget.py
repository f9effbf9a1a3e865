"""The token budget on the request path: how many output tokens a request may still ask for,
and what to charge once the backend has accepted it, however it ended.

A budget counts prompt and completion tokens. `acquire` lets a request in while the budget is
not spent, so without a cap one request asking for a large `max_tokens` could overshoot it by
that much: `cap_max_tokens` lowers the request's own limit to what is left (after its prompt,
estimated) and sets it when the request names none. Charging happens when the exchange ends in
every case (a reply, a blocked reply, a client that hung up, a backend that died mid-stream):
otherwise hanging up just before the end would make generation free.
"""

from __future__ import annotations

import math
from typing import Any

from monitor.proxy.ratelimit import Decision
from monitor.record import RequestRecord


def cap_max_tokens(route: str, payload: dict[str, Any], remaining: int) -> bool:
    """Cap the output tokens a request may ask for at `remaining` (at least 1), setting the cap
    when it asks for none: OpenAI's `max_tokens` and `max_completion_tokens`, Ollama's
    `options.num_predict` (negative: unlimited). An OpenAI request for `n` choices gets each
    its share. True when the payload changed."""
    cap = max(1, remaining)
    if route.startswith("/api/"):
        options = payload.get("options")
        if not isinstance(options, dict):
            options = payload["options"] = {}
        return _cap(options, "num_predict", cap, required=True)
    choices = payload.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        cap = max(1, remaining // choices)  # each choice is generated, and charged, in full
    changed = _cap(payload, "max_completion_tokens", cap, required=False)
    return _cap(payload, "max_tokens", cap, required="max_completion_tokens" not in payload) or (
        changed
    )


def _cap(holder: dict[str, Any], name: str, cap: int, *, required: bool) -> bool:
    value = holder.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= cap:
        return False
    if value is None and not required:
        return False
    holder[name] = cap
    return True


def budget_for_output(decision: Decision | None, input_chars: int) -> int | None:
    """The output tokens left in the principal's budget once the prompt (estimated at four
    characters a token) is paid for; None without a token budget."""
    if decision is None or decision.token_remaining is None:
        return None
    return decision.token_remaining - math.ceil(input_chars / 4)


def spent_tokens(record: RequestRecord, input_chars: int | None) -> int:
    """Tokens to charge for a request the backend accepted, however it ended: the backend's
    usage, else the prompt estimated from its characters and the output counted (streams) or
    estimated (whole replies) as the record holds it."""
    prompt = record.prompt_tokens
    if prompt is None:
        prompt = math.ceil((input_chars or 0) / 4)
    return prompt + (record.completion_tokens or 0)
