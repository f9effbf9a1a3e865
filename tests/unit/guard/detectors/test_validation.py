"""Message validation reports problems (with paths) instead of raising."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.guard.detectors.validation import validate_messages

ROLES = ("system", "user", "assistant", "tool")


def problems(messages: Any, max_messages: int = 50) -> list[tuple[str, str]]:
    found = validate_messages(messages, max_messages=max_messages, allowed_roles=ROLES)
    return [(p.rule, p.path) for p in found]


def test_valid_conversations() -> None:
    assert problems([{"role": "user", "content": "hi"}]) == []
    assert (
        problems(
            [
                {"role": "system", "content": "be nice"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                    ],
                },
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                {"role": "tool", "content": "42", "tool_call_id": "1"},
            ]
        )
        == []
    )


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ("hello", [("validation.type", "messages")]),
        (None, [("validation.type", "messages")]),
        ({"role": "user"}, [("validation.type", "messages")]),
        ([], [("validation.empty", "messages")]),
        (["hi"], [("validation.message", "messages[0]")]),
        ([{"role": "bot", "content": "x"}], [("validation.role", "messages[0].role")]),
        ([{"content": "x"}], [("validation.role", "messages[0].role")]),
        ([{"role": "user"}], [("validation.content", "messages[0].content")]),
        ([{"role": "assistant", "content": None}], [("validation.content", "messages[0].content")]),
        ([{"role": "user", "content": 3}], [("validation.content", "messages[0].content")]),
        (
            [{"role": "user", "content": {"text": "x"}}],
            [("validation.content", "messages[0].content")],
        ),
        ([{"role": "user", "content": ["x"]}], [("validation.part", "messages[0].content[0]")]),
        (
            [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            [("validation.part", "messages[0].content[0].text")],
        ),
        (
            [
                {"role": "user", "content": "ok"},
                {"role": "x", "content": "a"},
                {"role": "user", "content": 1},
            ],
            [
                ("validation.role", "messages[1].role"),
                ("validation.content", "messages[2].content"),
            ],
        ),
    ],
)
def test_problems(messages: Any, expected: list[tuple[str, str]]) -> None:
    assert problems(messages) == expected


def test_too_many_messages() -> None:
    messages = [{"role": "user", "content": "x"}] * 51
    assert problems(messages) == [("validation.too_many", "messages")]
    assert problems(messages[:50]) == []
    assert problems(messages[:3], max_messages=2) == [("validation.too_many", "messages")]


def test_parts_are_capped_over_all_messages_before_any_is_read() -> None:
    part = {"type": "text", "text": "x"}
    messages = [
        {"role": "system", "content": "rules"},  # a string content is one part
        {"role": "user", "content": [part] * 3},
    ]
    assert validate_messages(messages, max_messages=50, allowed_roles=ROLES, max_parts=4) == []
    found = validate_messages(messages, max_messages=50, allowed_roles=ROLES, max_parts=3)
    assert [(p.rule, p.path) for p in found] == [("validation.too_many_parts", "messages")]
    assert found[0].detail == (
        "4 content parts over all messages; the policy allows at most 3 (max_parts)"
    )
    # counted from the list lengths: parts that are not even objects are not walked
    junk = [{"role": "user", "content": [None] * 100_000}]
    found = validate_messages(junk, max_messages=50, allowed_roles=ROLES, max_parts=128)
    assert [p.rule for p in found] == ["validation.too_many_parts"]


def test_text_is_capped_over_all_messages_and_parts() -> None:
    messages = [
        {"role": "system", "content": "a" * 10},
        {"role": "user", "content": [{"type": "text", "text": "b" * 10}, {"type": "image_url"}]},
        {"role": "assistant", "content": "c" * 10},
    ]
    ok = validate_messages(messages, max_messages=50, allowed_roles=ROLES, max_total_chars=30)
    assert ok == []
    found = validate_messages(messages, max_messages=50, allowed_roles=ROLES, max_total_chars=29)
    assert [(p.rule, p.path) for p in found] == [("validation.too_long", "messages")]
    assert found[0].detail == (
        "30 characters of text over all messages; the policy allows at most 29 (max_total_chars)"
    )
