"""guard_verdicts.findings_omitted: how many findings a stored verdict does not list

A record lists at most 100 findings per verdict (`Verdict.as_dict`): a hostile text can carry
thousands, each costing time on the request path and room in the store. Past the bound the
first finding of each check, rule and action and the highest score are still listed; this
column counts the others. Rows stored before this revision listed every finding: 0.

Downgrading drops the column in place, as 0005 does.

Revision ID: 0006
Revises: 0005
Create Date: 2027-03-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "guard_verdicts",
        sa.Column("findings_omitted", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE guard_verdicts DROP COLUMN findings_omitted")
