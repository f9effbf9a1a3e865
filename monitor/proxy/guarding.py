"""The guard on the request path: which text of a request it sees, what a verdict does to the
request (refuse it, forward a redacted copy, or only note it), and the output side's settings.

The guard itself (`monitor.guard`) is pure; this module speaks the proxy's language: routes,
payloads, `ProxyError`s.
"""

from __future__ import annotations

from typing import Any

from monitor.errors import ContentFiltered, RequestInvalid, ResponseFiltered
from monitor.guard.engine import Guard
from monitor.guard.loader import PolicyError, load_policy, policy_path
from monitor.guard.policy import Policy, StreamMode
from monitor.guard.verdict import Action, Verdict

POLICY_OFF = frozenset({"off", "none", "disabled"})
_CHAT_ROUTES = ("/v1/chat/completions", "/api/chat")


def resolve_policy(setting: str) -> Policy | None:
    """The policy a `policies` setting names: a file, or a shipped policy by name; None: off."""
    if setting.strip().lower() in POLICY_OFF:
        return None
    path = policy_path(setting)
    policy = load_policy(path)
    if policy.model_checks():
        names = ", ".join(f"{stage}: {check.type}" for stage, check in policy.model_checks())
        raise PolicyError(
            f"{path}: declares model checks ({names}), but the ShieldGemma classifier is not "
            "part of this version yet; use a rules-only policy (default, strict)"
        )
    return policy


def build_guard(setting: str) -> GuardStep | None:
    """The guard a `policies` setting asks for (None: off). Raises `PolicyError`."""
    policy = resolve_policy(setting)
    return GuardStep(policy) if policy is not None else None


def _refusal(verdict: Verdict, stage: str) -> str:
    reason = verdict.reason
    what = f"{reason.category} ({reason.rule})" if reason else "policy"
    score = f", score {reason.score:.2f}" if reason and reason.score is not None else ""
    return f"{stage} blocked by policy '{verdict.policy}': {what}{score}"


class GuardStep:
    """One policy's guard, applied to requests and responses of every protocol."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.guard = Guard(policy)
        streaming = policy.output.streaming
        self.output_enabled = bool(policy.output.checks)
        self.incremental = streaming.mode is StreamMode.INCREMENTAL
        self.every_chars = streaming.every_chars

    def check_request(
        self, route: str, payload: dict[str, Any]
    ) -> tuple[Verdict, dict[str, Any] | None]:
        """The input verdict, and the payload to forward instead when the policy redacted it
        (None otherwise). A blocking verdict is returned like any other: see `input_refusal`.
        """
        chat = route in _CHAT_ROUTES
        messages = payload["messages"] if chat else _prompt_messages(route, payload)
        verdict = self.guard.check_input(messages)
        if verdict.action is not Action.REDACT or verdict.redacted_messages is None:
            return verdict, None
        redacted = dict(payload)
        if chat:
            redacted["messages"] = verdict.redacted_messages
        else:
            _put_prompt(route, redacted, verdict.redacted_messages)
        return verdict, redacted

    @staticmethod
    def input_refusal(verdict: Verdict) -> RequestInvalid | ContentFiltered:
        """The error for a blocking input verdict: message rules are VALIDATION_ERROR."""
        reason = verdict.reason
        if reason is not None and reason.category == "validation":
            return RequestInvalid(reason.detail or "invalid messages", param=reason.path)
        return ContentFiltered(_refusal(verdict, "request"))

    def check_response(self, text: str) -> Verdict:
        return self.guard.check_output(text)

    @staticmethod
    def refusal(verdict: Verdict) -> ResponseFiltered:
        return ResponseFiltered(_refusal(verdict, "response"))


def _prompt_messages(route: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Completions and generate requests as messages, so one set of input checks serves all."""
    messages: list[dict[str, Any]] = []
    if route == "/api/generate" and isinstance(payload.get("system"), str):
        messages.append({"role": "system", "content": payload["system"]})
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        prompt = "\n".join(p for p in prompt if isinstance(p, str))
    messages.append({"role": "user", "content": prompt if isinstance(prompt, str) else ""})
    return messages


def _put_prompt(route: str, payload: dict[str, Any], messages: list[Any]) -> None:
    if route == "/api/generate" and isinstance(payload.get("system"), str):
        payload["system"] = messages[0]["content"]
    payload["prompt"] = messages[-1]["content"]
