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


async def test_a_check_changed_while_its_run_is_in_flight_never_overlaps_and_the_old_run_concludes_as_stale() -> None:
    events: list[tuple[str, float, bool | None]] = []  # (what, when, current)

    async def probe(check: Check, vantage: str) -> list:
        events.append((f"start {check.interval:g}", asyncio.get_running_loop().time(), None))
        await asyncio.sleep(1.2)
        events.append((f"end {check.interval:g}", asyncio.get_running_loop().time(), None))
        return []

    async def conclude(check: Check, vantage: str, results: list, current: bool) -> None:
        events.append((f"conclude {check.interval:g}", asyncio.get_running_loop().time(), current))

    scheduler = CheckScheduler(probe, conclude, max_concurrency=64, on_lag=lambda *a: None)
    scheduler.apply(config("c"))  # interval 400ms
    scheduler.start()
    try:
        while not any(e[0] == "start 0.4" for e in events):
            await asyncio.sleep(0.05)
        changed = load_config_text('checks:\n  - {name: c, kind: tcp, target: "127.0.0.1:9", interval: 500ms, timeout: 300ms}\n')
        scheduler.apply(changed)  # the same job id, a new check, while the old run is in flight
        await asyncio.sleep(3.0)
    finally:
        await scheduler.shutdown(2.0)
    old_end = next(t for what, t, _ in events if what == "end 0.4")
    new_start = next(t for what, t, _ in events if what == "start 0.5")
    assert new_start >= old_end  # one run of the check at a time, across the change
    assert [c for what, _, c in events if what == "conclude 0.4"] == [False]  # stale: no episode step
    assert all(c for what, _, c in events if what == "conclude 0.5")
