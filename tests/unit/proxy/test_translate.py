"""Ollama requests to OpenAI requests, and OpenAI answers back to Ollama JSON and NDJSON."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from monitor.proxy.translate import OllamaAnswer, models_to_tags, ollama_to_openai


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gemma3", "messages": [{"role": "user", "content": "hi"}], **extra}


# --- requests: /api/chat ---------------------------------------------------------------------


def test_chat_minimal_request() -> None:
    path, body = ollama_to_openai("/api/chat", chat(), stream=False)
    assert path == "/v1/chat/completions"
    assert body == {
        "model": "gemma3",
        "stream": False,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_streaming_asks_for_usage_in_the_stream() -> None:
    _, body = ollama_to_openai("/api/chat", chat(), stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_options_map_to_openai_names() -> None:
    options = {
        "num_predict": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
    }
    _, body = ollama_to_openai("/api/chat", chat(options=options), stream=False)
    assert body["max_tokens"] == 64
    assert "num_predict" not in body
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n\n", "END"]
    assert body["seed"] == 42
    assert body["presence_penalty"] == 0.1
    assert body["frequency_penalty"] == 0.3
    assert "options" not in body


def test_runtime_options_are_dropped() -> None:
    options = {"num_ctx": 8192, "num_gpu": 1, "num_thread": 4, "num_batch": 8, "use_mmap": True}
    _, body = ollama_to_openai("/api/chat", chat(options=options), stream=False)
    assert not set(options) & set(body)


def test_unknown_options_pass_through_as_extra_fields() -> None:
    options = {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}
    _, body = ollama_to_openai("/api/chat", chat(options=options), stream=False)
    assert (body["top_k"], body["min_p"], body["repeat_penalty"]) == (40, 0.05, 1.1)


def test_format_json_becomes_json_object_response_format() -> None:
    _, body = ollama_to_openai("/api/chat", chat(format="json"), stream=False)
    assert body["response_format"] == {"type": "json_object"}


def test_format_schema_becomes_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    _, body = ollama_to_openai("/api/chat", chat(format=schema), stream=False)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


def test_no_format_means_no_response_format() -> None:
    _, body = ollama_to_openai("/api/chat", chat(format=""), stream=False)
    assert "response_format" not in body


def test_images_become_text_and_data_url_parts() -> None:
    message = {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo=", "QUJD"]}
    _, body = ollama_to_openai("/api/chat", chat(messages=[message]), stream=False)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            ],
        }
    ]


def test_image_already_a_data_url_is_kept_and_empty_text_is_left_out() -> None:
    url = "data:image/jpeg;base64,/9j/4AAQ"
    message = {"role": "user", "content": "", "images": [url]}
    _, body = ollama_to_openai("/api/chat", chat(messages=[message]), stream=False)
    assert body["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": url}}]


def test_assistant_tool_calls_get_ids_and_json_string_arguments() -> None:
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
            {"id": "abc", "function": {"name": "noop", "arguments": '{"already": "text"}'}},
        ],
    }
    _, body = ollama_to_openai("/api/chat", chat(messages=[message]), stream=False)
    calls = body["messages"][0]["tool_calls"]
    assert calls[0]["id"] == "call_0"
    assert calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"], str)
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "days": 2}
    assert calls[1] == {
        "id": "abc",
        "type": "function",
        "function": {"name": "noop", "arguments": '{"already": "text"}'},
    }


def test_tool_result_message_carries_the_tool_name() -> None:
    messages = [{"role": "tool", "content": "18C", "tool_name": "get_weather"}]
    _, body = ollama_to_openai("/api/chat", chat(messages=messages), stream=False)
    assert body["messages"] == [{"role": "tool", "content": "18C", "name": "get_weather"}]


def test_tools_pass_through_unchanged() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    _, body = ollama_to_openai("/api/chat", chat(tools=tools), stream=False)
    assert body["tools"] == tools
    _, body = ollama_to_openai("/api/chat", chat(tools=[]), stream=False)
    assert "tools" not in body


def test_translation_does_not_modify_the_client_payload() -> None:
    message = {"role": "user", "content": "x", "images": ["QUJD"]}
    payload = chat(messages=[message], options={"num_predict": 1})
    snapshot = orjson.dumps(payload)
    ollama_to_openai("/api/chat", payload, stream=True)
    assert orjson.dumps(payload) == snapshot


# --- requests: /api/generate -----------------------------------------------------------------


def test_generate_becomes_chat_with_system_then_user() -> None:
    payload = {"model": "g", "system": "Be terse.", "prompt": "Why?", "options": {"seed": 1}}
    path, body = ollama_to_openai("/api/generate", payload, stream=False)
    assert path == "/v1/chat/completions"
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Why?"},
    ]
    assert body["seed"] == 1


def test_generate_without_system_or_prompt() -> None:
    _, body = ollama_to_openai("/api/generate", {"model": "g"}, stream=True)
    assert body["messages"] == [{"role": "user", "content": ""}]
    assert body["stream_options"] == {"include_usage": True}


def test_generate_images_go_on_the_user_message() -> None:
    payload = {"model": "g", "prompt": "Describe", "images": ["QUJD"]}
    _, body = ollama_to_openai("/api/generate", payload, stream=False)
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
    ]


def test_raw_generate_becomes_a_plain_completion() -> None:
    payload = {"model": "g", "raw": True, "prompt": "<start>", "suffix": "<end>", "system": "S"}
    path, body = ollama_to_openai("/api/generate", payload, stream=False)
    assert path == "/v1/completions"
    assert body == {"model": "g", "stream": False, "prompt": "<start>", "suffix": "<end>"}


def test_raw_generate_format_and_options_still_apply() -> None:
    payload = {"model": "g", "raw": True, "prompt": "p", "format": "json", "options": {"top_k": 5}}
    _, body = ollama_to_openai("/api/generate", payload, stream=False)
    assert body["response_format"] == {"type": "json_object"}
    assert body["top_k"] == 5
    assert "messages" not in body


# --- answers: whole --------------------------------------------------------------------------


def answer(route: str = "/api/chat", model: str | None = "gemma3") -> OllamaAnswer:
    return OllamaAnswer(route, model, time.perf_counter_ns())


def test_whole_chat_answer() -> None:
    payload = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    out = orjson.loads(answer().whole(payload))
    assert out["model"] == "gemma3"
    assert out["done"] is True
    assert out["message"] == {"role": "assistant", "content": "Hi!"}
    assert out["done_reason"] == "stop"
    assert (out["prompt_eval_count"], out["eval_count"]) == (7, 3)
    assert out["load_duration"] == 0
    assert isinstance(out["total_duration"], int) and out["total_duration"] >= 0
    assert out["created_at"].endswith("Z")
    assert "response" not in out


def test_whole_answer_is_a_single_json_document_without_newline() -> None:
    raw = answer().whole({"choices": [{"message": {"content": "x"}}]})
    assert not raw.endswith(b"\n")


def test_whole_chat_answer_cut_by_length() -> None:
    payload = {"choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}]}
    out = orjson.loads(answer().whole(payload))
    assert out["done_reason"] == "length"
    assert (out["prompt_eval_count"], out["eval_count"]) == (0, 0)  # no usage reported


def test_whole_chat_answer_with_tool_calls_parses_arguments() -> None:
    payload = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"function": {"name": "broken", "arguments": "{not json"}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    out = orjson.loads(answer().whole(payload))
    assert out["message"]["content"] == ""
    assert out["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "broken", "arguments": "{not json"}},
    ]
    assert out["done_reason"] == "stop"


def test_whole_generate_answer_from_chat_backend() -> None:
    payload = {"choices": [{"message": {"content": "42"}, "finish_reason": "stop"}]}
    out = orjson.loads(answer("/api/generate").whole(payload))
    assert out["response"] == "42"
    assert "message" not in out


def test_whole_raw_generate_answer_from_completions_backend() -> None:
    payload = {"choices": [{"text": "tail", "finish_reason": "length"}]}
    out = orjson.loads(answer("/api/generate").whole(payload))
    assert out["response"] == "tail"
    assert out["done_reason"] == "length"


def test_whole_answer_without_choices_is_empty() -> None:
    out = orjson.loads(answer(model=None).whole({}))
    assert out["model"] == ""
    assert out["message"] == {"role": "assistant", "content": ""}
    assert out["done"] is True


# --- answers: streams ------------------------------------------------------------------------


def delta(content: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if content is not None:
        d["content"] = content
    choice: dict[str, Any] = {"index": 0, "delta": d}
    if "tool_calls" in extra:
        d["tool_calls"] = extra.pop("tool_calls")
    choice.update(extra)
    return {"choices": [choice]}


def line(raw: bytes | None) -> dict[str, Any]:
    assert raw is not None
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    out: dict[str, Any] = orjson.loads(raw)
    return out


def test_chat_stream_chunks_then_last() -> None:
    ans = answer()
    assert ans.chunk(delta("", role="assistant")) is None  # no content yet
    first = line(ans.chunk(delta("Hel")))
    assert first["message"] == {"role": "assistant", "content": "Hel"}
    assert first["done"] is False
    assert "done_reason" not in first and "eval_count" not in first
    assert line(ans.chunk(delta("lo")))["message"]["content"] == "lo"
    assert ans.chunk(delta(finish_reason="stop")) is None
    assert ans.chunk({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}) is None
    last = line(ans.last(4, 2))
    assert last["done"] is True
    assert last["message"] == {"role": "assistant", "content": ""}
    assert last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (4, 2)
    assert last["model"] == "gemma3"


def test_stream_finish_reason_length_reaches_the_last_line() -> None:
    ans = answer()
    ans.chunk(delta("x", finish_reason="length"))
    assert line(ans.last(None, None))["done_reason"] == "length"


def test_stream_without_finish_reason_is_stop_and_counts_default_to_zero() -> None:
    last = line(answer().last(None, None))
    assert last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (0, 0)


def test_generate_stream_uses_response_field() -> None:
    ans = answer("/api/generate")
    assert line(ans.chunk(delta("tok")))["response"] == "tok"
    assert line(ans.chunk({"choices": [{"index": 0, "text": "raw"}]}))["response"] == "raw"
    last = line(ans.last(1, 2))
    assert last["response"] == ""
    assert "message" not in last


def test_tool_call_deltas_are_accumulated_and_emitted_on_the_last_line() -> None:
    ans = answer()
    pieces = [
        delta(tool_calls=[{"index": 0, "id": "c0", "function": {"name": "get_", "arguments": ""}}]),
        delta(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": '{"ci'}}]),
        delta(tool_calls=[{"index": 1, "function": {"name": "now", "arguments": "{}"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]),
        delta(finish_reason="tool_calls"),
    ]
    for piece in pieces:
        assert ans.chunk(piece) is None  # tool-call fragments carry no text line of their own
    last = line(ans.last(10, 12))
    assert last["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "now", "arguments": {}}},
    ]
    assert last["done_reason"] == "stop"
    assert last["eval_count"] == 12


def test_tool_calls_are_ordered_by_index_not_arrival() -> None:
    ans = answer()
    ans.chunk(delta(tool_calls=[{"index": 1, "function": {"name": "b", "arguments": "{}"}}]))
    ans.chunk(delta(tool_calls=[{"index": 0, "function": {"name": "a", "arguments": "{}"}}]))
    names = [c["function"]["name"] for c in line(ans.last(0, 0))["message"]["tool_calls"]]
    assert names == ["a", "b"]


def test_text_and_tool_call_in_one_stream() -> None:
    ans = answer()
    assert line(ans.chunk(delta("Let me check.")))["message"]["content"] == "Let me check."
    ans.chunk(delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": '{"x":1}'}}]))
    last = line(ans.last(1, 1))
    assert last["message"]["content"] == ""
    assert last["message"]["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]


def test_last_line_without_tool_calls_has_no_tool_calls_key() -> None:
    ans = answer()
    ans.chunk(delta("hi"))
    assert "tool_calls" not in line(ans.last(1, 1))["message"]


# --- models ----------------------------------------------------------------------------------


def test_models_to_tags() -> None:
    payload = {
        "object": "list",
        "data": [
            {"id": "gemma-3-270m", "object": "model", "created": 0, "owned_by": "me"},
            {"id": "other"},
            {"object": "model"},  # no id: skipped
            "junk",
        ],
    }
    tags = orjson.loads(models_to_tags(payload))
    assert [m["name"] for m in tags["models"]] == ["gemma-3-270m", "other"]
    first = tags["models"][0]
    assert first["model"] == "gemma-3-270m"
    assert first["modified_at"] == "1970-01-01T00:00:00Z"
    assert first["size"] == 0
    assert first["details"]["family"] == "gemma"
    assert tags["models"][1]["modified_at"].endswith("Z")


@pytest.mark.parametrize("payload", [{}, {"data": None}, {"data": []}])
def test_models_to_tags_empty(payload: dict[str, Any]) -> None:
    assert orjson.loads(models_to_tags(payload)) == {"models": []}


def test_options_cannot_replace_what_the_guard_checked() -> None:
    options = {"messages": [{"role": "user", "content": "unchecked"}], "stream": True, "model": "x"}
    _, body = ollama_to_openai("/api/chat", chat(options=options), stream=False)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["model"], body["stream"]) == ("gemma3", False)
    generate = {"model": "gemma3", "prompt": "hi", "raw": True, "options": {"prompt": "unchecked"}}
    _, body = ollama_to_openai("/api/generate", generate, stream=False)
    assert body["prompt"] == "hi"


def test_wrong_types_from_the_backend_are_skipped() -> None:
    answer = OllamaAnswer("/api/chat", "gemma3", time.perf_counter_ns())
    reply = orjson.loads(answer.whole({"choices": {"0": "x"}, "usage": [1]}))
    assert reply["message"]["content"] == "" and reply["eval_count"] == 0
    assert answer.chunk({"choices": [{"delta": {"content": 5, "tool_calls": 7}}]}) is None
    assert orjson.loads(models_to_tags({"data": [{"id": "g", "created": 10**20}]}))["models"]
