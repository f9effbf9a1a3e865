"""The check types a policy can list, one pydantic model each, told apart by `type`.

A check is one rule of a policy: what to look for, with which parameters, and the `action`
its findings take (`block`, `redact` or `flag`). The detection code for each lives in its own
module (`validation`, `sanitize`, `pii`, `credentials`, `injection`, `denylist`); the model
classifiers for `shieldgemma` (text) and `shieldgemma2` (images) come separately and only
their declarations live here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def at(subpath: str, message: str) -> str:
    """A validator's message for a field below the one it validates (`[2].roles`), which
    the loader appends to the error's location."""
    return f"@{subpath}@ {message}"


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    DEVELOPER = "developer"


class PiiType(StrEnum):
    """What the `pii` check can find; each is replaced by `[EMAIL]`, `[PHONE]` ... when redacted."""

    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    SSN = "ssn"
    IP = "ip"
    SECRET = "secret"


class Harm(StrEnum):
    """ShieldGemma's four harm policies (the names its prompt templates use, in snake case)."""

    DANGEROUS_CONTENT = "dangerous_content"
    HARASSMENT = "harassment"
    HATE_SPEECH = "hate_speech"
    SEXUALLY_EXPLICIT = "sexually_explicit"

    @property
    def display_name(self) -> str:
        return _HARM_TITLES[self]


_HARM_TITLES = {
    Harm.DANGEROUS_CONTENT: "Dangerous Content",
    Harm.HARASSMENT: "Harassment",
    Harm.HATE_SPEECH: "Hate Speech",
    Harm.SEXUALLY_EXPLICIT: "Sexually Explicit Information",
}
_HARM_ALIASES = {h.display_name.lower(): h for h in Harm} | {
    "sexually_explicit_information": Harm.SEXUALLY_EXPLICIT
}


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(
        default=None,
        description="Names this check in findings and refusals; defaults to its type. "
        "Required when a stage lists two checks of the same type.",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    roles: list[Role] | None = Field(
        default=None,
        description="Input stage only: the message roles whose text this check reads "
        "(all roles when omitted). E.g. [user, tool] to trust the operator's system prompt.",
    )

    @property
    def key(self) -> str:
        type_: str = getattr(self, "type")  # noqa: B009 - every subclass declares it
        return self.id or type_


class ValidationCheck(_Check):
    """Structure of the messages, as the seed defined it. Input stage only."""

    type: Literal["validation"]
    max_messages: int = Field(
        default=50, ge=1, le=10_000, description="At most this many messages."
    )
    allowed_roles: list[Role] = Field(
        default_factory=lambda: [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL],
        description="Roles a message may have.",
        min_length=1,
    )
    max_parts: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="At most this many content parts over all messages (a string content is "
        "one part, a list content one per item). Counted before any part is read, so a "
        "request of thousands of tiny parts costs nothing to refuse. No cap when omitted.",
    )
    max_total_chars: int | None = Field(
        default=None,
        ge=1,
        description="At most this many characters of text over all messages, whatever their "
        "role: what every later check has to read. No cap when omitted.",
    )
    action: Literal["block", "flag"] = Field(
        default="block", description="`block` answers VALIDATION_ERROR; `flag` only records it."
    )


class LengthCheck(_Check):
    """Caps the size of the text, per message (input) or of the response (output)."""

    type: Literal["length"]
    max_chars: int = Field(default=8192, ge=1, description="At most this many characters per text.")
    max_total_chars: int | None = Field(
        default=None, ge=1, description="Input only: at most this many over all messages (blocks)."
    )
    action: Literal["block", "truncate", "flag"] = Field(
        default="block",
        description="`truncate` cuts each text to `max_chars` and forwards the rest.",
    )


class SanitizeCheck(_Check):
    """Active markup: script and scripted style elements (with their content), iframe,
    object, embed and base tags, event-handler, srcdoc and scripted style attributes, meta
    refresh, and `javascript:` / `vbscript:` / `data:text/html` URLs, also entity-encoded."""

    type: Literal["sanitize"]
    action: Literal["block", "redact", "flag"] = Field(
        default="redact", description="`redact` strips what was found and forwards the rest."
    )


class PiiCheck(_Check):
    """Personal data and secrets: emails, phones, Luhn-valid cards, mod-97-valid IBANs, US
    SSNs, IP addresses, API keys, tokens and private keys."""

    type: Literal["pii"]
    types: list[PiiType] = Field(
        default_factory=lambda: list(PiiType), description="What to look for.", min_length=1
    )
    action: Literal["block", "redact", "flag"] = Field(
        default="redact", description="`redact` replaces each item with `[EMAIL]`, `[CARD]` ..."
    )


