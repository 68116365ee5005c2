"""alerts: one per verdict episode that fired, with its delivery state per sink

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("episode_id", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("check", sa.String(), nullable=False),
        sa.Column("vantage", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("alertname", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("labels", document, nullable=False),
        sa.Column("annotations", document, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(), nullable=True),
        sa.Column("deliveries", document, nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("episode_id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_agent_settled", "alerts", ["agent", "settled"])
    op.create_index("ix_alerts_resolved_at", "alerts", ["resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_resolved_at", table_name="alerts")
    op.drop_index("ix_alerts_agent_settled", table_name="alerts")
    op.drop_table("alerts")
