"""The value types settings are made of: durations, rate limits, alert rules, webhook receivers.

A leaf: pydantic and the standard library only, nothing else from this package, so that
`monitor.config` is built from these and every layer above it can read them. What each value
*does* lives with its concern: rules are evaluated in `alerts.rules`, receivers get their
payloads in `alerts.webhooks`, rate limits become sliding windows in `proxy.ratelimit`.

Durations and rate-limit periods share one unit table and one parser, `parse_duration`:

- a duration (``window``, ``interval_s``, ``for``...) is a number of seconds, or terms with a
  unit symbol such as ``90s``, ``5m``, ``1h30m``, ``250ms``, ``2d``; a spelled-out unit
  (``5 minutes``) is refused there rather than guessed at;
- a rate limit's period may also spell its unit out, as rates are written: ``100/hour``,
  ``10/minute``, ``1000/day``, ``50/30 min``, ``100/2h``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

Severity = Literal["low", "medium", "high", "critical"]
Comparison = Literal[">", ">=", "<", "<="]
NoData = Literal["ok", "breaching", "keep"]
WebhookKind = Literal["generic", "slack", "alertmanager"]

SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

# The one unit table: each unit's symbol, its length in seconds, and the names a rate limit
# may spell it with.
_UNITS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("ms", 0.001, ()),
    ("s", 1.0, ("sec", "second", "seconds")),
    ("m", 60.0, ("min", "minute", "minutes")),
    ("h", 3600.0, ("hr", "hour", "hours")),
    ("d", 86400.0, ("day", "days")),
)
_BY_SYMBOL = {symbol: seconds for symbol, seconds, _ in _UNITS}
_BY_NAME = _BY_SYMBOL | {name: seconds for _, seconds, names in _UNITS for name in names}
_TERM = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(.*?)\s*$")


def parse_duration(value: object, *, unit_names: bool = False) -> float:
    """Seconds from a number or a string like ``90``, ``90s``, ``5m``, ``1h30m``, ``250ms``.

    `unit_names` also takes spelled-out units (``30 min``, ``1.5 hours``): rate limits ask for
    it; duration settings keep to the symbols. Raises ValueError for anything else, and for a
    negative or infinite duration.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            units = _BY_NAME if unit_names else _BY_SYMBOL
            terms = _TERM.findall(text)
            if (
                not terms
                or "".join(n + u for n, u in terms) != text
                or any(u not in units for _, u in terms)
            ):
                raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h30m)") from None
            seconds = sum(float(n) * units[u] for n, u in terms)
    else:
        raise ValueError("a duration is a number of seconds or a string such as '5m'")
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite and not negative: {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A settings field in seconds that also takes ``"30s"``, ``"5m"``, ``"1h30m"``."""


LOG_SLOTS = 1024  # entries a rate-limit log keeps at most, for limits above this many units


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`amount` units (requests or tokens) per sliding window of `window_s` seconds.

    `window_us`: the window in integer microseconds. `slot_us`: the time resolution a sliding
    log of this limit keeps: 1 µs (every entry exact) up to `LOG_SLOTS` units; above, a
    window's `LOG_SLOTS`-th, so that a log never holds more than about `LOG_SLOTS` entries
    however high the limit. Both are worked out once: the limiter reads them several times a
    request.
    """

    amount: int
    window_s: float
    window_us: int = field(init=False, repr=False, compare=False)
    slot_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.amount < 0 or not self.window_s > 0 or math.isinf(self.window_s):
            raise ValueError(f"invalid rate limit {self.amount}/{self.window_s}s")
        window_us = round(self.window_s * 1_000_000)
        slot_us = 1 if self.amount <= LOG_SLOTS else max(1, window_us // LOG_SLOTS)
        object.__setattr__(self, "window_us", window_us)
        object.__setattr__(self, "slot_us", slot_us)

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`100/hour`, `10/minute`, `5/second`, `1000/day`, `100/2h`, `50/30 min`, `10/1h30m`.

        The period is a duration (`parse_duration`, unit names allowed) that must name its
        unit; without a number it is one of that unit. An amount of 0 refuses everything
        (a blocked key).
        """
        match = _RATE.match(text)
        period = match.group(2) if match else ""
        if period[:1].isalpha():
            period = "1" + period  # "hour" is one hour
        try:
            if match is None or not any(c.isalpha() for c in period):
                raise ValueError(text)
            window_s = parse_duration(period, unit_names=True)
        except ValueError:
            raise ValueError(
                f"invalid rate limit {text!r}: expected '<count>/<period>' such as "
                "'100/hour', '10/minute', '5/second', '1000/day' or '100/2h'"
            ) from None
        if window_s <= 0:
            raise ValueError(f"invalid rate limit {text!r}: the period must be positive")
        return cls(int(match.group(1)), window_s)

    def __str__(self) -> str:
        for name, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if self.window_s == seconds:
                return f"{self.amount}/{name}"
        return f"{self.amount}/{self.window_s:g}s"


class AlertRule(BaseModel):
    """One alert rule, as written in the configuration (`alerts.rules` in monitor.yaml).

    Evaluated by `alerts.rules.evaluate`; the summary fields it can name are listed in
    `alerts.rules.SUMMARY_FIELDS`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", description="unique; the alert's name")
    metric: str = Field(min_length=1, description="the summary field compared")
    comparison: Comparison = Field(description="breaching when `metric <comparison> threshold`")
    threshold: float = Field(description="absolute, or a multiplier of `baseline` when set")
    window: Duration = Field(default=300.0, gt=0, description="the summary's window, seconds")
    severity: Severity = "medium"
    for_: Duration = Field(
        default=0.0,
        alias="for",
        description="breaching this long before it fires (pending until then)",
    )
    resolve_after: Duration | None = Field(
        default=None, description="clear this long before it resolves; None: the tracker's default"
    )
    no_data: NoData = Field(default="ok", description="what a missing value counts as")
    baseline: str | None = Field(default=None, description="summary field the threshold multiplies")
    baseline_floor: float = Field(default=0.0, ge=0, description="lowest baseline used")
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict, description="added to the alert's")
    enabled: bool = True

    @model_validator(mode="after")
    def _finite_threshold(self) -> AlertRule:
        if not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        return self


class WebhookReceiver(BaseModel):
    """One alert receiver, from the configuration (`alerts.webhooks` in monitor.yaml).

    What it is sent is `alerts.webhooks`: the payload of its `kind`, signed with `secret`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="unique; shown in deliveries")
    # A secret: receivers' URLs often carry their token (Slack, PagerDuty bridges).
    url: SecretStr = Field(description="http(s) URL the payload is POSTed to")
    kind: WebhookKind = "generic"
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 signing secret")
    min_severity: Severity = Field(default="low", description="lower severities are not sent here")
    timeout_s: float = Field(default=10.0, gt=0, description="per attempt")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr) -> SecretStr:
        parts = urlsplit(url.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook URL is http:// or https:// with a host")
        return url

    def accepts(self, severity: Severity) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)
