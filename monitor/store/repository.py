"""Reads and writes of ProbeResults. Every function takes a Session: callers own the transaction."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from monitor.model import Failure, FailureClass, Operation, ProbeResult, Verdict, utcnow
from monitor.store import bulk, partitions, rollups
from monitor.store.models import ResultRow


def result_from_row(row: ResultRow) -> ProbeResult:
    failure = None
    if row.failure_class is not None:
        failure = Failure(
            FailureClass(row.failure_class), Operation(row.failure_operation), row.failure_detail or ""
        )
    return ProbeResult(
        id=row.id,
        agent=row.agent,
        check=row.check,
        kind=row.kind,
        vantage=row.vantage,
        target=row.target,
        started_at=row.started_at,
        ok=row.ok,
        duration_s=row.duration_s,
        phases=dict(row.phases),
        failure=failure,
        facts=dict(row.facts),
        verdict=Verdict.from_json(row.verdict) if row.verdict is not None else None,
    )


def save_results(session: Session, results: list[ProbeResult]) -> int:
    """Insert results; ids already stored are skipped. Returns how many rows were new.

    Idempotent so that a batch retried after an ambiguous failure (the commit may or may
    not have happened) or replayed from a spool is stored exactly once. The rollups
    (monitor/store/rollups.py) count exactly the results this call stored, in the same
    transaction, so they stay exact under replays too.

    The primary key is (id, started_at) (a partitioned table's unique key must hold its
    partition key), and a result may come back with its started_at cut to milliseconds (the
    spool keeps the DESIGN §3.2 JSON, which has milliseconds). So ids already stored are
    looked up within a millisecond of the batch's times before the insert; ON CONFLICT then
    covers a result twice in one batch and writers racing on the same row, and RETURNING
    (monitor/store/bulk.py) names exactly the rows that went in.
    """
    unique: dict[str, ProbeResult] = {}
    for r in results:
        unique.setdefault(r.id, r)
    if not unique:
        return 0
    lo = min(r.started_at for r in unique.values()) - _TIME_SLACK
    hi = max(r.started_at for r in unique.values()) + _TIME_SLACK
    known = bulk.stored_ids(session, list(unique), lo, hi)
    fresh = [r for r in unique.values() if r.id not in known]
    if not fresh:
        return 0
    partitions.ensure(session, {partitions.day_of(r.started_at) for r in fresh})
    inserted = bulk.insert_new(session, fresh)
    rollups.add_results(session, (r for r in fresh if r.id in inserted))
    return len(inserted)


# How far a stored started_at may be from the same result's: the spool's milliseconds.
_TIME_SLACK = timedelta(milliseconds=1)


def results_between(
    session: Session, check: str, vantage: str, since: datetime, until: datetime
) -> list[ProbeResult]:
    """Results of one check from one vantage with since <= started_at < until, oldest first."""
    stmt = (
        select(ResultRow)
        .where(
            ResultRow.check == check,
            ResultRow.vantage == vantage,
            ResultRow.started_at >= since,
            ResultRow.started_at < until,
        )
        .order_by(ResultRow.started_at, ResultRow.id)
    )
    return [result_from_row(row) for row in session.scalars(stmt)]


def latest_per_check_vantage(session: Session, check: str, *, max_age: timedelta | None = None) -> list[ProbeResult]:
    """The newest result of `check` from each (vantage, agent), ordered by vantage then agent:
    what analysis compares to tell a target down everywhere (server_down) from one that fails
    only from some networks (censorship).

    Two agents may measure through vantages of the same name from different networks,
    so the agent is part of the key: cross-vantage analysis must not merge them. With
    `max_age`, a (vantage, agent) whose newest result is older than that is left out: an
    agent that stopped reporting says nothing about the target now.
    """
    newest_first = (
        func.row_number()
        .over(
            partition_by=(ResultRow.vantage, ResultRow.agent),
            order_by=(ResultRow.started_at.desc(), ResultRow.id.desc()),
        )
        .label("rank")
    )
    recent = select(ResultRow.id, ResultRow.started_at, newest_first).where(ResultRow.check == check)
    if max_age is not None:
        recent = recent.where(ResultRow.started_at >= utcnow() - max_age)
    ranked = recent.subquery()
    stmt = (
        select(ResultRow)
        .join(ranked, (ranked.c.id == ResultRow.id) & (ranked.c.started_at == ResultRow.started_at))
        .where(ranked.c.rank == 1)
        .order_by(ResultRow.vantage, ResultRow.agent)
    )
    return [result_from_row(row) for row in session.scalars(stmt)]


def recent_results(
    session: Session, *, checks: list[str] | None = None, vantage: str | None = None, agent: str | None = None,
    since: datetime | None = None, limit: int = 50,
) -> list[ProbeResult]:
    """The `limit` newest results matching the filters, oldest first (as a log reads)."""
    stmt = select(ResultRow)
    if checks:
        stmt = stmt.where(ResultRow.check.in_(checks))
    if vantage is not None:
        stmt = stmt.where(ResultRow.vantage == vantage)
    if agent is not None:
        stmt = stmt.where(ResultRow.agent == agent)
    if since is not None:
        stmt = stmt.where(ResultRow.started_at >= since)
    newest = session.scalars(stmt.order_by(ResultRow.started_at.desc(), ResultRow.id.desc()).limit(limit)).all()
    return [result_from_row(row) for row in reversed(newest)]


def prune_older_than(session: Session, cutoff: datetime) -> int:
    """Remove the results of every whole UTC day that ended at or before `cutoff`; returns
    how many were removed. Whole days on every dialect: on PostgreSQL a day is a partition,
    dropped at once (monitor/store/partitions.py); results are so kept at least until the
    cutoff passes them, and at most a day longer. Rollups are never pruned."""
    if partitions.is_partitioned(session):
        return partitions.drop_before(session, cutoff)
    day_start = cutoff.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return session.execute(delete(ResultRow).where(ResultRow.started_at < day_start)).rowcount
