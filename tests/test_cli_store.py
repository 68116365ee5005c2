"""The on-call commands: `monitor results` and `monitor episodes` read SQLite and PostgreSQL
(filters included); global options after the command; probe --exit-code; check-config on a
config that would do nothing; /-/reload off beyond what the operator allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode
from monitor.cli import main
from monitor.config import ExporterConfig
from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName, utcnow
from monitor.store import make_engine, save_results, upgrade
from monitor.store.episodes import save_episode
from tests.daemon_harness import start_daemon
from tests.servers.tcp import closed_port

NOW = utcnow()


def result(check: str, vantage: str, agent: str, ago: float, *, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        check=check, kind="tcp", vantage=vantage, target="127.0.0.1:1", started_at=NOW - timedelta(seconds=ago), ok=ok,
        duration_s=0.0123, agent=agent,
        failure=None if ok else Failure(FailureClass.CONNECTION_RESET, Operation.CONNECT, "reset"),
        verdict=None if ok else Verdict(VerdictName.RST_INJECTION, Confidence.MEDIUM, ("SYN answered by RST",)),
    )


@pytest.fixture
def populated(db_url: str, tmp_path: Path) -> Path:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            save_results(session, [
                result("web", "local", "a1", 7200),  # outside --since 1h
                result("web", "local", "a1", 1800),
                result("web", "hk", "a2", 1200, ok=False),
                result("dns", "local", "a1", 600),
                result("web", "local", "a1", 60),
            ])
            base = dict(vantage="hk", agent="a2", confidence="medium")
            for episode in (
                Episode(check="web", verdict=VerdictName.RST_INJECTION, started_at=NOW - timedelta(hours=3), last_seen_at=NOW,
                        confirmed_at=NOW - timedelta(hours=3), rounds=40, evidence=("tcp: SYN answered by RST", "local connected"), **base),
                Episode(check="web", verdict=VerdictName.IP_BLOCKING, started_at=NOW - timedelta(days=2), last_seen_at=NOW - timedelta(days=1),
                        confirmed_at=NOW - timedelta(days=2), ended_at=NOW - timedelta(days=1), rounds=3, **base),
                Episode(check="dns", verdict=VerdictName.DNS_POISONING, started_at=NOW - timedelta(minutes=5), last_seen_at=NOW, **base),  # pending
            ):
                save_episode(session, episode)
    finally:
        engine.dispose()
    config = tmp_path / "cfg.yaml"
    config.write_text(f'storage: {{url: "{db_url}"}}\n')
    return config


def cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_results_table_and_filters(populated: Path, capsys) -> None:
    code, out = cli(capsys, "results", "-c", str(populated))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["TIME", "(UTC)", "CHECK", "VANTAGE"]
    assert [line.split()[2] for line in lines[1:]] == ["web", "web", "dns", "web"]  # last hour, oldest first
    assert "connection_reset@connect" in lines[2] and "rst_injection (medium)" in lines[2] and "FAIL" in lines[2]

    code, out = cli(capsys, "results", "-c", str(populated), "--check", "web", "--vantage", "local", "--json", "--since", "3h")
    found = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["check"], r["vantage"]) for r in found] == [("web", "local")] * 3
    code, out = cli(capsys, "results", "-c", str(populated), "--agent", "a2", "--json")
    assert [json.loads(line)["agent"] for line in out.splitlines()] == ["a2"]
    code, out = cli(capsys, "results", "-c", str(populated), "--limit", "2", "--json")
    assert [json.loads(line)["check"] for line in out.splitlines()] == ["dns", "web"]  # the two newest
    code, out = cli(capsys, "results", "-c", str(populated), "--check", "nosuch")
    assert code == 0 and out.startswith("no results")


def test_episodes_table_json_and_open(populated: Path, capsys) -> None:
    code, out = cli(capsys, "episodes", "-c", str(populated))
    assert code == 0
    assert "ip_blocking" in out and "rst_injection" in out and "dns_poisoning" not in out  # a pending one is not news
    assert "    tcp: SYN answered by RST" in out.splitlines()  # evidence under its episode

    code, out = cli(capsys, "episodes", "-c", str(populated), "--open", "--json")
    (open_one,) = [json.loads(line) for line in out.splitlines()]
    assert (open_one["verdict"], open_one["open"], open_one["ended_at"]) == ("rst_injection", True, None)
    assert open_one["duration_s"] >= 3 * 3600 and open_one["evidence"] == ["tcp: SYN answered by RST", "local connected"]
    code, out = cli(capsys, "episodes", "-c", str(populated), "--since", "1h", "--json")
    assert [json.loads(line)["verdict"] for line in out.splitlines()] == ["rst_injection"]  # the closed one ended a day ago


def test_global_options_go_before_or_after_the_command(populated: Path, capsys) -> None:
    for args in (["--log-level", "debug", "results", "-c", str(populated)], ["results", "-c", str(populated), "--log-format", "json"]):
        code, out = cli(capsys, *args)
        assert code == 0 and "web" in out
    done = subprocess.run([sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("monitor ")


def test_probe_exit_code_says_whether_checks_failed(tmp_path: Path, listener: int) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "defaults: {interval: 10s, timeout: 1s}\n"
        "checks:\n"
        f'  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
        f'  - {{name: down, kind: tcp, target: "127.0.0.1:{closed_port()}"}}\n'
    )

    def probe(*extra: str) -> int:
        return subprocess.run([sys.executable, "-m", "monitor", "probe", "-c", str(config), "--once", "--no-store", *extra],
                              capture_output=True, text=True, timeout=60).returncode

    assert probe() == 0  # the contract without the flag: measured = success
    assert probe("--exit-code") == 3
    assert probe("--exit-code", "--check", "up") == 0


def test_check_config_refuses_a_config_with_no_checks(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text('storage: {url: "sqlite:///x.db"}\n')
    done = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(config)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.strip() == f"{config}: checks: no checks configured: the daemon would measure nothing"


@pytest.mark.parametrize(
    "listen,enable,enabled",
    [("127.0.0.1:9464", None, True), ("[::1]:9464", None, True), ("localhost:9464", None, True),
     ("0.0.0.0:9464", None, False), ("192.0.2.1:9464", None, False), ("0.0.0.0:9464", True, True), ("127.0.0.1:9464", False, False)],
)
def test_reload_endpoint_defaults_to_loopback_only(listen: str, enable: bool | None, enabled: bool) -> None:
    assert ExporterConfig(listen=listen, enable_reload=enable).reload_enabled is enabled


def test_reload_endpoint_off_answers_403(tmp_path: Path, listener: int) -> None:
    config = (
        'storage: {url: "sqlite:///store.db"}\n'
        'exporter: {listen: "127.0.0.1:{port}", enable_reload: false}\n'
        f'checks:\n  - {{name: up, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    daemon = start_daemon(config, tmp_path)
    try:
        status, body = daemon.post("/-/reload")
        assert status == 403 and "disabled" in body
    finally:
        assert daemon.stop() == 0
