"""Kill a running agent with SIGKILL at random moments, again and again, then see what reached
the store: shared by tests/test_torture.py (asserts the bound) and bench/kill9.py (reports it).

Every run of `monitor run` logs `result id=…` for each result it handed to the writer; a
result logged but not stored was lost with the process. The writer keeps at most one batch
in memory (queued results, written every flush_interval or at batch_size), so what a kill
can lose is bounded by that: results measured in the last flush_interval (plus the write
itself) before the kill, and never more than a batch.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from tests.daemon_harness import start_daemon

RESULT_LINE = re.compile(r"result id=([0-9a-f]{32}) ")


@dataclass
class Kill:
    at: float  # time.time() of the SIGKILL
    measured: set[str]  # result ids the killed process logged
    lost: set[str] = frozenset()  # type: ignore[assignment]


def crash_config(directory: Path, listener: int, *, checks: int, interval: str, batch_size: int, flush_interval: str) -> str:
    lines = "\n".join(f'  - {{name: c{i}, kind: tcp, target: "127.0.0.1:{listener}"}}' for i in range(checks))
    return (
        "agent: crash\n"
        f'storage: {{url: "sqlite:///{directory / "store.db"}", batch_size: {batch_size}, flush_interval: {flush_interval},'
        f' spool_dir: "{directory / "spool"}"}}\n'
        'exporter: {listen: "127.0.0.1:{port}"}\n'
        f"defaults: {{interval: {interval}, timeout: 300ms}}\n"
        f"checks:\n{lines}\n"
    )


def kill_loop(directory: Path, config: str, kills: int, *, seed: int, longest: float = 2.5) -> list[Kill]:
    """Start the agent, SIGKILL it after a random 0.3–`longest` s, `kills` times; then one last
    run stopped gracefully (which replays whatever a killed run spooled)."""
    rng = random.Random(seed)
    done: list[Kill] = []
    for n in range(kills + 1):
        run_dir = directory / f"run-{n:02d}"
        run_dir.mkdir()
        daemon = start_daemon(config, run_dir, log_level="debug")
        if n == kills:
            time.sleep(2.0)
            assert daemon.stop() == 0, daemon.log()
            continue
        time.sleep(rng.uniform(0.3, longest))
        at = time.time()
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        done.append(Kill(at, set(RESULT_LINE.findall(daemon.log()))))
    stored = stored_ids(directory / "store.db")
    for kill in done:
        kill.lost = kill.measured - stored
    return done


def stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM results")}


def lost_ages(directory: Path, kills: list[Kill]) -> list[float]:
    """Seconds between each lost result's log line and the kill that lost it."""
    ages = []
    for n, kill in enumerate(kills):
        log = (directory / f"run-{n:02d}" / "daemon.log").read_text(errors="replace")
        for line in log.splitlines():
            m = RESULT_LINE.search(line)
            if m and m.group(1) in kill.lost:
                logged = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
                ages.append(kill.at - logged)
    return ages


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
