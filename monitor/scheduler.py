"""When checks run: APScheduler's AsyncIOScheduler, one job per (check, vantage).

- each job fires every `interval` exactly, at a phase of its own: its first run comes at an
  offset taken from a hash of its id, spread over a start window (below), and every later
  run one interval after the previous one — so checks stay spread over the interval instead
  of bunching (random per-run jitter, as APScheduler applies it, both let them drift together
  and stretched every interval by half the jitter on average);
- `max_instances=1`: a check never overlaps with itself (a slow run makes the next one skip);
- `coalesce=True`: runs missed while the loop was busy collapse into one;
- a global semaphore caps how many probes run at once;
- lag (how late a run started, including the wait for the concurrency cap) is reported, and
  for a run still waiting to start, how late it is so far (updated every second);
- every run that does not happen is counted: `overlap` when the previous run of the same
  check was still going, `late` when the loop or the cap delayed runs past their next one
  (coalesced or missed) — so a check that silently stopped running shows in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobExecutionEvent, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import logs
from monitor.config import Check, Config

log = logging.getLogger(__name__)

Measure = Callable[[Check, str], Awaitable[list[Any]]]  # the probe: under the concurrency cap
Conclude = Callable[[Check, str, list[Any], bool], Awaitable[None]]  # judge and record; bool: still current
LagSink = Callable[[str, str, float], None]
SkipSink = Callable[[str, str, str, int], None]  # check, vantage, reason (overlap | late), runs

# How often the lag of runs still waiting for the concurrency cap is reported.
WAITING_REPORT_S = 1.0


def job_id(check: str, vantage: str) -> str:
    return f"{check}@{vantage}"


# First runs start over at least this long (a small agent has results within seconds) ...
START_WINDOW_S = 10.0
# ... and over long enough that they come at most this many per second, up to one interval:
# 10,000 checks at 60 s then run evenly over the minute from the first round on.
START_RATE = 100.0


def start_window(interval: float, jobs: int) -> float:
    return min(interval, max(START_WINDOW_S, jobs / START_RATE))


def phase(jid: str) -> float:
    """A fraction in [0, 1) fixed by the job id: the same check keeps its place across restarts."""
    return zlib.crc32(jid.encode()) / 2**32


class CheckScheduler:
    def __init__(
        self, measure: Measure, conclude: Conclude, *, max_concurrency: int, on_lag: LagSink, on_skip: SkipSink = lambda *_: None
    ):
        self._measure = measure
        self._conclude = conclude
        self._on_lag = on_lag
        self._on_skip = on_skip
        self._cap = asyncio.Semaphore(max_concurrency)
        self._scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._scheduler.add_listener(self._on_refused, EVENT_JOB_MAX_INSTANCES)
        self._scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self._submit_lag: dict[str, float] = {}
        self._due: dict[str, datetime] = {}  # job id -> the newest run time APScheduler acted on
        self._waiting: dict[str, datetime] = {}  # job id -> scheduled time of a run waiting for the cap
        self._checks: dict[str, Check] = {}  # job id -> check as last applied
        self._running: set[asyncio.Task] = set()
        self._reporter: asyncio.Task | None = None
        # One run per (check, vantage) at a time, also across a reload that replaced the job:
        # the new job's first run waits for the old one to finish (and shows that as lag).
        self._one_at_a_time: dict[str, asyncio.Lock] = {}
        # The conclusion (judge and record) of each job's latest run: the next one's waits for
        # it, so episodes step in order, while the next *probe* does not wait at all.
        self._concluding: dict[str, asyncio.Task] = {}

    def apply(self, config: Config) -> set[str]:
        """Make the jobs match `config`; unchanged checks keep their schedule.

        Returns the ids of jobs whose check is unchanged (their history stays valid)."""
        wanted = {job_id(c.name, v): (c, v) for c in config.checks for v in c.vantages}
        unchanged = set()
        for jid in list(self._checks):
            if jid not in wanted or wanted[jid][0] != self._checks[jid]:
                self._scheduler.remove_job(jid)
                del self._checks[jid]
                self._due.pop(jid, None)
                self._waiting.pop(jid, None)
                if jid not in wanted:
                    self._one_at_a_time.pop(jid, None)  # a run still going holds its own reference
        now = datetime.now(timezone.utc)
        for jid, (check, vantage) in wanted.items():
            if jid in self._checks:
                unchanged.add(jid)
                continue
            first = now + timedelta(seconds=phase(jid) * start_window(check.interval, len(wanted)))
            self._scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=check.interval, start_date=first),
                args=(check, vantage),
                id=jid,
                name=jid,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(check.interval)),
                next_run_time=first,
            )
            self._checks[jid] = check
            for reason in ("overlap", "late"):  # counters start at 0, so "none skipped" is a value
                self._on_skip(check.name, vantage, reason, 0)
        log.info("scheduled %d jobs (%d unchanged)", len(wanted), len(unchanged))
        return unchanged

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    @property
    def jobs(self) -> int:
        return len(self._checks)

    @property
    def running_probes(self) -> int:
        return len(self._running)

    def start(self) -> None:
        self._scheduler.start()
        self._reporter = asyncio.create_task(self._report_waiting(), name="scheduler-lag")

    async def shutdown(self, grace: float, conclude_grace: float = 15.0) -> None:
        """Stop firing; give running probes `grace` seconds to finish, then cancel them; then
        give the runs' conclusions `conclude_grace` seconds to hand their results on."""
        self._scheduler.shutdown(wait=False)
        if self._reporter is not None:
            self._reporter.cancel()
        running = set(self._running)
        if running:
            log.info("waiting up to %.1fs for %d running probes", grace, len(running))
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        concluding = set(self._concluding.values())
        if concluding:
            _, late = await asyncio.wait(concluding, timeout=conclude_grace)
            if late:
                log.warning("%d runs still being judged after %.0fs: their results are not stored", len(late), conclude_grace)
                for task in late:
                    task.cancel()

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        scheduled = max(event.scheduled_run_times)
        self._submit_lag[event.job_id] = max(0.0, (datetime.now(timezone.utc) - scheduled).total_seconds())
        self._waiting[event.job_id] = scheduled
        self._count_passed_over(event.job_id, scheduled)

    def _on_refused(self, event: JobSubmissionEvent) -> None:
        """The previous run of this job is still going: this one does not happen."""
        self._skip(event.job_id, "overlap", len(event.scheduled_run_times), "the previous run is still going")
        self._count_passed_over(event.job_id, max(event.scheduled_run_times))

    def _on_missed(self, event: JobExecutionEvent) -> None:
        self._skip(event.job_id, "late", 1, "started past its misfire grace time")

    def _count_passed_over(self, jid: str, scheduled: datetime) -> None:
        """Run times between the last one acted on and this one were coalesced away (the
        loop or the cap kept them from firing): APScheduler drops them without an event."""
        check = self._checks.get(jid)
        last, self._due[jid] = self._due.get(jid), scheduled
        if check is None or last is None:
            return
        passed_over = round((scheduled - last).total_seconds() / check.interval) - 1
        if passed_over > 0:
            self._skip(jid, "late", passed_over, "runs came due while an earlier one waited")

    def _skip(self, jid: str, reason: str, runs: int, why: str) -> None:
        check = self._checks.get(jid)
        if check is None:
            return
        vantage = jid.rsplit("@", 1)[1]
        log.warning("check %s from %s: %d run(s) skipped (%s): %s", check.name, vantage, runs, reason, why)
        self._on_skip(check.name, vantage, reason, runs)

    async def _report_waiting(self) -> None:
        """A run held back by the concurrency cap is late now, not only once it starts."""
        while True:
            await asyncio.sleep(WAITING_REPORT_S)
            now = datetime.now(timezone.utc)
            for jid, scheduled in list(self._waiting.items()):
                check = self._checks.get(jid)
                if check is not None:
                    self._on_lag(check.name, jid.rsplit("@", 1)[1], max(0.0, (now - scheduled).total_seconds()))

    async def _run(self, check: Check, vantage: str) -> None:
        """Probe under the concurrency cap; then conclude (judge and record) on a task of its
        own, after the previous run of the same job concluded. The judge may wait on the store:
        that must hold neither a probe's slot nor this job's next run."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        jid = job_id(check.name, vantage)
        try:
            waited = time.monotonic()
            with logs.context(check=check.name, vantage=vantage):
                async with self._one_at_a_time.setdefault(jid, asyncio.Lock()):
                    async with self._cap:
                        self._waiting.pop(jid, None)
                        lag = self._submit_lag.pop(jid, 0.0) + (time.monotonic() - waited)
                        if self._checks.get(jid) is check:  # a removed check's series stays gone
                            self._on_lag(check.name, vantage, lag)
                        results = await self._measure(check, vantage)
                    self._conclude_in_order(jid, check, vantage, results)
        finally:
            self._running.discard(task)

    def _conclude_in_order(self, jid: str, check: Check, vantage: str, results: list[Any]) -> None:
        previous = self._concluding.get(jid)

        async def conclude() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            # A run whose check a reload removed or changed meanwhile is concluded as stale.
            await self._conclude(check, vantage, results, self._checks.get(jid) is check)

        task = asyncio.create_task(conclude(), name=f"conclude {jid}")  # carries the log context
        self._concluding[jid] = task
        task.add_done_callback(lambda t: self._concluded(jid, t))

    def _concluded(self, jid: str, task: asyncio.Task) -> None:
        if self._concluding.get(jid) is task:
            del self._concluding[jid]
        if not task.cancelled() and task.exception() is not None:
            log.error("concluding a run of %s failed: %r", jid, task.exception(), exc_info=task.exception())
