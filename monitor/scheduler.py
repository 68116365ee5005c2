"""When checks run: APScheduler's AsyncIOScheduler, one job per (check, vantage).

- each job fires every `interval` with jitter, and its first run is spread over the first
  interval so that a hundred checks do not all start in the same second;
- `max_instances=1`: a check never overlaps with itself (a slow run makes the next one skip);
- `coalesce=True`: runs missed while the loop was busy collapse into one;
- a global semaphore caps how many probes run at once;
- lag (how late a run started, including the wait for the concurrency cap) is reported.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import logs
from monitor.config import Check, Config

log = logging.getLogger(__name__)

Measure = Callable[[Check, str], Awaitable[None]]
LagSink = Callable[[str, str, float], None]


def job_id(check: str, vantage: str) -> str:
    return f"{check}@{vantage}"


def jitter_for(interval: float) -> float:
    """Up to 10 % of the interval, at most 10 s: enough to de-synchronise, not to blur."""
    return min(interval * 0.1, 10.0)


class CheckScheduler:
    def __init__(self, measure: Measure, *, max_concurrency: int, on_lag: LagSink):
        self._measure = measure
        self._on_lag = on_lag
        self._cap = asyncio.Semaphore(max_concurrency)
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._submit_lag: dict[str, float] = {}
        self._checks: dict[str, Check] = {}  # job id -> check as last applied
        self._running: set[asyncio.Task] = set()

    def apply(self, config: Config) -> set[str]:
        """Make the jobs match `config`; unchanged checks keep their schedule.

        Returns the ids of jobs whose check is unchanged (their history stays valid)."""
        wanted = {job_id(c.name, v): (c, v) for c in config.checks for v in c.vantages}
        unchanged = set()
        for jid in list(self._checks):
            if jid not in wanted or wanted[jid][0] != self._checks[jid]:
                self._scheduler.remove_job(jid)
                del self._checks[jid]
        now = datetime.now(timezone.utc)
        for jid, (check, vantage) in wanted.items():
            if jid in self._checks:
                unchanged.add(jid)
                continue
            first = now + timedelta(seconds=random.uniform(0, min(check.interval, 10.0)))
            self._scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=check.interval, jitter=jitter_for(check.interval), start_date=first),
                args=(check, vantage),
                id=jid,
                name=jid,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(check.interval)),
                next_run_time=first,
            )
            self._checks[jid] = check
        log.info("scheduled %d jobs (%d unchanged)", len(wanted), len(unchanged))
        return unchanged

    def start(self) -> None:
        self._scheduler.start()

    async def shutdown(self, grace: float) -> None:
        """Stop firing; give running probes `grace` seconds to finish, then cancel them."""
        self._scheduler.shutdown(wait=False)
        running = set(self._running)
        if running:
            log.info("waiting up to %.1fs for %d running probes", grace, len(running))
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        scheduled = max(event.scheduled_run_times)
        self._submit_lag[event.job_id] = max(0.0, (datetime.now(timezone.utc) - scheduled).total_seconds())

    async def _run(self, check: Check, vantage: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            waited = time.monotonic()
            with logs.context(check=check.name, vantage=vantage):
                async with self._cap:
                    jid = job_id(check.name, vantage)
                    lag = self._submit_lag.pop(jid, 0.0) + (time.monotonic() - waited)
                    self._on_lag(check.name, vantage, lag)
                    await self._measure(check, vantage)
        finally:
            self._running.discard(task)
