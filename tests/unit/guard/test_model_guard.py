"""ModelGuard: the rules, then the shieldgemma checks, merged into one verdict per stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from monitor.guard.checks import Harm
from monitor.guard.classifier import TextItem
from monitor.guard.loader import load_policy, parse_policy
from monitor.guard.model_guard import ClassifierCall, ModelGuard, response_prompt
from monitor.guard.verdict import Action, Stage
from tests.support.keyword_classifier import KeywordClassifier, KeywordFactory

SG = "{type: shieldgemma, model: m, harms: [{harm: dangerous_content}], on_error: %s}"


def guard_of(yaml: str, factory: Any = None, **kwargs: Any) -> ModelGuard:
    policy = parse_policy(yaml, default_name="test")
    return ModelGuard(policy, factory or KeywordFactory(), **kwargs)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_a_rules_block_asks_no_model() -> None:
    factory = KeywordFactory()
    guard = guard_of(
        "input:\n  checks:\n    - {type: denylist, terms: [bomb], action: block}\n"
        f"    - {SG % 'block'}\n",
        factory,
    )
    verdict = await guard.check_input(user("a bomb"))
    assert verdict.blocked and verdict.classifier == "rules"
    assert verdict.skipped == () and factory.calls == []


async def test_roles_choose_the_judged_text() -> None:
    factory = KeywordFactory()
    guard = guard_of(
        "input:\n  checks:\n"
        "    - {type: shieldgemma, id: users, model: m, harms: [{harm: harassment}]}\n"
        "    - {type: shieldgemma, id: all, model: m, roles: [system, user, tool],"
        " harms: [{harm: harassment}]}\n",
        factory,
    )
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "one"},
        {"role": "tool", "content": "   "},  # blank texts are left out
        {"role": "user", "content": "two"},
    ]
    verdict = await guard.check_input(messages)
    assert len(factory.built) == 1  # the same model: one classifier for both checks
    prompts = sorted(item.prompt for call in factory.calls for item in call)
    assert prompts == ["one\n\ntwo", "sys\n\none\n\ntwo"]
    assert [f.check for f in verdict.findings] == ["users", "all"]
    assert {f.path for f in verdict.findings} == {"messages"}


async def test_no_user_text_asks_no_model() -> None:
    factory = KeywordFactory()
    guard = guard_of(f"input:\n  checks:\n    - {SG % 'block'}\n", factory)
    verdict = await guard.check_input([{"role": "system", "content": "hello"}])
    assert verdict.action is Action.ALLOW and verdict.findings == () and factory.calls == []
    assert verdict.classifier == "rules"


async def test_one_classifier_shared_by_both_stages_and_closed_once() -> None:
    factory = KeywordFactory()
    guard = ModelGuard(load_policy("policies/shieldgemma.yaml"), factory)
    assert len(factory.built) == 1 and guard.output_models
    verdict = await guard.check_output("fine words", "a question")
    assert verdict.stage is Stage.OUTPUT and verdict.skipped == ()
    assert len(verdict.findings) == 4 and all(f.action is Action.ALLOW for f in verdict.findings)
    assert factory.calls[0][0] == TextItem("a question", Harm.DANGEROUS_CONTENT, "fine words")
    await guard.aclose()
    await guard.aclose()
    assert factory.built[0].closed


async def test_output_rules_redaction_is_what_the_model_judges() -> None:
    factory = KeywordFactory()
    guard = guard_of(
        f"output:\n  checks:\n    - {{type: pii, types: [email], action: redact}}\n"
        f"    - {SG % 'block'}\n",
        factory,
    )
    verdict = await guard.check_output("write to a@example.com", "q")
    assert verdict.action is Action.REDACT
    assert verdict.redacted_text == "write to [EMAIL]"
    assert factory.calls[0][0].response == "write to [EMAIL]"
    assert guard.redact_output("a@example.com") == "[EMAIL]"


async def test_empty_output_asks_no_model() -> None:
    factory = KeywordFactory()
    guard = guard_of(f"output:\n  checks:\n    - {SG % 'block'}\n", factory)
    assert (await guard.check_output("  ", "q")).findings == ()
    assert factory.calls == []


class WrongAnswers(KeywordClassifier):
    def __init__(self, answer: Any) -> None:
        super().__init__("wrong")
        self.answer = answer

    async def classify(self, items: Sequence[TextItem], timeout_s: float) -> list[float]:
        return self.answer  # type: ignore[no-any-return]


@pytest.mark.parametrize("answer", [[], [0.1, 0.2], [1.5], [float("nan")], ["0.3"], None])
async def test_an_answer_that_is_not_one_probability_per_item_is_an_error(answer: Any) -> None:
    guard = guard_of(f"input:\n  checks:\n    - {SG % 'block'}\n", lambda c: WrongAnswers(answer))
    verdict = await guard.check_input(user("hi"))
    assert verdict.blocked
    assert verdict.reason is not None and verdict.reason.rule == "shieldgemma.error"


async def test_failures_take_on_error_and_are_observed() -> None:
    calls: list[ClassifierCall] = []
    guard = guard_of(
        f"input:\n  checks:\n    - {SG % 'allow'}\n", KeywordFactory("error"), observe=calls.append
    )
    verdict = await guard.check_input(user("hi"))
    assert verdict.action is Action.FLAG and verdict.classifier == "rules+keywords:m"
    (finding,) = verdict.findings
    assert (finding.rule, finding.category, finding.score) == (
        "shieldgemma.error",
        "classifier",
        None,
    )
    assert finding.detail is not None and "ClassifierError: scripted failure" in finding.detail
    (call,) = calls
    assert (call.classifier, call.stage, call.outcome) == ("keywords:m", Stage.INPUT, "error")


async def test_ready_waits_for_classifiers_that_load() -> None:
    class Loading(KeywordClassifier):
        loaded = False

        async def ready(self) -> None:
            self.loaded = True

    built: list[Loading] = []
    guard = guard_of(
        f"input:\n  checks:\n    - {SG % 'block'}\n",
        lambda c: built.append(Loading("loading")) or built[-1],
    )
    await guard.ready()
    assert built[0].loaded


def test_response_prompt_is_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "tool", "content": "data"},
    ]
    assert response_prompt(messages) == "a\n\nb"
    assert response_prompt([{"role": "system", "content": "s"}]) == ""


async def test_a_bounded_rules_verdict_keeps_its_count_through_the_model_checks() -> None:
    guard = guard_of(
        f"input:\n  checks:\n    - {{type: pii, action: redact}}\n    - {SG % 'block'}\n"
    )
    rules = guard.rules.check_input(user("mail a@b.io " * 300)).bounded(100)
    verdict = await guard.check_input(user("mail a@b.io " * 300), rules)
    assert verdict.findings_omitted == 200 and verdict.classifier != "rules"
