"""The guard on the request path: which text of a request it sees, what a verdict does to the
request (refuse it, forward a redacted copy, or only note it), and the output side's settings.

The guard itself (`monitor.guard`) is pure; this module speaks the proxy's language: routes,
payloads, `ProxyError`s. A `GuardStep` owns its policy's classifiers: the handler counts the
requests using it, so a policy reload can close the old classifiers once the last of them ends.

The rules are synchronous, and the event loop serves every other request and stream while
they run: a text of `OFF_LOOP_CHARS` or more is checked in the step's own process instead
(`RulesProcess`: a thread would still take the GIL from the loop; one process, so large
requests queue behind each other rather than behind the loop). The hop costs about 70 us
(a 4,100-character prompt: 220 us there, 150 us here), more than the check of a short text.
"""

from __future__ import annotations

from typing import Any

from monitor.errors import ContentFiltered, RequestInvalid, ResponseFiltered
from monitor.guard.images.fetch import fetch_image
from monitor.guard.images.guard import ImageGuard
from monitor.guard.images.parts import ImageRef, images_in_messages, images_in_prompt
from monitor.guard.incremental import IncrementalCheck
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
from monitor.proxy.rules_process import RulesProcess

POLICY_OFF = frozenset({"off", "none", "disabled"})
# Texts this long or longer are checked off the event loop. The worst shapes found for the
# rules (digit groups for the PII scanners, markup, Unicode to fold) cost up to 1.7 us a
# character: 2-3 ms just under this (under 10 on a busy machine), where an ordinary 2 KB
# prompt costs 0.1 ms. An incremental stream's window (2,048 + `every_chars`) stays on the loop.
OFF_LOOP_CHARS = 4096
# Findings listed per verdict in a record (see `Verdict.bounded`): a hostile request's
# thousands cost milliseconds on the event loop to list and room in the store. The rules
# process returns no more than this either (copying them back would cost as much).
RECORDED_FINDINGS = 100
_NEVER = 1 << 62  # once closed: every text on the loop
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
        # its child starts with the first large text
        self._process = RulesProcess(guard.rules, RECORDED_FINDINGS)
        self._off_loop = OFF_LOOP_CHARS  # texts this long go to the process

    async def check_request(
        self, route: str, payload: dict[str, Any], size: int = 0
    ) -> tuple[Verdict, dict[str, Any] | None]:
        """The input verdict, and the payload to forward instead when the policy redacted it
        (None otherwise). A blocking verdict is returned like any other: see `input_refusal`.
        `size`: the request body's length in bytes, which bounds its text's characters; from
        `OFF_LOOP_CHARS` on, the rules run off the event loop.
        """
        chat = route in _CHAT_ROUTES
        messages = payload["messages"] if chat else _prompt_messages(route, payload)
        if size < self._off_loop:
            rules = self.guard.rules.check_input(messages)
        else:
            rules = await self._process.check_input(messages)
        verdict = await self.images.check_input(
            self.guard.check_input(messages, rules), self._images(route, payload)
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

    async def check_response(self, text: str, prompt: str, *, rewrite: bool = True) -> Verdict:
        """The output verdict on `text` (all of a response, or a window of a stream: see
        `Guard.check_output` for `rewrite`)."""
        if len(text) < self._off_loop:
            rules = self.guard.rules.check_output(text, rewrite=rewrite)
        else:
            rules = await self._process.check_output(text, rewrite=rewrite)
        return await self.guard.check_output(text, prompt, rules)

    def stream_check(self, prompt: str) -> IncrementalCheck:
        """The incremental checks of one streamed response (`incremental` mode)."""

        async def check(window: str, rewrite: bool) -> Verdict:
            return await self.check_response(window, prompt, rewrite=rewrite)

        return IncrementalCheck(self.policy, self.every_chars, check)

    async def redactions(self, texts: list[str]) -> dict[str, str]:
        """Each of `texts` as the output rules redact it (a reply's choices, to rewrite it),
        from `OFF_LOOP_CHARS` on in the rules process."""
        redacted: dict[str, str] = {}
        for text in texts:
            if text in redacted:
                continue
            if len(text) < self._off_loop:
                redacted[text] = self.guard.redact_output(text)
            else:
                verdict = await self._process.check_output(text, rewrite=True)
                redacted[text] = verdict.redacted_text or text
        return redacted

    @staticmethod
    def refusal(verdict: Verdict) -> ResponseFiltered:
        return ResponseFiltered(_refusal(verdict, "response"))

    async def ready(self) -> None:
        await self.guard.ready()
        await self.images.ready()

    async def aclose(self) -> None:
        # idle: the handler closes a step nobody uses; a request that comes late is still
        # checked, on the loop
        self._off_loop = _NEVER
        await self._process.aclose()
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
