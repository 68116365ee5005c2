"""Every panel of every shipped board returns data from a real Prometheus and the real
PostgreSQL, fed by a running daemon (grafana/dashboards/*.json, as committed).

The daemon probes loopback servers of every kind the boards show — some healthy, some failing
(a closed port, a proxy that refuses, an SNI filter that resets the target name), one that
keeps a verdict episode open (a module proxy serving a tampered zip) — and writes to a fresh
database on the real PostgreSQL. A real Prometheus (Debian) scrapes it every second. Then,
as Grafana would send them: every PromQL target, with its template variables set to All and
to each variable's real values, and $__rate_interval and friends substituted, is evaluated
through Prometheus' HTTP API and must return a number; every SQL target and the episodes
annotation run on the store as Grafana's read-only role (made by deploy/postgres/init) and
must return rows; every template variable lists values; and no query names a metric or a
label the daemon does not export. No Grafana server exists here: its substitution rules are
those written out in tests/grafana_queries.py.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require
from tests.daemon_harness import DaemonProcess, free_port, start_daemon
from tests.grafana_queries import ROOT, TimeRange, label_values_query, load_boards, promql, promql_names, query_variables, sql, targets
from tests.servers.dns_unbound import UNBOUND, run_unbound
from tests.servers.git_http import GIT, GitHttpServer, make_repositories
from tests.servers.goproxy import GoproxyServer, Module
from tests.servers.goproxy_sumdb import SigningKey, TestLog
from tests.servers.http import HttpServer
from tests.servers.loop_thread import ServerLoop
from tests.servers.proxy_python import HttpProxy
from tests.servers.sni_front import SniFilter
from tests.servers.ssh_banner import banner
from tests.servers.tcp import TcpServer, closed_port, server_context

AGENT = "board-agent"
SCRAPE_S = 1.0
# Series Prometheus adds to what it scrapes: `up`, and the target labels of a scrape config
# (the README and deploy/prometheus/prometheus.yml name each agent with an `agent` label).
PROMETHEUS_METRICS = {"up"}
TARGET_LABELS = {"agent", "job", "instance"}
READER_SQL = ROOT / "deploy" / "postgres" / "init" / "grafana-reader.psql"

KEY = SigningKey("sum.test.example")
# A zip of a few hundred kB, which crosses loopback in several reads: a zip of one read has no
# measurable transfer phase, hence no throughput series for the board's zip panel.
_DATA = random.Random(13).randbytes(300_000)  # incompressible: the zip stays ~300 kB
MOD = Module("example.com/hello", "v1.0.0", {"hello.go": b"package hello\n", "testdata/blob.bin": _DATA})
TAMPERED = Module(MOD.path, MOD.version, {"hello.go": b"package hello\n\nfunc init() { beacon() }\n", "testdata/blob.bin": _DATA})


def _config(port: dict[str, int], ca: Path, db_url: str, resolvers: list[str]) -> str:
    same = f'sumdb: {KEY.name}, sumdb_key: "{KEY.vkey}", sumdb_url: "http://127.0.0.1:{port["sumdb"]}", interval: 3s, timeout: 2500ms'
    https = f"https://127.0.0.1:{port['https']}/status/200"
    return f"""
