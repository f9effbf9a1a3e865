"""rollups: requests, principals, verdicts, probes and quality per minute and per hour

Creates the rollup tables and their state row, and rolls up the records already stored, so
the dashboard's long windows are complete from the start.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-20
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_HISTOGRAMS = ("latency_ms", "ttft_ms", "itl_ms", "tokens_per_s", "guard_ms")


def _key(*columns: sa.Column[object]) -> list[sa.Column[object]]:
    return [
        sa.Column("resolution_s", sa.Integer(), nullable=False),
        sa.Column("bucket", _TS, nullable=False),
        *columns,
    ]


def _text(name: str, length: int | None = None) -> sa.Column[object]:
    return sa.Column(name, sa.String(length), nullable=False)


def _number(name: str, kind: sa.types.TypeEngine[object]) -> sa.Column[object]:
    return sa.Column(name, kind, nullable=False)


def _pk(table: str, *keys: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("resolution_s", "bucket", *keys, name=f"pk_{table}")


def upgrade() -> None:
    histograms: list[sa.Column[object]] = []
    for name in _HISTOGRAMS:
        histograms.append(sa.Column(name, sa.JSON(), nullable=False))
        histograms.append(_number(f"{name}_sum", sa.Float()))
    op.create_table(
        "rollup_requests",
        *_key(_text("model"), _text("backend"), _text("outcome", 32)),
        _number("requests", sa.Integer()),
        _number("streams", sa.Integer()),
        _number("prompt_tokens", sa.BigInteger()),
        _number("completion_tokens", sa.BigInteger()),
        *histograms,
        _pk("rollup_requests", "model", "backend", "outcome"),
    )
    op.create_table(
        "rollup_principals",
        *_key(_text("principal", 64), _text("route"), _text("outcome", 32)),
        _number("requests", sa.Integer()),
        _number("prompt_tokens", sa.BigInteger()),
        _number("completion_tokens", sa.BigInteger()),
        _pk("rollup_principals", "principal", "route", "outcome"),
    )
    verdict_keys = ("model", "backend", "stage", "policy", "action", "category", "rule")
    op.create_table(
        "rollup_verdicts",
        *_key(
            _text("model"),
            _text("backend"),
            _text("stage", 16),
            _text("policy"),
            _text("action", 16),
            _text("category"),
            _text("rule"),
        ),
        _number("verdicts", sa.Integer()),
        sa.Column("scores", sa.JSON(), nullable=False),
        _pk("rollup_verdicts", *verdict_keys),
    )
    op.create_table(
        "rollup_probes",
        *_key(_text("probe", 32), _text("metric", 64), _text("target")),
        _number("samples", sa.Integer()),
        _number("value_sum", sa.Float()),
        _number("value_min", sa.Float()),
        _number("value_max", sa.Float()),
        _pk("rollup_probes", "probe", "metric", "target"),
    )
    op.create_table(
        "rollup_quality",
        *_key(_text("scorer", 32), _text("metric", 32)),
        _number("scores", sa.Integer()),
        _number("value_sum", sa.Float()),
        _pk("rollup_quality", "scorer", "metric"),
    )
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("sealed_until", _TS, nullable=False),
        sa.Column("dirty_since", _TS, nullable=True),
        sa.Column("dirty_until", _TS, nullable=True),
        sa.Column("raw_pruned_until", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rollup_state"),
    )
    _back_fill()


def _back_fill() -> None:
    """Roll up every record stored so far, up to the watermark the worker starts from."""
    from monitor.store.rollup_build import DEFAULT_LAG, init_state, rebuild
    from monitor.store.rollup_kinds import MINUTE, floor_to

    conn = op.get_bind()
    now = datetime.now(UTC)
    watermark = floor_to(now - DEFAULT_LAG, MINUTE)
    oldest = [
        conn.execute(sa.text(f"SELECT MIN(ts) FROM {table}")).scalar()
        for table in ("requests", "guard_verdicts", "probe_samples", "quality_scores")
    ]
    found = [_aware(t) for t in oldest if t is not None]
    if found and min(found) < watermark:
        # every row weighs 1 here: `requests.weight` (sampling) comes with revision 0005
        rebuild(conn, min(found), watermark, weighted=False)
    init_state(conn, watermark, now)


def _aware(value: datetime | str) -> datetime:
    # A raw SELECT bypasses the column types: SQLite gives text back.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def downgrade() -> None:
    for table in (
        "rollup_state", "rollup_quality", "rollup_probes", "rollup_verdicts",
        "rollup_principals", "rollup_requests",
    ):  # fmt: skip
        op.drop_table(table)
