"""Verdicts across vantages and over time: the store-side half of analysis, shared by the
daemon and `monitor probe --once` so that both read and write the store alike.

After a run of a check that has a verdict (site, goproxy, dns), `Judge.conclude`:
1. reads the latest results of the same check from the other vantages (other agents' or
   earlier runs', not older than analysis.cross_vantage_max_age) and judges the run again
   with them ("fails here, works there" separates censorship from server_down) — the
   run's summary result gets the final verdict and findings before it is stored;
2. steps the (check, vantage, agent) episode (monitor/analysis/episodes.py) and stores it.
It returns the verdict the exporter shows (the open episode's, else ok). The store being
unreachable is not fatal: the run keeps the verdict its probe gave, and no episode moves.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.analysis.episodes import current_verdict, step
from monitor.analysis.observations import attempts_of, peer_view
from monitor.analysis.verdicts import judge_module, judge_site
from monitor.config import AnalysisConfig, Check
from monitor.model import ProbeResult, VerdictName
from monitor.store import make_engine
from monitor.store.engine import describe_error
from monitor.store.episodes import (
    current_episode,
    drop_episode,
    latest_summaries,
    save_episode,
)

log = logging.getLogger(__name__)


class Judge:
    def __init__(self, url: str, analysis: AnalysisConfig, agent: str):
        self.engine = make_engine(url)
        self.analysis = analysis
        self.agent = agent

    def close(self) -> None:
        self.engine.dispose()

    def conclude(self, check: Check, results: list[ProbeResult]) -> VerdictName | None:
        """Judge one run (its results, summary last) with the other vantages, step its episode.
        None when the check gives no verdict. Blocking: call it in a thread from async code."""
        summary = results[-1] if results else None
        if summary is None or (summary.verdict is None and summary.kind not in ("site", "goproxy")):
            return None
        try:
            with Session(self.engine) as session, session.begin():
                since = summary.started_at - timedelta(seconds=self.analysis.cross_vantage_max_age)
                peers = [
                    p for p in latest_summaries(session, check.name, summary.kind, since)
                    if (p.vantage, p.agent) != (summary.vantage, summary.agent) and p.id != summary.id
                ]
                self._judge(summary, results, peers)
                assert summary.verdict is not None
                moved = step(
                    current_episode(session, check.name, summary.vantage, summary.agent), summary.verdict, summary.started_at,
                    check=check.name, vantage=summary.vantage, agent=summary.agent,
                    confirmations=self.analysis.confirmations, clean_rounds=self.analysis.clean_rounds,
                )
                if moved.dropped is not None:
                    drop_episode(session, moved.dropped)
                for episode in (moved.ended, moved.current):
                    if episode is not None:
                        save_episode(session, episode)
                return current_verdict(moved.current)
        except SQLAlchemyError as e:
            log.warning("check %s from %s: store unavailable for cross-vantage verdicts and episodes: %s", check.name, summary.vantage, describe_error(e))
            return None

    def _judge(self, summary: ProbeResult, results: list[ProbeResult], peers: list[ProbeResult]) -> None:
        summary.facts["compared_with"] = [f"{p.vantage}@{p.agent}" for p in peers]
        if summary.kind == "site":
            judgement = judge_site(attempts_of(results), [peer_view(p) for p in peers], degraded_threshold=self.analysis.degraded_threshold)
            summary.verdict = judgement.verdict
            summary.facts.pop("subtype", None)  # the probe's own, without the other vantages
            summary.facts.update(judgement.facts())
            summary.ok = judgement.verdict.name is VerdictName.OK
        elif summary.kind == "goproxy":
            summary.verdict = judge_module(summary, peers)
