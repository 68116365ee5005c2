"""Verdict episodes and the other vantages' latest summaries, in the store. Every function
takes a Session: callers own the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode, State
from monitor.model import ProbeResult, VerdictName
from monitor.store.models import EpisodeRow, ResultRow
from monitor.store.repository import result_from_row


def current_episode(session: Session, check: str, vantage: str, agent: str) -> Episode | None:
    """The open episode of (check, vantage, agent), else its pending one, if any."""
    state = episode_state(session, check, vantage, agent)
    return state.open or state.pending


def episode_state(session: Session, check: str, vantage: str, agent: str) -> State:
    """The open episode (confirmed, not ended) and the pending one of (check, vantage, agent)."""
    rows = session.scalars(
        select(EpisodeRow)
        .where(EpisodeRow.check == check, EpisodeRow.vantage == vantage, EpisodeRow.agent == agent, EpisodeRow.ended_at.is_(None))
        .order_by(EpisodeRow.started_at.desc())
    ).all()
    opened = next((row for row in rows if row.confirmed_at is not None), None)
    pending = next((row for row in rows if row.confirmed_at is None), None)
    return State(episode_from_row(opened) if opened is not None else None, episode_from_row(pending) if pending is not None else None)


def save_episode(session: Session, episode: Episode) -> None:
    """Insert or update by id."""
    row = session.get(EpisodeRow, episode.id)
    values = {
        "check": episode.check, "vantage": episode.vantage, "agent": episode.agent, "verdict": episode.verdict.value,
        "started_at": episode.started_at, "confirmed_at": episode.confirmed_at, "ended_at": episode.ended_at,
        "last_seen_at": episode.last_seen_at, "rounds": episode.rounds, "clean": episode.clean,
        "confidence": episode.confidence, "evidence": list(episode.evidence),
    }
    if row is None:
        session.add(EpisodeRow(id=episode.id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()


def drop_episode(session: Session, episode: Episode) -> None:
    """Forget a pending episode that never opened."""
    session.execute(delete(EpisodeRow).where(EpisodeRow.id == episode.id))


def episodes_between(session: Session, since: datetime, until: datetime, check: str | None = None) -> list[Episode]:
    """Episodes that opened and overlap [since, until), oldest first (pending ones are not news)."""
    stmt = select(EpisodeRow).where(
        EpisodeRow.confirmed_at.is_not(None), EpisodeRow.started_at < until,
        (EpisodeRow.ended_at.is_(None)) | (EpisodeRow.ended_at >= since),
    )
    if check is not None:
        stmt = stmt.where(EpisodeRow.check == check)
    return [episode_from_row(row) for row in session.scalars(stmt.order_by(EpisodeRow.started_at, EpisodeRow.id))]


def list_episodes(
    session: Session, *, since: datetime | None = None, open_only: bool = False, checks: list[str] | None = None,
    agent: str | None = None, limit: int = 100,
) -> list[Episode]:
    """Episodes that opened (pending ones are not news), newest `limit` of them, oldest first;
    `since`: still open then or ended after; `open_only`: not ended yet."""
    stmt = select(EpisodeRow).where(EpisodeRow.confirmed_at.is_not(None))
    if open_only:
        stmt = stmt.where(EpisodeRow.ended_at.is_(None))
    if since is not None:
        stmt = stmt.where((EpisodeRow.ended_at.is_(None)) | (EpisodeRow.ended_at >= since))
    if checks:
        stmt = stmt.where(EpisodeRow.check.in_(checks))
    if agent is not None:
        stmt = stmt.where(EpisodeRow.agent == agent)
    newest = session.scalars(stmt.order_by(EpisodeRow.started_at.desc(), EpisodeRow.id.desc()).limit(limit)).all()
    return [episode_from_row(row) for row in reversed(newest)]


def latest_summaries(session: Session, check: str, kind: str, since: datetime, target: str | None = None) -> list[ProbeResult]:
    """The newest result of `kind` for `check` from each (vantage, agent) that started at or
    after `since`. With `target` (the check's own target: a round's summary has it, its
    sub-results have the resolver's, the address's or the URL's), the runs' last results."""
    newest_first = (
        func.row_number()
        .over(partition_by=(ResultRow.vantage, ResultRow.agent), order_by=(ResultRow.started_at.desc(), ResultRow.id.desc()))
        .label("rank")
    )
    ranked = (
        select(ResultRow.id, ResultRow.started_at, newest_first)
        .where(ResultRow.check == check, ResultRow.kind == kind, ResultRow.started_at >= since,
               *((ResultRow.target == target,) if target is not None else ()))
        .subquery()
    )
    # Joined on the whole primary key (id, started_at): on PostgreSQL it finds the row in its partition.
    on = (ranked.c.id == ResultRow.id) & (ranked.c.started_at == ResultRow.started_at)
    stmt = select(ResultRow).join(ranked, on).where(ranked.c.rank == 1).order_by(ResultRow.vantage, ResultRow.agent)
    return [result_from_row(row) for row in session.scalars(stmt)]


def another_agent_wrote_since(session: Session, agent: str, since: datetime) -> bool:
    """Whether any agent but `agent` stored a result that started at or after `since`."""
    stmt = select(ResultRow.agent).where(ResultRow.started_at >= since, ResultRow.agent != agent).limit(1)
    return session.scalars(stmt).first() is not None


def episode_from_row(row: EpisodeRow) -> Episode:
    return Episode(
        id=row.id, check=row.check, vantage=row.vantage, agent=row.agent, verdict=VerdictName(row.verdict),
        started_at=row.started_at, confirmed_at=row.confirmed_at, ended_at=row.ended_at, last_seen_at=row.last_seen_at,
        rounds=row.rounds, clean=row.clean, confidence=row.confidence, evidence=tuple(row.evidence),
    )


def sni_experiments_since(session: Session, agent: str, since: datetime) -> list[ProbeResult]:
    """This agent's tls results (tls checks, and the handshakes of site rounds) that started at
    or after `since`, oldest first: what the residual-blocking memory is recalled from."""
    stmt = select(ResultRow).where(ResultRow.agent == agent, ResultRow.kind == "tls", ResultRow.started_at >= since)
    return [result_from_row(row) for row in session.scalars(stmt.order_by(ResultRow.started_at, ResultRow.id))]
