"""/healthz and /readyz say what the daemon's parts are doing: the writer, the scheduler, the
judge. A daemon in this process (so a part can be made to fail), serving on loopback."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import text

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.store import make_engine
from tests.daemon_harness import free_port, start_daemon
from tests.servers.tcp import closed_port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def running_daemon(tmp_path: Path, listener: int, storage: str = 'sqlite:///store.db') -> tuple[Daemon, asyncio.Task, int]:
    port = free_port()
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(
        f'storage: {{url: "{storage}", flush_interval: 100ms, spool_dir: "{tmp_path / "spool"}"}}\n'
        f'exporter: {{listen: "127.0.0.1:{port}"}}\n'
        "defaults: {interval: 500ms, timeout: 400ms}\n"
        f'checks:\n  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    daemon = Daemon(cfg_path, load_config(cfg_path))
    task = asyncio.create_task(daemon.run())
    for _ in range(100):
        if daemon._writer_task is not None and daemon.writer.written:
            break
        await asyncio.sleep(0.1)
    return daemon, task, port


async def stop(daemon: Daemon, task: asyncio.Task) -> None:
    daemon._stop.set()
    await asyncio.wait_for(task, 30)


async def test_healthy_daemon_is_live_and_ready(tmp_path: Path, listener: int, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    daemon, task, port = await running_daemon(tmp_path, listener)
    try:
        status, body = await asyncio.to_thread(get, port, "/healthz")
        assert status == 200 and body.splitlines() == ["ok", "writer: ok", "scheduler: ok", "judge: ok"]
        status, body = await asyncio.to_thread(get, port, "/readyz")
        detail = json.loads(body)
        assert status == 200 and detail["ready"] is True and detail["writer"]["written"] >= 1 and detail["scheduler"]["jobs"] == 1
    finally:
        await stop(daemon, task)


async def test_a_dead_writer_fails_healthz(tmp_path: Path, listener: int, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    daemon, task, port = await running_daemon(tmp_path, listener)
    try:
        assert daemon._writer_task is not None
        daemon._writer_task.cancel()  # what an unexpected exception in the writer leaves behind
        await asyncio.sleep(0.1)
        status, body = await asyncio.to_thread(get, port, "/healthz")
        assert status == 503 and "writer: failing (the writer task has stopped)" in body
        assert (await asyncio.to_thread(get, port, "/readyz"))[0] == 503
    finally:
        await stop(daemon, task)


async def test_a_judge_that_raises_loses_no_result(tmp_path: Path, listener: int, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    daemon, task, port = await running_daemon(tmp_path, listener)

    def broken(check, results, *, online=True):
        raise RuntimeError("a bug in the judge")

    try:
        monkeypatch.setattr(daemon.judge, "conclude", broken)
        written = daemon.writer.written
        for _ in range(100):
            if daemon.writer.written >= written + 2:
                break
            await asyncio.sleep(0.1)
        assert daemon.writer.written >= written + 2  # runs after the judge broke are still stored
        status, body = await asyncio.to_thread(get, port, "/healthz")
        assert status == 200 and "judge: degraded (RuntimeError: a bug in the judge)" in body
    finally:
        await stop(daemon, task)
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM results")).scalar() == daemon.writer.written
    engine.dispose()


def test_a_store_outage_is_degraded_not_dead(tmp_path: Path, listener: int) -> None:
    dead = f"postgresql+psycopg://monitor@127.0.0.1:{closed_port()}/monitor"
    daemon = start_daemon(
        f'storage: {{url: "{dead}", flush_interval: 100ms}}\nexporter: {{listen: "127.0.0.1:{{port}}"}}\n'
        f'defaults: {{interval: 500ms, timeout: 400ms}}\nchecks:\n  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}"}}\n',
        tmp_path,
    )
    try:
        daemon.wait_for_metric("monitor_store_spooled_results 1")  # something is spooled (1, 10, …)
        status, body = daemon.get("/healthz")
        assert status == 200 and body.startswith("degraded\nwriter: degraded (the store does not take results: they spool)")
        status, body = daemon.get("/readyz")
        assert status == 503 and json.loads(body)["ready"] is False
    finally:
        assert daemon.stop() == 0
