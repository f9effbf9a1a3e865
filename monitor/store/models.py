"""SQLAlchemy models: one table per stored concept (see DESIGN.md, "Storage").

The schema itself is owned by the Alembic migrations in `migrations/versions`; these models
describe it for the code that reads and writes rows, and must agree with the latest migration
(`tests/integration/test_store_migrations.py` checks that they do).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so later migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on Postgres (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC on every backend.

    SQLite has no timezone type: without this, an aware datetime would lose its offset on the
    way in and come back naive. Naive datetimes are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RequestRow(Base):
    """One stored request: a `monitor.record.RequestRecord`, column for field."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Unbounded strings where the value can come from a client (model names, routes), so an
    # odd value is stored rather than rejected.
    route: Mapped[str] = mapped_column(String(), nullable=False)
    protocol: Mapped[str] = mapped_column(String(16), nullable=False)
    model: Mapped[str | None] = mapped_column(String())
    backend: Mapped[str | None] = mapped_column(String())
    principal: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[bool] = mapped_column(Boolean(), nullable=False, default=False)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int] = mapped_column(Integer(), nullable=False)
    latency_ms: Mapped[float | None] = mapped_column(Float())
    ttft_ms: Mapped[float | None] = mapped_column(Float())
    itl_ms: Mapped[float | None] = mapped_column(Float())
    prompt_tokens: Mapped[int | None] = mapped_column(Integer())
    completion_tokens: Mapped[int | None] = mapped_column(Integer())
    tokens_estimated: Mapped[bool] = mapped_column(Boolean(), nullable=False, default=False)
    tokens_per_s: Mapped[float | None] = mapped_column(Float())
    input_chars: Mapped[int | None] = mapped_column(Integer())
    input_messages: Mapped[int | None] = mapped_column(Integer())
    guard_ms: Mapped[float | None] = mapped_column(Float())
    prompt_hash: Mapped[str | None] = mapped_column(String(64))
    response_hash: Mapped[str | None] = mapped_column(String(64))
    prompt_text: Mapped[str | None] = mapped_column(Text())
    response_text: Mapped[str | None] = mapped_column(Text())
    # The requests this row stands for (sampling keeps 1 in N successful ones, weight N);
    # every count, sum, mean and percentile over requests weighs rows by it (migration 0005).
    weight: Mapped[int] = mapped_column(Integer(), nullable=False, default=1, server_default="1")
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)

    __table_args__ = (
        Index("ix_requests_ts", "ts"),
        Index("ix_requests_outcome_ts", "outcome", "ts"),
        Index("ix_requests_model_ts", "model", "ts"),
    )


# 64-bit ids on Postgres, where several verdicts per request would exhaust 32 bits in months;
# on SQLite only an INTEGER primary key is the autoincrementing rowid (and it is 64-bit).
BigIntegerId = BigInteger().with_variant(Integer(), "sqlite")


class GuardVerdictRow(Base):
    """One guard verdict of one stored request: a `Verdict.as_dict()`, with the fields the
    dashboard filters on (the deciding finding's category and rule, the highest score) pulled
    out of `findings` into columns."""

    __tablename__ = "guard_verdicts"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("requests.id", ondelete="CASCADE"), nullable=False
    )
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)  # the request's
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    policy: Mapped[str] = mapped_column(String(), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    category: Mapped[str | None] = mapped_column(String())  # of the deciding finding
    rule: Mapped[str | None] = mapped_column(String())  # of the deciding finding
    score: Mapped[float | None] = mapped_column(Float())  # the highest among the findings
    classifier: Mapped[str] = mapped_column(String(), nullable=False)
    latency_us: Mapped[int] = mapped_column(Integer(), nullable=False)
    # `Finding.as_dict()` each: where a match was, never the matched text.
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    skipped: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    # findings the record did not list (past `RECORDED_FINDINGS`; migration 0006)
    findings_omitted: Mapped[int] = mapped_column(
        Integer(), nullable=False, default=0, server_default="0"
    )

    __table_args__ = (
        Index("ix_guard_verdicts_request_id", "request_id"),
        Index("ix_guard_verdicts_ts", "ts"),
        Index("ix_guard_verdicts_action_ts", "action", "ts"),
    )


class ProbeSampleRow(Base):
    """One value of one probe at one moment, in long form: a metric (`host_cpu_percent`,
    `gpu_memory_pct`, `backend_up` ...) of a target (the host, a GPU's index, the backend's URL).
    `detail` carries what a number cannot: a health check's status and error."""

    __tablename__ = "probe_samples"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    probe: Mapped[str] = mapped_column(String(32), nullable=False)  # system, gpu, health, backend
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(), nullable=False)
    value: Mapped[float | None] = mapped_column(Float())
    detail: Mapped[str | None] = mapped_column(String())

    __table_args__ = (
        Index("ix_probe_samples_metric_ts", "metric", "ts"),
        Index("ix_probe_samples_ts", "ts"),
    )


