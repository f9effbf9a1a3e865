"""A policy's whole guard: the rules engine, then the policy's ShieldGemma checks.

Per stage, the deterministic rules run first (`monitor.guard.engine.Guard`, microseconds);
a rules block ends the stage and no model is asked. Otherwise every `shieldgemma` check of
the stage asks its classifier one `classify` call (one `TextItem` per harm), the checks of a
stage concurrently, and all findings merge into one `Verdict` per stage: the strongest
action wins, `classifier` names what ran (`rules+shieldgemma:google/shieldgemma-2b`), and
`latency_us` covers both. Model checks run after every rule whatever their place in the list,
so they judge the text as the rules redacted it.

What a model judges (ShieldGemma's template takes a user prompt, and a response to it):

- input: the texts of the messages whose role the check reads (`roles`; the `user` messages
  when omitted, so an operator's system prompt is not judged as the user's), joined by blank
  lines: the whole conversation the client sent, not only its last turn, since a client can
  write any history it likes.
- output: the response (for incremental streams, the window of it each check reads: see
  `monitor.guard.incremental`), with the last user message of the forwarded request as its
  prompt.

Scores become findings: rule `shieldgemma.<harm>`, category the harm, score P(Yes); the
check's action when the score reaches that harm's threshold, `allow` otherwise (a near miss,
kept for tuning). A classifier that fails (`ClassifierError`, anything else it raises, a score
that is not a probability) or does not answer within `timeout_s` takes the check's `on_error`:
`block` gives a blocking finding, `allow` a `flag` finding, so the record shows the request
went through unjudged. Either way the finding's rule is `shieldgemma.error` or
`shieldgemma.timeout`, its category `classifier`.
"""

from __future__ import annotations

import asyncio
import logging
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.guard.checks import Role, ShieldGemmaCheck
from monitor.guard.classifier import ClassifierError, TextClassifier, TextItem
from monitor.guard.engine import Guard
from monitor.guard.messages import segments
from monitor.guard.policy import Policy
from monitor.guard.verdict import Action, Finding, Stage, Verdict, strongest

log = logging.getLogger(__name__)

ClassifierFactory = Callable[[ShieldGemmaCheck], TextClassifier]
"""Builds the classifier a check needs (loads the model, or opens the connection)."""

CLASSIFIER_CATEGORY = "classifier"  # the category of on_error findings
_DEFAULT_ROLES = frozenset({Role.USER.value})
# The fields of a shieldgemma check the guard itself interprets; all the others (the model,
# and whatever says where or how it runs) identify the classifier, so checks that agree on
# them share one classifier (one model in memory for input and output).
_GUARD_FIELDS = frozenset({"id", "roles", "harms", "threshold", "action", "on_error", "timeout_s"})


@dataclass(frozen=True, slots=True)
class ClassifierCall:
    """One `classify` call, for metrics: `outcome` is `ok`, `error` or `timeout`."""

    classifier: str
    stage: Stage
    outcome: str
    seconds: float


Observer = Callable[[ClassifierCall], None]


def default_classifier_factory() -> ClassifierFactory:
    """The ShieldGemma classifiers (in-process transformers, or a remote server when the check
    names an `endpoint`) from the process-wide shared set; the composition root keeps its
    own `TextClassifiers` instead. Imported only when a policy needs a model."""
    from monitor.guard.shieldgemma.classifiers import build_text_classifier

    return build_text_classifier


