"""`monitor run` end to end: scrape, bad reload kept out, good reload, graceful stop flushes."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from pathlib import Path


from tests.daemon_harness import start_daemon, value
from tests.servers.tcp import closed_port

CONFIG = """
agent: test-agent
storage: {{url: "sqlite:///{db}", flush_interval: 10m, batch_size: 100000}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
defaults: {{interval: 1s, timeout: 500ms}}
checks:
  - {{name: up, kind: tcp, target: "127.0.0.1:{up}"}}
  - {{name: down, kind: tcp, target: "127.0.0.1:{down}"}}
"""


def test_daemon_scrape_reload_and_graceful_stop(tmp_path: Path, listener: int) -> None:
    db = tmp_path / "m.db"
    config = CONFIG.format(db=db, up=listener, down=closed_port())
    d = start_daemon(config, tmp_path)
    config = d.config_path.read_text()  # as written, with the exporter port filled in
    try:
        text = d.wait_for_metric('probe_success{check="down"')
        text = d.wait_for_metric('probe_success{check="up"')
        assert value(text, "probe_success", check="up", kind="tcp", vantage="local", target=f"127.0.0.1:{listener}") == 1.0
        assert value(text, "probe_success", check="down", vantage="local") == 0.0
        assert value(text, "monitor_probe_failures_total", check="down", **{"class": "connection_refused", "operation": "connect"}) >= 1
        assert value(text, "monitor_config_last_reload_successful") == 1.0
        assert value(text, "monitor_store_queue_depth") is not None

        # A broken config on SIGHUP is rejected; the running checks go on.
        d.config_path.write_text(config + "  - {name: broken, kind: tcp, target: nowhere}\n")
        d.signal(signal.SIGHUP)
        text = d.wait_for_metric("monitor_config_last_reload_successful 0.0")
        assert "reload rejected" in d.log() and "checks[2].target" in d.log()
        before = value(text, "monitor_probe_failures_total", check="down", **{"class": "connection_refused", "operation": "connect"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = d.metrics()
            if value(text, "monitor_probe_failures_total", check="down", **{"class": "connection_refused", "operation": "connect"}) > before:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("checks stopped running after a rejected reload")

        # A good config over POST /-/reload: the removed check's series vanish.
        d.config_path.write_text(config.split("  - {name: down")[0])
        status, body = d.post("/-/reload")
        assert status == 200, body
        text = d.metrics()
        assert value(text, "monitor_config_last_reload_successful") == 1.0
        assert value(text, "probe_success", check="down") is None
        assert value(text, "monitor_probe_failures_total", check="down") is None
        assert value(text, "probe_success", check="up") == 1.0
        assert d.get("/healthz") == (200, "ok\nwriter: ok\nscheduler: ok\njudge: ok\n")
    finally:
        code = d.stop()
    log = d.log()
    assert code == 0, log
    # flush_interval is 10 minutes and the batch huge: rows exist only because SIGTERM flushed.
    measured = set(re.findall(r"result id=([0-9a-f]{32}) ", log))
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM results")}
    assert measured and stored == measured, log


def test_daemon_refuses_bad_config_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - {name: a, kind: tcp, target: nowhere}\n")
    proc = subprocess.run([sys.executable, "-m", "monitor", "run", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{bad}:2: checks[0].target: expected host:port" in proc.stderr


def test_a_lone_agent_s_failing_check_shows_failing_and_every_check_has_a_verdict(tmp_path: Path, listener: int) -> None:
    """One vantage, nothing to compare with: a check that fails round after round is `failing`
    on monitor_verdict (never ok), one that works is ok; the episode is in the store."""
    db = tmp_path / "m.db"
    d = start_daemon(CONFIG.format(db=db, up=listener, down=closed_port()).replace("flush_interval: 10m, batch_size: 100000", "flush_interval: 200ms"), tmp_path)
    try:
        text = d.wait_for_metric('monitor_verdict{check="down",vantage="local",verdict="failing"} 1.0', timeout=30)
        assert value(text, "monitor_verdict", check="down", verdict="ok") == 0.0
        assert value(text, "monitor_verdict", check="up", verdict="ok") == 1.0
    finally:
        assert d.stop() == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute('SELECT verdict, confirmed_at IS NOT NULL FROM verdict_episodes WHERE "check" = ? AND ended_at IS NULL', ("down",)).fetchall()
        verdicts = [json.loads(v)["name"] for (v,) in conn.execute('SELECT verdict FROM results WHERE "check" = ? ORDER BY started_at', ("down",))]
    assert rows == [("failing", 1)]
    assert verdicts[0] == "inconclusive" and set(verdicts[1:]) == {"failing"}, verdicts