class QualityScoreRow(Base):
    """One score of one request by one scorer (`heuristic`, `embedding`, `judge`, `guard`,
    `user`), 0..1. No foreign key: a score may be written before the recorder's batch holding
    its request; one row per (request, scorer, metric), a later score replacing it."""

    __tablename__ = "quality_scores"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    scorer: Mapped[str] = mapped_column(String(32), nullable=False)
    metric: Mapped[str] = mapped_column(String(32), nullable=False)
    value: Mapped[float] = mapped_column(Float(), nullable=False)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        UniqueConstraint("request_id", "scorer", "metric"),
        Index("ix_quality_scores_ts", "ts"),
    )


class AlertRow(Base):
    """One alert episode (one fingerprint from pending to resolved or cancelled), kept as it
    was last seen; `snapshot` is `Alert.to_dict()`, what a restart restores active alerts from."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(16), nullable=False)
    rule: Mapped[str] = mapped_column(String(), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[float | None] = mapped_column(Float())
    threshold: Mapped[float | None] = mapped_column(Float())
    pending_since: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)

    __table_args__ = (
        UniqueConstraint("fingerprint", "pending_since"),
        Index("ix_alerts_state", "state"),
        Index("ix_alerts_pending_since", "pending_since"),
    )


class AlertEventRow(Base):
    """One transition of one alert: pending, firing, resolved, cancelled, acknowledged."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(16), nullable=False)
    rule: Mapped[str] = mapped_column(String(), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    value: Mapped[float | None] = mapped_column(Float())
    by: Mapped[str | None] = mapped_column(String())

    __table_args__ = (
        Index("ix_alert_events_fingerprint_at", "fingerprint", "at"),
        Index("ix_alert_events_at", "at"),
    )


class AlertDeliveryRow(Base):
    """The webhook outbox: one notification for one receiver, from `pending` to `delivered`
    (or `failed`: a permanent refusal, or a receiver no longer configured). The body is stored
    unsigned; each attempt is signed with that attempt's time."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(BigIntegerId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(128), nullable=False)  # the notification's
    receiver: Mapped[str] = mapped_column(String(64), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(16), nullable=False)
    rule: Mapped[str] = mapped_column(String(), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # firing, resolved
    url: Mapped[str] = mapped_column(String(), nullable=False)
    body: Mapped[str] = mapped_column(Text(), nullable=False)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer(), nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer())
    last_error: Mapped[str | None] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("receiver", "key"),
        Index("ix_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_alert_deliveries_created_at", "created_at"),
    )


requests_table: Table = Base.metadata.tables["requests"]
guard_verdicts_table: Table = Base.metadata.tables["guard_verdicts"]
probe_samples_table: Table = Base.metadata.tables["probe_samples"]
quality_scores_table: Table = Base.metadata.tables["quality_scores"]
alerts_table: Table = Base.metadata.tables["alerts"]
alert_events_table: Table = Base.metadata.tables["alert_events"]
alert_deliveries_table: Table = Base.metadata.tables["alert_deliveries"]


# -- rollups (`monitor.store.rollups`) -----------------------------------------------------------
# Each rollup row sums one bucket of time (`resolution_s`: 60, a minute, or 3600, an hour,
# starting at `bucket`) for one combination of its key columns. Key columns hold '' for a
# missing value, never NULL, so the primary key is the natural key on every database.
# Histograms are `monitor.store.histogram.Histogram.to_json()`, their sums beside them.


class RequestRollupRow(Base):
    """Requests of one minute or hour, per model, backend and outcome. As few keys as the
    readers filter or group on: every key multiplies the rows a 30-day window merges (routes
    are counted per principal, in `rollup_principals`)."""

    __tablename__ = "rollup_requests"

    resolution_s: Mapped[int] = mapped_column(Integer(), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    model: Mapped[str] = mapped_column(String(), primary_key=True)
    backend: Mapped[str] = mapped_column(String(), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer(), nullable=False)
    streams: Mapped[int] = mapped_column(Integer(), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    completion_tokens: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    latency_ms: Mapped[dict[str, int]] = mapped_column(JSON(), nullable=False)
    latency_ms_sum: Mapped[float] = mapped_column(Float(), nullable=False)
    ttft_ms: Mapped[dict[str, int]] = mapped_column(JSON(), nullable=False)
    ttft_ms_sum: Mapped[float] = mapped_column(Float(), nullable=False)
    itl_ms: Mapped[dict[str, int]] = mapped_column(JSON(), nullable=False)
    itl_ms_sum: Mapped[float] = mapped_column(Float(), nullable=False)
    tokens_per_s: Mapped[dict[str, int]] = mapped_column(JSON(), nullable=False)
    tokens_per_s_sum: Mapped[float] = mapped_column(Float(), nullable=False)
    guard_ms: Mapped[dict[str, int]] = mapped_column(JSON(), nullable=False)
    guard_ms_sum: Mapped[float] = mapped_column(Float(), nullable=False)


class PrincipalRollupRow(Base):
    """Requests and tokens of one minute or hour, per principal, route and outcome."""

    __tablename__ = "rollup_principals"

    resolution_s: Mapped[int] = mapped_column(Integer(), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    principal: Mapped[str] = mapped_column(String(64), primary_key=True)
    route: Mapped[str] = mapped_column(String(), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer(), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger(), nullable=False)
    completion_tokens: Mapped[int] = mapped_column(BigInteger(), nullable=False)


class VerdictRollupRow(Base):
    """Guard verdicts of one minute or hour, per request model and backend, stage, policy,
    action and deciding finding; `scores` counts the highest classifier scores in 20 bins of
    [0, 1] (`{"bin": count}`)."""

    __tablename__ = "rollup_verdicts"

    resolution_s: Mapped[int] = mapped_column(Integer(), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    model: Mapped[str] = mapped_column(String(), primary_key=True)
    backend: Mapped[str] = mapped_column(String(), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    policy: Mapped[str] = mapped_column(String(), primary_key=True)
    action: Mapped[str] = mapped_column(String(16), primary_key=True)
    category: Mapped[str] = mapped_column(String(), primary_key=True)
    rule: Mapped[str] = mapped_column(String(), primary_key=True)
    verdicts: Mapped[int] = mapped_column(Integer(), nullable=False)
    scores: Mapped[dict[str, int]] = mapped_column(JSON(), nullable=False)


class ProbeRollupRow(Base):
    """Probe values of one minute or hour, per probe, metric and target (NULL values left out)."""

    __tablename__ = "rollup_probes"

    resolution_s: Mapped[int] = mapped_column(Integer(), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    probe: Mapped[str] = mapped_column(String(32), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(), primary_key=True)
    samples: Mapped[int] = mapped_column(Integer(), nullable=False)
    value_sum: Mapped[float] = mapped_column(Float(), nullable=False)
    value_min: Mapped[float] = mapped_column(Float(), nullable=False)
    value_max: Mapped[float] = mapped_column(Float(), nullable=False)


class QualityRollupRow(Base):
    """Quality scores of one minute or hour (by when they were scored), per scorer and metric."""

    __tablename__ = "rollup_quality"

    resolution_s: Mapped[int] = mapped_column(Integer(), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    scorer: Mapped[str] = mapped_column(String(32), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    scores: Mapped[int] = mapped_column(Integer(), nullable=False)
    value_sum: Mapped[float] = mapped_column(Float(), nullable=False)


class RollupStateRow(Base):
    """Where the rollups stand (one row, `name = 'rollups'`): minutes before `sealed_until`
    are rolled up; `dirty_since`/`dirty_until` span records written there late (a spool
    replay, a long stream), rolled up again by the next seal; raw rows before
    `raw_pruned_until` are gone (retention), so rollups there are never rebuilt."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed_until: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    dirty_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dirty_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    raw_pruned_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


rollup_requests_table: Table = Base.metadata.tables["rollup_requests"]
rollup_principals_table: Table = Base.metadata.tables["rollup_principals"]
rollup_verdicts_table: Table = Base.metadata.tables["rollup_verdicts"]
rollup_probes_table: Table = Base.metadata.tables["rollup_probes"]
rollup_quality_table: Table = Base.metadata.tables["rollup_quality"]
rollup_state_table: Table = Base.metadata.tables["rollup_state"]
