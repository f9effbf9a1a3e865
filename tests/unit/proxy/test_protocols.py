"""Request parsing and checking, response readers and error bodies for both client protocols."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from monitor.errors import BackendFailed, BackendTimeout, RequestInvalid
from monitor.proxy.protocols import (
    OLLAMA,
    OPENAI,
    Usage,
    error_body,
    estimate_tokens,
    inspect_request,
    ollama_response_text,
    ollama_usage,
    openai_delta_text,
    openai_response_text,
    openai_usage,
    parse_json_object,
)

CHAT_ROUTES = ("/v1/chat/completions", "/api/chat")


def invalid(route: str, payload: dict[str, Any]) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as caught:
        inspect_request(route, payload)
    return caught.value


# --- parse_json_object -----------------------------------------------------------------------


def test_parse_json_object_returns_the_object() -> None:
    assert parse_json_object(b'{"model": "g", "n": 1}') == {"model": "g", "n": 1}


def test_parse_empty_body() -> None:
    with pytest.raises(RequestInvalid, match="empty") as caught:
        parse_json_object(b"")
    assert caught.value.status == 400
    assert caught.value.code == "VALIDATION_ERROR"


@pytest.mark.parametrize("body", [b"{", b'{"a": }', b"   ", b"{'a': 1}", b'{"a": 1} trailing'])
def test_parse_malformed_json(body: bytes) -> None:
    with pytest.raises(RequestInvalid, match="not valid JSON"):
        parse_json_object(body)


@pytest.mark.parametrize("body", [b'{"a": "\xff\xfe"}', b"\xc3\x28", b'{"a": "\xed\xa0\x80"}'])
def test_parse_invalid_utf8_says_utf8(body: bytes) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_json_object(body)
    assert "UTF-8" in caught.value.message


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[1, 2]", "an array"),
        (b'"text"', "a string"),
        (b"42", "a number"),
        (b"4.5", "a number"),
        (b"true", "a boolean"),
        (b"null", "null"),
    ],
)
def test_parse_non_object_top_level_names_what_it_got(body: bytes, kind: str) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_json_object(body)
    assert caught.value.message == f"request body must be a JSON object, not {kind}"


# --- inspect_request: chat -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "stream"), [("/v1/chat/completions", False), ("/api/chat", True)]
)
def test_chat_stream_default_depends_on_protocol(route: str, stream: bool) -> None:
    info = inspect_request(route, {"model": "g", "messages": [{"role": "user", "content": "hi"}]})
    assert info.stream is stream
    assert info.model == "g"


@pytest.mark.parametrize("route", CHAT_ROUTES)
@pytest.mark.parametrize("stream", [True, False])
def test_chat_explicit_stream_is_kept(route: str, stream: bool) -> None:
    payload = {"model": "g", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    assert inspect_request(route, payload).stream is stream


@pytest.mark.parametrize("route", CHAT_ROUTES)
def test_chat_stream_null_means_default(route: str) -> None:
    payload = {"model": "g", "stream": None, "messages": [{"role": "user", "content": "x"}]}
    assert inspect_request(route, payload).stream is (route == "/api/chat")


def test_openai_chat_model_is_optional_ollama_chat_model_is_required() -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert inspect_request("/v1/chat/completions", {"messages": messages}).model is None
    error = invalid("/api/chat", {"messages": messages})
    assert error.message == "'model' is required"
    assert error.param == "model"
    assert invalid("/api/chat", {"model": "", "messages": messages}).param == "model"


@pytest.mark.parametrize("route", CHAT_ROUTES)
def test_chat_counts_characters_and_messages(route: str) -> None:
    payload = {
        "model": "g",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": None},
        ],
    }
    info = inspect_request(route, payload)
    assert info.input_messages == 3
    assert info.prompt_text == "Be brief.\nHello\n"
    assert info.input_chars == len("Be brief.\nHello\n")


def test_chat_content_parts_keep_text_and_skip_images() -> None:
    payload = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "in this picture?"},
                ],
            }
        ]
    }
    info = inspect_request("/v1/chat/completions", payload)
    assert info.prompt_text == "What is\nin this picture?"
    assert info.input_chars == len("What is\nin this picture?")
    assert info.input_messages == 1


def test_chat_prompt_text_is_the_texts_the_guard_reads() -> None:
    """Only `text` parts count: a `text` field on another part is not what the guard checked."""
    content = [
        {"type": "input_text", "text": "not a text part"},
        {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}, "text": "alt"},
        {"type": "text", "text": 5},  # skipped here; the validation check reports it
        {"type": "text", "text": "read"},
    ]
    info = inspect_request(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": content}]}
    )
    assert info.prompt_text == "read"


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool", "developer", "function"])
def test_chat_accepts_every_known_role(role: str) -> None:
    inspect_request("/v1/chat/completions", {"messages": [{"role": role, "content": "x"}]})


@pytest.mark.parametrize("route", CHAT_ROUTES)
def test_chat_messages_required(route: str) -> None:
    error = invalid(route, {"model": "g"})
    assert error.message == "'messages' is required"
    assert error.param == "messages"


@pytest.mark.parametrize("route", CHAT_ROUTES)
def test_chat_messages_as_object_is_rejected(route: str) -> None:
    error = invalid(route, {"model": "g", "messages": {"role": "user", "content": "hi"}})
    assert error.message == "'messages' must be an array, not an object"
    assert error.param == "messages"


def test_chat_messages_empty_is_rejected() -> None:
    assert "must not be empty" in invalid("/v1/chat/completions", {"messages": []}).message


def test_chat_message_not_an_object() -> None:
    error = invalid("/v1/chat/completions", {"messages": [{"role": "user"}, "hi"]})
    assert error.message == "messages[1] must be an object"
    assert error.param == "messages[1]"


@pytest.mark.parametrize("role", ["robot", "USER", "", None, 3])
def test_chat_unknown_or_missing_role(role: Any) -> None:
    error = invalid("/api/chat", {"model": "g", "messages": [{"role": role, "content": "x"}]})
    assert error.param == "messages[0].role"
    assert "user" in error.message and "assistant" in error.message


def test_chat_content_number_is_rejected() -> None:
    payload = {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": 5}]}
    error = invalid("/v1/chat/completions", payload)
    assert error.message == "messages[1].content must be a string or a list of parts, not a number"
    assert error.param == "messages[1].content"


@pytest.mark.parametrize("part", ["text", {"text": "no type"}, {"type": 1, "text": "x"}])
def test_chat_content_parts_must_be_typed_objects(part: Any) -> None:
    error = invalid("/v1/chat/completions", {"messages": [{"role": "user", "content": [part]}]})
    assert error.param == "messages[0].content"
    assert "'type'" in error.message


# --- inspect_request: wrong types on common fields -------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stream", "true", "'stream' must be a boolean, not a string"),
        ("stream", 1, "'stream' must be a boolean, not a number"),
        ("model", 7, "'model' must be a string, not a number"),
        ("max_tokens", True, "'max_tokens' must be an integer, not a boolean"),
        ("max_tokens", "10", "'max_tokens' must be an integer, not a string"),
        ("max_tokens", 1.5, "'max_tokens' must be an integer, not a number"),
        ("max_completion_tokens", [], "'max_completion_tokens' must be an integer, not an array"),
        ("n", False, "'n' must be an integer, not a boolean"),
        ("temperature", "0.5", "'temperature' must be a number, not a string"),
        ("temperature", True, "'temperature' must be a number, not a boolean"),
        ("top_p", {}, "'top_p' must be a number, not an object"),
        ("options", [], "'options' must be an object, not an array"),
    ],
)
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/api/chat", "/api/generate"])
def test_wrong_types_are_rejected_naming_the_field(
    route: str, field: str, value: Any, message: str
) -> None:
    payload: dict[str, Any] = {"model": "g", "prompt": "p"}
    if route != "/api/generate":
        payload["messages"] = [{"role": "user", "content": "x"}]
    payload[field] = value
    error = invalid(route, payload)
    assert error.message == message
    assert error.param == field


def test_numbers_of_the_right_type_are_accepted() -> None:
    payload = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 16,
        "max_completion_tokens": 8,
        "n": 1,
        "temperature": 0,
        "top_p": 0.9,
        "options": {},
    }
    inspect_request("/v1/chat/completions", payload)


# --- inspect_request: completions and generate -----------------------------------------------


def test_completions_prompt_string() -> None:
    info = inspect_request("/v1/completions", {"prompt": "Once upon"})
    assert (info.model, info.stream, info.input_messages) == (None, False, 1)
    assert info.prompt_text == "Once upon"
    assert info.input_chars == 9


def test_completions_prompt_list_of_strings_is_joined() -> None:
    info = inspect_request("/v1/completions", {"prompt": ["ab", "cd"], "stream": True})
    assert info.prompt_text == "ab\ncd"
    assert info.input_chars == 5
    assert info.stream is True


def test_completions_prompt_token_ids_count_no_characters() -> None:
    info = inspect_request("/v1/completions", {"prompt": [1, 2, 3]})
    assert info.prompt_text == ""
    assert info.input_chars == 0


def test_completions_prompt_required() -> None:
    error = invalid("/v1/completions", {"model": "g"})
    assert (error.message, error.param) == ("'prompt' is required", "prompt")


@pytest.mark.parametrize("prompt", [None, 5, {"a": 1}, ["a", 1], [True, False]])
def test_completions_prompt_wrong_shape(prompt: Any) -> None:
    assert invalid("/v1/completions", {"prompt": prompt}).param == "prompt"


def test_generate_defaults_to_streaming_and_requires_model() -> None:
    info = inspect_request("/api/generate", {"model": "g", "prompt": "hi"})
    assert info.stream is True
    assert invalid("/api/generate", {"prompt": "hi"}).param == "model"


def test_generate_system_is_counted_before_the_prompt() -> None:
    info = inspect_request("/api/generate", {"model": "g", "system": "S", "prompt": "hello"})
    assert info.prompt_text == "S\nhello"
    assert info.input_chars == 7
    assert info.input_messages == 1


def test_generate_without_prompt_is_empty_input() -> None:
    info = inspect_request("/api/generate", {"model": "g", "stream": False})
    assert (info.prompt_text, info.input_chars, info.stream) == ("", 0, False)


@pytest.mark.parametrize("field", ["prompt", "system"])
def test_generate_prompt_and_system_must_be_strings(field: str) -> None:
    error = invalid("/api/generate", {"model": "g", field: ["a"]})
    assert error.message == f"'{field}' must be a string, not an array"


# --- response readers ------------------------------------------------------------------------


def test_openai_response_text_chat_and_completions() -> None:
    chat = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}}]}
    assert openai_response_text(chat) == "Hi!"
    completion = {"choices": [{"index": 0, "text": "once"}, {"index": 1, "text": " more"}]}
    assert openai_response_text(completion) == "once more"


def test_openai_response_text_tolerates_odd_shapes() -> None:
    assert openai_response_text({}) == ""
    assert openai_response_text({"choices": None}) == ""
    assert openai_response_text({"choices": ["x", {"message": {"content": None}}]}) == ""


def test_openai_usage() -> None:
    payload = {"usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}}
    assert openai_usage(payload) == Usage(12, 34)
    assert openai_usage({}) == Usage(None, None)
    assert openai_usage({"usage": None}) == Usage()
    assert openai_usage({"usage": {"prompt_tokens": "12", "completion_tokens": True}}) == Usage()


def test_openai_delta_text_content_and_completion_text() -> None:
    assert openai_delta_text({"choices": [{"delta": {"content": "Hel"}}]}) == "Hel"
    assert openai_delta_text({"choices": [{"text": "lo"}]}) == "lo"
    assert openai_delta_text({"choices": [{"delta": {"role": "assistant"}}]}) == ""
    assert openai_delta_text({"choices": [], "usage": {"completion_tokens": 3}}) == ""


def test_openai_delta_text_tool_call_fragment_counts_as_output() -> None:
    event = {
        "choices": [
            {
                "delta": {
                    "content": None,
                    "tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}],
                }
            }
        ]
    }
    text = openai_delta_text(event)
    assert text == "\u0000"  # non-empty, so timing sees an output event


def test_openai_delta_text_joins_several_choices() -> None:
    event = {"choices": [{"delta": {"content": "a"}}, "junk", {"delta": {"content": "b"}}]}
    assert openai_delta_text(event) == "ab"


def test_ollama_response_text_chat_and_generate() -> None:
    assert ollama_response_text({"message": {"role": "assistant", "content": "x"}}) == "x"
    assert ollama_response_text({"response": "y", "done": False}) == "y"
    assert ollama_response_text({"done": True}) == ""
    assert ollama_response_text({"message": {"content": None}, "response": 3}) == ""


def test_ollama_usage() -> None:
    assert ollama_usage({"prompt_eval_count": 5, "eval_count": 9}) == Usage(5, 9)
    assert ollama_usage({"done": False}) == Usage(None, None)
    assert ollama_usage({"prompt_eval_count": 1.0, "eval_count": False}) == Usage(None, None)


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimate_tokens_is_about_four_characters_each(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


# --- error bodies ----------------------------------------------------------------------------


def test_openai_error_body_shape() -> None:
    error = RequestInvalid("'model' is required", param="model")
    assert orjson.loads(error_body(OPENAI, error, "req-1")) == {
        "error": {
            "message": "'model' is required",
            "type": "invalid_request_error",
            "param": "model",
            "code": "VALIDATION_ERROR",
            "request_id": "req-1",
        }
    }


def test_openai_error_body_for_backend_failure_has_null_param() -> None:
    body = orjson.loads(error_body(OPENAI, BackendTimeout("no answer"), "r2"))
    assert body["error"] == {
        "message": "no answer",
        "type": "server_error",
        "param": None,
        "code": "GENERATION_ERROR",
        "request_id": "r2",
    }


def test_ollama_error_body_shape() -> None:
    body = orjson.loads(error_body(OLLAMA, BackendFailed("refused"), "r3"))
    assert body == {"error": "refused", "code": "GENERATION_ERROR", "request_id": "r3"}
    assert isinstance(body["error"], str)


def test_error_status_codes() -> None:
    assert RequestInvalid("x").status == 400
    assert BackendFailed("x").status == 502
    assert BackendTimeout("x").status == 504
