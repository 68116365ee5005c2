"""What the exporter knows: the latest result per (check, vantage) and running totals.

Results arrive from the scheduler as they are measured; the Collector reads this state at
scrape time (prometheus-client's custom-collector pattern), so a scrape never probes and
series for a check vanish as soon as `forget_checks_except` drops it after a reload.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import accumulate

from monitor.model import ProbeResult

# Phase-duration buckets: loopback connects are tens of microseconds, a slow module zip is
# tens of seconds; these cover both with ~3 buckets per decade.
PHASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SeriesKey = tuple[str, str, str]  # (check, vantage, target): a DNS round has one target per resolver


@dataclass
class Histogram:
    # Per bucket, not cumulative: an observation touches one slot (a scrape adds them up).
    counts: list[int] = field(default_factory=lambda: [0] * len(PHASE_BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        i = bisect_left(PHASE_BUCKETS, value)  # the first bound >= value, as `le` means
        if i < len(PHASE_BUCKETS):
            self.counts[i] += 1
        self.total += 1
        self.sum += value

    def cumulative(self) -> list[int]:
        return list(accumulate(self.counts))


@dataclass
class ExporterState:
    """Guarded by a lock so that a scrape always sees one consistent snapshot."""

    latest: dict[SeriesKey, ProbeResult] = field(default_factory=dict)
    # series key -> results measured (probes/s on the boards)
    runs: dict[SeriesKey, int] = field(default_factory=lambda: defaultdict(int))
    # series key + (class, operation) -> count
    failures: dict[tuple[str, str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    # series key + (phase, transport) -> histogram; transport is "" where it does not apply
    phases: dict[tuple[str, str, str, str, str], Histogram] = field(default_factory=dict)
    # (check, vantage) -> seconds the last run started late
    scheduler_lag: dict[tuple[str, str], float] = field(default_factory=dict)
    # (check, vantage, reason) -> runs that did not happen (monitor/scheduler.py)
    skipped_runs: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    # (check, vantage) -> the current verdict (the open episode's, else ok); checks that judge only
    verdicts: dict[tuple[str, str], str] = field(default_factory=dict)
    reload_ok: bool = True
    reload_time: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, result: ProbeResult) -> None:
        key = (result.check, result.vantage, result.target)
        transport = str(result.facts.get("transport", ""))
        with self._lock:
            self.latest[key] = result
            self.runs[key] += 1
            if result.failure is not None:
                self.failures[key + (result.failure.cls.value, result.failure.operation.value)] += 1
            for phase, seconds in result.phases.items():
                hist = self.phases.setdefault(key + (phase, transport), Histogram())
                hist.observe(seconds)

    def record_skip(self, check: str, vantage: str, reason: str, runs: int) -> None:
        with self._lock:
            self.skipped_runs[(check, vantage, reason)] += runs

    def record_verdict(self, check: str, vantage: str, verdict: str) -> None:
        with self._lock:
            self.verdicts[(check, vantage)] = verdict

    def forget_checks_except(self, keep: set[tuple[str, str]]) -> None:
        """Drop every series whose (check, vantage) is no longer configured."""
        with self._lock:
            for store in (self.latest, self.runs, self.scheduler_lag, self.skipped_runs, self.failures, self.phases, self.verdicts):
                for key in [k for k in store if (k[0], k[1]) not in keep]:
                    del store[key]

    def snapshot(self) -> ExporterState:
        with self._lock:
            return ExporterState(
                latest=dict(self.latest),
                runs=dict(self.runs),
                failures=dict(self.failures),
                phases={k: Histogram(list(h.counts), h.total, h.sum) for k, h in self.phases.items()},
                scheduler_lag=dict(self.scheduler_lag),
                skipped_runs=dict(self.skipped_runs),
                verdicts=dict(self.verdicts),
                reload_ok=self.reload_ok,
                reload_time=self.reload_time,
            )
