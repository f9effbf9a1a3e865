"""The walk over chat message parts, and putting redacted texts back."""

from __future__ import annotations

import copy
from typing import Any

from monitor.guard.messages import (
    BadPart,
    ImagePart,
    OllamaImages,
    Segment,
    message_parts,
    parts,
    segments,
    with_texts,
)

IMAGE = {"url": "data:image/png;base64,AAAA"}


def test_a_string_content_is_one_text() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": ""}]
    assert list(parts(messages)) == [
        Segment(0, None, "system", "be brief"),
        Segment(1, None, "user", ""),
    ]
    assert [s.path for s in segments(messages)] == ["messages[0].content", "messages[1].content"]


def test_a_list_of_parts_in_order_then_ollama_images() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is"},
                {"type": "image_url", "image_url": IMAGE},
                {"type": "text", "text": "this?"},
            ],
            "images": ["QUJD"],
        }
    ]
    found = list(parts(messages))
    assert found == [
        Segment(0, 0, "user", "what is"),
        ImagePart(0, 1, "user", IMAGE),
        Segment(0, 2, "user", "this?"),
        OllamaImages(0, "user", ["QUJD"]),
    ]
    assert [p.path for p in found] == [
        "messages[0].content[0].text",
        "messages[0].content[1].image_url",
        "messages[0].content[2].text",
        "messages[0].images",
    ]


def test_unknown_part_types_are_skipped_even_with_a_text() -> None:
    content = [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "refusal", "refusal": "no"},
        {"type": "input_text", "text": "not a text part"},
        {"type": "Text", "text": "types are case-sensitive"},
        {"type": "text", "text": "read"},
    ]
    assert list(parts([{"role": "user", "content": content}])) == [Segment(0, 4, "user", "read")]


def test_wrong_typed_fields_are_skipped() -> None:
    messages: list[Any] = [
        "not an object",
        None,
        {"role": 5, "content": "a role that is not a string reads as empty"},
        {"role": "user", "content": 42},
        {"role": "user", "content": {"type": "text", "text": "an object is not a list"}},
        {"role": "user"},
        {"role": "user", "content": None, "images": None},
    ]
    assert list(parts(messages)) == [
        Segment(2, None, "", "a role that is not a string reads as empty"),
        OllamaImages(6, "user", None),  # an `images` of any shape is the image check's to read
    ]
    assert list(parts("not a list")) == []
    assert list(parts({"role": "user", "content": "one message, not a list"})) == []


def test_malformed_parts_are_yielded_as_bad_parts_with_their_paths() -> None:
    content: list[Any] = [
        "a bare string",
        None,
        {"text": "no type"},
        {"type": 1, "text": "a type that is not a string"},
        {"type": "text", "text": 3},
        {"type": "text"},
        {"type": "text", "text": "still read after the bad ones"},
        {"type": "image_url"},  # no URL: the image check reports it, the walk does not judge
    ]
    found = list(parts([{"role": "user", "content": "x"}, {"role": "user", "content": content}]))
    assert found == [
        Segment(0, None, "user", "x"),
        BadPart(1, 0),
        BadPart(1, 1),
        BadPart(1, 2),
        BadPart(1, 3),
        BadPart(1, 4, "text"),
        BadPart(1, 5, "text"),
        Segment(1, 6, "user", "still read after the bad ones"),
        ImagePart(1, 7, "user", None),
    ]
    assert [p.path for p in found if isinstance(p, BadPart)] == [
        "messages[1].content[0]",
        "messages[1].content[1]",
        "messages[1].content[2]",
        "messages[1].content[3]",
        "messages[1].content[4].text",
        "messages[1].content[5].text",
    ]


def test_texts_and_images_can_be_left_out_but_bad_parts_never_are() -> None:
    message = {
        "role": "user",
        "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": IMAGE}, 7],
        "images": ["QUJD"],
    }
    assert list(parts([message], texts=False)) == [
        ImagePart(0, 1, "user", IMAGE),
        BadPart(0, 2),
        OllamaImages(0, "user", ["QUJD"]),
    ]
    assert list(parts([message], images=False)) == [Segment(0, 0, "user", "hi"), BadPart(0, 2)]
    assert list(parts([message], texts=False, images=False)) == [BadPart(0, 2)]


def test_one_message_is_walked_with_its_index_in_the_list() -> None:
    message = {"role": "assistant", "content": [{"type": "text", "text": "ok"}, []]}
    assert list(message_parts(3, message)) == [Segment(3, 0, "assistant", "ok"), BadPart(3, 1)]
    assert list(message_parts(2, {"role": "tool", "content": "42"})) == [
        Segment(2, None, "tool", "42")
    ]


def test_with_texts_copies_only_what_changes() -> None:
    messages: list[Any] = [
        {"role": "system", "content": "keep"},
        {"role": "user", "content": "mail a@b.example"},
        {"role": "user", "content": [{"type": "text", "text": "call 555"}, {"type": "x"}]},
    ]
    before = copy.deepcopy(messages)
    found = segments(messages)
    out = with_texts(messages, [(found[1], "mail [EMAIL]"), (found[2], "call [PHONE]")])
    assert messages == before  # the caller's objects are never modified
    assert out[0] is messages[0]
    assert out[1] == {"role": "user", "content": "mail [EMAIL]"}
    assert out[2]["content"] == [{"type": "text", "text": "call [PHONE]"}, {"type": "x"}]
    assert out[2]["content"][1] is messages[2]["content"][1]
