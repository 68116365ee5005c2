"""SQLAlchemy 2 models of what monitor stores: one row per ProbeResult.

Failure class, operation and verdict are kept as plain strings/JSON, not database enums:
the vocabularies grow with new probes, and an enum would turn each new word into a
migration that has to lock the table on every agent's central database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Double, Index, Integer, MetaData, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints let Alembic's batch mode (SQLite) find and alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL so later analysis can index and query facts; plain JSON text elsewhere.
Document = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every dialect.

    PostgreSQL keeps `timestamptz`; SQLite has no zone support, so instants are stored as
    naive UTC (a fixed-width text that sorts in time order) and come back tagged UTC.
    A naive datetime is refused: its meaning depends on the host, and results from agents
    on several hosts share one table.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: results are stored as UTC instants")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ResultRow(Base):
    """One ProbeResult. `id` is the result's own UUID, so replays insert nothing new.

    On PostgreSQL the table is partitioned by range of started_at, one partition per UTC day
    (monitor/store/partitions.py), so retention drops whole days. A unique key of a
    partitioned table must hold the partition key: the primary key is (id, started_at) on
    every dialect, and code that looks a result up by id also bounds started_at (see
    repository.save_results for why replays still store a result once)."""

    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent: Mapped[str] = mapped_column(String)
    check: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    vantage: Mapped[str] = mapped_column(String)
    target: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    duration_s: Mapped[float] = mapped_column(Double)
    phases: Mapped[dict[str, float]] = mapped_column(Document)
    failure_class: Mapped[str | None] = mapped_column(String)
    failure_operation: Mapped[str | None] = mapped_column(String)
    failure_detail: Mapped[str | None] = mapped_column(Text)
    facts: Mapped[dict[str, Any]] = mapped_column(Document)
    # none_as_null: "no verdict" must be SQL NULL, not the JSON literal null.
    verdict: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    )

    __table_args__ = (
        # Time-range reads of one check from one vantage (dashboards, analysis, rollups).
        Index("ix_results_check_vantage_started_at", "check", "vantage", "started_at"),
        # One check's recent results from every vantage (the judge's peers, migration 0006).
        Index("ix_results_check_started_at", "check", "started_at"),
        # Retention deletes by age across all checks.
        Index("ix_results_started_at", "started_at"),
        {"postgresql_partition_by": "RANGE (started_at)"},
    )


class SumdbTreeRow(Base):
    """The largest tree of a Go checksum database verified so far, by any agent.

    goproxy probes prove each signed tree they see consistent with it, so a database that
    shows one history to some clients and another to others (a fork) is caught across runs
    and agents, not only within one run. It only ever grows (store.sumdb.save_sumdb_tree).
    """

    __tablename__ = "sumdb_trees"

    name: Mapped[str] = mapped_column(String, primary_key=True)  # e.g. sum.golang.org
    size: Mapped[int] = mapped_column(BigInteger)  # records in the tree
    hash: Mapped[str] = mapped_column(String(44))  # root hash, base64 as in the signed note
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EpisodeRow(Base):
    """One verdict episode (monitor/analysis/episodes.py): pending while confirmed_at is NULL,
    open while ended_at is NULL, closed after. At most one row per (check, vantage, agent)
    has ended_at NULL: the current one."""

    __tablename__ = "verdict_episodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check: Mapped[str] = mapped_column(String)
    vantage: Mapped[str] = mapped_column(String)
    agent: Mapped[str] = mapped_column(String)
    verdict: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rounds: Mapped[int] = mapped_column(Integer)
    clean: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[str] = mapped_column(String)
    evidence: Mapped[list[str]] = mapped_column(Document)

    __table_args__ = (
        # The current episode of one (check, vantage, agent): ended_at IS NULL.
        Index("ix_verdict_episodes_check_vantage_agent_ended_at", "check", "vantage", "agent", "ended_at"),
        # Reports and retention by time.
        Index("ix_verdict_episodes_started_at", "started_at"),
    )


class AlertRow(Base):
    """One alert: the verdict episode it is about (one alert per episode, ever), what was sent
    (labels, annotations) and to which sink when (`deliveries`, per sink). `settled` once it
    is resolved and every sink has been told (or no longer needs telling): the alert engine
    then leaves it alone, and it stays as history."""

    __tablename__ = "alerts"

    episode_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent: Mapped[str] = mapped_column(String)
    check: Mapped[str] = mapped_column(String)
    vantage: Mapped[str] = mapped_column(String)
    verdict: Mapped[str] = mapped_column(String)
    alertname: Mapped[str] = mapped_column(String)
    severity: Mapped[str] = mapped_column(String)
    labels: Mapped[dict[str, str]] = mapped_column(Document)
    annotations: Mapped[dict[str, str]] = mapped_column(Document)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String)  # why it resolved
    deliveries: Mapped[dict[str, Any]] = mapped_column(Document)
    settled: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        # The engine's working set: one agent's alerts not yet settled.
        Index("ix_alerts_agent_settled", "agent", "settled"),
        # `monitor alerts`: what fires now (resolved_at NULL).
        Index("ix_alerts_resolved_at", "resolved_at"),
    )


class _RollupColumns:
    """What a rollup row counts for one (bucket, check, vantage, agent, kind, target, part).

    part "run": the check's runs (plain results and round summaries; a round's sub-results
    are not runs). part "proxy": one module proxy (target = its URL) as the goproxy runs of
    the check asked it. Counters are JSON objects of additive counts, merged by adding
    (monitor/store/rollups.py): failures {"class@operation": n}, verdicts {"verdict": rounds},
    latency {bucket: n} of successful runs' durations (proxy: the module fetch time), phases
    {"phase/bucket": n} of every run's phases; buckets as monitor/store/histogram.py lays out.
    """

    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    check: Mapped[str] = mapped_column(String, primary_key=True)
    vantage: Mapped[str] = mapped_column(String, primary_key=True)
    agent: Mapped[str] = mapped_column(String, primary_key=True)
    kind: Mapped[str] = mapped_column(String, primary_key=True)
    target: Mapped[str] = mapped_column(String, primary_key=True)
    part: Mapped[str] = mapped_column(String, primary_key=True)
    probes: Mapped[int] = mapped_column(BigInteger)
    successes: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[dict[str, int]] = mapped_column(Document)
    verdicts: Mapped[dict[str, int]] = mapped_column(Document)
    latency: Mapped[dict[str, int]] = mapped_column(Document)
    phases: Mapped[dict[str, int]] = mapped_column(Document)


class HourlyRollupRow(_RollupColumns, Base):
    """Runs per hour (bucket_start: the hour, UTC). Kept for years, like the daily ones."""

    __tablename__ = "rollup_hourly"


class DailyRollupRow(_RollupColumns, Base):
    """Runs per UTC day: a report's per-day charts, and its totals for days outside whole months."""

    __tablename__ = "rollup_daily"


class MonthlyRollupRow(_RollupColumns, Base):
    """Runs per calendar month (UTC): a quarter's totals are three rows per series."""

    __tablename__ = "rollup_monthly"


class UptimeRow(Base):
    """Per check and hour, which minutes had a run (reported) and which had a successful one
    (up), from any vantage or agent: bit m of each mask is minute m of the hour. Merged with
    OR, so it says "at least one location succeeded" (Grafana's uptime) for time slices of any
    whole number of minutes, chosen when the report is made."""

    __tablename__ = "rollup_uptime"

    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    check: Mapped[str] = mapped_column(String, primary_key=True)
    reported: Mapped[int] = mapped_column(BigInteger)
    up: Mapped[int] = mapped_column(BigInteger)
