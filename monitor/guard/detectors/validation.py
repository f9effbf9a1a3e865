"""Message validation as the seed defined it, reported as problems rather than raised.

`messages` must be a non-empty list of at most `max_messages` objects, each with a `role` from
the allowed set and a `content` that is a string or a list of typed parts (`{"type": "text",
"text": "..."}`, `{"type": "image_url", ...}`). An assistant message carrying `tool_calls` may
have no content. The guard turns each problem into a `validation` finding, which the proxy
answers with VALIDATION_ERROR (400) when its action is `block`. A list content's parts are
read through `monitor.guard.messages`, the walk every reader of messages shares.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from monitor.guard.messages import BadPart, message_parts


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
    messages: Any, *, max_messages: int, allowed_roles: Collection[str]
) -> list[Problem]:
    """Every structural problem of `messages` (at most one per message), none when valid."""
    if not isinstance(messages, list):
        return [Problem("validation.type", "messages", f"must be an array, not {_kind(messages)}")]
    if not messages:
        return [Problem("validation.empty", "messages", "must not be empty")]
    problems: list[Problem] = []
    if len(messages) > max_messages:
        problems.append(
            Problem(
                "validation.too_many",
                "messages",
                f"{len(messages)} messages; at most {max_messages} are allowed",
            )
        )
        return problems  # do not walk a list that is too long to be allowed anyway
    for index, message in enumerate(messages):
        problem = _check_message(index, message, allowed_roles)
        if problem:
            problems.append(problem)
    return problems


def _check_message(index: int, message: Any, allowed_roles: Collection[str]) -> Problem | None:
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
        return None
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return None
        return Problem("validation.content", f"{path}.content", "is missing")
    if isinstance(content, list):
        for part in message_parts(index, message, texts=False, images=False):
            if isinstance(part, BadPart):
                return _bad_part(part)
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
