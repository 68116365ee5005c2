"""The torture suite's daemon half (#15): a running agent keeps measuring on schedule, and
keeps every result, while the database fails under it — a connection that stops answering
(a relay that stops forwarding: the half-open case no TCP timeout catches), then the server
stopped for 60 s — and it loses at most one unflushed batch to SIGKILL, nothing to SIGTERM.

Real parts: a PostgreSQL cluster of the test's own (never the shared one), loopback servers
for every kind the agent measures, `monitor run` as a subprocess. The hostile-server matrix
and the fuzzing are tests/test_hostile_matrix.py and tests/test_fuzz*.py.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.store import make_engine
from tests.conftest import require
from tests.crash_loop import crash_config, integrity, kill_loop, lost_ages, stored_ids
from tests.daemon_harness import DaemonProcess, samples, start_daemon, value
from tests.servers.freezable_relay import FreezableRelay
from tests.servers.git_http import GIT, GitHttpServer, make_repositories
from tests.servers.goproxy import GoproxyServer, Module
from tests.servers.goproxy_sumdb import SigningKey, TestLog
from tests.servers.http import HttpServer
from tests.servers.loop_thread import ServerLoop
from tests.servers.postgres_private import private_postgres, private_postgres_unavailable
from tests.servers.proxy_python import HttpProxy
from tests.servers.tcp import server_context

pytestmark = pytest.mark.slow

RESULT_LINE = re.compile(r"result id=([0-9a-f]{32}) ")
KEY = SigningKey("sum.torture.example")
MOD = Module("example.com/torture", "v1.0.0", {"t.go": b"package torture\n"})
HALF_OPEN_S = 30
OUTAGE_S = 60


def wait_until(condition, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {within}s waiting for: {what}")
        time.sleep(0.5)


def every_kind(port: dict[str, int], ca: Path, store: str, spool: Path) -> str:
    """Checks of every kind but site (its resolvers would need DoT/DoH servers; dns covers
    the resolver path), each against a healthy loopback server: every result should be ok."""
    return f"""
