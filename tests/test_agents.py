"""Several agents, one PostgreSQL: vantages in namespaces, concurrent writers, an outage.

Every agent is a real `monitor run` process (tests/daemon_harness.py); they write into one
fresh database made for the test. Each daemon logs `result id=…` for every result it
measured, so what reached the table can be checked against what was measured.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from monitor.store import latest_per_check_vantage, make_engine, upgrade
from tests.conftest import (
    create_postgres_database,
    drop_postgres_database,
    fresh_postgres_database_name,
    postgres_unavailable,
    require,
)
from tests.daemon_harness import DaemonProcess, start_daemon, value
from tests.servers.postgres_private import private_postgres, private_postgres_unavailable
from tests.servers.vantage_lab import Lab, lab_unavailable
from tests.servers.tcp import closed_port

pytestmark = pytest.mark.postgres

# How long the outage test keeps PostgreSQL stopped.
OUTAGE_S = 30


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = lab_unavailable()
    require(reason is None, reason or "")
    made = Lab()
    try:
        yield made
    finally:
        made.close()


def rows(url: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(
                'SELECT id, agent, "check", vantage, ok, failure_class, failure_operation FROM results'
            )))
    finally:
        engine.dispose()


def wait_for_rows(url: str, agents: set[str], at_least: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        counts = {agent: 0 for agent in agents}
        for row in rows(url):
            counts[row.agent] = counts.get(row.agent, 0) + 1
        if all(counts[a] >= at_least for a in agents):
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} rows per agent after {within}s: {counts}")


def measured_ids(daemon: DaemonProcess) -> list[str]:
    return re.findall(r"result id=([0-9a-f]{32}) ", daemon.log())


def agent_config(agent: str, url: str, vantages: str, vantage_names: str, checks: str, spool_dir: Path | None = None) -> str:
    spool = f', spool_dir: "{spool_dir}"' if spool_dir else ""
    return f"""
