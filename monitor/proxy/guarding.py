"""The guard on the request path: which text of a request it sees, what a verdict does to the
request (refuse it, forward a redacted copy, or only note it), and the output side's settings.

The guard itself (`monitor.guard`) is pure; this module speaks the proxy's language: routes,
payloads, `ProxyError`s. A `GuardStep` owns its policy's classifiers: the handler counts the
requests using it, so a policy reload can close the old classifiers once the last of them ends.
"""

from __future__ import annotations

from typing import Any

from monitor.errors import ContentFiltered, RequestInvalid, ResponseFiltered
from monitor.guard.images.fetch import fetch_image
from monitor.guard.images.guard import ImageGuard
from monitor.guard.images.parts import ImageRef, images_in_messages, images_in_prompt
from monitor.guard.loader import PolicyError, load_policy, policy_path
from monitor.guard.model_guard import (
    CLASSIFIER_CATEGORY,
    ClassifierFactory,
    ModelGuard,
    Observer,
    response_prompt,
)
from monitor.guard.policy import Policy, StreamMode
from monitor.guard.verdict import Action, Verdict

POLICY_OFF = frozenset({"off", "none", "disabled"})
_CHAT_ROUTES = ("/v1/chat/completions", "/api/chat")
# What the rules engine, `ModelGuard` and `ImageGuard` run; any other type is refused at load.
RUNNABLE_CHECKS = frozenset(
    {"validation", "length", "sanitize", "pii", "injection", "denylist"}
    | {"shieldgemma", "shieldgemma2"}
)


def resolve_policy(setting: str) -> Policy | None:
    """The policy a `policies` setting names: a file, or a shipped policy by name; None: off."""
    if setting.strip().lower() in POLICY_OFF:
        return None
    path = policy_path(setting)
    policy = load_policy(path)
    unrun = [
        f"{stage}: {check.type}"
        for stage, checks in (("input", policy.input.checks), ("output", policy.output.checks))
        for check in checks
        if check.type not in RUNNABLE_CHECKS
    ]
    if unrun:  # a check nothing runs must not pass for a guard
        raise PolicyError(
            f"{path}: declares checks this version cannot run ({', '.join(unrun)}); "
            "remove them or use a policy without them"
        )
    return policy


def build_guard(
    setting: str, classifiers: ClassifierFactory | None = None, observe: Observer | None = None
) -> GuardStep | None:
    """The guard a `policies` setting asks for (None: off), its classifiers built by
    `classifiers` (default: the ShieldGemma ones). Raises `PolicyError`, also when a
    classifier cannot be built (missing extra, unknown model)."""
    policy = resolve_policy(setting)
    if policy is None:
        return None
    try:
        return GuardStep(ModelGuard(policy, classifiers, observe))
    except Exception as exc:  # loading a model fails in many ways; the operator gets one line
        raise PolicyError(f"{setting}: cannot build the policy's classifiers: {exc}") from exc


def _refusal(verdict: Verdict, stage: str) -> str:
    reason = verdict.reason
    what = f"{reason.category} ({reason.rule})" if reason else "policy"
    score = f", score {reason.score:.2f}" if reason and reason.score is not None else ""
    why = f": {reason.detail}" if reason and reason.category == CLASSIFIER_CATEGORY else ""
    return f"{stage} blocked by policy '{verdict.policy}': {what}{score}{why}"