agent: torture
storage: {{url: "{store}", flush_interval: 200ms, spool_dir: "{spool}"}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
trust: {{extra_ca_files: ["{ca}"]}}
defaults: {{interval: 1s, timeout: 800ms}}
checks:
  - {{name: tcp, kind: tcp, target: "127.0.0.1:{port['https']}"}}
  - {{name: tls, kind: tls, target: "localhost:{port['https']}", connect_to: 127.0.0.1}}
  - {{name: http, kind: http, url: "http://localhost:{port['http']}/status/200"}}
  - {{name: dns, kind: dns, query: localhost, resolvers: [system]}}
  - {{name: goproxy, kind: goproxy, proxy: "http://127.0.0.1:{port['goproxy']}", module: {MOD.path}, version: {MOD.version},
      sumdb: {KEY.name}, sumdb_key: "{KEY.vkey}", sumdb_url: "http://127.0.0.1:{port['sumdb']}", interval: 2s, timeout: 1500ms}}
  - {{name: proxy, kind: proxy, proxy: "http://127.0.0.1:{port['proxy']}", url: "http://127.0.0.1:{port['http']}/status/200"}}
  - {{name: git, kind: git, url: "http://127.0.0.1:{port['git']}/repo.git"}}
"""


def measured_ids(daemon: DaemonProcess) -> list[str]:
    return RESULT_LINE.findall(daemon.log())


@pytest.mark.timeout(600)
def test_a_failing_store_neither_loses_a_result_nor_delays_a_probe(tmp_path: Path, pki) -> None:
    reason = private_postgres_unavailable()
    require(reason is None, reason or "")
    require(GIT, "git is not installed (Debian: git)")
    log = TestLog(KEY)
    log.fill(10)
    log.add_module(MOD.path, MOD.version, MOD.zip_h1, MOD.gomod_h1)
    repositories = make_repositories(tmp_path / "git")

    with private_postgres() as pg, ServerLoop() as loop:
        relay = loop.start(FreezableRelay(("127.0.0.1", pg.port)))
        goproxy, sumdb = loop.start(GoproxyServer()), loop.start(GoproxyServer())
        goproxy.serve_module(MOD)
        sumdb.log = log
        port = {
            "https": loop.start(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"]))).port,
            "http": loop.start(HttpServer()).port,
            "goproxy": goproxy.port, "sumdb": sumdb.port,
            "proxy": loop.start(HttpProxy()).port,
            "git": loop.start(GitHttpServer(repositories)).port,
        }
        store = f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/postgres"
        daemon = start_daemon(every_kind(port, pki.ca_path, store, tmp_path / "spool"), tmp_path, log_level="debug")
        try:
            wait_until(lambda: daemon.get("/readyz")[0] == 200, "results reach the store", 30)
            time.sleep(3)
            relay.freeze()  # connections stay open and nothing answers: the half-open case
            frozen = time.monotonic()
            # The judge gives up after its bound, then the writer after its own: results spool.
            wait_until(lambda: (value(daemon.metrics(), "monitor_store_spooled_results") or 0) > 0, "results spooled", 60)
            time.sleep(max(0.0, HALF_OPEN_S - (time.monotonic() - frozen)))
            relay.thaw()
            pg.stop()  # then a real outage: refused connections
            stopped = time.monotonic()
            while time.monotonic() - stopped < OUTAGE_S:
                assert daemon.proc.poll() is None, daemon.log()
                time.sleep(1)
            pg.start()
            wait_until(lambda: value(daemon.metrics(), "monitor_store_spooled_results") == 0, "the spool replayed", 120)
            time.sleep(2)  # a few more rounds through the healed store
            metrics = daemon.metrics()
        finally:
            assert daemon.stop(timeout=90) == 0, daemon.log()
        engine = make_engine(pg.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text('SELECT id, "check", ok, failure_class, failure_operation, failure_detail FROM results')).all()
        finally:
            engine.dispose()

    measured = measured_ids(daemon)
    stored = [r.id for r in rows]
    # Nothing lost, nothing twice: every result measured before, during and after both faults.
    assert len(stored) == len(set(stored)) and set(stored) == set(measured) and len(measured) == len(set(measured))
    # Every probe kept working: none failed for what the store did (a name resolution waiting
    # behind database threads would show as generic_timeout_error in resolve).
    failed = [(r.check, r.failure_class, r.failure_operation, r.failure_detail) for r in rows if not r.ok]
    assert failed == []
    # ...and on schedule: no run skipped because the previous one was still waiting on the
    # store, and every check ran about once per interval through the ~90 s of faults.
    overlap = {dict(k)["check"]: v for k, v in samples(metrics, "monitor_scheduler_skipped_runs_total").items() if dict(k)["reason"] == "overlap"}
    assert overlap and all(v == 0 for v in overlap.values()), overlap
    per_check = Counter(r.check for r in rows)
    faults = HALF_OPEN_S + OUTAGE_S
    assert all(per_check[c] >= 0.8 * faults for c in ("tcp", "tls", "http", "dns", "proxy", "git")), per_check
    assert per_check["goproxy"] >= 0.8 * faults / 2, per_check
    log_text = daemon.log()
    assert "no answer from the database within" in log_text and "spool replayed" in log_text


@pytest.mark.timeout(400)
def test_kill_9_at_random_moments_loses_at_most_one_unflushed_batch(tmp_path: Path, listener: int) -> None:
    batch, flush = 50, 1.0
    config = crash_config(tmp_path, listener, checks=8, interval="500ms", batch_size=batch, flush_interval=f"{flush:g}s")
    kills = kill_loop(tmp_path, config, 20, seed=15)
    assert integrity(tmp_path / "store.db") == "ok"
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # whatever was spooled got replayed
    assert all(k.measured for k in kills)
    assert max(len(k.lost) for k in kills) <= batch
    # What was lost had been measured within one flush interval (plus the write and the probe
    # that was logging) of the kill: the batch in memory, nothing older.
    assert all(age <= flush + 1.0 for age in lost_ages(tmp_path, kills))
    assert sum(len(k.measured) - len(k.lost) for k in kills) > 0


@pytest.mark.timeout(300)
def test_sigterm_under_load_loses_nothing(tmp_path: Path, listener: int) -> None:
    checks = "\n".join(f'  - {{name: c{i}, kind: tcp, target: "127.0.0.1:{listener}"}}' for i in range(200))
    config = (
        'storage: {url: "sqlite:///store.db", batch_size: 100, flush_interval: 5s}\n'  # a long flush: the stop must flush
        'exporter: {listen: "127.0.0.1:{port}"}\n'
        "scheduler: {max_concurrency: 16}\n"
        "defaults: {interval: 500ms, timeout: 300ms}\n"
        f"checks:\n{checks}\n"
    )
    daemon = start_daemon(config, tmp_path, log_level="debug")
    time.sleep(4)
    assert daemon.stop() == 0, daemon.log()
    measured = measured_ids(daemon)
    assert len(measured) > 100  # many results in flight when the stop comes (how many depends on the machine)
    assert stored_ids(tmp_path / "store.db") == set(measured)


def test_the_crash_loop_helpers_find_what_a_kill_lost(tmp_path: Path, listener: int) -> None:
    """The loss accounting above can see a loss: one kill with a flush interval longer than the
    run always loses what was measured."""
    config = crash_config(tmp_path, listener, checks=4, interval="400ms", batch_size=1000, flush_interval="30s")
    (kill,) = kill_loop(tmp_path, config, 1, seed=1, longest=1.5)
    assert kill.measured and kill.lost == kill.measured
