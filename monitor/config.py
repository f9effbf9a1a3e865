"""Settings: `monitor.yaml` (or `--config FILE`) and `MONITOR_*` environment variables, which win.

Built once by the CLI (or by a test) and passed to `create_app`; nothing reads the environment
after that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from monitor.alerts.rules import AlertRule, Duration, default_rules
from monitor.alerts.webhooks import WebhookReceiver
from monitor.proxy.ratelimit import RateLimit

DEFAULT_CONFIG_FILE = "monitor.yaml"
RATE_LIMIT_OFF = frozenset({"off", "none", "0", "false", "disabled"})


class SettingsError(Exception):
    """Raised when the settings cannot be loaded; the message names the file or field."""


Scorer = Literal["heuristic", "embedding", "judge", "guard"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSettings(_Section):
    """Host, process and GPU sampling (`probes:` in monitor.yaml, MONITOR_PROBES__*)."""

    enabled: bool = Field(
        default=True, description="Sample the host, this process, the backend, GPUs."
    )
    interval_s: Duration = Field(default=10.0, gt=0, description="Seconds between samples.")
    backend_pid: int | None = Field(default=None, ge=1, description="The backend process, by pid.")
    backend_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The backend process, by the TCP port it listens on.",
    )
    gpu: bool = Field(
        default=True, description="Sample NVIDIA GPUs through NVML where there are any."
    )


class HealthSettings(_Section):
    """The periodic synthetic request to the backend (`health:`, MONITOR_HEALTH__*)."""

    enabled: bool = Field(default=True, description="Check the backend periodically.")
    interval_s: Duration = Field(default=30.0, gt=0, description="Seconds between checks.")
    timeout_s: Duration = Field(
        default=30.0, gt=0, description="A check slower than this is unhealthy."
    )
    degraded_after_s: Duration = Field(
        default=5.0, gt=0, description="A check slower than this is degraded (the seed's 5 s)."
    )
    model: str | None = Field(
        default=None, description="Model name for the check; the backend's default."
    )
    max_tokens: int = Field(default=4, ge=1, le=64, description="Tokens the check asks for.")


class BackendMetricsSettings(_Section):
    """Scraping the backend's Prometheus metrics (vLLM `/metrics`, llama.cpp `--metrics`)."""

    enabled: bool = Field(default=False, description="Scrape the backend's metrics.")
    path: str = Field(default="/metrics", description="Path on the backend URL.")
    interval_s: Duration = Field(default=15.0, gt=0, description="Seconds between scrapes.")


class QualitySettings(_Section):
    """Scoring a sample of completed requests, off the request path (`quality:`)."""

    sample_rate: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of successful requests scored (0 turns it off).",
    )
    scorers: list[Scorer] = Field(
        default_factory=lambda: list[Scorer](["heuristic", "guard"]),
        description="heuristic (the seed's four scores), embedding (all-MiniLM-L6-v2, the "
        "`quality` extra), judge (the backend Gemma rates the answer 1-5), guard (safety "
        "from the guard's findings on the request).",
    )
    queue_size: int = Field(
        default=1000, ge=1, description="Requests waiting to be scored, at most."
    )
    judge_model: str | None = Field(default=None, description="Model name the judge asks for.")


