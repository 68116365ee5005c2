"""The scheduler says when runs do not happen or wait: skipped runs are counted with their
reason, and a run held back by the concurrency cap shows its lag before it starts."""

from __future__ import annotations

import asyncio
from collections import Counter

from monitor.config import Check, load_config_text
from monitor.scheduler import CheckScheduler


async def done(check: Check, vantage: str, results: list, current: bool) -> None:
    pass


def config(*checks: str, cap: int = 64):
    lines = "\n".join(f'  - {{name: {name}, kind: tcp, target: "127.0.0.1:9", interval: 400ms, timeout: 300ms}}' for name in checks)
    return load_config_text(f"scheduler: {{max_concurrency: {cap}}}\nchecks:\n{lines}\n")


async def test_a_run_still_going_makes_the_next_ones_skip_and_they_are_counted() -> None:
    skipped: Counter[tuple[str, str, str]] = Counter()

    async def slow(check: Check, vantage: str) -> list:
        await asyncio.sleep(1.5)  # several intervals: the next runs come due while this one runs
        return []

    cfg = config("slow")
    scheduler = CheckScheduler(slow, done, max_concurrency=64, on_lag=lambda *a: None,
                               on_skip=lambda c, v, reason, n: skipped.update({(c, v, reason): n}))
    scheduler.apply(cfg)
    scheduler.start()
    try:
        await asyncio.sleep(3.5)
    finally:
        await scheduler.shutdown(0.1)
    assert skipped[("slow", "local", "overlap")] >= 2, skipped


async def test_a_run_waiting_for_the_cap_reports_its_lag_before_it_starts() -> None:
    lags: dict[str, list[float]] = {"a": [], "b": []}
    started: list[str] = []

    async def hog(check: Check, vantage: str) -> list:
        started.append(check.name)
        await asyncio.sleep(3.0)  # holds the only slot
        return []

    cfg = config("a", "b", cap=1)
    scheduler = CheckScheduler(hog, done, max_concurrency=1, on_lag=lambda c, v, s: lags[c].append(s))
    scheduler.apply(cfg)
    scheduler.start()
    try:
        await asyncio.sleep(2.5)
    finally:
        await scheduler.shutdown(0.1)
    assert len(started) == 1  # the other one never got the slot in this window...
    waiting = "b" if started == ["a"] else "a"
    assert max(lags[waiting], default=0.0) >= 1.0, lags  # ...yet its growing lag was reported
