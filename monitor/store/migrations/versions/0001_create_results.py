"""create results

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from monitor.store.models: a revision is history
# and must keep creating what it created when the models change later.
document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("check", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("vantage", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("phases", document, nullable=False),
        sa.Column("failure_class", sa.String(), nullable=True),
        sa.Column("failure_operation", sa.String(), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column("facts", document, nullable=False),
        sa.Column("verdict", document, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
    )
    op.create_index("ix_results_check_vantage_started_at", "results", ["check", "vantage", "started_at"])
    op.create_index("ix_results_started_at", "results", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_results_started_at", table_name="results")
    op.drop_index("ix_results_check_vantage_started_at", table_name="results")
    op.drop_table("results")
