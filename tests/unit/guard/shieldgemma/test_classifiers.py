"""Which classifier a `shieldgemma` check gets, and that checks of one model share it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from monitor.guard.checks import Harm, ShieldGemmaCheck
from monitor.guard.classifier import ClassifierError, TextItem
from monitor.guard.shieldgemma.classifiers import (
    TextClassifiers,
    aclose_text_classifiers,
    build_text_classifier,
)
from monitor.guard.shieldgemma.remote import RemoteShieldGemma
from tests.support.tiny_gemma import save_tiny_gemma

ITEM = TextItem("how do I bake bread", Harm.DANGEROUS_CONTENT)


def check(**fields: Any) -> ShieldGemmaCheck:
    return ShieldGemmaCheck.model_validate(
        {"type": "shieldgemma", "harms": [{"harm": "harassment"}], **fields}
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("transformers")
    return str(save_tiny_gemma(tmp_path_factory.mktemp("tiny") / "gemma3"))


def test_new_fields_have_in_process_defaults() -> None:
    plain = check()
    assert (plain.endpoint, plain.device, plain.batch_size, plain.top_logprobs) == (
        None,
        "cpu",
        16,
        10,
    )
    with pytest.raises(ValidationError):
        check(endpoint="https://guard.example:8000")  # the client speaks plain HTTP only
    with pytest.raises(ValidationError):
        check(device="tpu")
    with pytest.raises(ValidationError):
        check(api_key_env="not a name")


async def test_checks_of_one_model_share_one_classifier(tiny_model: str) -> None:
    classifiers = TextClassifiers()
    first = classifiers.build(check(model=tiny_model))
    second = classifiers.build(check(model=tiny_model, threshold=0.2, batch_size=4))
    elsewhere = classifiers.build(check(model=tiny_model, endpoint="http://127.0.0.1:9"))
    try:
        assert first.classifier is second.classifier
        assert isinstance(elsewhere.classifier, RemoteShieldGemma)
        assert len(classifiers) == 2
        assert first.name == f"shieldgemma:{tiny_model}"
        await first.ready()
        await elsewhere.ready()
        # closing one reference leaves the model to the other
        await first.aclose()
        with pytest.raises(ClassifierError, match="after aclose"):
            await first.classify([ITEM], timeout_s=30)
        [score] = await second.classify([ITEM], timeout_s=30)
        assert 0.0 <= score <= 1.0
        # the last reference closes it for good
        underlying = second.classifier
        await second.aclose()
        assert len(classifiers) == 1
        with pytest.raises(ClassifierError, match="closed"):
            await underlying.classify([TextItem("new text", Harm.HARASSMENT)], timeout_s=30)
        # and a new reference loads it afresh
        again = classifiers.build(check(model=tiny_model))
        assert again.classifier is not underlying
    finally:
        await classifiers.aclose()
    assert len(classifiers) == 0


async def test_remote_api_key_comes_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    classifiers = TextClassifiers()
    with pytest.raises(ClassifierError, match="SG_KEY is unset"):
        classifiers.build(check(endpoint="http://127.0.0.1:9", api_key_env="SG_KEY"))
    monkeypatch.setenv("SG_KEY", "secret")
    remote = classifiers.build(check(endpoint="http://127.0.0.1:9/v1/", api_key_env="SG_KEY"))
    assert isinstance(remote.classifier, RemoteShieldGemma)
    assert remote.classifier.endpoint == "http://127.0.0.1:9"
    await classifiers.aclose()


async def test_the_process_wide_set(tiny_model: str) -> None:
    a = build_text_classifier(check(model=tiny_model))
    b = build_text_classifier(check(model=tiny_model))
    assert a.classifier is b.classifier
    await aclose_text_classifiers()
    c = build_text_classifier(check(model=tiny_model))
    assert c.classifier is not a.classifier
    await aclose_text_classifiers()
