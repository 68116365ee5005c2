"""What a period's rollups say, summed per subject: each (check, vantage, agent) series, each
module proxy as each network asked it, per-day availability per network, verdict rounds per
check and day, and each check's uptime over time slices of its interval.

Reads rollups only — totals from the coarsest rows that cover the period (a quarter: three
monthly rows per series), per-day figures from daily rows (hourly at the edges) — and the
verdict episodes; never raw results, which retention may have pruned.

Uptime and reachability as Grafana synthetic monitoring defines them:
- reachability = successful runs / all runs (every vantage's, every agent's);
- uptime = time slices in which at least one run succeeded (from any vantage or agent) /
  time slices in which the check ran at all. A slice is the check's interval (from the
  config; for a check no longer configured, estimated from its busiest day) rounded up to a
  whole number of minutes that divides an hour, or of hours that divides a day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode
from monitor.store.episodes import episodes_between
from monitor.store.rollups import PROXY, RUN, Tally, read_days, read_totals, read_uptime, read_verdict_days
from monitor.report.period import Period

# Slice lengths in minutes: divisors of an hour, then of a day (whole hours).
SLICES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)

SeriesKey = tuple[str, str, str]  # check, vantage, agent
ProxyKey = tuple[str, str, str]  # vantage, agent, proxy URL


@dataclass
class Series:
    """One check's runs from one vantage of one agent."""

    check: str
    vantage: str
    agent: str
    kind: str = ""
    target: str = ""
    tally: Tally = field(default_factory=Tally)
    first: date | None = None  # the first day with runs
    last: date | None = None  # the last one
    by_day: Counter[date] = field(default_factory=Counter)  # runs per day

    @property
    def network(self) -> str:
        return f"{self.vantage}@{self.agent}"


@dataclass
class ProxySeries:
    """One module proxy as the goproxy checks of one network asked it."""

    vantage: str
    agent: str
    proxy: str
    tally: Tally = field(default_factory=Tally)
    checks: set[str] = field(default_factory=set)

    @property
    def network(self) -> str:
        return f"{self.vantage}@{self.agent}"


@dataclass
class PeriodData:
    period: Period
    series: dict[SeriesKey, Series] = field(default_factory=dict)
    proxies: dict[ProxyKey, ProxySeries] = field(default_factory=dict)
    daily: dict[tuple[str, date], list[int]] = field(default_factory=dict)  # (network, day) -> [runs, successes]
    verdict_rounds: dict[tuple[str, date], Counter[str]] = field(default_factory=dict)  # (check, day) -> verdict -> runs
    slice_minutes: dict[str, int] = field(default_factory=dict)  # check -> minutes
    uptime: dict[str, list[int]] = field(default_factory=dict)  # check -> [up slices, reported slices]
    daily_uptime: dict[date, list[int]] = field(default_factory=dict)  # day -> [up slices, reported slices], all checks
    episodes: list[Episode] = field(default_factory=list)

    @property
    def checks(self) -> list[str]:
        return sorted({s.check for s in self.series.values()})


def slice_minutes(interval_s: float) -> int:
    """The uptime slice for a check interval: the next length in SLICES (a day at most)."""
    minutes = max(1.0, interval_s / 60.0)
    for length in SLICES:
        if length >= minutes - 1e-9:
            return length
    return SLICES[-1]


