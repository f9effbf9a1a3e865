"""guard_verdicts: the guard verdicts of each request, deleted with it

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "guard_verdicts",
        # BIGSERIAL on Postgres; on SQLite only INTEGER PRIMARY KEY is the (64-bit) rowid.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("classifier", sa.String(), nullable=False),
        sa.Column("latency_us", sa.Integer(), nullable=False),
        sa.Column("findings", _JSON, nullable=False),
        sa.Column("skipped", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_guard_verdicts"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            name="fk_guard_verdicts_request_id_requests",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_guard_verdicts_request_id", "guard_verdicts", ["request_id"])
    op.create_index("ix_guard_verdicts_ts", "guard_verdicts", ["ts"])
    op.create_index("ix_guard_verdicts_action_ts", "guard_verdicts", ["action", "ts"])


def downgrade() -> None:
    op.drop_index("ix_guard_verdicts_action_ts", table_name="guard_verdicts")
    op.drop_index("ix_guard_verdicts_ts", table_name="guard_verdicts")
    op.drop_index("ix_guard_verdicts_request_id", table_name="guard_verdicts")
    op.drop_table("guard_verdicts")
