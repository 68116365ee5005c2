"""`monitor probe --once`: results printed and, like the daemon, stored (or spooled)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path


CONFIG = """
agent: once
storage: {{url: "sqlite:///{db}"}}
checks:
  - {{name: up, kind: tcp, target: "127.0.0.1:{port}", timeout: 1s}}
"""


def _probe(config: Path, cwd: Path, *extra: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "probe", "-c", str(config), "--once", "--json", *extra],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_probe_once_prints_and_stores_each_result(tmp_path: Path, listener: int) -> None:
    db = tmp_path / "m.db"
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(db=db, port=listener))
    [first] = _probe(config, tmp_path)
    [second] = _probe(config, tmp_path)
    assert first["ok"] and first["agent"] == "once" and first["target"] == f"127.0.0.1:{listener}"
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM results WHERE agent = 'once' AND ok")}
    assert stored == {first["id"], second["id"]}


def test_no_store_only_prints(tmp_path: Path, listener: int) -> None:
    db = tmp_path / "m.db"
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(db=db, port=listener))
    [result] = _probe(config, tmp_path, "--no-store")
    assert result["ok"]
    assert not db.exists()


def test_probe_once_beside_a_running_agent_still_stores(tmp_path: Path, listener: int) -> None:
    """Same agent, same working directory: the daemon holds the spool; probe --once warns and
    writes straight to the store instead of failing."""
    from monitor.store.spool import Spool

    db = tmp_path / "m.db"
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(db=db, port=listener))
    held = Spool(tmp_path / "spool-once", max_results=10)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "probe", "-c", str(config), "--once", "--json"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
    finally:
        held.close()
    assert done.returncode == 0, done.stderr
    assert "in use by another process" in done.stderr
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    with sqlite3.connect(db) as conn:
        assert [row[0] for row in conn.execute("SELECT id FROM results")] == [result["id"]]
