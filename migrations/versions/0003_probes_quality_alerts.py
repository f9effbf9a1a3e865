"""probe_samples, quality_scores, alerts, alert_events, alert_deliveries (the webhook outbox)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# BIGSERIAL on Postgres; on SQLite only INTEGER PRIMARY KEY is the (64-bit) rowid.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "probe_samples",
        _id(),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("probe", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_probe_samples"),
    )
    op.create_index("ix_probe_samples_metric_ts", "probe_samples", ["metric", "ts"])
    op.create_index("ix_probe_samples_ts", "probe_samples", ["ts"])

    op.create_table(
        "quality_scores",
        _id(),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("scorer", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("detail", _JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quality_scores"),
        sa.UniqueConstraint(
            "request_id", "scorer", "metric", name="uq_quality_scores_request_id_scorer_metric"
        ),
    )
    op.create_index("ix_quality_scores_ts", "quality_scores", ["ts"])

    op.create_table(
        "alerts",
        _id(),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("labels", _JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("pending_since", _TS, nullable=False),
        sa.Column("fired_at", _TS, nullable=True),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("snapshot", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint(
            "fingerprint", "pending_since", name="uq_alerts_fingerprint_pending_since"
        ),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_pending_since", "alerts", ["pending_since"])

    op.create_table(
        "alert_events",
        _id(),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_fingerprint_at", "alert_events", ["fingerprint", "at"])
    op.create_index("ix_alert_events_at", "alert_events", ["at"])

    op.create_table(
        "alert_deliveries",
        _id(),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("receiver", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.UniqueConstraint("receiver", "key", name="uq_alert_deliveries_receiver_key"),
    )
    op.create_index(
        "ix_alert_deliveries_status_next_attempt_at",
        "alert_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_alert_deliveries_created_at", "alert_deliveries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_created_at", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_status_next_attempt_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_events_at", table_name="alert_events")
    op.drop_index("ix_alert_events_fingerprint_at", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_index("ix_alerts_pending_since", table_name="alerts")
    op.drop_index("ix_alerts_state", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_quality_scores_ts", table_name="quality_scores")
    op.drop_table("quality_scores")
    op.drop_index("ix_probe_samples_ts", table_name="probe_samples")
    op.drop_index("ix_probe_samples_metric_ts", table_name="probe_samples")
    op.drop_table("probe_samples")