class AlertSettings(_Section):
    """Alert rules, evaluation, and webhook receivers (`alerts:` in monitor.yaml)."""

    enabled: bool = Field(default=True, description="Evaluate rules and deliver notifications.")
    interval_s: Duration = Field(default=15.0, gt=0, description="Seconds between evaluations.")
    default_rules: bool = Field(
        default=True, description="Start from the built-in rules (the seed's and the extras)."
    )
    rules: list[AlertRule] = Field(
        default_factory=list,
        description="More rules; one with a built-in rule's name replaces it.",
    )
    resolve_after_s: Duration = Field(
        default=60.0, ge=0, description="Clear this long before a firing alert resolves."
    )
    webhooks: list[WebhookReceiver] = Field(
        default_factory=list, description="Receivers of firing and resolved notifications."
    )
    retry_base_s: float = Field(
        default=1.0, gt=0, description="First retry delay bound (full jitter)."
    )
    retry_cap_s: float = Field(
        default=300.0, gt=0, description="Longest delay between two attempts."
    )
    give_up_after_s: Duration = Field(
        default=86400.0, gt=0, description="A notification undelivered this long is marked failed."
    )
    external_url: str = Field(
        default="", description="This monitor's public URL, for links in notifications."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MONITOR_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # where the proxy listens
    host: str = Field("127.0.0.1", description="Address the proxy binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the proxy listens on.")

    # the upstream Gemma server
    backend_url: AnyHttpUrl = Field(
        AnyHttpUrl("http://127.0.0.1:8080"),
        description="Base URL of the upstream server, without /v1 (a trailing /v1 is removed).",
    )
    backend_protocol: Literal["openai", "ollama"] = Field(
        "openai",
        description="What the backend speaks: 'openai' (vLLM, llama.cpp, TGI) or 'ollama'. "
        "Ollama clients in front of an OpenAI backend are translated; OpenAI clients in front "
        "of Ollama use Ollama's own /v1 endpoints.",
    )
    backend_name: str | None = Field(None, description="Label stored with each record.")
    backend_api_key: str | None = Field(
        None, description="Sent upstream as 'Authorization: Bearer ...' when set."
    )
    forward_client_authorization: bool = Field(
        False, description="Forward the client's Authorization header upstream."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Upstream connect timeout.")
    read_timeout_s: float = Field(
        120.0, gt=0, description="Longest wait for the next upstream byte (first token included)."
    )
    max_connections: int = Field(512, ge=1, description="Upstream connection pool size.")

    # admission
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Client API keys (comma-separated in MONITOR_API_KEYS). When set, a request "
        "without one of them gets 401.",
    )
    user_header: str | None = Field(
        None,
        description="Header naming the end user (e.g. x-user-id): the principal when the "
        "request carries no API key.",
    )
    rate_limit: str = Field(
        "100/hour",
        description="Requests per principal per sliding window, e.g. 100/hour, 10/minute; "
        "'off' disables rate limiting.",
    )
    token_budget: str | None = Field(
        None, description="Optional tokens per principal per window, e.g. 100000/hour."
    )
    rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description="Per-principal request limits, by principal id (sha256 of the key, 16 hex).",
    )
    redis_url: str | None = Field(
        None, description="Redis for rate-limit windows shared by replicas; in memory without it."
    )
    rate_limit_fail_open: bool = Field(
        True, description="When Redis is unreachable: allow (true) or refuse (false) requests."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for /admin/*; the admin API is off without it."
    )

    @field_validator(
        "admin_token", "token_budget", "redis_url", "user_header", "backend_api_key", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `MONITOR_X=` (as compose writes an unset ${VAR:-}) means "not set", not "empty"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("rate_limit", "token_budget")
    @classmethod
    def _check_limit(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in RATE_LIMIT_OFF:
            RateLimit.parse(value)  # raises ValueError naming the string
        return value

    @field_validator("rate_limits")
    @classmethod
    def _check_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for limit in value.values():
            RateLimit.parse(limit)
        return value

    @field_validator("admin_token")
    @classmethod
    def _no_weak_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (generate one: openssl rand -hex 24)")
        return value

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit.strip().lower() not in RATE_LIMIT_OFF

    # guard
    policies: str = Field(
        "default",
        description="The guard policy: a YAML file, or the name of a shipped one (default, "
        "strict, shieldgemma); 'off' runs no guard.",
    )

    # storage
    database_url: str = Field(
        "sqlite:///var/gemma-monitor.db",
        description="SQLAlchemy URL. Postgres: postgresql+psycopg://user@host/db.",
    )
    auto_migrate: bool = Field(
        False, description="Run the migrations at startup instead of refusing to start."
    )
    content_storage: Literal["none", "full"] = Field(
        "none", description="Whether prompts and responses are stored (hashes always are)."
    )
    spool_dir: Path = Field(
        Path("var/spool"), description="Where records wait while the database is unreachable."
    )
    recorder_queue_size: int = Field(20_000, ge=1, description="In-memory record queue bound.")
    recorder_batch_size: int = Field(1000, ge=1, description="Most rows per database write.")
    recorder_flush_interval_s: float = Field(
        0.25, gt=0, description="Longest a record waits in memory before a write."
    )
    recorder_retry_interval_s: float = Field(
        2.0, gt=0, description="How often a spool is replayed while the database is down."
    )

    # probes, quality, alerts
    probes: ProbeSettings = ProbeSettings()
    health: HealthSettings = HealthSettings()
    backend_metrics: BackendMetricsSettings = BackendMetricsSettings()
    quality: QualitySettings = QualitySettings()
    alerts: AlertSettings = AlertSettings()
    webhook_url: str | None = Field(
        None, description="One generic alert receiver (more under alerts.webhooks)."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 secret of the MONITOR_WEBHOOK_URL receiver."
    )

    @field_validator("webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_webhook_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _unique_alert_names(self) -> Settings:
        for what, names in (
            ("alerts.rules", [r.name for r in self.alerts.rules]),
            ("webhook receiver", [w.name for w in self.webhook_receivers()]),
        ):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{what} names must be unique: {', '.join(twice)} repeated")
        return self

    def webhook_receivers(self) -> list[WebhookReceiver]:
        """Every configured receiver: `alerts.webhooks`, then MONITOR_WEBHOOK_URL's."""
        receivers = list(self.alerts.webhooks)
        if self.webhook_url is not None:
            receivers.append(
                WebhookReceiver(name="default", url=self.webhook_url, secret=self.webhook_secret)
            )
        return receivers

    def alert_rules(self) -> list[AlertRule]:
        """The effective rules: the built-in ones (unless turned off), replaced or extended
        by `alerts.rules` by name."""
        rules = {r.name: r for r in (default_rules() if self.alerts.default_rules else [])}
        rules.update({r.name: r for r in self.alerts.rules})
        return list(rules.values())

    # lifecycle
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On shutdown, how long in-flight streams may finish."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("backend_url", mode="before")
    @classmethod
    def _strip_v1(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.rstrip("/")
            if value.endswith("/v1"):
                value = value[: -len("/v1")]
        return value

    @property
    def backend_base(self) -> str:
        return str(self.backend_url).rstrip("/")

    @property
    def backend_label(self) -> str:
        return self.backend_name or self.backend_base

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init kwargs win over the environment, so `load` can pass explicit overrides that way;
        # `load` itself keeps the environment above the file (see `_set_by_environment`).
        return (init_settings, env_settings)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Read the YAML file (if any), then the environment, then explicit overrides (CLI flags).

        Raises `SettingsError` naming the file or the field that is wrong.
        """
        data: dict[str, Any] = {}
        path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
        if config_file or path.exists():
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise SettingsError(f"config file {path} does not exist") from exc
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
            if loaded is not None and not isinstance(loaded, dict):
                raise SettingsError(f"config file {path} must hold a mapping of settings")
            data = loaded or {}
        from_env = _set_by_environment(cls)
        data = _without_nested_env(cls, data)
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            settings = cls(**({k: v for k, v in data.items() if k not in from_env} | given))
        except ValidationError as exc:
            raise SettingsError(_describe(exc, path if data else None)) from exc
        return settings


def _set_by_environment(cls: type[Settings]) -> set[str]:
    """The fields a MONITOR_* variable sets (matched case-insensitively, as pydantic does)."""
    names = {name.upper() for name in os.environ}
    prefix = str(cls.model_config.get("env_prefix") or "").upper()
    return {field for field in cls.model_fields if f"{prefix}{field.upper()}" in names}


def _without_nested_env(cls: type[Settings], data: dict[str, Any]) -> dict[str, Any]:
    """The file's settings less the keys of sections that a nested variable sets
    (`MONITOR_HEALTH__TIMEOUT_S` drops `health.timeout_s`), so the environment wins there too
    while the section's other keys still come from the file."""
    prefix = str(cls.model_config.get("env_prefix") or "").upper()
    delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
    result = dict(data)
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(prefix) or delimiter not in upper:
            continue
        field, *path = upper[len(prefix) :].lower().split(delimiter.lower())
        section = result.get(field)
        if not path or not isinstance(section, dict):
            continue
        section = result[field] = dict(section)
        for key in path[:-1]:
            inner = section.get(key)
            if not isinstance(inner, dict):
                break
            section[key] = section = dict(inner)
        else:
            section.pop(path[-1], None)
    return result


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" (from {path} or MONITOR_* environment)" if path else ""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        env = f"MONITOR_{field.upper()}" if err["loc"] else ""
        lines.append(f"invalid setting '{field}'{f' ({env})' if env else ''}: {err['msg']}")
    return "\n".join(lines) + where
