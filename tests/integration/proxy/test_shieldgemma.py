"""ShieldGemma checks through the real proxy, in front of the fake backend.

The classifier is `KeywordClassifier` (deterministic scores from keywords, standing for the
model); the policy loading, the guard, the relay, the refusals and the stored verdicts are the
real ones. The last test runs the real in-process classifier on a tiny Gemma checkpoint.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from monitor.guard.checks import Harm
from monitor.guard.classifier import TextItem
from monitor.store.models import guard_verdicts_table
from tests.support.fake_backend import FakeBackend
from tests.support.keyword_classifier import KeywordFactory
from tests.support.proxy import RunningProxy

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
ADMIN = {"authorization": "Bearer admin-token-for-tests-0123456789"}
CLASSIFIER = "rules+keywords:test/keywords"


def model_check(model: str = "test/keywords", on_error: str = "block", timeout: float = 5) -> str:
    return (
        f"{{type: shieldgemma, model: {model}, threshold: 0.5, action: block, "
        f"on_error: {on_error}, timeout_s: {timeout}, "
        "harms: [{harm: dangerous_content}, {harm: harassment, threshold: 0.7}]}"
    )


def write_policy(
    tmp_path: Path,
    *,
    input_check: str | None = None,
    output_check: str | None = None,
    mode: str = "buffered",
    every: int = 16,
) -> str:
    path = tmp_path / "sg.yaml"
    inputs = ["{type: pii, action: redact}"] + ([input_check] if input_check else [])
    outputs = [output_check] if output_check else []
    path.write_text(
        "version: 1\nname: sg-test\n"
        f"input:\n  checks: [{', '.join(inputs)}]\n"
        f"output:\n  streaming: {{mode: {mode}, every_chars: {every}}}\n"
        f"  checks: [{', '.join(outputs)}]\n"
    )
    return str(path)


def chat(proxy: RunningProxy, text: str, **extra: Any) -> httpx.Response:
    body = {**CHAT, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{proxy.url}/v1/chat/completions", json=body)


def events(body: bytes) -> list[dict[str, Any]]:
    return [
        orjson.loads(event[6:])
        for event in body.split(b"\n\n")
        if event.startswith(b"data: ") and event != b"data: [DONE]"
    ]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0].get("delta", {}).get("content") or "" for c in chunks if c["choices"]
    )


def verdicts(proxy: RunningProxy, request_id: str) -> list[dict[str, Any]]:
    """The `guard_verdicts` rows of a request (every column), once the recorder wrote it."""
    proxy.record(request_id)
    table = guard_verdicts_table
    query = select(table).where(table.c.request_id == request_id).order_by(table.c.id)
    with proxy.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout}s")
        time.sleep(0.02)


# -- input ----------------------------------------------------------------------------------


def test_input_over_threshold_is_refused_before_the_backend(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    classifiers = KeywordFactory()
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=model_check()), classifiers=classifiers
    )
    resp = chat(proxy, "how do I build a bomb")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "CONTENT_FILTERED"
    assert "policy 'sg-test'" in error["message"]
    assert "dangerous_content (shieldgemma.dangerous_content), score 0.97" in error["message"]
    assert fake_backend.received == []
    # one call for the check, one item per harm, on the user's text
    assert classifiers.calls == [
        [
            TextItem("how do I build a bomb", Harm.DANGEROUS_CONTENT),
            TextItem("how do I build a bomb", Harm.HARASSMENT),
        ]
    ]
    request_id = resp.headers["x-request-id"]
    record = proxy.record(request_id)
    assert (record.outcome, record.error_code) == ("blocked_input", "CONTENT_FILTERED")
    (row,) = verdicts(proxy, request_id)
    assert (row["stage"], row["action"], row["classifier"]) == ("input", "block", CLASSIFIER)
    assert (row["category"], row["rule"], row["score"]) == (
        "dangerous_content",
        "shieldgemma.dangerous_content",
        0.97,
    )
    assert [(f["rule"], f["action"], f["score"]) for f in row["findings"]] == [
        ("shieldgemma.dangerous_content", "block", 0.97),
        ("shieldgemma.harassment", "allow", 0.01),
    ]
    assert row["skipped"] == []


def test_a_near_miss_is_forwarded_and_recorded(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=model_check()), classifiers=KeywordFactory()
    )
    # harassment scores 0.65: over the check's 0.5, under this harm's own 0.7
    resp = chat(proxy, "a borderline question from an idiot")
    assert resp.status_code == 200 and len(fake_backend.received) == 1
    (row,) = verdicts(proxy, resp.headers["x-request-id"])
    assert (row["action"], row["classifier"], row["score"]) == ("allow", CLASSIFIER, 0.65)
    assert {f["rule"]: (f["action"], f["score"]) for f in row["findings"]} == {
        "shieldgemma.dangerous_content": ("allow", 0.42),
        "shieldgemma.harassment": ("allow", 0.65),
    }
    assert proxy.record(resp.headers["x-request-id"]).outcome == "ok"


def test_the_model_judges_user_text_as_the_rules_redacted_it(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    classifiers = KeywordFactory()
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=model_check()), classifiers=classifiers
    )
    messages = [
        {"role": "system", "content": "Never talk about a bomb."},  # the operator's: not judged
        {"role": "user", "content": "Mail jane.doe@example.com"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "messages": messages})
    assert resp.status_code == 200
    prompts = {item.prompt for call in classifiers.calls for item in call}
    assert prompts == {"Mail [EMAIL]\n\nThanks"}
    row = verdicts(proxy, resp.headers["x-request-id"])[0]
    assert row["action"] == "redact"  # the rules' redaction stands beside the model's allow


def test_completions_and_generate_prompts_are_judged(make_proxy, tmp_path: Path) -> None:
    classifiers = KeywordFactory()
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=model_check()), classifiers=classifiers
    )
    completions = httpx.post(
        f"{proxy.url}/v1/completions", json={"model": "m", "prompt": "build a bomb"}
    )
    assert completions.json()["error"]["code"] == "CONTENT_FILTERED"
    generate = httpx.post(
        f"{proxy.url}/api/generate",
        json={"model": "m", "prompt": "build a bomb", "system": "be nice", "stream": False},
    )
    assert generate.status_code == 400 and generate.json()["code"] == "CONTENT_FILTERED"
    assert {item.prompt for call in classifiers.calls for item in call} == {"build a bomb"}


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_classifier_failure_with_on_error_block_refuses(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path, mode: str
) -> None:
    check = model_check(on_error="block", timeout=0.3)
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=check), classifiers=KeywordFactory(mode)
    )
    resp = chat(proxy, "a harmless question")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "CONTENT_FILTERED"
    kind = "error" if mode == "error" else "timeout"
    assert f"classifier (shieldgemma.{kind})" in error["message"]
    assert fake_backend.received == []
    (row,) = verdicts(proxy, resp.headers["x-request-id"])
    (finding,) = row["findings"]
    assert (finding["rule"], finding["category"], finding["action"]) == (
        f"shieldgemma.{kind}",
        "classifier",
        "block",
    )
    assert finding["score"] is None and f"classifier {kind}" in finding["detail"]
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert (
        "gemma_monitor_guard_classifier_failures_total"
        f'{{classifier="keywords:test/keywords",reason="{kind}",stage="input"}} 1.0'
    ) in metrics


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_classifier_failure_with_on_error_allow_forwards_and_flags(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path, mode: str
) -> None:
    check = model_check(on_error="allow", timeout=0.3)
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=check), classifiers=KeywordFactory(mode)
    )
    resp = chat(proxy, "how do I build a bomb")  # would block, had the classifier answered
    assert resp.status_code == 200 and len(fake_backend.received) == 1
    (row,) = verdicts(proxy, resp.headers["x-request-id"])
    kind = "error" if mode == "error" else "timeout"
    assert (row["action"], row["rule"], row["classifier"]) == (
        "flag",
        f"shieldgemma.{kind}",
        CLASSIFIER,
    )
    assert "on_error: allow" in row["findings"][0]["detail"]


def test_classifier_latency_is_on_metrics(make_proxy, tmp_path: Path) -> None:
    proxy = make_proxy(
        policies=write_policy(tmp_path, input_check=model_check()), classifiers=KeywordFactory()
    )
    assert chat(proxy, "hello").status_code == 200
    metrics = httpx.get(f"{proxy.url}/metrics").text
    assert (
        "gemma_monitor_guard_classifier_duration_seconds_count"
        '{classifier="keywords:test/keywords",outcome="ok",stage="input"} 1.0'
    ) in metrics


# -- output ---------------------------------------------------------------------------------


def test_whole_response_over_threshold_is_refused(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    classifiers = KeywordFactory()
    proxy = make_proxy(
        policies=write_policy(tmp_path, output_check=model_check()), classifiers=classifiers
    )
    fake_backend.script.text = "first, get a bomb"
    resp = chat(proxy, "what now")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "RESPONSE_FILTERED" and "score 0.97" in error["message"]
    assert classifiers.calls == [
        [
            TextItem("what now", Harm.DANGEROUS_CONTENT, "first, get a bomb"),
            TextItem("what now", Harm.HARASSMENT, "first, get a bomb"),
        ]
    ]
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code) == ("blocked_output", "RESPONSE_FILTERED")
    (row,) = verdicts(proxy, record.id)
    assert (row["stage"], row["action"], row["classifier"]) == ("output", "block", CLASSIFIER)
    ollama = httpx.post(f"{proxy.url}/api/chat", json={**CHAT, "stream": False})
    assert ollama.status_code == 400 and ollama.json()["code"] == "RESPONSE_FILTERED"


def test_clean_whole_response_passes(make_proxy, fake_backend: FakeBackend, tmp_path: Path) -> None:
    proxy = make_proxy(
        policies=write_policy(tmp_path, output_check=model_check()), classifiers=KeywordFactory()
    )
    fake_backend.script.text = "bread needs flour"
    resp = chat(proxy, "bake?")
    assert resp.json()["choices"][0]["message"]["content"] == "bread needs flour"


def test_buffered_stream_is_refused_before_any_byte_of_the_answer(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    proxy = make_proxy(
        policies=write_policy(tmp_path, output_check=model_check(), mode="buffered"),
        classifiers=KeywordFactory(),
    )
    fake_backend.script.text = "here is how to make a bomb at home"
    resp = chat(proxy, "tell me", stream=True)
    assert resp.status_code == 200 and resp.content.endswith(b"data: [DONE]\n\n")
    chunks = events(resp.content)
    assert len(chunks) == 1 and chunks[0]["choices"][0]["finish_reason"] == "content_filter"
    assert streamed_text(chunks) == ""
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code) == ("blocked_output", "RESPONSE_FILTERED")


def test_incremental_stream_is_cut_with_content_filter(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    classifiers = KeywordFactory()
    proxy = make_proxy(
        policies=write_policy(tmp_path, output_check=model_check(), mode="incremental", every=8),
        classifiers=classifiers,
    )
    fake_backend.script.text = "one two three bomb " + "more words follow here " * 20
    fake_backend.script.chunk_s = 0.01
    resp = chat(proxy, "go on", stream=True)
    assert resp.status_code == 200 and resp.content.endswith(b"data: [DONE]\n\n")
    chunks = events(resp.content)
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    text = streamed_text(chunks)
    assert "one two" in text  # checked and passed before the violation
    assert "bomb" not in text  # the event that brought it waited for the check
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code, record.http_status) == (
        "blocked_output",
        "RESPONSE_FILTERED",
        200,
    )
    assert fake_backend.completed_streams == 0  # the upstream generation was stopped
    assert len(classifiers.calls) >= 2  # checked more than once: every 8 characters
    (row,) = verdicts(proxy, record.id)  # only the deciding check is stored
    assert (row["action"], row["rule"]) == ("block", "shieldgemma.dangerous_content")


def test_incremental_ollama_stream_ends_with_an_error_line(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    proxy = make_proxy(
        policies=write_policy(tmp_path, output_check=model_check(), mode="incremental", every=8),
        classifiers=KeywordFactory(),
    )
    fake_backend.script.text = "one two three bomb " + "more words follow here " * 20
    resp = httpx.post(f"{proxy.url}/api/chat", json={**CHAT, "stream": True})
    lines = [orjson.loads(line) for line in resp.content.splitlines() if line.strip()]
    assert lines[-1] == {
        "error": lines[-1]["error"],
        "code": "RESPONSE_FILTERED",
        "request_id": resp.headers["x-request-id"],
    }
    assert "dangerous_content" in lines[-1]["error"]
    text = "".join(line.get("message", {}).get("content", "") for line in lines[:-1])
    assert text.startswith("one two") and "bomb" not in text


def test_clean_incremental_stream_is_checked_at_the_end(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    classifiers = KeywordFactory()
    proxy = make_proxy(
        policies=write_policy(tmp_path, output_check=model_check(), mode="incremental", every=64),
        classifiers=classifiers,
    )
    fake_backend.script.text = "short and sweet"
    resp = chat(proxy, "hi", stream=True)
    assert streamed_text(events(resp.content)) == "short and sweet"
    assert [call[0].response for call in classifiers.calls] == ["short and sweet"]
    (row,) = verdicts(proxy, resp.headers["x-request-id"])
    assert (row["stage"], row["action"]) == ("output", "allow")


# -- lifecycle ------------------------------------------------------------------------------


def test_reload_swaps_classifiers_and_closes_the_old_after_its_last_request(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    classifiers = KeywordFactory()
    path = Path(write_policy(tmp_path, output_check=model_check("test/first")))
    proxy = make_proxy(
        policies=str(path), admin_token=ADMIN["authorization"][7:], classifiers=classifiers
    )
    (first,) = classifiers.built
    assert first.name == "keywords:test/first"

    # a request in flight across the reload keeps its guard, and so its classifier
    fake_backend.script.think_s = 1.0
    fake_backend.script.text = "a calm answer"
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(chat(proxy, "slow one")))
    worker.start()
    wait_for(lambda: fake_backend.received, "forwarded")

    path.write_text(path.read_text().replace("test/first", "test/second"))
    reloaded = httpx.post(f"{proxy.url}/admin/policies/reload", headers=ADMIN)
    assert reloaded.json() == {"policy": "sg-test", "status": "reloaded"}
    _, second = classifiers.built
    assert second.name == "keywords:test/second" and not first.closed

    worker.join(timeout=30)
    assert answers[0].status_code == 200
    assert [call[0].response for call in first.calls] == ["a calm answer"]
    wait_for(lambda: first.closed, "closed")  # once its last request ended

    fake_backend.script.think_s = 0.0
    after = chat(proxy, "next")
    assert after.status_code == 200
    assert len(second.calls) == 1 and not second.closed
    (row,) = verdicts(proxy, after.headers["x-request-id"])
    assert row["classifier"] == "rules+keywords:test/second"

    proxy.stop()  # shutdown closes the running policy's classifiers
    assert second.closed


def test_a_reload_to_a_classifier_that_cannot_load_keeps_the_running_policy(
    make_proxy, tmp_path: Path
) -> None:
    built = KeywordFactory()

    def factory(check: Any) -> Any:
        if check.model == "test/missing":
            raise OSError("no such model: test/missing")
        return built(check)

    path = Path(write_policy(tmp_path, input_check=model_check()))
    proxy = make_proxy(
        policies=str(path), admin_token=ADMIN["authorization"][7:], classifiers=factory
    )
    path.write_text(path.read_text().replace("test/keywords", "test/missing"))
    refused = httpx.post(f"{proxy.url}/admin/policies/reload", headers=ADMIN)
    assert refused.status_code == 400 and "no such model" in refused.json()["error"]["message"]
    assert chat(proxy, "a bomb").json()["error"]["code"] == "CONTENT_FILTERED"
    assert not built.built[0].closed


# -- the real in-process classifier ---------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 2 checkpoint (ShieldGemma's architecture) with its tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.support.tiny_gemma import save_tiny_gemma

    return save_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma") / "gemma2", "gemma2")


def test_the_in_process_classifier_on_a_tiny_gemma(
    make_proxy, fake_backend: FakeBackend, tmp_path: Path, tiny_gemma: Path
) -> None:
    """The app's own classifier factory (no stand-in): the check names the tiny checkpoint's
    folder, the model loads before the proxy serves, and its scores are what the guard
    decides on. Random weights, so the decision is forced with the thresholds: 0 blocks
    everything, 1 lets everything through with its score recorded."""
    check = (
        f"{{type: shieldgemma, model: '{tiny_gemma}', action: block, timeout_s: 60, "
        "harms: [{harm: dangerous_content, threshold: 1.0}, {harm: hate_speech, threshold: 1.0}]}"
    )
    proxy = make_proxy(policies=write_policy(tmp_path, input_check=check))
    resp = chat(proxy, "how do I bake bread")
    assert resp.status_code == 200
    (row,) = verdicts(proxy, resp.headers["x-request-id"])
    assert row["classifier"] == f"rules+shieldgemma:{tiny_gemma}"
    scores = [f["score"] for f in row["findings"]]
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)
    assert [f["rule"] for f in row["findings"]] == [
        "shieldgemma.dangerous_content",
        "shieldgemma.hate_speech",
    ]

    # the same checkpoint with a threshold of 0 on the first harm: every prompt violates it
    blocking = check.replace("threshold: 1.0}, {harm: hate", "threshold: 0.0}, {harm: hate")
    strict = make_proxy(policies=write_policy(tmp_path, input_check=blocking))
    refused = chat(strict, "how do I bake bread")
    assert refused.json()["error"]["code"] == "CONTENT_FILTERED"
    assert "dangerous_content (shieldgemma.dangerous_content), score" in refused.text
    assert len(fake_backend.received) == 1  # only the first proxy's request got through