def compute(
    session: Session, period: Period, intervals: Mapping[str, float], *, full: bool = True,
    on_step: Callable[[str], None] = lambda _: None,
) -> PeriodData:
    """Everything `period` needs from the store; `intervals` are the configured checks'
    intervals in seconds (others are estimated). `full=False` reads the totals only: enough
    to score the period (the trend's previous period)."""
    data = PeriodData(period)
    on_step(f"reading rollups of {period.label}")
    for rec in read_totals(session, period.start, period.end):
        if rec.part == RUN:
            key = (rec.check, rec.vantage, rec.agent)
            s = data.series.get(key)
            if s is None:
                s = data.series[key] = Series(rec.check, rec.vantage, rec.agent, rec.kind, rec.target)
            s.tally.add_counts(rec.probes, rec.successes, failures=rec.failures, verdicts=rec.verdicts, latency=rec.latency)
        elif rec.part == PROXY:
            key = (rec.vantage, rec.agent, rec.target)
            p = data.proxies.get(key)
            if p is None:
                p = data.proxies[key] = ProxySeries(rec.vantage, rec.agent, rec.target)
            p.tally.add_counts(rec.probes, rec.successes, failures=rec.failures, verdicts=rec.verdicts, latency=rec.latency)
            p.checks.add(rec.check)
    if not full:
        return data
    on_step(f"reading days of {period.label}")
    day_of = _Days()
    for epoch, check, vantage, agent, kind, target, runs, successes in read_days(session, period.start, period.end):
        s = data.series.get((check, vantage, agent))
        if s is None:  # in the daily rows but not in the coarser ones: the tables disagree; show it anyway
            s = data.series[(check, vantage, agent)] = Series(check, vantage, agent, kind, target)
        day = day_of(epoch)
        if s.last is None or day >= s.last:
            s.kind, s.target, s.last = kind, target, day
        if s.first is None or day < s.first:
            s.first = day
        s.by_day[day] += runs
        counts = data.daily.setdefault((s.network, day), [0, 0])
        counts[0] += runs
        counts[1] += successes
    for epoch, check, verdicts in read_verdict_days(session, period.start, period.end):
        data.verdict_rounds.setdefault((check, day_of(epoch)), Counter()).update(verdicts)
    for check in data.checks:
        if check in intervals:
            data.slice_minutes[check] = slice_minutes(intervals[check])
        else:  # no longer configured: the busiest day of its busiest series
            busiest = max((max(s.by_day.values()) for s in data.series.values() if s.check == check and s.by_day), default=1440)
            data.slice_minutes[check] = slice_minutes(86400.0 / busiest)
    on_step(f"reading uptime of {period.label}")
    _uptime(session, data)
    on_step(f"reading incidents of {period.label}")
    data.episodes = episodes_between(session, period.start, period.end)
    return data


def _uptime(session: Session, data: PeriodData) -> None:
    """Fold each hour's minute masks into slices of the check's length and count them."""
    folds: dict[int, tuple[int, int]] = {}  # k -> (bits at slice starts, k) for k dividing 60
    for k in SLICES:
        if 60 % k == 0:
            folds[k] = (sum(1 << (j * k) for j in range(60 // k)), k)
    by_hours: dict[tuple[str, int], list[int]] = {}  # (check, slice number) -> [reported, up], slices of hours
    default = SLICES[0]
    day_of = _Days()
    for hour, check, reported, up in read_uptime(session, data.period.start, data.period.end):
        k = data.slice_minutes.get(check, default)
        day = day_of(hour)
        if k <= 60:
            starts, width = folds[k]
            r = u = 0
            if width == 1:
                r, u = reported.bit_count(), up.bit_count()
            else:  # OR each slice's minutes down onto its first bit
                fr, fu = reported, up
                for shift in range(1, width):
                    fr |= reported >> shift
                    fu |= up >> shift
                r, u = (fr & starts).bit_count(), (fu & starts).bit_count()
            counts = data.uptime.setdefault(check, [0, 0])
            counts[0] += u
            counts[1] += r
            per_day = data.daily_uptime.setdefault(day, [0, 0])
            per_day[0] += u
            per_day[1] += r
        else:
            number = hour // 3600 // (k // 60)
            flags = by_hours.setdefault((check, number), [0, 0])
            flags[0] |= bool(reported)
            flags[1] |= bool(up)
    for (check, number), (reported, up) in by_hours.items():
        counts = data.uptime.setdefault(check, [0, 0])
        counts[0] += up
        counts[1] += reported
        day = datetime.fromtimestamp(number * data.slice_minutes[check] * 60, timezone.utc).date()
        per_day = data.daily_uptime.setdefault(day, [0, 0])
        per_day[0] += up
        per_day[1] += reported


class _Days:
    """Unix seconds -> UTC date, remembered (a quarter has 92 of them)."""

    def __init__(self) -> None:
        self._days: dict[int, date] = {}

    def __call__(self, epoch: int) -> date:
        number = epoch // 86400
        day = self._days.get(number)
        if day is None:
            day = self._days[number] = datetime.fromtimestamp(number * 86400, timezone.utc).date()
        return day


def days(period: Period) -> list[date]:
    """The UTC days the period touches, in order."""
    first, last = period.start.date(), (period.end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
