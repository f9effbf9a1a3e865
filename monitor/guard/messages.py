"""The texts of chat messages: where each one is (`Segment`), and putting redacted texts back.

Checks read texts, not messages: a string content is one segment, a list of parts gives one
segment per text part (images and other parts are left to their own classifiers). Whatever
does not have the expected shape is skipped here; reporting it is `validation`'s job, so that
a policy without the validation check still never crashes on odd input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Segment:
    """One text of the input: `messages[message].content` or `...content[part].text`."""

    message: int
    part: int | None
    role: str
    text: str

    @property
    def path(self) -> str:
        if self.part is None:
            return f"messages[{self.message}].content"
        return f"messages[{self.message}].content[{self.part}].text"


def segments(messages: Any) -> list[Segment]:
    """Every text in `messages`, in order."""
    if not isinstance(messages, list):
        return []
    found: list[Segment] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        role = role if isinstance(role, str) else ""
        content = message.get("content")
        if isinstance(content, str):
            found.append(Segment(index, None, role, content))
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    found.append(Segment(index, part_index, role, part["text"]))
    return found


def with_texts(messages: list[Any], changed: Sequence[tuple[Segment, str]]) -> list[Any]:
    """A copy of `messages` with the given segments' texts replaced. Only the messages (and
    parts) that change are copied; the caller's objects are never modified."""
    out = list(messages)
    copied: set[int] = set()
    for segment, text in changed:
        index = segment.message
        if index not in copied:
            out[index] = dict(out[index])
            if segment.part is not None:
                out[index]["content"] = list(out[index]["content"])
            copied.add(index)
        if segment.part is None:
            out[index]["content"] = text
        else:
            parts = out[index]["content"]
            parts[segment.part] = {**parts[segment.part], "text": text}
    return out