class InjectionCheck(_Check):
    """Prompt-injection and jailbreak phrasing, scored 0..1 (noisy-or of matched patterns)."""

    type: Literal["injection"]
    threshold: Probability = Field(
        default=0.8,
        description="Findings scoring at least this take `action`; lower ones are kept "
        "as `allow` findings (near misses).",
    )
    action: Literal["block", "flag"] = Field(default="flag", description="What a finding does.")


class DenyListCheck(_Check):
    """Terms that must not appear, matched after Unicode normalisation (NFKC, casefold,
    invisible characters removed), on word boundaries unless `match` says otherwise."""

    type: Literal["denylist"]
    category: str = Field(
        default="denylist", description="The category findings and refusals name.", max_length=64
    )
    terms: list[Annotated[str, Field(max_length=200)]] = Field(
        description="Words or phrases; case and width do not matter.", min_length=1
    )
    allow: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list,
        description="Exceptions: a term matched inside one of these phrases does not count "
        "(e.g. 'kill * process' lets 'kill a process' through a list holding 'kill'). "
        "`*` stands for one word, in terms too.",
    )
    match: Literal["word", "prefix", "substring"] = Field(
        default="word",
        description="`word`: whole words only ('bomb' does not match 'bombastic'); `prefix`: "
        "words starting with a term; `substring`: anywhere (the seed's behaviour).",
    )
    action: Literal["block", "redact", "flag"] = Field(
        default="block", description="What a finding does."
    )

    @field_validator("terms")
    @classmethod
    def _no_blank_terms(cls, terms: list[str]) -> list[str]:
        for index, term in enumerate(terms):
            if not term.strip():
                raise ValueError(at(f"[{index}]", "blank term"))
        return terms


class HarmThreshold(BaseModel):
    """One ShieldGemma harm policy and, optionally, its own threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    harm: Harm = Field(
        description="dangerous_content, harassment, hate_speech or sexually_explicit "
        "(the titles, e.g. 'Hate Speech', are accepted too)."
    )
    threshold: Probability | None = Field(
        default=None,
        description="P(Yes) at or above which the text violates it; the check's otherwise.",
    )

    @field_validator("harm", mode="before")
    @classmethod
    def _title_or_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            folded = value.strip().lower()
            return _HARM_ALIASES.get(folded, folded.replace(" ", "_").replace("-", "_"))
        return value


class ShieldGemmaCheck(_Check):
    """ShieldGemma harm classification: one forward pass per harm policy, P(Yes) vs threshold.
    Declared here; run by the model classifier, not the rules engine."""

    type: Literal["shieldgemma"]
    model: str = Field(
        default="google/shieldgemma-2b",
        description="Hub id, local folder or `.gguf` file of the weights; with `endpoint`, the "
        "model name the server knows.",
    )
    endpoint: str | None = Field(
        default=None,
        description="Root URL (http://host:port) of an OpenAI-compatible server (vLLM, llama.cpp, "
        "Ollama) serving ShieldGemma, asked through POST /v1/completions with logprobs. "
        "Without it the model runs in-process (the `shieldgemma` extra).",
        pattern=r"^http://",
    )
    api_key_env: str | None = Field(
        default=None,
        description="With `endpoint`: the environment variable holding the server's API key "
        "(sent as a Bearer token). The key itself never goes in a policy file.",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    )
    top_logprobs: int = Field(
        default=10,
        ge=2,
        le=20,
        description="With `endpoint`: how many top log-probabilities to ask for; Yes and No "
        "must be among them (servers cap it: vLLM's --max-logprobs, 20 by default).",
    )
    device: str = Field(
        default="cpu",
        description="In-process only: the torch device (`cpu`, `cuda`, `cuda:1`). Checks naming "
        "the same model and device share one loaded copy.",
        pattern=r"^(cpu|cuda(:\d+)?|mps)$",
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        le=256,
        description="In-process only: at most this many prompts (texts x harms, from all "
        "concurrent requests) per forward pass.",
    )
    harms: list[HarmThreshold] = Field(description="The harm policies to check.", min_length=1)
    threshold: Probability = Field(default=0.5, description="Default threshold for every harm.")
    action: Literal["block", "flag"] = Field(default="block", description="What a violation does.")
    on_error: Literal["block", "allow"] = Field(
        default="block",
        description="When the classifier fails or times out: `block` (fail closed) or `allow`.",
    )
    timeout_s: float = Field(
        default=2.0, gt=0, le=120, description="Give up on the classifier after this."
    )

    @field_validator("harms")
    @classmethod
    def _distinct(cls, harms: list[HarmThreshold]) -> list[HarmThreshold]:
        seen: set[Harm] = set()
        for index, item in enumerate(harms):
            if item.harm in seen:
                raise ValueError(at(f"[{index}].harm", f"{item.harm.value} is listed twice"))
            seen.add(item.harm)
        return harms

    def thresholds(self) -> dict[Harm, float]:
        """Each harm's effective threshold."""
        return {h.harm: self.threshold if h.threshold is None else h.threshold for h in self.harms}


