"""Alerts in the store (table `alerts`, one row per verdict episode that fired) and the
episodes the alert engine reads. Every function takes a Session: callers own the transaction.

The row is what lets a restart keep its word: an alert that fired stays firing (same
startsAt, same labels), one that resolved never fires again, and what each sink was already
told is not told twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode
from monitor.model import format_time, parse_time
from monitor.store.episodes import episode_from_row
from monitor.store.models import AlertRow, EpisodeRow


@dataclass
class Delivery:
    """What one sink was told about one alert, and when (None: not yet)."""

    sent_at: datetime | None = None  # the last firing notification it accepted
    resolved_sent_at: datetime | None = None  # the resolution it accepted
    given_up: bool = False  # undeliverable for too long: no more attempts

    def to_json(self) -> dict[str, Any]:
        return {
            "sent_at": format_time(self.sent_at) if self.sent_at else None,
            "resolved_sent_at": format_time(self.resolved_sent_at) if self.resolved_sent_at else None,
            "given_up": self.given_up,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Delivery:
        return cls(
            sent_at=parse_time(d["sent_at"]) if d.get("sent_at") else None,
            resolved_sent_at=parse_time(d["resolved_sent_at"]) if d.get("resolved_sent_at") else None,
            given_up=bool(d.get("given_up")),
        )


@dataclass
class AlertRecord:
    episode_id: str
    agent: str
    check: str
    vantage: str
    verdict: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    fired_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None
    deliveries: dict[str, Delivery] = field(default_factory=dict)  # by sink id
    settled: bool = False

    @property
    def firing(self) -> bool:
        return self.resolved_at is None

    def delivery(self, sink: str) -> Delivery:
        return self.deliveries.setdefault(sink, Delivery())

    def to_json(self) -> dict[str, Any]:
        """The shape `monitor alerts --json` prints."""
        return {
            "alertname": self.alertname, "severity": self.severity, "status": "firing" if self.firing else "resolved",
            "check": self.check, "vantage": self.vantage, "agent": self.agent, "verdict": self.verdict,
            "labels": self.labels, "annotations": self.annotations,
            "fired_at": format_time(self.fired_at), "resolved_at": format_time(self.resolved_at) if self.resolved_at else None,
            "resolution": self.resolution, "episode_id": self.episode_id,
            "deliveries": {sink: d.to_json() for sink, d in sorted(self.deliveries.items())},
        }


def save_alerts(session: Session, records: list[AlertRecord]) -> None:
    """Insert or update each by episode id (one query for the existing rows)."""
    existing = {row.episode_id: row for row in session.scalars(select(AlertRow).where(AlertRow.episode_id.in_([r.episode_id for r in records])))}
    for record in records:
        values = {
            "agent": record.agent, "check": record.check, "vantage": record.vantage, "verdict": record.verdict,
            "alertname": record.alertname, "severity": record.severity, "labels": dict(record.labels),
            "annotations": dict(record.annotations), "fired_at": record.fired_at, "resolved_at": record.resolved_at,
            "resolution": record.resolution, "deliveries": {k: d.to_json() for k, d in record.deliveries.items()},
            "settled": record.settled,
        }
        row = existing.get(record.episode_id)
        if row is None:
            session.add(AlertRow(episode_id=record.episode_id, **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)
    session.flush()


def unsettled_alerts(session: Session, agent: str) -> list[AlertRecord]:
    """The alerts of `agent` the engine still has work on: firing, or resolved with a sink not yet told."""
    stmt = select(AlertRow).where(AlertRow.agent == agent, AlertRow.settled.is_(False)).order_by(AlertRow.fired_at)
    return [_record(row) for row in session.scalars(stmt)]


def firing_alerts(session: Session, agent: str | None = None) -> list[AlertRecord]:
    """What fires now, every agent's (or one's), oldest first."""
    stmt = select(AlertRow).where(AlertRow.resolved_at.is_(None))
    if agent is not None:
        stmt = stmt.where(AlertRow.agent == agent)
    return [_record(row) for row in session.scalars(stmt.order_by(AlertRow.fired_at, AlertRow.episode_id))]


def fired_episode_ids(session: Session, ids: Iterable[str]) -> set[str]:
    """Which of these episodes already have an alert (firing or not): they never fire again."""
    wanted = list(ids)
    if not wanted:
        return set()
    return set(session.scalars(select(AlertRow.episode_id).where(AlertRow.episode_id.in_(wanted))))


def open_episodes(session: Session, agent: str) -> list[Episode]:
    """`agent`'s episodes that are open now (confirmed, not ended)."""
    stmt = select(EpisodeRow).where(
        EpisodeRow.agent == agent, EpisodeRow.confirmed_at.is_not(None), EpisodeRow.ended_at.is_(None)
    ).order_by(EpisodeRow.started_at, EpisodeRow.id)
    return [episode_from_row(row) for row in session.scalars(stmt)]


def episodes_by_id(session: Session, ids: Iterable[str]) -> dict[str, Episode]:
    wanted = list(ids)
    if not wanted:
        return {}
    return {row.id: episode_from_row(row) for row in session.scalars(select(EpisodeRow).where(EpisodeRow.id.in_(wanted)))}


def _record(row: AlertRow) -> AlertRecord:
    return AlertRecord(
        episode_id=row.episode_id, agent=row.agent, check=row.check, vantage=row.vantage, verdict=row.verdict,
        alertname=row.alertname, severity=row.severity, labels=dict(row.labels), annotations=dict(row.annotations),
        fired_at=row.fired_at, resolved_at=row.resolved_at, resolution=row.resolution,
        deliveries={k: Delivery.from_json(v) for k, v in (row.deliveries or {}).items()}, settled=row.settled,
    )
