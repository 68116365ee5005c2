"""verdict episodes: when each (check, vantage, agent) was under which verdict

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "verdict_episodes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("check", sa.String(), nullable=False),
        sa.Column("vantage", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("clean", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.String(), nullable=False),
        sa.Column("evidence", document, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdict_episodes")),
    )
    op.create_index("ix_verdict_episodes_check_vantage_agent_ended_at", "verdict_episodes", ["check", "vantage", "agent", "ended_at"])
    op.create_index("ix_verdict_episodes_started_at", "verdict_episodes", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_verdict_episodes_started_at", table_name="verdict_episodes")
    op.drop_index("ix_verdict_episodes_check_vantage_agent_ended_at", table_name="verdict_episodes")
    op.drop_table("verdict_episodes")
