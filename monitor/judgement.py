"""The judge step: verdicts across vantages and over time, for every run of every check. The
daemon and `monitor probe --once` call it alike, after the probe runner and before the
results are written; the rules themselves are pure (monitor/analysis/runs.py).

`Judge.conclude(check, results)`:
1. gathers what the other vantages saw of the same check: the latest run of each other
   (vantage, agent) — this process's own, kept in memory, and other agents' from the store —
   not older than analysis.cross_vantage_max_age, each marked as a named control or not
   (analysis.controls, `role: control` vantages, or facts.control_vantage on the result);
2. judges the run with them (`judge_run`) and writes the outcome on the run's last result:
   its verdict, and for a round's summary its ok and the failure the verdict rests on, the
   facts other vantages read, and `compared_with`; a control vantage's results say so
   (facts.control_vantage) for the agents that share the store;
3. steps the (check, vantage, agent) episode state (monitor/analysis/episodes.py): the
   round's verdict becomes `failing` when a failure with no established cause repeats;
4. returns a Conclusion: the run's verdict, and what monitor_verdict shows (the open
   episode's verdict, else ok).
Episode state is read from the store the first time a (check, vantage) is judged and kept
in memory from then on; what cannot be written while the store is unreachable is written
when it is back. Until a state could be read once, its episodes do not move (`shown` is
None). Without a store (`probe --once --no-store`) the state lives in memory only.

What else spans rounds — the residual-blocking hold-off and the last control that
completed per (vantage, address, port) — is the probes' memory (probes/_sni.py), because a
probe must consult it before it sends a control and concurrent checks must see a trigger
at once; `sni_history` gives the stored results it is recalled from when an agent starts.
Blocking: call `conclude` in a thread from async code — a store thread when `use_store()`
said it may use the store, any thread otherwise (it then touches memory only).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode, State, shown, step
from monitor.analysis.observations import PeerView, peer_view
from monitor.analysis.runs import judge_run
from monitor.config import Check, Config
from monitor.model import ProbeResult, Verdict, VerdictName, utcnow
from monitor.store import make_engine
from monitor.store.engine import describe_error
from monitor.store.episodes import (
    another_agent_wrote_since,
    drop_episode,
    episode_state,
    latest_summaries,
    save_episode,
    sni_experiments_since,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Conclusion:
    verdict: Verdict  # this run's verdict (also on the run's last result)
    shown: VerdictName | None  # what monitor_verdict shows: the open episode's, else ok; None while unknown
    episode: Episode | None  # the open episode, if any


# After the store failed (or did not answer), how long runs are judged without it.
STORE_RETRY_S = 10.0
# How often the judge asks the store whether another agent wrote results lately (see _store_may_add).
OTHER_AGENTS_RECHECK_S = 30.0


class Judge:
    def __init__(self, config: Config, *, store: bool = True, others_recheck_s: float = OTHER_AGENTS_RECHECK_S):
        self.engine = make_engine(config.storage.dsn) if store else None
        self.others_recheck_s = others_recheck_s
        self.apply(config)
        self._lock = threading.Lock()  # the maps below: runs are judged from several threads
        self._store_lock = threading.Lock()  # one writer of pending episode changes at a time
        # check -> (vantage, agent) -> its last run's last result; by check, as a run reads its own
        self._latest: dict[str, dict[tuple[str, str], ProbeResult]] = {}
        self._started = time.monotonic()
        self._others_checked_at: float | None = None  # when the store was last asked for other agents' results
        self._others_seen = True  # whether it had any (until asked: assume so)
        self._states: dict[tuple[str, str], State] = {}  # (check, vantage) -> episodes, once known
        self._unsaved: dict[str, Episode] = {}  # episode id -> its latest version, not yet stored
        self._undropped: dict[str, Episode] = {}  # pending episodes to delete from the store
        self._store_ok = True
        self._retry_at = 0.0  # while the store is down: time.monotonic() after which it is tried again
        self._probing = False  # a judge step is trying the store again (the others judge from memory)

    def apply(self, config: Config) -> None:
        """Take a (re)loaded config: analysis settings, this agent, the named controls."""
        self.analysis = config.analysis
        self.agent = config.agent
        self._controls = frozenset(config.analysis.controls) | {f"{v.name}@{config.agent}" for v in config.vantages if v.role == "control"}

    def close(self) -> None:
        if self.engine is not None:
            self._flush()
            self.engine.dispose()

    def is_control(self, vantage: str, agent: str) -> bool:
        return vantage in self._controls or f"{vantage}@{agent}" in self._controls

    # --- one run ---------------------------------------------------------------------------

    def use_store(self) -> bool:
        """Whether the next judge step may read and write the store (call it, then conclude
        with `online=` its answer). While the store works: yes. After it failed: no for
        STORE_RETRY_S, then yes for one step at a time until one gets through — so a store
        that hangs holds at most one step, and the others go on from memory."""
        with self._lock:
            if self.engine is None:
                return False
            if self._store_ok:
                return True
            if self._probing or time.monotonic() < self._retry_at:
                return False
            self._probing = True
            return True

    def conclude(self, check: Check, results: list[ProbeResult], *, online: bool = True) -> Conclusion:
        """Judge one run (its results, last one last) and step its episode. `online`: the store
        may be used (other agents' results, episodes not yet in memory, saving changes); without
        it the step uses memory alone and changes wait for a later online step."""
        last = results[-1]
        key = (check.name, last.vantage)
        online = online and self.engine is not None
        peers = self._peers(check, last, online)
        judged = judge_run(results, peers, self.analysis)
        judged.apply(results)
        last.facts["compared_with"] = [p.name for p in peers]
        if self.is_control(last.vantage, last.agent):
            last.facts["control_vantage"] = True
        with self._lock:
            self._latest.setdefault(check.name, {})[(last.vantage, last.agent)] = last
        state = self._state(key, online)
        if state is None:  # the store was never readable for it: no episode moves yet
            return Conclusion(judged.verdict, None, None)
        moved = step(
            state, judged.verdict, last.started_at, failed=bool(judged.failed), check=check.name, vantage=last.vantage, agent=last.agent,
            confirmations=self.analysis.confirmations, clean_rounds=self.analysis.clean_rounds,
        )
        last.verdict = moved.verdict
        for episode in moved.changed:
            if episode.ended_at is not None:
                log.info("episode ended: check=%s vantage=%s verdict=%s rounds=%d", episode.check, episode.vantage, episode.verdict.value, episode.rounds)
            elif episode.confirmed_at == last.started_at:
                log.info("episode opened: check=%s vantage=%s verdict=%s confidence=%s", episode.check, episode.vantage,
                         episode.verdict.value, episode.confidence)
        with self._lock:
            self._states[key] = moved.state
            for episode in moved.changed:
                self._unsaved[episode.id] = episode
            for episode in moved.dropped:
                self._unsaved.pop(episode.id, None)
                self._undropped[episode.id] = episode
        if online:
            self._flush()
        return Conclusion(moved.verdict, shown(moved.state), moved.state.open)

    def forget_checks_except(self, keep: set[tuple[str, str]]) -> None:
        """Drop the memory of (check, vantage) pairs no longer configured."""
        with self._lock:
            self._states = {k: v for k, v in self._states.items() if k in keep}
            self._latest = {
                name: kept for name, runs in self._latest.items()
                if (kept := {(v, a): r for (v, a), r in runs.items() if (name, v) in keep or a != self.agent})
            }

    # --- other vantages ------------------------------------------------------------------------

    def _peers(self, check: Check, last: ProbeResult, online: bool) -> list[PeerView]:
        since = last.started_at - timedelta(seconds=self.analysis.cross_vantage_max_age)
        found: dict[tuple[str, str], ProbeResult] = {}
        with self._lock:
            for (vantage, agent), r in self._latest.get(check.name, {}).items():
                if r.started_at >= since:
                    found[(vantage, agent)] = r
        for r in self._stored_peers(check, last, since) if online and self._store_may_add(check, since) else ():
            known = found.get((r.vantage, r.agent))
            if known is None or r.started_at > known.started_at:
                found[(r.vantage, r.agent)] = r
        found.pop((last.vantage, last.agent), None)
        return [
            peer_view(r, control=self.is_control(r.vantage, r.agent) or bool(r.facts.get("control_vantage")))
            for _, r in sorted(found.items()) if r.id != last.id
        ]

    def _store_may_add(self, check: Check, since: datetime) -> bool:
        """Whether the store may hold peers that memory does not: another agent's results, or
        (for a check with several vantages) this agent's own from before this process started.
        Asking the store once per run costs more than the probe itself at thousands of checks;
        asking whether any other agent wrote lately costs one query every `others_recheck_s`
        — a newly started agent's results are consulted at most that much later."""
        if len(check.vantages) > 1 and time.monotonic() - self._started < self.analysis.cross_vantage_max_age:
            return True
        now = time.monotonic()
        with self._lock:
            fresh = self._others_checked_at is not None and now - self._others_checked_at < self.others_recheck_s
            if fresh:
                return self._others_seen
            self._others_checked_at = now  # one step asks; the others use the previous answer meanwhile
        try:
            with Session(self.engine) as session:
                seen = another_agent_wrote_since(session, self.agent, since)
        except SQLAlchemyError as e:
            self._store_down(e)
            with self._lock:
                self._others_checked_at = None
            return True
        with self._lock:
            self._others_seen = seen
        return seen

    def _stored_peers(self, check: Check, last: ProbeResult, since: datetime) -> list[ProbeResult]:
        try:
            with Session(self.engine) as session:
                found = latest_summaries(session, check.name, last.kind, since, target=last.target)
        except SQLAlchemyError as e:
            self._store_down(e)
            return []
        self._store_up()
        return found

    # --- episodes in the store -------------------------------------------------------------

    def _state(self, key: tuple[str, str], online: bool) -> State | None:
        with self._lock:
            if key in self._states:
                return self._states[key]
        if self.engine is None:
            state = State()
        elif not online:
            return None  # unknown until the store answers: no episode is invented meanwhile
        else:
            try:
                with Session(self.engine) as session:
                    state = episode_state(session, key[0], key[1], self.agent)
            except SQLAlchemyError as e:
                self._store_down(e)
                return None
            self._store_up()
        with self._lock:
            return self._states.setdefault(key, state)

    def _flush(self) -> None:
        """Write the episode changes not stored yet (all of them, oldest state overwritten)."""
        if self.engine is None:
            return
        with self._store_lock:
            with self._lock:
                unsaved, undropped = dict(self._unsaved), dict(self._undropped)
            if not unsaved and not undropped:
                return
            try:
                with Session(self.engine) as session, session.begin():
                    for episode in undropped.values():
                        drop_episode(session, episode)
                    for episode in unsaved.values():
                        save_episode(session, episode)
            except SQLAlchemyError as e:
                self._store_down(e)
                return
            self._store_up()
            with self._lock:
                for episode_id, episode in unsaved.items():
                    if self._unsaved.get(episode_id) is episode:  # not changed again meanwhile
                        del self._unsaved[episode_id]
                for episode_id in undropped:
                    self._undropped.pop(episode_id, None)

    def store_timed_out(self, seconds: float) -> None:
        """The caller gave up on a judge step after `seconds`: treat the store as down."""
        self._store_down(f"no answer within {seconds:g} s")

    def _store_down(self, e: SQLAlchemyError | str) -> None:
        if self._store_ok:
            log.warning("store unavailable to the judge step: cross-vantage results of other agents are not consulted and "
                        "episode changes wait in memory until it is back: %s", e if isinstance(e, str) else describe_error(e))
        with self._lock:
            self._store_ok, self._probing = False, False
            self._retry_at = time.monotonic() + STORE_RETRY_S

    def _store_up(self) -> None:
        if not self._store_ok:
            log.info("store available to the judge step again")
        with self._lock:
            self._store_ok, self._probing = True, False

    # --- residual-blocking memory ---------------------------------------------------------------

    def sni_history(self, seconds: float) -> list[ProbeResult]:
        """This agent's SNI experiments of the last `seconds` in the store (none if unreachable)."""
        if self.engine is None:
            return []
        try:
            with Session(self.engine) as session:
                return sni_experiments_since(session, self.agent, utcnow() - timedelta(seconds=seconds))
        except SQLAlchemyError as e:
            self._store_down(e)
            return []

