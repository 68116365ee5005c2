"""Verdicts over time: episodes. A pure state machine, one per (check, vantage, agent).

A round's verdict is evidence, not yet an incident. The state of a (check, vantage, agent)
is at most one *open* episode (confirmed, not ended: what alerts see) and at most one
*pending* one (a verdict seen, not yet confirmed).

- An episode of verdict V is pending from the first round that says V and opens
  (confirmed_at) once `confirmations` rounds in a row have said V.
- An open episode closes (ended_at) after `clean_rounds` ok rounds in a row, or when another
  verdict's episode opens (its pending one confirmed): while a challenger is pending, the
  open one stays open, so what alerts see never drops to ok between two causes.
- An ok round drops a pending episode (it never happened, as far as alerts know); so does a
  round of another verdict (a challenger must repeat in a row).
- Failing is never ok. A round that failed with no cause established (the rules said
  `inconclusive`, and the check did fail) is an *unexplained* round:
    * while an episode of an established cause is open, it continues that episode: the
      cause last established stays the best explanation (its last_seen_at says when), and
      the round is not clean;
    * otherwise it counts towards a `failing` episode, which needs at least two rounds in a
      row whatever `confirmations` says: a single unrepeated failure stays `inconclusive`,
      a repeated one is `failing` — the round's own verdict says so (Step.verdict).
- `inconclusive` for a run that did not fail (answers that differ without proof of a lie, a
  failure that did not repeat within a round) says nothing either way: it changes nothing.
The caller stores every episode in Step.changed and deletes those in Step.dropped.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from monitor.model import Confidence, Verdict, VerdictName

V = VerdictName


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
class State:
    """What a (check, vantage, agent) has going: the open episode and a pending challenger."""

    open: Episode | None = None
    pending: Episode | None = None


@dataclass(frozen=True)
class Step:
    state: State
    verdict: Verdict  # the round's verdict after history: an unexplained failure that repeats is `failing`
    changed: tuple[Episode, ...] = ()  # to store (insert or update by id)
    dropped: tuple[Episode, ...] = ()  # pending ones that never opened: forget them


def step(
    state: State, verdict: Verdict, at: datetime, *, failed: bool, check: str, vantage: str, agent: str,
    confirmations: int, clean_rounds: int,
) -> Step:
    name = verdict.name
    unexplained = failed and name in (V.INCONCLUSIVE, V.FAILING)
    if name is V.INCONCLUSIVE and not unexplained:
        return Step(state, verdict)
    if name is V.OK:
        return _clean(state, verdict, at, clean_rounds)
    opened = state.open
    if unexplained and opened is not None and opened.verdict is not V.FAILING:
        kept = dataclasses.replace(opened, clean=0)
        since = f"the open {opened.verdict.value} episode continues: its cause was last established at {opened.last_seen_at.isoformat()}"
        dropped = (state.pending,) if state.pending is not None else ()
        return Step(State(kept, None), _with(verdict, V.INCONCLUSIVE, since), (kept,), dropped)
    if unexplained:
        name = V.FAILING
        verdict = Verdict(V.FAILING, verdict.confidence, verdict.evidence)
        confirmations = max(confirmations, 2)
    moved = _seen(state, verdict, name, at, confirmations, check=check, vantage=vantage, agent=agent)
    if unexplained:
        current = moved.state.open if moved.state.open is not None and moved.state.open.verdict is V.FAILING else moved.state.pending
        repeated = current is not None and current.rounds >= 2
        shown = verdict if repeated else _with(verdict, V.INCONCLUSIVE, "failed, cause not established; not repeated yet")
        moved = dataclasses.replace(moved, verdict=shown)
    return moved


def _clean(state: State, verdict: Verdict, at: datetime, clean_rounds: int) -> Step:
    dropped = (state.pending,) if state.pending is not None else ()
    opened = state.open
    if opened is None:
        return Step(State(), verdict, (), dropped)
    cleaner = dataclasses.replace(opened, clean=opened.clean + 1)
    if cleaner.clean >= clean_rounds:
        ended = dataclasses.replace(cleaner, ended_at=at)
        return Step(State(), verdict, (ended,), dropped)
    return Step(State(cleaner, None), verdict, (cleaner,), dropped)


def _seen(state: State, verdict: Verdict, name: VerdictName, at: datetime, confirmations: int, **who: str) -> Step:
    opened, pending = state.open, state.pending
    if opened is not None and opened.verdict is name:
        seen = _again(opened, verdict, at)
        return Step(State(seen, None), verdict, (seen,), (pending,) if pending is not None else ())
    dropped: tuple[Episode, ...] = ()
    if pending is not None and pending.verdict is name:
        challenger = _again(pending, verdict, at)
    else:
        dropped = (pending,) if pending is not None else ()
        challenger = Episode(verdict=name, started_at=at, last_seen_at=at, confidence=verdict.confidence.value,
                             evidence=verdict.evidence, **who)
    # The open episode saw a round that was not clean.
    kept = dataclasses.replace(opened, clean=0) if opened is not None else None
    if challenger.rounds < confirmations:
        return Step(State(kept, challenger), verdict, tuple(e for e in (kept, challenger) if e is not None), dropped)
    confirmed = dataclasses.replace(challenger, confirmed_at=at)
    ended = (dataclasses.replace(kept, ended_at=at),) if kept is not None else ()
    return Step(State(confirmed, None), verdict, (*ended, confirmed), dropped)


def _again(episode: Episode, verdict: Verdict, at: datetime) -> Episode:
    return dataclasses.replace(
        episode, last_seen_at=at, rounds=episode.rounds + 1, clean=0, confidence=verdict.confidence.value, evidence=verdict.evidence,
    )


def _with(verdict: Verdict, name: VerdictName, line: str) -> Verdict:
    return Verdict(name, verdict.confidence if name is not V.INCONCLUSIVE else Confidence.LOW, (*verdict.evidence, line))


def shown(state: State) -> VerdictName:
    """What an alert should see: the open episode's verdict, else ok (pending is not yet news)."""
    return state.open.verdict if state.open is not None else V.OK

