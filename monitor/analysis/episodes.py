"""Verdicts over time: episodes. A pure state machine, one per (check, vantage, agent).

A round's verdict is evidence, not yet an incident: an episode of verdict V is *pending*
from the first round that says V, *opens* (confirmed_at) once `confirmations` rounds in a
row have said V, and *closes* (ended_at) after `clean_rounds` ok rounds in a row.
- `inconclusive` says nothing either way: it neither confirms, nor counts as clean.
- A pending episode is dropped by an ok round (it never happened, as far as alerts know).
- Another non-ok verdict ends the current episode (an open one is closed at that round, a
  pending one dropped) and starts a pending one of its own: an alert keyed on the verdict
  should follow what is happening now.
The caller stores what `step` returns: the episode to keep (pending or open), and any
episode that ended or was dropped in this step.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from monitor.model import Verdict, VerdictName

QUIET = (VerdictName.OK, VerdictName.INCONCLUSIVE)


@dataclass(frozen=True)
class Episode:
    check: str
    vantage: str
    agent: str
    verdict: VerdictName
    started_at: datetime  # the first round that said it
    last_seen_at: datetime  # the last round that said it
    rounds: int = 1  # rounds that said it
    confirmed_at: datetime | None = None  # when it opened; None while pending
    ended_at: datetime | None = None
    clean: int = 0  # ok rounds in a row since it was last seen
    confidence: str = "low"
    evidence: tuple[str, ...] = ()
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def open(self) -> bool:
        return self.confirmed_at is not None and self.ended_at is None


@dataclass(frozen=True)
class Step:
    current: Episode | None  # the episode to keep going (pending or open), if any
    ended: Episode | None = None  # closed in this step (ended_at set): store it
    dropped: Episode | None = None  # a pending one that never opened: forget it


def step(
    current: Episode | None, verdict: Verdict, at: datetime, *, check: str, vantage: str, agent: str,
    confirmations: int, clean_rounds: int,
) -> Step:
    name = verdict.name
    if name is VerdictName.INCONCLUSIVE:
        return Step(current)
    if current is not None and name is current.verdict:
        seen = dataclasses.replace(
            current, last_seen_at=at, rounds=current.rounds + 1, clean=0,
            confidence=verdict.confidence.value, evidence=verdict.evidence,
        )
        if seen.confirmed_at is None and seen.rounds >= confirmations:
            seen = dataclasses.replace(seen, confirmed_at=at)
        return Step(seen)
    if name is VerdictName.OK:
        if current is None:
            return Step(None)
        if not current.open:
            return Step(None, dropped=current)
        cleaner = dataclasses.replace(current, clean=current.clean + 1)
        if cleaner.clean >= clean_rounds:
            return Step(None, ended=dataclasses.replace(cleaner, ended_at=at))
        return Step(cleaner)
    fresh = Episode(
        check=check, vantage=vantage, agent=agent, verdict=name, started_at=at, last_seen_at=at,
        confirmed_at=at if confirmations <= 1 else None, confidence=verdict.confidence.value, evidence=verdict.evidence,
    )
    if current is None:
        return Step(fresh)
    if current.open:
        return Step(fresh, ended=dataclasses.replace(current, ended_at=at))
    return Step(fresh, dropped=current)


def current_verdict(episode: Episode | None) -> VerdictName:
    """What an alert should see: the open episode's verdict, else ok (pending is not yet news)."""
    return episode.verdict if episode is not None and episode.open else VerdictName.OK
