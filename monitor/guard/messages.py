"""The parts of chat messages, walked in one place: texts (`Segment`), images, malformed parts.

A message's `content` is a string (one text) or a list of typed parts: `{"type": "text",
"text": ...}`, `{"type": "image_url", "image_url": ...}`, and others (audio, files) that no
check reads. Ollama messages carry base64 images in `images`. `parts` and `message_parts`
yield each of these as a typed value, in order; the guard's texts, the image check, message
validation and the proxy's request reading all walk messages through them, so they agree on
what a part is.

Whatever does not have the expected shape is skipped (a role that is not a string reads as
"", a content that is neither a string nor a list gives nothing), except a list part that is
no typed object or a text part without a string text: those are yielded as `BadPart`, for
validation to report and the proxy to refuse, and ignored by the rest. So a policy without
the validation check still never crashes on odd input.

Walking is on the request path (the proxy reads every chat request, the guard checks it): a
value is built only for what the caller asks for (`texts`, `images`) and for bad parts, and
the values are plain slotted dataclasses, not frozen ones, which cost three times as much to
build. Nothing changes them after the walk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
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


@dataclass(slots=True)
class ImagePart:
    """An OpenAI `image_url` part, its value unread: `{"url": ...}` or, loosely, a string."""

    message: int
    part: int
    role: str
    image_url: Any

    @property
    def path(self) -> str:
        return f"messages[{self.message}].content[{self.part}].image_url"


@dataclass(slots=True)
class OllamaImages:
    """A message's Ollama `images` field, unread (a list of base64 strings when well formed)."""

    message: int
    role: str
    images: Any

    @property
    def path(self) -> str:
        return f"messages[{self.message}].images"


@dataclass(slots=True)
class BadPart:
    """A list part that is not an object with a string `type` (`field` None), or a text part
    whose `text` is not a string (`field` "text")."""

    message: int
    part: int
    field: str | None = None

    @property
    def path(self) -> str:
        where = f"messages[{self.message}].content[{self.part}]"
        return where if self.field is None else f"{where}.{self.field}"


Part = Segment | ImagePart | OllamaImages | BadPart


def parts(messages: Any, *, texts: bool = True, images: bool = True) -> Iterator[Part]:
    """The parts of every message of `messages` that is an object, in order (nothing when
    `messages` is not a list). `texts`/`images` False: no `Segment`s / no image values."""
    return _walk(messages if isinstance(messages, list) else (), 0, texts, images)


def message_parts(
    index: int, message: dict[str, Any], *, texts: bool = True, images: bool = True
) -> Iterator[Part]:
    """The parts of `message`, which is `messages[index]`: its content's texts, images and bad
    parts in content order, then its Ollama `images` (when the message has that key)."""
    return _walk((message,), index, texts, images)


def _walk(messages: Sequence[Any], first: int, texts: bool, images: bool) -> Iterator[Part]:
    # one generator for the whole walk, not one per message: this runs on every request
    for index, message in enumerate(messages, first):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if not isinstance(role, str):
            role = ""
        content = message.get("content")
        if isinstance(content, str):
            if texts:
                yield Segment(index, None, role, content)
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    text = part.get("text")
                    if isinstance(text, str):
                        if texts:
                            yield Segment(index, part_index, role, text)
                    else:
                        yield BadPart(index, part_index, "text")
                elif kind == "image_url":
                    if images:
                        yield ImagePart(index, part_index, role, part.get("image_url"))
                elif not isinstance(kind, str):
                    yield BadPart(index, part_index)
        if images and "images" in message:
            yield OllamaImages(index, role, message["images"])


def segments(messages: Any) -> list[Segment]:
    """Every text in `messages`, in order."""
    return [part for part in parts(messages, images=False) if isinstance(part, Segment)]


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
            content = out[index]["content"]
            content[segment.part] = {**content[segment.part], "text": text}
    return out
