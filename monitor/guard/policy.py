"""A guard policy: the typed form of one `policies/*.yaml` document.

A policy lists, per stage (`input`, `output`), the checks that run, in order. Each check is
one entry of `checks`, told apart by its `type`; every field is described here, and unknown
fields are refused so that a typo cannot silently disable a check. Reading files and turning
validation errors into `file: field.path: message` lives in `monitor.guard.loader`.

Checks of type `shieldgemma` are declared and validated here but run by the model classifier,
not by the rules engine (`monitor.guard.engine.Guard` lists them as skipped).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.guard.checks import InputCheck, OutputCheck, ShieldGemmaCheck, at


class StreamMode(StrEnum):
    """How a streamed response is guarded."""

    BUFFERED = "buffered"
    INCREMENTAL = "incremental"


class Streaming(BaseModel):
    """How the output stage treats streamed responses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: StreamMode = Field(
        default=StreamMode.BUFFERED,
        description="`buffered`: nothing reaches the client until the whole response passed "
        "the output checks. `incremental`: the text seen so far is checked every "
        "`every_chars` characters and at the end; on a violation the stream is ended with "
        "finish_reason `content_filter`.",
    )
    every_chars: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=256,
        description="With `incremental`, check again after this many new characters.",
    )


def _unique_ids(checks: list[Any]) -> list[Any]:
    seen: dict[str, int] = {}
    for index, check in enumerate(checks):
        if check.key in seen:
            raise ValueError(
                at(
                    f"[{index}].id",
                    f"the same id {check.key!r} as checks[{seen[check.key]}]; "
                    "give each check of the same type its own `id`",
                )
            )
        seen[check.key] = index
    return checks


class InputStage(BaseModel):
    """The checks run on a request's messages before it is forwarded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: list[InputCheck] = Field(
        default_factory=list,
        description="Run in this order; each sees the text as earlier checks redacted it. "
        "The first check whose findings block ends the stage.",
    )

    _unique = field_validator("checks")(_unique_ids)


class OutputStage(BaseModel):
    """The checks run on a response's text before (or while) it reaches the client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: list[OutputCheck] = Field(
        default_factory=list,
        description="Run in this order, like the input checks (no message validation here).",
    )
    streaming: Streaming = Field(
        default=Streaming(), description="How streamed responses are guarded."
    )

    _unique = field_validator("checks")(_unique_ids)

    @field_validator("checks")
    @classmethod
    def _input_only_fields(cls, checks: list[Any]) -> list[Any]:
        for index, check in enumerate(checks):
            if check.roles is not None:
                raise ValueError(at(f"[{index}].roles", "only input checks read message roles"))
            if getattr(check, "max_total_chars", None) is not None:
                raise ValueError(at(f"[{index}].max_total_chars", "only applies to input"))
        return checks


class Policy(BaseModel):
    """One guard policy: what runs on input and on output, and what each finding does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(default=1, description="Policy format version; only 1 exists.")
    name: str = Field(
        default="",
        description="How verdicts and refusals name this policy; defaults to the file's stem.",
        max_length=64,
    )
    description: str = Field(default="", description="What this policy is for, for operators.")
    input: InputStage = Field(default_factory=InputStage, description="The input stage.")
    output: OutputStage = Field(default_factory=OutputStage, description="The output stage.")

    @model_validator(mode="after")
    def _named(self) -> Policy:
        if self.name and not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("name must be letters, digits, '-' or '_'")
        return self

    def model_checks(self) -> list[tuple[str, ShieldGemmaCheck]]:
        """The classifier checks of both stages, as (stage, check): what needs a model."""
        found: list[tuple[str, ShieldGemmaCheck]] = []
        for stage, checks in (("input", self.input.checks), ("output", self.output.checks)):
            found += [(stage, c) for c in checks if isinstance(c, ShieldGemmaCheck)]
        return found