agent: {AGENT}
storage: {{url: "{db_url}", flush_interval: 200ms}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
trust: {{extra_ca_files: ["{ca}"]}}
vantages:
  - {{name: local}}
  - {{name: via-proxy, via: "http://127.0.0.1:{port['proxy']}"}}
defaults: {{interval: 2s, timeout: 1500ms, vantages: [local]}}
analysis: {{confirmations: 2, clean_rounds: 2}}
checks:
  - {{name: web, kind: http, url: "{https}", vantages: [local, via-proxy]}}
  - {{name: tls-ok, kind: tls, target: "localhost:{port['https']}", connect_to: 127.0.0.1, control_sni: control.test, holdoff: 100ms}}
  - {{name: tls-sni-filtered, kind: tls, target: "localhost:{port['sni_filter']}", connect_to: 127.0.0.1, control_sni: control.test, holdoff: 100ms}}
  - {{name: tcp-closed, kind: tcp, target: "127.0.0.1:{port['closed']}"}}
  - name: dns-app
    kind: dns
    query: app.test
    resolvers: {json.dumps(resolvers)}
  - {{name: mod-list, kind: goproxy, proxy: "http://127.0.0.1:{port['empty_proxy']},http://127.0.0.1:{port['honest_proxy']}", module: {MOD.path}, version: {MOD.version}, {same}}}
  - {{name: mod-tampered, kind: goproxy, proxy: "http://127.0.0.1:{port['tampered_proxy']}", module: {MOD.path}, version: {MOD.version}, {same}}}
  - {{name: proxy-ok, kind: proxy, proxy: "http://127.0.0.1:{port['proxy']}", url: "{https}"}}
  - {{name: proxy-denied, kind: proxy, proxy: "http://127.0.0.1:{port['denying_proxy']}", url: "{https}"}}
  - {{name: git-ok, kind: git, url: "https://127.0.0.1:{port['git']}/repo.git", ssh: "127.0.0.1:{port['ssh']}"}}
  - {{name: git-ssh-closed, kind: git, url: "https://127.0.0.1:{port['git']}/repo.git", ssh: "127.0.0.1:{port['closed']}"}}
"""


@pytest.fixture
def grafana_reader(postgres_url: str) -> Iterator[str]:
    """Grafana's read-only role on the fresh store, made by the compose stack's own init script
    (before the daemon creates the tables, as on a first start); a URL to log in as it."""
    require(shutil.which("psql"), "psql (Debian postgresql-client) not installed")
    role, password = f"grafana_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    database = postgres_url.rsplit("/", 1)[1]
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    done = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-v", f"reader={role}", "-v", f"password={password}",
         "-v", "owner=postgres", "-v", f"database={database}", "-f", str(READER_SQL)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    try:
        yield admin.replace("postgresql://postgres@", f"postgresql://{role}:{password}@")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.timeout(420)
@pytest.mark.slow
def test_every_panel_of_every_board_returns_data(tmp_path: Path, pki, postgres_url: str, grafana_reader: str) -> None:
    require(shutil.which("prometheus"), "prometheus (Debian package prometheus) not installed")
    require(UNBOUND, "unbound (Debian package unbound) not installed")
    require(GIT, "git is not installed (Debian: git)")
    repositories = make_repositories(tmp_path / "git")
    log = TestLog(KEY)
    log.fill(20)
    log.add_module(MOD.path, MOD.version, MOD.zip_h1, MOD.gomod_h1)
    log.fill(5)

    with ServerLoop() as loop, run_unbound(tmp_path / "unbound", ["app.test. 300 IN A 127.0.0.1"], tls=pki.valid) as unbound:
        tls = server_context(pki.valid, alpn=["http/1.1"])
        https = loop.start(HttpServer(ssl_context=tls))
        database = loop.start(GoproxyServer())
        database.log = log
        honest, tampered = loop.start(GoproxyServer()), loop.start(GoproxyServer())
        honest.serve_module(MOD)
        tampered.serve_module(TAMPERED)
        port = {
            "https": https.port,
            "sni_filter": loop.start(SniFilter(https.port, {"localhost"})).port,
            "closed": closed_port(),
            "sumdb": database.port,
            "empty_proxy": loop.start(GoproxyServer()).port,  # answers 404: the list falls through
            "honest_proxy": honest.port,
            "tampered_proxy": tampered.port,
            "proxy": loop.start(HttpProxy()).port,
            "denying_proxy": loop.start(HttpProxy("status", status=403)).port,
            "git": loop.start(GitHttpServer(repositories, ssl_context=tls)).port,
            "ssh": loop.start(TcpServer(banner())).port,
        }
        resolvers = [unbound.udp, unbound.tcp, unbound.tls("localhost"), unbound.https(host="127.0.0.1"), f"udp://127.0.0.1:{closed_port()}"]
        daemon = start_daemon(_config(port, pki.ca_path, postgres_url, resolvers), tmp_path, log_level="info")
        prometheus = _start_prometheus(tmp_path, daemon.port)
        started = time.time()
        try:
            boards = load_boards()
            exported = _wait_until_every_query_has_data(boards, prometheus.port, grafana_reader, started, daemon)
            time_range = TimeRange(started, time.time(), step=2.0, scrape=SCRAPE_S)
            for board in boards:
                _check_board(board, prometheus.port, grafana_reader, time_range, exported)
            _check_reader_cannot_write(grafana_reader)
        finally:
            prometheus.stop()
            assert daemon.stop() == 0, daemon.log()[-3000:]


# --- Prometheus ----------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start_prometheus(tmp_path: Path, daemon_port: int) -> Prometheus:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_S:g}s, evaluation_interval: {SCRAPE_S:g}s}}\n"
        "scrape_configs:\n"
        "  - job_name: monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{daemon_port}'], labels: {{agent: {AGENT}}}}}]\n"
    )
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    return Prometheus(proc, port, log)


def _api(port: int, path: str, params: dict[str, Any]) -> Any:
    """GET for the label values endpoint (it takes nothing else), POST for queries (long ones)."""
    encoded = urllib.parse.urlencode(params, doseq=True)
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if path.startswith("label/"):
        request = urllib.request.Request(f"{url}?{encoded}")
    else:
        request = urllib.request.Request(url, data=encoded.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer = json.load(resp)
    assert answer["status"] == "success", answer
    return answer["data"]


def _evaluate(port: int, expr: str, instant: bool, time_range: TimeRange) -> list[dict[str, Any]]:
    if instant:
        return _api(port, "query", {"query": expr, "time": time_range.end})["result"]
    return _api(port, "query_range", {"query": expr, "start": time_range.start, "end": time_range.end, "step": time_range.step})["result"]


def _has_number(result: list[dict[str, Any]]) -> bool:
    """Some series with some value that is a number (NaN, from 0/0 or an empty histogram, is not data)."""
    for series in result:
        values = series.get("values") or [series["value"]]
        if any(not math.isnan(float(v)) for _, v in values):
            return True
    return False


def _label_values(port: int, query: str, variables: list[dict[str, Any]], time_range: TimeRange) -> list[str]:
    selector, label = label_values_query(query)
    return _api(port, f"label/{label}/values", {"match[]": promql(selector, {}, variables, time_range), "start": time_range.start, "end": time_range.end})


# --- the store -----------------------------------------------------------------------------------


def _rows(reader_url: str, text: str) -> list[tuple]:
    with psycopg.connect(reader_url, connect_timeout=10) as conn:
        return conn.execute(text).fetchall()


def _check_reader_cannot_write(reader_url: str) -> None:
    """Its sessions start read-only, and without that it still holds no right to write."""
    with psycopg.connect(reader_url, connect_timeout=10, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        conn.execute("SET default_transaction_read_only = off")
        for statement in ("DELETE FROM verdict_episodes", "CREATE TABLE grafana_was_here (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


# --- waiting and checking ------------------------------------------------------------------------


def _wait_until_every_query_has_data(
    boards: list[dict[str, Any]], port: int, reader_url: str, started: float, daemon: DaemonProcess
) -> tuple[set[str], set[str]]:
    """Until every target (variables All) has data: bounded, the machine may be loaded. Returns
    the metric and label names the daemon's /metrics showed meanwhile (some series exist only
    while the latest result carries their fact)."""
    deadline = time.monotonic() + 180
    missing: list[str] = []
    metrics: set[str] = set()
    labels: set[str] = set()
    while time.monotonic() < deadline:
        time.sleep(3)
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        seen = _exported(daemon.metrics())
        metrics |= seen[0]
        labels |= seen[1]
        time_range = TimeRange(started, time.time(), step=2.0, scrape=SCRAPE_S)
        missing = []
        for board in boards:
            variables = query_variables(board)
            for t in targets(board):
                try:
                    if t.promql is not None:
                        panel_range = time_range.for_panel(t)
                        ok = _has_number(_evaluate(port, promql(t.promql, {}, variables, panel_range), t.instant, panel_range))
                    else:
                        ok = bool(_rows(reader_url, sql(t.sql or "", {}, variables, time_range)))
                except (OSError, psycopg.Error):
                    ok = False
                if not ok:
                    missing.append(f"{t.board} / {t.panel}")
        if not missing:
            return metrics, labels
    raise AssertionError(f"no data after 180 s for: {missing}\n--- daemon log ---\n{daemon.log()[-3000:]}")


def _check_board(board: dict[str, Any], port: int, reader_url: str, time_range: TimeRange, exported: tuple[set[str], set[str]]) -> None:
    variables = query_variables(board)
    exported_metrics, exported_labels = exported
    options: dict[str, list[str]] = {}
    for v in variables:
        options[v["name"]] = _label_values(port, v["query"], variables, time_range)
        assert options[v["name"]], f"{board['uid']}: variable {v['name']} lists no value ({v['query']})"
        selector, label = label_values_query(v["query"])
        metrics, labels = promql_names(promql(selector, {}, variables, time_range))
        assert metrics <= exported_metrics and labels | {label} <= exported_labels | TARGET_LABELS, v["query"]

    for t in targets(board):
        where = f"{board['uid']} / {t.panel}"
        if t.promql is not None:
            expr = promql(t.promql, {}, variables, time_range)
            metrics, labels = promql_names(expr)
            assert metrics, f"{where}: no metric in {expr}"
            assert metrics <= exported_metrics | PROMETHEUS_METRICS, f"{where}: not exported: {metrics - exported_metrics}"
            assert labels <= exported_labels | TARGET_LABELS, f"{where}: labels not exported: {labels - exported_labels - TARGET_LABELS}"

            def has_data(selection: dict[str, Any], t=t) -> bool:
                panel_range = time_range.for_panel(t)
                text = promql(t.promql or "", selection, variables, panel_range)
                return _has_number(_evaluate(port, text, t.instant, panel_range))
        else:
            def has_data(selection: dict[str, Any], t=t) -> bool:
                return bool(_rows(reader_url, sql(t.sql or "", selection, variables, time_range)))

        assert has_data({}), f"{where}: no data with every variable at All"
        used = [v["name"] for v in variables if f"${v['name']}" in _raw(t) or f"${{{v['name']}:" in _raw(t)]
        for name in used:
            working = next((value for value in options[name] if has_data({name: [value]})), None)
            assert working is not None, f"{where}: no data for any single value of ${name} among {options[name]}"
            others = [value for value in options[name] if value != working]
            if others:  # several values at once: Grafana's (a|b)
                assert has_data({name: [working, others[0]]}), f"{where}: no data for ${name} = {working} and {others[0]}"


def _raw(t) -> str:
    return t.promql if t.promql is not None else (t.sql or "")


def _exported(exposition: str) -> tuple[set[str], set[str]]:
    metrics: set[str] = set()
    labels: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            metrics.add(sample.name)
            labels.update(sample.labels)
    return metrics, labels
