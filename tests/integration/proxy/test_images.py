"""Image checks on the request path: a tiny real ShieldGemma 2 behind the proxy, both
protocols, refusals and records; image URLs left alone unless the policy fetches them."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_backend import FakeBackend
from tests.support.proxy import RunningProxy
from tests.support.tiny_shieldgemma2 import build_tiny_shieldgemma2

pytest.importorskip("torch")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")


def png(color: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (20, 20), color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PNG = png((30, 160, 90))
B64 = base64.b64encode(PNG).decode()
DATA_URL = f"data:image/png;base64,{B64}"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_shieldgemma2(tmp_path_factory.mktemp("tiny-shieldgemma2"))


def policy(tmp_path: Path, model: Path, **fields: Any) -> str:
    """A policy with the rules' validation, then one shieldgemma2 check on `model`."""
    check = {"type": "shieldgemma2", "model": str(model), "timeout_s": 60} | fields
    text = "name: images\ninput:\n  checks:\n    - {type: validation}\n"
    text += "    - {" + ", ".join(f"{k}: {v}" for k, v in check.items()) + "}\n"
    path = tmp_path / "images.yaml"
    path.write_text(text)
    return str(path)


def openai_chat(*urls: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is in this picture?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


MakeProxy = Callable[..., RunningProxy]


def test_an_image_over_the_threshold_is_refused_before_the_backend(
    make_proxy: MakeProxy, fake_backend: FakeBackend, tmp_path: Path, model_folder: Path
) -> None:
    proxy = make_proxy(policies=policy(tmp_path, model_folder, threshold=0.0))
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=openai_chat(DATA_URL), timeout=60)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "CONTENT_FILTERED"
    assert "policy 'images'" in error["message"] and "shieldgemma2.dangerous" in error["message"]
    assert fake_backend.received == []
    record = proxy.record(resp.headers["x-request-id"])
    assert (record.outcome, record.error_code) == ("blocked_input", "CONTENT_FILTERED")
    [verdict] = record.verdicts
    assert verdict["action"] == "block" and "shieldgemma2:" in verdict["classifier"]
    findings = {f["rule"]: f for f in verdict["findings"]}
    assert set(findings) == {f"shieldgemma2.{p}" for p in ("dangerous", "sexual", "violence")}
    assert all(0 < f["score"] < 1 for f in findings.values())
    assert findings["shieldgemma2.sexual"]["path"] == "messages[0].content[1].image_url"
    assert findings["shieldgemma2.sexual"]["category"] == "sexual"


def test_images_under_the_threshold_pass_in_both_protocols(
    make_proxy: MakeProxy, fake_backend: FakeBackend, tmp_path: Path, model_folder: Path
) -> None:
    proxy = make_proxy(policies=policy(tmp_path, model_folder, threshold=1.0))
    openai = httpx.post(f"{proxy.url}/v1/chat/completions", json=openai_chat(DATA_URL), timeout=60)
    assert openai.status_code == 200
    ollama_chat = {
        "model": "m",
        "stream": False,
        "messages": [{"role": "user", "content": "describe", "images": [B64]}],
    }
    chat = httpx.post(f"{proxy.url}/api/chat", json=ollama_chat, timeout=60)
    assert chat.status_code == 200
    generate = httpx.post(
        f"{proxy.url}/api/generate",
        json={"model": "m", "prompt": "describe", "images": [B64], "stream": False},
        timeout=60,
    )
    assert generate.status_code == 200
    assert B64 in json.dumps(fake_backend.last.body)  # forwarded (translated for an OpenAI backend)
    paths = []
    for resp in (openai, chat, generate):
        [verdict] = proxy.record(resp.headers["x-request-id"]).verdicts
        assert verdict["action"] == "allow"  # near misses are kept, with their scores
        paths.append({f["path"] for f in verdict["findings"]})
    assert paths == [
        {"messages[0].content[1].image_url"},
        {"messages[0].images[0]"},
        {"images[0]"},
    ]


def test_a_bad_image_is_a_clear_refusal_not_a_500(
    make_proxy: MakeProxy, fake_backend: FakeBackend, tmp_path: Path, model_folder: Path
) -> None:
    proxy = make_proxy(policies=policy(tmp_path, model_folder, on_error="block"))
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=openai_chat("data:image/png;base64,%%%not-base64"),
        timeout=60,
    )
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert "shieldgemma2.unreadable" in message and "not valid base64" in message
    not_an_image = base64.b64encode(b"just some text").decode()
    resp = httpx.post(
        f"{proxy.url}/api/chat",
        json={
            "model": "m",
            "messages": [{"role": "user", "content": "x", "images": [not_an_image]}],
        },
        timeout=60,
    )
    assert resp.status_code == 400 and "not an image" in resp.json()["error"]
    assert fake_backend.received == []


def test_on_error_allow_forwards_and_records(
    make_proxy: MakeProxy, fake_backend: FakeBackend, tmp_path: Path, model_folder: Path
) -> None:
    proxy = make_proxy(policies=policy(tmp_path, model_folder, on_error="allow"))
    resp = httpx.post(
        f"{proxy.url}/v1/chat/completions", json=openai_chat("data:image/png;base64,@@"), timeout=60
    )
    assert resp.status_code == 200 and len(fake_backend.received) == 1
    [verdict] = proxy.record(resp.headers["x-request-id"]).verdicts
    assert verdict["action"] == "flag"
    assert verdict["findings"][0]["rule"] == "shieldgemma2.unreadable"


def test_an_image_url_is_not_fetched_unless_the_policy_says_so(
    make_proxy: MakeProxy,
    fake_backend: FakeBackend,
    fake_backend_url: str,
    tmp_path: Path,
    model_folder: Path,
) -> None:
    proxy = make_proxy(policies=policy(tmp_path, model_folder))
    url = f"{fake_backend_url}/cat.png"
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=openai_chat(url), timeout=60)
    assert resp.status_code == 200
    assert [r.path for r in fake_backend.received] == ["/v1/chat/completions"]  # not /cat.png
    [verdict] = proxy.record(resp.headers["x-request-id"]).verdicts
    assert verdict["action"] == "flag"
    assert [f["rule"] for f in verdict["findings"]] == ["shieldgemma2.not_fetched"]