class ImagePolicy(StrEnum):
    """ShieldGemma 2's image policies: the keys of its processor's policy definitions."""

    DANGEROUS = "dangerous"
    SEXUAL = "sexual"
    VIOLENCE = "violence"


class ImagePolicyThreshold(BaseModel):
    """One ShieldGemma 2 image policy and, optionally, its own threshold. A bare policy name
    (`- sexual`) is accepted for `{policy: sexual}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: ImagePolicy = Field(description="dangerous, sexual or violence.")
    threshold: Probability | None = Field(
        default=None,
        description="P(Yes) at or above which the image violates it; the check's otherwise.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"policy": value.strip().lower()}
        return value


class ShieldGemma2Check(_Check):
    """ShieldGemma 2 image classification of the images a request carries (OpenAI `image_url`
    parts, Ollama `images`): one forward pass per (image, policy), P(Yes) vs threshold.
    Input stage only. Declared here; run by the image classifier, not the rules engine."""

    type: Literal["shieldgemma2"]
    model: str = Field(
        default="google/shieldgemma-2-4b-it", description="Hub id or local path of the weights."
    )
    policies: list[ImagePolicyThreshold] = Field(
        default_factory=lambda: [ImagePolicyThreshold(policy=p) for p in ImagePolicy],
        description="The image policies to check (all three when omitted).",
        min_length=1,
    )
    threshold: Probability = Field(default=0.5, description="Default threshold for every policy.")
    action: Literal["block", "flag"] = Field(default="block", description="What a violation does.")
    on_error: Literal["block", "allow"] = Field(
        default="block",
        description="When an image cannot be checked (bad base64, not an image, too large, "
        "fetch failed, more than `max_images`) or the classifier fails or times out: "
        "`block` (fail closed) or `allow`.",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Give up on the classifier after this."
    )
    fetch_urls: bool = Field(
        default=False,
        description="Fetch http(s) image URLs to check them. Off by default: the proxy then "
        "contacts no host a client names; a URL image is not checked, and a finding says so "
        "(see `unfetched_urls`).",
    )
    unfetched_urls: Literal["flag", "block"] = Field(
        default="flag",
        description="What an image URL that is not fetched (`fetch_urls: false`, or not "
        "http/https) does: `flag` records that it was not checked, `block` refuses it.",
    )
    fetch_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="With `fetch_urls`: give up on a URL after this."
    )
    max_image_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        le=100 * 1024 * 1024,
        description="Larger images (decoded, or fetched) are not checked (`on_error`).",
    )
    max_images: int = Field(
        default=8, ge=1, le=256, description="Check at most this many images per request."
    )
    device: str = Field(
        default="cpu",
        description="The torch device (`cpu`, `cuda`, `cuda:1`). Checks naming the same model "
        "and device share one loaded copy.",
        pattern=r"^(cpu|cuda(:\d+)?|mps)$",
    )
    batch_size: int = Field(
        default=12,
        ge=1,
        le=256,
        description="At most this many (image, policy) rows per forward pass.",
    )

    @field_validator("policies")
    @classmethod
    def _distinct(cls, policies: list[ImagePolicyThreshold]) -> list[ImagePolicyThreshold]:
        seen: set[ImagePolicy] = set()
        for index, item in enumerate(policies):
            if item.policy in seen:
                raise ValueError(at(f"[{index}].policy", f"{item.policy.value} is listed twice"))
            seen.add(item.policy)
        return policies

    def thresholds(self) -> dict[ImagePolicy, float]:
        """Each policy's effective threshold."""
        return {
            p.policy: self.threshold if p.threshold is None else p.threshold for p in self.policies
        }


InputCheck = Annotated[
    ValidationCheck
    | LengthCheck
    | SanitizeCheck
    | PiiCheck
    | InjectionCheck
    | DenyListCheck
    | ShieldGemmaCheck
    | ShieldGemma2Check,
    Field(discriminator="type"),
]
OutputCheck = Annotated[
    LengthCheck | SanitizeCheck | PiiCheck | InjectionCheck | DenyListCheck | ShieldGemmaCheck,
    Field(discriminator="type"),
]
CHECK_TYPES = frozenset(
    {
        "validation",
        "length",
        "sanitize",
        "pii",
        "injection",
        "denylist",
        "shieldgemma",
        "shieldgemma2",
    }
)
