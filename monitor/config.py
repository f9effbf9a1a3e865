"""Settings: `monitor.yaml` (or `--config FILE`) and `MONITOR_*` environment variables, which win.

Built once by the CLI (or by a test) and passed to `create_app`; nothing reads the environment
after that. Where a value comes from, strongest first:

1. keyword arguments (`Settings.load(port=...)`: the CLI's flags);
2. `MONITOR_*` environment variables, a section's keys with `__` (MONITOR_HEALTH__TIMEOUT_S);
3. the YAML file (`load` reads monitor.yaml from the working directory, or the file named);
4. the defaults below.

pydantic-settings merges the sources key by key, sections included: a variable replaces one key
of a section the file sets, and the file's other keys in it stay. The field types (durations,
rate limits, alert rules, webhook receivers) are in `config_types`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic_settings
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
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from monitor.config_types import AlertRule, Duration, RateLimit, WebhookReceiver, parse_duration
from monitor.passwords import parse_hash

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_CONFIG_FILE = "monitor.yaml"
ENV_PREFIX = "MONITOR_"
ENV_NESTED_DELIMITER = "__"
RATE_LIMIT_OFF = frozenset({"off", "none", "0", "false", "disabled"})

# The YAML file `Settings.load` chose, for the `Settings(...)` it builds (see `load`).
_config_file: ContextVar[Path | None] = ContextVar("monitor_config_file", default=None)


class SettingsError(Exception):
    """Raised when the settings cannot be loaded; the message names the file or variable, and
    the field, that is wrong."""


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


class DashboardSettings(_Section):
    """The Streamlit dashboard (`dashboard:`, MONITOR_DASHBOARD__*); its password is
    MONITOR_DASHBOARD_PASSWORD (`dashboard_password`), or a hash of it here."""

    password_hash: str | None = Field(
        default=None,
        description="pbkdf2_sha256$<iterations>$<salt hex>$<key hex>, instead of the password "
        "in clear (make one: gemma-monitor dashboard --hash-password).",
    )
    session_ttl_s: Duration = Field(
        default=43200.0, gt=0, description="How long a login lasts, reloads and restarts included."
    )
    refresh_s: Duration = Field(
        default=5.0, ge=1, description="Seconds between refreshes in live mode."
    )

    @field_validator("password_hash", mode="before")
    @classmethod
    def _check_hash(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            parse_hash(value)  # raises ValueError saying the expected format
            return value.strip()
        return value


class ReportSettings(_Section):
    """Scheduled health reports, sent to the webhook receivers through the alert outbox
    (`reports:` in monitor.yaml, MONITOR_REPORTS__*)."""

    schedule: str = Field(
        default="off",
        description="off; daily (at `at`, UTC); or an interval such as 6h or 7d, counted from "
        "midnight UTC.",
    )
    at: str = Field(
        default="06:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="UTC time of day (HH:MM) of the daily report.",
    )
    window: Duration = Field(
        default=86400.0, gt=0, description="Span a report covers, ending at its scheduled time."
    )
    format: Literal["md", "html"] = Field(
        default="md", description="The report's body: md (chat, tickets) or html (mail)."
    )
    receivers: list[str] = Field(
        default_factory=list, description="Webhook receivers (by name) sent reports; empty: all."
    )
    interval_s: Duration = Field(
        default=60.0, gt=0, description="How often the scheduler looks for a report due."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        text = value.strip().lower()
        if text in ("off", "daily"):
            return text
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError("reports.schedule is off, daily, or an interval such as 6h") from None
        if seconds < 60:
            raise ValueError("a report interval is at least a minute")
        return text


class RollupSettings(_Section):
    """Per-minute and per-hour rollups, what long windows are read from (`rollups:`)."""

    enabled: bool = Field(default=True, description="Keep the rollups up to date.")
    interval_s: Duration = Field(
        default=10.0, gt=0, description="Seconds between steps of the rollup worker."
    )
    lag_s: Duration = Field(
        default=120.0,
        gt=0,
        description="A minute is rolled up this long after it ends; records written later "
        "(a spool replay, a long stream) get it rolled up again.",
    )


class RetentionSettings(_Section):
    """Pruning old rows (`retention:`): raw records and minute rollups after `raw_days`,
    hour rollups after `rollup_days`."""

    enabled: bool = Field(default=True, description="Prune old rows.")
    raw_days: float = Field(
        default=30.0, gt=0, description="Days raw records (and minute rollups) are kept."
    )
    rollup_days: float = Field(default=365.0, gt=0, description="Days hour rollups are kept.")
    interval_s: Duration = Field(default=300.0, gt=0, description="Seconds between prunes.")
    batch_size: int = Field(
        default=5000, ge=1, description="Rows deleted per transaction (keeps locks short)."
    )

    @model_validator(mode="after")
    def _rollups_outlive_raw(self) -> RetentionSettings:
        if self.rollup_days < self.raw_days:
            raise ValueError("retention.rollup_days must be at least retention.raw_days")
        return self


class LeaderSettings(_Section):
    """Electing the one replica that evaluates alerts, sends scheduled reports and prunes
    (`leader:`, MONITOR_LEADER__*). Postgres only: on SQLite the one process does it all."""

    interval_s: Duration = Field(
        default=1.0,
        gt=0,
        description="How often a follower tries to take over and the leader checks its lock's "
        "connection: a failover takes about this long after the old leader's session ends.",
    )
    peer_timeout_s: Duration = Field(
        default=10.0,
        ge=2,
        description="How long Postgres waits for a leader host that went silent (TCP "
        "keepalives on the lock's connection) before it frees the lock.",
    )


class SamplingSettings(_Section):
    """Record sampling (`sampling:`): every error, refusal, flagged, redacted and aborted
    request is stored, and `share` of the successful ones, each stored with the weight
    1/share so that counts, rates and percentiles read from the store stay unbiased."""

    share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of successful requests whose records are stored: 1 (all), 0.5, "
        "0.2, 0.1, 0.01 ...; its reciprocal must be a whole number (keep 1 in N).",
    )

    @field_validator("share")
    @classmethod
    def _one_in_n(cls, share: float) -> float:
        n = 1.0 / share
        if abs(n - round(n)) > 1e-6 * n:
            raise ValueError(
                f"sampling.share must be 1/N for a whole number N (1, 0.5, 0.25, 0.2, 0.1, "
                f"0.01 ...), not {share}: 1/{share} = {n:g}"
            )
        return share

    @property
    def keep_one_in(self) -> int:
        """N: one successful request in N is stored, with weight N."""
        return round(1.0 / self.share)


class OtelSettings(_Section):
    """OpenTelemetry export over OTLP (`otel:`; needs the `otel` extra): one span per request
    and the metrics of /metrics. Off unless an endpoint is set; the standard variables
    (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`,
    `OTEL_SDK_DISABLED`, ...) win over these fields (`monitor.telemetry.options`)."""

    enabled: bool | None = Field(
        default=None,
        description="None: on when an endpoint is set (here or in OTEL_EXPORTER_OTLP_ENDPOINT); "
        "false: off; true: on, at the OTLP default endpoint when none is set.",
    )
    endpoint: str | None = Field(
        default=None,
        description="The collector: a base URL for http/protobuf (/v1/traces, /v1/metrics "
        "appended), host:port or a URL for grpc.",
    )
    protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf", description="OTLP transport."
    )
    service_name: str = Field(default="gemma-monitor", description="The service.name resource.")
    traces: bool = Field(default=True, description="Export one span per request.")
    metrics: bool = Field(default=True, description="Export the metrics of /metrics.")
    queue_size: int = Field(
        default=4096,
        ge=1,
        description="Finished records waiting for export; past it they are dropped and counted.",
    )
    batch_size: int = Field(default=512, ge=1, description="Spans per export request.")
    export_interval_s: float = Field(
        default=2.0, gt=0, description="Most seconds a span waits before it is exported."
    )
    metrics_interval_s: float = Field(
        default=60.0, gt=0, description="Seconds between metric exports."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one export request.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    # where the proxy listens
    host: str = Field(default="127.0.0.1", description="Address the proxy binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the proxy listens on.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes behind the one port, each with its own event loop (more "
        "throughput where there are more cores). Above 1 they are replicas on one host: they "
        "need Postgres, and Redis (redis_url) when rate limiting is on, for the state they share.",
    )

    # the upstream Gemma server
    backend_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8080"),
        description="Base URL of the upstream server, without /v1 (a trailing /v1 is removed).",
    )
    backend_protocol: Literal["openai", "ollama"] = Field(
        default="openai",
        description="What the backend speaks: 'openai' (vLLM, llama.cpp, TGI) or 'ollama'. "
        "Ollama clients in front of an OpenAI backend are translated; OpenAI clients in front "
        "of Ollama use Ollama's own /v1 endpoints.",
    )
    backend_name: str | None = Field(default=None, description="Label stored with each record.")
    backend_api_key: SecretStr | None = Field(
        default=None, description="Sent upstream as 'Authorization: Bearer ...' when set."
    )
    forward_client_authorization: bool = Field(
        default=False, description="Forward the client's Authorization header upstream."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Upstream connect timeout.")
    read_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest wait for the next upstream byte (first token included).",
    )
    max_connections: int = Field(default=512, ge=1, description="Upstream connection pool size.")

    # admission
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body accepted (413 beyond). Every byte is parsed and "
        "checked before the request is forwarded; raise it for large images.",
    )
    max_json_containers: int = Field(
        default=10_000,
        ge=16,
        description="Most '{' and '[' characters a JSON request body may hold (400 beyond), "
        "counted before parsing and in strings too, so a body's parse stays short: 38,000 "
        "tiny objects in a 1 MB body take 20 ms to parse and walk, time no other request is "
        "served; 10,000 take 6 ms.",
    )
    request_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a request's body (any route) may take to arrive once its headers "
        "are in; beyond, 408 and the connection is closed (a client sending it byte by byte).",
    )
    request_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest a request's headers may take to arrive, counted from the first "
        "byte of the request (or from the connection's opening); beyond, 408 and the "
        "connection is closed (a client sending headers byte by byte).",
    )
    max_client_connections: int | None = Field(
        default=1024,
        ge=1,
        description="Most client connections (or requests in flight) served at once; beyond, "
        "new requests get 503 at once (uvicorn's limit_concurrency). null: no limit.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Client API keys (comma-separated in MONITOR_API_KEYS). When set, a request "
        "without one of them gets 401.",
    )
    user_header: str | None = Field(
        default=None,
        description="Header naming the end user (e.g. x-user-id): the principal of a request "
        "without API keys configured, taken only from a trusted proxy (`trusted_proxies`).",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of reverse proxies in front of the monitor "
        "(comma-separated in MONITOR_TRUSTED_PROXIES). Only from these is X-Forwarded-For read "
        "(the right-most address not in this list is the client's) and the user header honoured.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header names accepted (comma-separated; '*' any, '*.example.com' a "
        "domain's subdomains). Unset: any with API keys configured; without keys only "
        "localhost, 127.0.0.1, ::1 and the bind address (against DNS rebinding).",
    )
    rate_limit: str = Field(
        default="100/hour",
        description="Requests per principal per sliding window, e.g. 100/hour, 10/minute; "
        "'off' disables rate limiting.",
    )
    token_budget: str | None = Field(
        default=None, description="Optional tokens per principal per window, e.g. 100000/hour."
    )
    rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description="Per-principal request limits, by principal id (sha256 of the key, 16 hex).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate-limit windows shared by replicas; in memory without it.",
    )
    rate_limit_fail_open: bool = Field(
        default=True,
        description="When Redis is unreachable: allow (true) or refuse (false) requests.",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for /admin/*; the admin API is off without it."
    )

    # guard
    policies: str = Field(
        default="default",
        description="The guard policy: a YAML file, or the name of a shipped one (default, "
        "strict, shieldgemma); 'off' runs no guard.",
    )

    # storage
    database_url: str = Field(
        default="sqlite:///var/gemma-monitor.db",
        description="SQLAlchemy URL. Postgres: postgresql+psycopg://user@host/db.",
    )
    auto_migrate: bool = Field(
        default=False, description="Run the migrations at startup instead of refusing to start."
    )
    content_storage: Literal["none", "full"] = Field(
        default="none", description="Whether prompts and responses are stored (hashes always are)."
    )
    spool_dir: Path = Field(
        default=Path("var/spool"),
        description="Where records wait while the database is unreachable.",
    )
    spool_fsync: bool = Field(
        default=True,
        description="fsync each spool write (and the directory when a segment is created), so "
        "spooled records survive a power cut, not only a crash.",
    )
    spool_max_bytes: int = Field(
        default=1024**3,
        ge=1024,
        description="Most bytes the spool holds; past it records are dropped (counted in "
        "gemma_monitor_recorder_records_dropped_spool_full_total) until the database returns.",
    )
    recorder_queue_size: int = Field(
        default=20_000, ge=1, description="In-memory record queue bound."
    )
    recorder_queue_bytes: int = Field(
        default=128 * 1024**2,
        ge=1024,
        description="In-memory record queue bound in bytes (estimated: content characters plus "
        "1 KiB a record); past it records spill to the spool.",
    )
    hash_key: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 prompt and response hashes. Unset: a random key "
        "made at first start and kept in spool_dir/hash.key. Give replicas the same key so "
        "their hashes compare.",
    )
    recorder_batch_size: int = Field(
        default=1000, ge=1, description="Most rows per database write."
    )
    recorder_flush_interval_s: float = Field(
        default=0.25, gt=0, description="Longest a record waits in memory before a write."
    )
    recorder_retry_interval_s: float = Field(
        default=2.0, gt=0, description="How often a spool is replayed while the database is down."
    )

    # probes, quality, alerts
    probes: ProbeSettings = ProbeSettings()
    health: HealthSettings = HealthSettings()
    backend_metrics: BackendMetricsSettings = BackendMetricsSettings()
    quality: QualitySettings = QualitySettings()
    alerts: AlertSettings = AlertSettings()
    rollups: RollupSettings = RollupSettings()
    retention: RetentionSettings = RetentionSettings()
    leader: LeaderSettings = LeaderSettings()
    sampling: SamplingSettings = SamplingSettings()
    otel: OtelSettings = OtelSettings()
    reports: ReportSettings = ReportSettings()
    webhook_url: SecretStr | None = Field(
        default=None, description="One generic alert receiver (more under alerts.webhooks)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 secret of the MONITOR_WEBHOOK_URL receiver."
    )

    # dashboard
    dashboard: DashboardSettings = DashboardSettings()
    dashboard_password: SecretStr | None = Field(
        default=None,
        description="Dashboard login (or dashboard.password_hash); without either the "
        "dashboard starts only with --no-auth, on 127.0.0.1.",
    )

    # lifecycle
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On shutdown, how long in-flight streams may finish."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    loop_lag_interval_s: float = Field(
        default=0.01,
        ge=0,
        description="How often the event loop's lateness is sampled (gemma_monitor_runtime_"
        "event_loop_lag_seconds); 0 turns the sampling off.",
    )

    @field_validator(
        "admin_token",
        "token_budget",
        "redis_url",
        "user_header",
        "backend_api_key",
        "webhook_url",
        "webhook_secret",
        "hash_key",
        "dashboard_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `MONITOR_X=` (as compose writes an unset ${VAR:-}) means "not set", not "empty"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", "trusted_proxies", "allowed_hosts", mode="before")
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

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # raises ValueError naming the entry
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

    @field_validator("backend_url", mode="before")
    @classmethod
    def _strip_v1(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.rstrip("/")
            if value.endswith("/v1"):
                value = value[: -len("/v1")]
        return value

    @model_validator(mode="after")
    def _workers_share_state(self) -> Settings:
        """Several workers are replicas: what they share lives where all of them see it."""
        if self.workers == 1:
            return self
        if not self.database_url.startswith("postgresql"):
            raise ValueError(
                f"workers: {self.workers} needs Postgres (database_url): SQLite is one process's "
                "database, so its alert leadership and rollups are not shared; use workers: 1"
            )
        if self.rate_limit_enabled and not self.redis_url:
            raise ValueError(
                f"workers: {self.workers} with rate limiting needs redis_url: each worker's "
                "in-memory windows would let through the limit once per worker"
            )
        return self

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

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit.strip().lower() not in RATE_LIMIT_OFF

    @property
    def backend_base(self) -> str:
        return str(self.backend_url).rstrip("/")

    @property
    def backend_label(self) -> str:
        return self.backend_name or self.backend_base

    def webhook_receivers(self) -> list[WebhookReceiver]:
        """Every configured receiver: `alerts.webhooks`, then MONITOR_WEBHOOK_URL's."""
        receivers = list(self.alerts.webhooks)
        if self.webhook_url is not None:
            receivers.append(
                WebhookReceiver(name="default", url=self.webhook_url, secret=self.webhook_secret)
            )
        return receivers

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the YAML file `load` chose (if any);
        the defaults come last. Built directly (`Settings(...)`, as tests do), settings read
        no file, so a monitor.yaml in the working directory cannot leak into them."""
        config_file = _config_file.get()
        if config_file is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, _YamlFile(settings_cls, yaml_file=config_file))

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from `overrides` (the CLI's flags; None means "not given"), the environment
        and a YAML file: `config_file`, which must exist, or else monitor.yaml in the working
        directory when there is one.

        The chosen file reaches `settings_customise_sources` through a context variable set
        for this call only: safe when threads or tasks load settings at once, public
        pydantic-settings API only, and the result is a plain `Settings`. The alternatives
        were worse: a subclass created per call with `yaml_file` in its `model_config` returns
        instances of that subclass (pydantic's `==` compares classes, so two loads are never
        equal) and builds a schema per call; `_build_sources` bypasses
        `settings_customise_sources`, so the order of the sources would be written twice.

        Raises `SettingsError` naming the file or the variable, and the field, that is wrong.
        """
        path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
        if config_file and not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise SettingsError(f"config file {path} {problem}")
        chosen = path if config_file or path.is_file() else None
        given = {k: v for k, v in overrides.items() if v is not None}
        token = _config_file.set(chosen)
        try:
            return cls(**given)
        except ValidationError as exc:
            sources = {"given": given, "environment": EnvSettingsSource(cls)()}
            if chosen is not None:
                sources["file"] = _YamlFile(cls, yaml_file=chosen).yaml_data
            raise SettingsError(_describe(exc, sources, chosen)) from exc
        except pydantic_settings.SettingsError as exc:  # e.g. a variable that is not valid JSON
            raise SettingsError(f"invalid MONITOR_* environment variable: {exc}") from exc
        finally:
            _config_file.reset(token)


class _YamlFile(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, refusing what is not a YAML mapping with a
    `SettingsError` that names the file."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            data: object = super()._read_file(file_path)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config file {file_path} is not valid YAML: {exc}") from exc
        except OSError as exc:
            raise SettingsError(f"config file {file_path} cannot be read: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"config file {file_path} must hold a mapping of settings")
        return data


def _describe(
    exc: ValidationError, sources: Mapping[str, Mapping[str, Any]], path: Path | None
) -> str:
    """One line per error, naming the field and where its value came from: the variable that
    set it (MONITOR_HEALTH__TIMEOUT_S), or the file and the variable that would."""
    lines = []
    for err in exc.errors():
        loc, msg = err["loc"], err["msg"]
        if not loc:  # a check across fields
            where = f" (from {path} and the MONITOR_* environment)" if path else ""
            lines.append(f"invalid settings{where}: {msg}")
            continue
        field = ".".join(str(part) for part in loc)
        unknown = err["type"] == "extra_forbidden"
        what = "unknown setting" if unknown else "invalid setting"
        origin = _origin(loc, sources)
        if origin == "environment":
            lines.append(f"{what} '{field}' from {_set_variable(loc)}: {msg}")
        elif origin == "file" and unknown:
            lines.append(f"{what} '{field}' in {path}: {msg}")
        elif origin == "file":
            lines.append(f"{what} '{field}' ({_variable(loc)}) in {path}: {msg}")
        elif origin == "given":
            lines.append(f"{what} '{field}' ({_variable(loc)}) given as an option: {msg}")
        else:
            lines.append(f"{what} '{field}' ({_variable(loc)}): {msg}")
    return "\n".join(lines)


def _origin(loc: Sequence[str | int], sources: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The source whose value is at `loc`: the one that reaches deepest into it (a section the
    environment sets one key of still takes its other keys from the file), the strongest of
    those when several do."""
    best, depth = None, 0
    for name, data in sources.items():  # strongest first
        reached = _depth(data, loc)
        if reached > depth:
            best, depth = name, reached
    return best


def _depth(data: Any, loc: Sequence[str | int]) -> int:
    """How many parts of `loc` `data` holds; all of them when it holds a value on the way
    (the rest of `loc` is inside that value)."""
    node = data
    for depth, part in enumerate(loc):
        if isinstance(node, Mapping):
            if part not in node:
                return depth
            node = node[part]
        elif isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                return depth
            node = node[part]
        else:
            return len(loc)
    return len(loc)


def _variables(loc: Sequence[str | int]) -> list[str]:
    """The variables that can set `loc`, most specific first: MONITOR_HEALTH__TIMEOUT_S, then
    MONITOR_HEALTH (the whole section as JSON). Stops at a list index."""
    names: list[str] = []
    for part in loc:
        if not isinstance(part, str) or not part.isidentifier():
            break
        names.append(part.upper())
    return [ENV_PREFIX + ENV_NESTED_DELIMITER.join(names[:n]) for n in range(len(names), 0, -1)]


def _variable(loc: Sequence[str | int]) -> str:
    return _variables(loc)[0] if _variables(loc) else ENV_PREFIX + "*"


def _set_variable(loc: Sequence[str | int]) -> str:
    """The variable in the environment that set `loc` (names match case-insensitively)."""
    present = {name.upper() for name in os.environ}
    return next((name for name in _variables(loc) if name in present), _variable(loc))
