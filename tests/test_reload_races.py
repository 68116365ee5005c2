"""A reload while a run is in flight: the run of a check the reload removed finishes, its
results are stored, and its series do not come back to /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from tests.daemon_harness import start_daemon
from tests.servers.tcp import HOLD_MAX, TcpServer


async def test_a_removed_check_in_flight_stores_its_result_without_resurrecting_series(tmp_path: Path, listener: int) -> None:
    arrivals: asyncio.Queue[None] = asyncio.Queue()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrivals.put_nowait(None)  # a run of `slow` has started: it waits for a ServerHello
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), HOLD_MAX)

    async with TcpServer(hold) as silent:
        base = (
            'storage: {url: "sqlite:///store.db", flush_interval: 100ms}\n'
            'exporter: {listen: "127.0.0.1:{port}"}\n'
            "checks:\n"
            f'  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}", interval: 1s, timeout: 500ms}}\n'
        )
        slow = f'  - {{name: slow, kind: tls, target: "127.0.0.1:{silent.port}", interval: 3s, timeout: 2s}}\n'
        daemon = await asyncio.to_thread(start_daemon, base + slow, tmp_path)
        try:
            await asyncio.wait_for(arrivals.get(), 15)  # first run of slow
            await asyncio.to_thread(daemon.wait_for_metric, 'probe_success{check="slow"', 15)
            await asyncio.wait_for(arrivals.get(), 15)  # second run in flight: now remove the check
            daemon.config_path.write_text(base.replace("{port}", str(daemon.port)))
            assert (await asyncio.to_thread(daemon.post, "/-/reload"))[0] == 200
            await asyncio.sleep(3.0)  # the in-flight run ends (2 s timeout) after the reload
            metrics = await asyncio.to_thread(daemon.metrics)
        finally:
            assert await asyncio.to_thread(daemon.stop) == 0
    assert 'check="up"' in metrics and 'check="slow"' not in metrics
    with sqlite3.connect(tmp_path / "store.db") as db:
        (stored,) = db.execute("SELECT count(*) FROM results WHERE \"check\" = 'slow'").fetchone()
    assert stored == 2  # the run that was in flight at the reload was stored too