class GuardStep:
    """One policy's guard, applied to requests and responses of every protocol."""

    def __init__(self, guard: ModelGuard) -> None:
        self.guard = guard
        self.policy = guard.policy
        streaming = self.policy.output.streaming
        self.output_enabled = bool(self.policy.output.checks)
        self.incremental = streaming.mode is StreamMode.INCREMENTAL
        self.every_chars = streaming.every_chars
        self.users = 0  # requests in flight with this guard (kept by the handler)
        self.retired = False  # replaced by a reload: close once `users` is back to 0
        self.images = ImageGuard(self.policy, fetch=fetch_image)  # shieldgemma2 checks

    async def check_request(
        self, route: str, payload: dict[str, Any]
    ) -> tuple[Verdict, dict[str, Any] | None]:
        """The input verdict, and the payload to forward instead when the policy redacted it
        (None otherwise). A blocking verdict is returned like any other: see `input_refusal`.
        """
        chat = route in _CHAT_ROUTES
        messages = payload["messages"] if chat else _prompt_messages(route, payload)
        verdict = await self.images.check_input(
            self.guard.check_input(messages), self._images(route, payload)
        )
        if verdict.action is not Action.REDACT or verdict.redacted_messages is None:
            return verdict, None
        redacted = dict(payload)
        if chat:
            redacted["messages"] = verdict.redacted_messages
        else:
            _put_prompt(route, redacted, verdict.redacted_messages)
        return verdict, redacted

    def response_prompt(self, route: str, forwarded: dict[str, Any]) -> str:
        """What the output stage's model checks take as the prompt of the response: the last
        user text of the request as forwarded (redacted). Empty when no model needs it."""
        if not self.guard.output_models:
            return ""
        if route in _CHAT_ROUTES:
            return response_prompt(forwarded["messages"])
        prompt = forwarded.get("prompt")
        if isinstance(prompt, list):
            prompt = "\n".join(p for p in prompt if isinstance(p, str))
        return prompt if isinstance(prompt, str) else ""

    @staticmethod
    def input_refusal(verdict: Verdict) -> RequestInvalid | ContentFiltered:
        """The error for a blocking input verdict: message rules are VALIDATION_ERROR."""
        reason = verdict.reason
        if reason is not None and reason.category == "validation":
            return RequestInvalid(reason.detail or "invalid messages", param=reason.path)
        return ContentFiltered(_refusal(verdict, "request"))

    async def check_response(self, text: str, prompt: str) -> Verdict:
        """The output verdict on `text` (all of a response, or what was streamed so far)."""
        return await self.guard.check_output(text, prompt)

    def redact_response(self, text: str) -> str:
        return self.guard.redact_output(text)

    @staticmethod
    def refusal(verdict: Verdict) -> ResponseFiltered:
        return ResponseFiltered(_refusal(verdict, "response"))

    async def ready(self) -> None:
        await self.guard.ready()
        await self.images.ready()

    async def aclose(self) -> None:
        try:
            await self.guard.aclose()
        finally:
            await self.images.aclose()

    def _images(self, route: str, payload: dict[str, Any]) -> list[ImageRef]:
        """The images of a request, for the image checks (none without one)."""
        if not self.images.enabled:
            return []
        if route in _CHAT_ROUTES:
            return images_in_messages(payload["messages"], self.images.max_image_bytes)
        if route == "/api/generate":
            return images_in_prompt(payload, self.images.max_image_bytes)
        return []


def _prompt_fields(route: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, role) pairs of a completions or generate request whose text reaches the
    model: Ollama's `system` and `template` (a prompt template with its own text), the prompt,
    and the `suffix` both APIs append after the generated text."""
    fields: list[tuple[str, str]] = []
    if route == "/api/generate":
        if isinstance(payload.get("system"), str):
            fields.append(("system", "system"))
        if isinstance(payload.get("template"), str):  # the client's own prompt format and text
            fields.append(("template", "user"))
    fields.append(("prompt", "user"))
    if isinstance(payload.get("suffix"), str):
        fields.append(("suffix", "user"))
    return fields


def _prompt_messages(route: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Completions and generate requests as messages, so one set of input checks serves all."""
    messages: list[dict[str, Any]] = []
    for field, role in _prompt_fields(route, payload):
        text = payload.get(field)
        if isinstance(text, list):
            text = "\n".join(p for p in text if isinstance(p, str))
        messages.append({"role": role, "content": text if isinstance(text, str) else ""})
    return messages


def _put_prompt(route: str, payload: dict[str, Any], messages: list[Any]) -> None:
    for (field, _), message in zip(_prompt_fields(route, payload), messages, strict=True):
        payload[field] = message["content"]
