"""Message validation as the seed defined it, reported as problems rather than raised.

`messages` must be a non-empty list of at most `max_messages` objects, each with a `role` from
the allowed set and a `content` that is a string or a list of typed parts (`{"type": "text",
"text": "..."}`, `{"type": "image_url", ...}`). An assistant message carrying `tool_calls` may
have no content. The guard turns each problem into a `validation` finding, which the proxy
answers with VALIDATION_ERROR (400) when its action is `block`. A list content's parts are
read through `monitor.guard.messages`, the walk every reader of messages shares.

The size caps (`max_parts`, `max_total_chars`) bound what every later check reads: the
parts are counted from the list lengths before any part is walked, and the characters are
summed on the walk validation makes anyway, so an oversized request is refused for the cost
of counting it. Their refusals name the cap, so a client knows what to change.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from monitor.guard.messages import BadPart, Segment, message_parts


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str  # validation.<what>
    path: str
    detail: str


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def validate_messages(
    messages: Any,
    *,
    max_messages: int,
    allowed_roles: Collection[str],
    max_parts: int | None = None,
    max_total_chars: int | None = None,
) -> list[Problem]:
    """Every structural problem of `messages` (at most one per message), none when valid."""
    if not isinstance(messages, list):
        return [Problem("validation.type", "messages", f"must be an array, not {_kind(messages)}")]
    if not messages:
        return [Problem("validation.empty", "messages", "must not be empty")]
    if len(messages) > max_messages:
        detail = f"{len(messages)} messages; at most {max_messages} are allowed"
        # do not walk a list that is too long to be allowed anyway
        return [Problem("validation.too_many", "messages", detail)]
    if max_parts is not None:
        count = _count_parts(messages)
        if count > max_parts:
            detail = (
                f"{count} content parts over all messages; the policy allows at most "
                f"{max_parts} (max_parts)"
            )
            return [Problem("validation.too_many_parts", "messages", detail)]
    problems: list[Problem] = []
    chars = [0] if max_total_chars is not None else None
    for index, message in enumerate(messages):
        problem = _check_message(index, message, allowed_roles, chars)
        if problem:
            problems.append(problem)
    if chars is not None and max_total_chars is not None and chars[0] > max_total_chars:
        detail = (
            f"{chars[0]} characters of text over all messages; the policy allows at most "
            f"{max_total_chars} (max_total_chars)"
        )
        problems.append(Problem("validation.too_long", "messages", detail))
    return problems


def _count_parts(messages: list[Any]) -> int:
    """Content parts over all messages, from the lengths of their lists: nothing is walked."""
    count = 0
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            count += len(content) if isinstance(content, list) else 1
    return count


def _check_message(
    index: int, message: Any, allowed_roles: Collection[str], chars: list[int] | None
) -> Problem | None:
    """The message's problem, if any; adds its text's length to `chars` when counting."""
    path = f"messages[{index}]"
    if not isinstance(message, dict):
        return Problem("validation.message", path, f"must be an object, not {_kind(message)}")
    role = message.get("role")
    if not isinstance(role, str) or role not in allowed_roles:
        shown = role if isinstance(role, str) else _kind(role)
        return Problem(
            "validation.role",
            f"{path}.role",
            f"{shown[:32]!r} is not one of {', '.join(sorted(allowed_roles))}",
        )
    content = message.get("content")
    if isinstance(content, str):
        if chars is not None:
            chars[0] += len(content)
        return None
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return None
        return Problem("validation.content", f"{path}.content", "is missing")
    if isinstance(content, list):
        for part in message_parts(index, message, texts=chars is not None, images=False):
            if isinstance(part, BadPart):
                return _bad_part(part)
            if chars is not None and isinstance(part, Segment):
                chars[0] += len(part.text)
        return None
    return Problem(
        "validation.content",
        f"{path}.content",
        f"must be a string or an array of parts, not {_kind(content)}",
    )


def _bad_part(part: BadPart) -> Problem:
    if part.field == "text":
        return Problem("validation.part", part.path, "a text part needs a string 'text'")
    return Problem("validation.part", part.path, "must be an object with a string 'type'")