agent: {agent}
storage: {{url: "{url}", flush_interval: 200ms{spool}}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
vantages: [{vantages}]
defaults: {{interval: 1s, timeout: 800ms, vantages: [{vantage_names}]}}
checks:
{checks}
"""


def start_agents(configs: dict[str, str], tmp_path: Path) -> list[DaemonProcess]:
    """One daemon per config, each in its own directory tmp_path/NAME."""
    started = []
    try:
        for name, config in configs.items():
            (tmp_path / name).mkdir()
            started.append(start_daemon(config, tmp_path / name))
    except BaseException:
        for daemon in started:
            daemon.stop()
        raise
    return started


def test_two_agents_in_two_namespaces_write_one_database(lab: Lab, postgres_url: str, tmp_path: Path) -> None:
    # Target 198.18.0.1 lives in `srv`. Vantage `a` reaches it; from `b` it is blackholed:
    # srv discards everything it would send back to b, so b's SYNs go unanswered.
    srv, a, b = lab.namespace("srv"), lab.namespace("a"), lab.namespace("b")
    lab.link(a, "198.18.1.2/30", srv, "198.18.1.1/30")
    lab.link(b, "198.18.2.2/30", srv, "198.18.2.1/30")
    lab.run_in(srv, "addr", "add", "198.18.0.1/32", "dev", "lo")
    lab.run_in(a, "route", "add", "198.18.0.0/24", "via", "198.18.1.1")
    lab.run_in(b, "route", "add", "198.18.0.0/24", "via", "198.18.2.1")
    lab.run_in(srv, "route", "add", "blackhole", "198.18.2.2/32")
    port = lab.listen(srv, "198.18.0.1").getsockname()[1]
    upgrade(postgres_url)

    check = f'  - {{name: target, kind: tcp, target: "198.18.0.1:{port}"}}'
    agents = start_agents({
        "agent-a": agent_config("agent-a", postgres_url, f"{{name: ns-a, netns: {a}}}", "ns-a", check),
        "agent-b": agent_config("agent-b", postgres_url, f"{{name: ns-b, netns: {b}}}", "ns-b", check),
    }, tmp_path)
    try:
        # Each agent serves its own /metrics, with its own vantage only.
        seen_a = agents[0].wait_for_metric('probe_success{check="target"')
        seen_b = agents[1].wait_for_metric('probe_success{check="target"')
        assert value(seen_a, "probe_success", check="target", vantage="ns-a") == 1.0
        assert value(seen_b, "probe_success", check="target", vantage="ns-b") == 0.0
        assert value(seen_a, "probe_success", vantage="ns-b") is None
        assert value(seen_b, "probe_success", vantage="ns-a") is None
        wait_for_rows(postgres_url, {"agent-a", "agent-b"}, at_least=2)
    finally:
        codes = [d.stop() for d in agents]
    assert codes == [0, 0], [d.log() for d in agents]

    stored = rows(postgres_url)
    for agent, daemon in zip(("agent-a", "agent-b"), agents):
        assert sorted(r.id for r in stored if r.agent == agent) == sorted(measured_ids(daemon))
    assert {(r.agent, r.vantage, r.ok, r.failure_class, r.failure_operation) for r in stored} == {
        ("agent-a", "ns-a", True, None, None),
        ("agent-b", "ns-b", False, "generic_timeout_error", "connect"),
    }
    # The cross-vantage question analysis asks: fails from some vantages, not from all.
    engine = make_engine(postgres_url)
    try:
        with Session(engine) as session:
            latest = latest_per_check_vantage(session, "target", max_age=timedelta(minutes=10))
    finally:
        engine.dispose()
    assert [(r.vantage, r.agent, r.ok) for r in latest] == [("ns-a", "agent-a", True), ("ns-b", "agent-b", False)]


@pytest.fixture
def outage_database() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A database on a PostgreSQL server of this test's own (tests/servers/postgres_private.py),
    and a switch for that server. The machine's shared server is never touched."""
    reason = private_postgres_unavailable()
    require(reason is None, reason or "")
    with private_postgres() as pg:

        def control(action: str) -> None:
            pg.start() if action == "start" else pg.stop()

        yield pg.url, control


def spooled(daemon: DaemonProcess) -> float:
    found = value(daemon.metrics(), "monitor_store_spooled_results")
    assert found is not None
    return found


def wait_until(condition: Callable[[], bool], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {within}s waiting for: {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_a_store_outage_loses_nothing(outage_database, listener: int, tmp_path: Path) -> None:
    url, postgres = outage_database
    upgrade(url)
    checks = (
        f'  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
        f'  - {{name: down, kind: tcp, target: "127.0.0.1:{closed_port()}"}}'
    )
    configs = {n: agent_config(n, url, "{name: local}", "local", checks, tmp_path / f"spool-{n}") for n in ("agent-1", "agent-2")}
    agents = start_agents(configs, tmp_path)
    runs = {"agent-1": [agents[0]], "agent-2": [agents[1]]}  # agent-2 runs twice
    try:
        wait_for_rows(url, set(configs), at_least=2)
        postgres("stop")
        stopped = time.monotonic()
        for daemon in agents:
            wait_until(lambda d=daemon: spooled(d) > 0, "results spooled while the store is down", within=20)
        # agent-2 is stopped in the outage: it ends at once, its results left on disk...
        assert agents[1].stop() == 0, agents[1].log()
        assert list((tmp_path / "spool-agent-2").glob("*.jsonl"))
        while time.monotonic() - stopped < OUTAGE_S:
            assert agents[0].proc.poll() is None, agents[0].log()
            time.sleep(1)
        postgres("start")
        # ...and replays them when it starts again.
        agents += start_agents({"agent-2-again": configs["agent-2"]}, tmp_path)
        runs["agent-2"].append(agents[2])
        for daemon in (agents[0], agents[2]):
            wait_until(lambda d=daemon: spooled(d) == 0, "the spool replayed", within=60)
    finally:
        codes = [d.stop() for d in agents]
    assert codes == [0, 0, 0], [d.log() for d in agents]

    stored = rows(url)
    for name, daemons in runs.items():
        measured = [i for d in daemons for i in measured_ids(d)]
        assert len(set(measured)) == len(measured)
        mine = [r.id for r in stored if r.agent == name]
        # Every result measured, before, during and after the outage, is there exactly once.
        assert len(mine) == len(measured) and set(mine) == set(measured), [d.log() for d in daemons]
        assert "spool replayed" in daemons[-1].log()
        assert list((tmp_path / f"spool-{name}").glob("*.jsonl")) == []


def test_agents_starting_together_migrate_one_fresh_database(postgres_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f'storage: {{url: "{postgres_url}"}}\n')
    upgrades = [
        subprocess.Popen([sys.executable, "-m", "monitor", "db", "upgrade", "-c", str(config)], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [(p.wait(60), p.stderr.read()) for p in upgrades]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes


def test_an_agent_started_while_its_store_is_missing_measures_and_catches_up(tmp_path: Path) -> None:
    """The database does not exist yet at start (a real OperationalError, no outage needed):
    the agent serves and spools, then migrates and replays once the database appears."""
    require(postgres_unavailable() is None, postgres_unavailable() or "")
    name = fresh_postgres_database_name()
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen(64)
        config = (
            "agent: late\n"
            f'storage: {{url: "postgresql+psycopg://postgres@127.0.0.1:5432/{name}", flush_interval: 200ms}}\n'
            'exporter: {listen: "127.0.0.1:{port}"}\n'
            "defaults: {interval: 1s, timeout: 500ms}\n"
            f"checks:\n  - {{name: up, kind: tcp, target: '127.0.0.1:{target.getsockname()[1]}'}}\n"
        )
        d = start_daemon(config, tmp_path)
        try:
            d.wait_for_metric('probe_success{check="up"')
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not (value(d.metrics(), "monitor_store_spooled_results") or 0) > 0:
                time.sleep(0.2)
            assert value(d.metrics(), "monitor_store_spooled_results") > 0, d.log()  # results wait on disk
            assert "store unreachable" in d.log()
            create_postgres_database(name)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and "store ready" not in d.log():
                time.sleep(0.5)
            assert "store ready" in d.log(), d.log()
            # The writer retries on its own backoff (at most 10 s apart) and drains the spool.
            while time.monotonic() < deadline and value(d.metrics(), "monitor_store_spooled_results") != 0:
                time.sleep(0.5)
            assert value(d.metrics(), "monitor_store_spooled_results") == 0, d.log()
        finally:
            assert d.stop() == 0, d.log()
    try:
        measured = set(re.findall(r"result id=([0-9a-f]{32}) ", d.log()))
        engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        try:
            with engine.connect() as conn:
                rows = [r[0] for r in conn.execute(text("SELECT id FROM results"))]
        finally:
            engine.dispose()
        assert measured and sorted(rows) == sorted(measured), d.log()
    finally:
        drop_postgres_database(name)
