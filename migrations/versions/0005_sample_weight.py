"""requests.weight: how many requests a stored record stands for (record sampling)

Sampling stores every error, refusal, flagged and aborted request and one successful request
in N, with weight N; every count and histogram the store reads sums the weights. Rows stored
before this revision were all kept: they weigh 1 (the column's server default fills them in,
with no rewrite of the table on Postgres 11 or later). The rollups, built from rows that all
weighed 1, stay as they are.

Downgrading drops the column in place (`ALTER TABLE ... DROP COLUMN`, on SQLite 3.35 or
later): not a batch copy of the table, whose DROP TABLE would cascade to `guard_verdicts`.
Rows kept by sampling then count once each in what is rolled up again from raw rows; the
rollups already sealed keep their weighted figures.

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column("weight", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE requests DROP COLUMN weight")