class ModelCheck:
    """One `shieldgemma` check bound to its classifier: text in, findings out."""

    def __init__(self, check: ShieldGemmaCheck, classifier: TextClassifier, stage: Stage) -> None:
        self.check = check
        self.classifier = classifier
        self.stage = stage
        self.key = check.key
        self.thresholds = check.thresholds()
        self.roles = frozenset(r.value for r in check.roles) if check.roles else _DEFAULT_ROLES

    async def run(
        self, prompt: str, response: str | None, path: str | None, observe: Observer | None
    ) -> list[Finding]:
        """Score `prompt` (input) or `response` to `prompt` (output) against every harm."""
        items = [TextItem(prompt, harm, response) for harm in self.thresholds]
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with asyncio.timeout(self.check.timeout_s):
                answer = await self.classifier.classify(items, self.check.timeout_s)
            scores = _probabilities(answer, len(items))
        except TimeoutError:
            outcome = "timeout"
            return [self._failed("timeout", f"no answer within {self.check.timeout_s:g} s", path)]
        except ClassifierError as exc:
            outcome = "error"
            log.warning("%s failed (%s stage): %s", self.classifier.name, self.stage.value, exc)
            return [self._failed("error", _describe(exc), path)]
        except Exception as exc:  # a defect in the classifier: logged, and on_error decides
            outcome = "error"
            log.exception("%s raised (%s stage)", self.classifier.name, self.stage.value)
            return [self._failed("error", _describe(exc), path)]
        finally:
            if observe is not None:
                seconds = time.perf_counter() - started
                observe(ClassifierCall(self.classifier.name, self.stage, outcome, seconds))
        action = Action(self.check.action)
        findings = []
        for item, score in zip(items, scores, strict=True):
            threshold = self.thresholds[item.harm]
            findings.append(
                Finding(
                    f"shieldgemma.{item.harm.value}",
                    item.harm.value,
                    action if score >= threshold else Action.ALLOW,
                    self.key,
                    path,
                    score=score,
                    detail=f"P(Yes) {score:.3f}, threshold {threshold:g}",
                )
            )
        return findings

    def _failed(self, kind: str, why: str, path: str | None) -> Finding:
        action = Action.BLOCK if self.check.on_error == "block" else Action.FLAG
        detail = f"classifier {kind}: {why}; on_error: {self.check.on_error}"
        return Finding(
            f"shieldgemma.{kind}", CLASSIFIER_CATEGORY, action, self.key, path, detail=detail
        )


