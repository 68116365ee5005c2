"""results indexed by (check, started_at): the judge's newest-result-per-vantage query

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

`latest_summaries` (monitor/store/episodes.py) asks for one check's results since a moment,
from every vantage. The (check, vantage, started_at) index serves it for `check` alone, so it
read every stored result of the check — on SQLite, pruned by whole days, up to a day of them
per run judged. On PostgreSQL the index is made on every partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_results_check_started_at", "results", ["check", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_results_check_started_at", table_name="results")
