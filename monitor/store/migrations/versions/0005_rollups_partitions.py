"""rollups (hourly, daily, monthly, uptime) back-filled from raw results; results keyed (id, started_at),
partitioned by day on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

The results table is rebuilt with the primary key (id, started_at): on PostgreSQL as a table
partitioned by range of started_at (one partition per UTC day, made for every day that has
results and the days ahead; see monitor/store/partitions.py), on SQLite as a plain table.
The copy takes a while on a large store (it rewrites every raw result once).

The rollup tables are then filled from the raw results already stored, with the rollup code
itself (monitor.store.rollups: one way to aggregate, here and for every result stored after).
That ties this revision to that code: a later change to the rollup tables must come with its
own revision, which then owns its back-fill.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
COLUMNS = ("id", "agent", "check", "kind", "vantage", "target", "started_at", "ok", "duration_s", "phases",
           "failure_class", "failure_operation", "failure_detail", "facts", "verdict")
COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)


def _results_columns() -> list[sa.Column]:
    return [
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
    ]


def _create_results_indexes() -> None:
    op.create_index("ix_results_check_vantage_started_at", "results", ["check", "vantage", "started_at"])
    op.create_index("ix_results_started_at", "results", ["started_at"])


def _rollup_columns() -> list[sa.Column]:
    return [
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check", sa.String(), nullable=False),
        sa.Column("vantage", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("part", sa.String(), nullable=False),
        sa.Column("probes", sa.BigInteger(), nullable=False),
        sa.Column("successes", sa.BigInteger(), nullable=False),
        sa.Column("failures", document, nullable=False),
        sa.Column("verdicts", document, nullable=False),
        sa.Column("latency", document, nullable=False),
        sa.Column("phases", document, nullable=False),
    ]


ROLLUP_KEY = ["bucket_start", "check", "vantage", "agent", "kind", "target", "part"]


def upgrade() -> None:
    from alembic import context

    from monitor.store import partitions, rollups

    if context.is_offline_mode():
        # It copies every raw result into the new table and reads them to fill the rollups:
        # that needs the database, not a script.
        raise RuntimeError("revision 0005 moves data and cannot be rendered as SQL: run it online (monitor db upgrade -c CONFIG)")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE results RENAME TO results_0003")
        op.execute("ALTER TABLE results_0003 RENAME CONSTRAINT pk_results TO pk_results_0003")
        op.execute("ALTER INDEX ix_results_check_vantage_started_at RENAME TO ix_results_0003_check_vantage_started_at")
        op.execute("ALTER INDEX ix_results_started_at RENAME TO ix_results_0003_started_at")
        op.create_table(
            "results", *_results_columns(),
            sa.PrimaryKeyConstraint("id", "started_at", name=op.f("pk_results")),
            postgresql_partition_by="RANGE (started_at)",
        )
        _create_results_indexes()  # partitioned indexes: every partition gets its own
        days = bind.execute(sa.text("SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM results_0003")).scalars().all()
        partitions.ensure(bind, days)
        partitions.ensure_ahead(bind, datetime.now(timezone.utc))
        op.execute(f"INSERT INTO results ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM results_0003")
        op.drop_table("results_0003")
    else:
        op.create_table("results_0005", *_results_columns(), sa.PrimaryKeyConstraint("id", "started_at", name=op.f("pk_results")))
        op.execute(f"INSERT INTO results_0005 ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM results ORDER BY rowid")
        op.drop_index("ix_results_started_at", table_name="results")
        op.drop_index("ix_results_check_vantage_started_at", table_name="results")
        op.drop_table("results")
        op.rename_table("results_0005", "results")
        _create_results_indexes()

    for name in ("rollup_hourly", "rollup_daily", "rollup_monthly"):
        op.create_table(name, *_rollup_columns(), sa.PrimaryKeyConstraint(*ROLLUP_KEY, name=op.f(f"pk_{name}")))
    op.create_table(
        "rollup_uptime",
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check", sa.String(), nullable=False),
        sa.Column("reported", sa.BigInteger(), nullable=False),
        sa.Column("up", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_start", "check", name=op.f("pk_rollup_uptime")),
    )

    with Session(bind=bind) as session:
        n = rollups.backfill(session)
    if n:
        log.info("rollups back-filled from %d raw results", n)


def downgrade() -> None:
    op.drop_table("rollup_uptime")
    op.drop_table("rollup_monthly")
    op.drop_table("rollup_daily")
    op.drop_table("rollup_hourly")
    # Back to one row per id. Results stored since could in principle repeat an id at another
    # started_at; the first one stays.
    postgres = op.get_bind().dialect.name == "postgresql"
    # PostgreSQL names constraints per schema (the partitioned table's pk_results still
    # exists), SQLite per table.
    pk = "pk_results_0003" if postgres else "pk_results"
    op.create_table("results_0003", *_results_columns(), sa.PrimaryKeyConstraint("id", name=pk))
    order = "started_at" if postgres else "rowid"
    # WHERE true: SQLite needs it to read ON CONFLICT as the INSERT's, not the SELECT's.
    op.execute(f"INSERT INTO results_0003 ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM results WHERE true ORDER BY {order} ON CONFLICT DO NOTHING")
    op.drop_index("ix_results_started_at", table_name="results")
    op.drop_index("ix_results_check_vantage_started_at", table_name="results")
    op.drop_table("results")  # on PostgreSQL its partitions go with it
    op.rename_table("results_0003", "results")
    if postgres:
        op.execute("ALTER TABLE results RENAME CONSTRAINT pk_results_0003 TO pk_results")
    _create_results_indexes()