class ModelGuard:
    """One policy's guard with its classifiers. Build once per policy, share across requests;
    `aclose()` releases the classifiers once no request uses it any more."""

    def __init__(
        self,
        policy: Policy,
        classifiers: ClassifierFactory | None = None,
        observe: Observer | None = None,
    ) -> None:
        self.policy = policy
        self.rules = Guard(policy)
        self.observe = observe
        shared: dict[str, TextClassifier] = {}
        factory = classifiers
        checks: dict[str, list[ModelCheck]] = {"input": [], "output": []}
        for stage, check in policy.model_checks():
            if not isinstance(check, ShieldGemmaCheck):
                continue  # image checks have a classifier of their own
            if factory is None:
                factory = default_classifier_factory()
            key = _classifier_key(check)
            if key not in shared:
                shared[key] = factory(check)
            checks[stage].append(ModelCheck(check, shared[key], Stage(stage)))
        self.classifiers: list[TextClassifier] = list(shared.values())
        self._input = checks["input"]
        self._output = checks["output"]
        # the rules engine lists model checks as skipped; here they run
        self._input_keys = frozenset(c.key for c in self._input)
        self._output_keys = frozenset(c.key for c in self._output)

    @property
    def output_models(self) -> bool:
        """Whether the output stage asks a model (and so needs the request's prompt)."""
        return bool(self._output)

    async def check_input(self, messages: Any, rules: Verdict | None = None) -> Verdict:
        """The rules, then the model checks, over a request's messages. `rules`: the rules'
        verdict when the caller ran them already (off the event loop, for a large request)."""
        verdict = self.rules.check_input(messages) if rules is None else rules
        if verdict.blocked or not self._input:
            return verdict.without_skipped(self._input_keys)
        judged = messages if verdict.redacted_messages is None else verdict.redacted_messages
        texts = segments(judged)
        runs = []
        for check in self._input:
            prompt = "\n\n".join(s.text for s in texts if s.role in check.roles and s.text.strip())
            if prompt:
                runs.append((check, check.run(prompt, None, "messages", self.observe)))
        return await self._merge(verdict, runs, self._input_keys)

    async def check_output(self, text: str, prompt: str, rules: Verdict | None = None) -> Verdict:
        """The rules, then the model checks, over a response (or the window of it an
        incremental check reads); `prompt` is what it answers (see `response_prompt`), `rules`
        the rules' verdict when the caller ran them already."""
        verdict = self.rules.check_output(text) if rules is None else rules
        if verdict.blocked or not self._output or not text.strip():
            return verdict.without_skipped(self._output_keys)
        judged = verdict.redacted_text if verdict.redacted_text is not None else text
        runs = [(c, c.run(prompt, judged, None, self.observe)) for c in self._output]
        return await self._merge(verdict, runs, self._output_keys)

    async def ready(self) -> None:
        """Wait until every classifier can answer (an in-process model loads in the
        background once built); raises `ClassifierError` when one never will."""
        for classifier in self.classifiers:
            wait = getattr(classifier, "ready", None)  # optional: remote ones are ready at once
            if wait is not None:
                await wait()

    def redact_output(self, text: str) -> str:
        """`text` as the output rules redact it (models only block or flag)."""
        return self.rules.check_output(text).redacted_text or text

    async def aclose(self) -> None:
        """Release every classifier (each is closed even when another fails to close)."""
        classifiers, self.classifiers = self.classifiers, []
        results = await asyncio.gather(*(c.aclose() for c in classifiers), return_exceptions=True)
        for classifier, result in zip(classifiers, results, strict=True):
            if isinstance(result, BaseException):
                log.error("closing %s failed: %r", classifier.name, result)

    async def _merge(
        self, rules: Verdict, runs: list[tuple[ModelCheck, Any]], ran: frozenset[str]
    ) -> Verdict:
        started = time.perf_counter_ns()
        results: Sequence[list[Finding]] = await asyncio.gather(*(run for _, run in runs))
        model_us = (time.perf_counter_ns() - started) // 1000
        found = [f for findings in results for f in findings]
        findings = rules.findings + tuple(found)
        action = strongest(f.action for f in findings)
        names = dict.fromkeys(check.classifier.name for check, _ in runs)
        return Verdict(
            rules.stage,
            rules.policy,
            action,
            findings,
            redacted_text=rules.redacted_text if action is Action.REDACT else None,
            redacted_messages=rules.redacted_messages if action is Action.REDACT else None,
            latency_us=rules.latency_us + model_us,
            classifier="+".join([rules.classifier, *names]),
            skipped=rules.without_skipped(ran).skipped,
            findings_omitted=rules.findings_omitted,
        )


def response_prompt(messages: Any) -> str:
    """The prompt a response answers, for the output stage's model checks: the text of the
    last user message (its text parts joined by blank lines)."""
    texts = [s for s in segments(messages) if s.role == Role.USER.value]
    if not texts:
        return ""
    last = texts[-1].message
    return "\n\n".join(s.text for s in texts if s.message == last)


def _classifier_key(check: ShieldGemmaCheck) -> str:
    return check.model_dump_json(exclude=set(_GUARD_FIELDS))


def _probabilities(answer: Any, expected: int) -> list[float]:
    """The classifier's answer as plain floats, or `ClassifierError` when it is not one
    probability per item (a wrong count would pair scores with the wrong harms)."""
    if not isinstance(answer, Sequence) or len(answer) != expected:
        count = len(answer) if isinstance(answer, Sequence) else type(answer).__name__
        raise ClassifierError(f"expected {expected} scores, got {count}")
    scores = []
    for score in answer:
        if not isinstance(score, numbers.Real) or not 0.0 <= float(score) <= 1.0:
            raise ClassifierError(f"a score is not a probability: {score!r}")
        scores.append(float(score))
    return scores


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__
