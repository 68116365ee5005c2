"""The censor lab (tests/servers/censor_lab.py) under a running daemon: `monitor run` on the
host, measuring from the lab's namespaces as `netns:` vantages (the product's own way), round
after round. What the one-off runs of tests/test_lab.py cannot see shows here: verdicts that
must hold while a scenario lasts (residual blocking, sustained SNI filtering), episodes that
open and close, `monitor_verdict` on /metrics, several vantages judged against a named
control, and a lone agent whose every check fails.

Every wait is bounded; each test says how many rounds it needs. Short intervals (3 s) and
phase timeouts keep rounds apart on a loaded machine. The tests with a daemon of their own
come first: the scenario matrix's daemon lives until the end of the module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.model import ProbeResult
from monitor.store import make_engine
from monitor.store.models import EpisodeRow, ResultRow
from monitor.store.repository import result_from_row
from tests.conftest import require
from tests.daemon_harness import DaemonProcess, samples, start_daemon
from tests.servers.censor_lab import Lab, censor_lab, lab_unavailable, residual_sni_reset, scenarios
from tests.test_lab import lab_checks

pytestmark = [pytest.mark.slow, pytest.mark.needs_root]

INTERVAL = 3.0

CONFIG = """\
agent: lab-daemon
storage: {{url: "sqlite:///{db}", flush_interval: 200ms}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
trust: {{extra_ca_files: ["{ca}"]}}
vantages: [{vantages}]
defaults: {{vantages: [{names}], interval: {interval}s, timeout: 2500ms}}
analysis: {{confirmations: 2, clean_rounds: 1}}
checks:
{checks}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = lab_unavailable()
    require(reason is None, reason or "")
    with censor_lab(tmp_path_factory.mktemp("censor-lab-daemon")) as running:
        yield running


@dataclass
class Running:
    daemon: DaemonProcess
    db: Path

    def shown(self) -> dict[tuple[str, str], str]:
        """monitor_verdict: (check, vantage) -> the verdict shown (the series at 1)."""
        found = {}
        for labels, value in samples(self.daemon.metrics(), "monitor_verdict").items():
            if value == 1.0:
                d = dict(labels)
                found[(d["check"], d["vantage"])] = d["verdict"]
        return found

    def wait(self, what: str, predicate: Callable[[dict[tuple[str, str], str]], bool], within: float) -> dict[tuple[str, str], str]:
        deadline = time.monotonic() + within
        shown: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            try:
                shown = self.shown()
            except OSError:
                shown = {}
            if predicate(shown):
                return shown
            assert self.daemon.proc.poll() is None, f"daemon exited:\n{self.daemon.log()[-4000:]}"
            time.sleep(0.5)
        raise AssertionError(f"{what} not within {within:.0f}s; shown: {shown}")

    def summaries(self, check: str, vantage: str, since: float = 0.0) -> list[ProbeResult]:
        """The runs' last results of (check, vantage) that started after `since` (Unix time), oldest first."""
        engine = make_engine(f"sqlite:///{self.db}")
        try:
            with Session(engine) as session:
                rows = session.scalars(select(ResultRow).where(ResultRow.check == check, ResultRow.vantage == vantage)
                                       .order_by(ResultRow.started_at)).all()
                results = [result_from_row(r) for r in rows]
        finally:
            engine.dispose()
        return [r for r in results if r.verdict is not None and r.started_at.timestamp() >= since]

    def episodes(self, check: str, vantage: str) -> list[EpisodeRow]:
        engine = make_engine(f"sqlite:///{self.db}")
        try:
            with Session(engine) as session:
                rows = session.scalars(select(EpisodeRow).where(EpisodeRow.check == check, EpisodeRow.vantage == vantage)
                                       .order_by(EpisodeRow.started_at)).all()
                session.expunge_all()
                return list(rows)
        finally:
            engine.dispose()


def run_daemon(lab: Lab, directory: Path, checks: str, *, vantages: str, names: str) -> Running:
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "daemon.db"
    config = CONFIG.format(db=db, ca=lab.ca_path, vantages=vantages, names=names, interval=INTERVAL, checks=checks)
    return Running(start_daemon(config, directory, log_level="info"), db)


def everything(shown: dict[tuple[str, str], str], pairs: list[tuple[str, str]], verdict: str) -> bool:
    return all(shown.get(pair) == verdict for pair in pairs)


# ---------------------------------------------------------------------------------------------
# Sustained SNI filtering with residual blocking


RESIDUAL_S = 5  # the censor blocks every new SYN to a triggered address for this long
HOLDOFF = "8s"  # the probes keep the control off a triggered address this long (more than the censor)


@pytest.mark.timeout(300)
def test_sni_blocking_with_residual_blocking_stays_one_episode_until_it_ends(lab: Lab, tmp_path: Path):
    """The censor resets the site's ClientHello and then drops every SYN to that address for a
    while, round after round. The control is carried forward while the address is held off,
    and connections that cannot be made within the hold-off are the filter's residual
    blocking: one sni_blocking episode, open from its confirmation to after the scenario."""
    other = lab.sites[1]
    checks = f"""\
  - {{name: site, kind: site, domain: site.lab, control_sni: control.lab, path: /status/200, holdoff: {HOLDOFF}, control_max_age: 5m,
     resolvers: [system, "udp://{lab.resolver}"], references: ["tls://{lab.resolver}#dot.lab", "https://doh.lab/dns-query"],
     connect_timeout: 400ms, tls_timeout: 400ms, read_timeout: 1s}}
  # The tls check on another address of the same name (each address has its own residual blocking).
  - {{name: tls, kind: tls, target: "site.lab:443", connect_to: "{other}", control_sni: control.lab, holdoff: {HOLDOFF},
     control_max_age: 5m, connect_timeout: 400ms, tls_timeout: 400ms}}
"""
    running = run_daemon(lab, tmp_path, checks, vantages=lab.vantages_yaml(control="clean"), names="censored, clean")
    pairs = [(c, v) for c in ("site", "tls") for v in ("censored", "clean")]
    try:
        running.wait("ok before the scenario", lambda s: everything(s, pairs, "ok"), 60)
        rules = residual_sni_reset("site.lab", RESIDUAL_S)
        with lab.scenario(*rules):
            began = time.time()
            running.wait("sni_blocking", lambda s: s.get(("site", "censored")) == "sni_blocking" and s.get(("tls", "censored")) == "sni_blocking", 60)
            confirmed = time.time()
            # Eight more rounds, more than the hold-off and the censor's residual blocking over.
            seen = []
            until = time.monotonic() + 8 * INTERVAL
            while time.monotonic() < until:
                shown = running.shown()
                seen.append((shown.get(("site", "censored")), shown.get(("tls", "censored")), shown.get(("site", "clean"))))
                time.sleep(0.5)
            ended = time.time()
        assert set(seen) == {("sni_blocking", "sni_blocking", "ok")}, sorted(set(seen))
        for check in ("site", "tls"):
            rounds = running.summaries(check, "censored", confirmed)
            said = [r.verdict.name.value for r in rounds]
            assert len(rounds) >= 6 and not {"ip_blocking", "rst_injection", "server_down"} & set(said), (check, said)
        # The residual blocking was hit, and named for what it is.
        residual = [r for r in running.summaries("site", "censored", began)
                    if any(f.get("subtype") == "residual" for f in r.facts.get("findings") or ())]
        assert residual, "no round met the residual blocking"
        assert any("carried forward" in line for r in residual for line in r.verdict.evidence)

        # After the scenario: ok again once the hold-off no longer matters, and the episode closes.
        running.wait("ok after the scenario", lambda s: everything(s, pairs, "ok"), 60)
        for check in ("site", "tls"):
            [episode] = [e for e in running.episodes(check, "censored") if e.confirmed_at is not None]
            assert episode.verdict == "sni_blocking", episode.verdict
            assert episode.confirmed_at.timestamp() <= confirmed and episode.ended_at is not None
            assert episode.ended_at.timestamp() >= ended - 1, (episode.ended_at, ended)
            assert not running.episodes(check, "clean")
    finally:
        running.daemon.stop()


# ---------------------------------------------------------------------------------------------
# One agent alone


def every_kind(lab: Lab) -> str:
    """One check of every kind, each with a real server in the lab."""
    return lab_checks(lab, holdoff="1s", phase="400ms", read="1s", lossy=False) + f"""\
  - {{name: tcp, kind: tcp, target: "site.lab:443", connect_timeout: 400ms}}
  - {{name: git, kind: git, url: "https://git.lab/repo.git", ssh: "{lab.git_server}:22", connect_timeout: 400ms, tls_timeout: 400ms, read_timeout: 1s}}
  - {{name: proxy, kind: proxy, proxy: "http://{lab.connect_proxy}:3128", target: "site.lab:443", connect_to: "{lab.sites[0]}",
     connect_timeout: 400ms, tls_timeout: 400ms}}
"""


KINDS = ("site", "cdn", "module", "tls", "proxy-https", "intranet", "tcp", "git", "proxy")


@pytest.mark.timeout(300)
def test_one_agent_alone_under_a_total_outage_opens_an_episode_for_every_check(lab: Lab, tmp_path: Path):
    """With one vantage and no other agent there is nothing to compare with: every check that
    keeps failing is `failing` (the proxy check names its proxy), never ok, and every check is
    ok again once the network is back."""
    running = run_daemon(lab, tmp_path, every_kind(lab), vantages=f"{{name: censored, netns: {lab.censored}}}", names="censored")
    pairs = [(c, "censored") for c in KINDS]
    try:
        running.wait("every kind ok before the outage", lambda s: everything(s, pairs, "ok"), 60)
        with lab.scenario(*scenarios(lab)["outage"][0]):
            began = time.time()
            expected = {pair: ("proxy_failure" if pair[0] == "proxy" else "failing") for pair in pairs}
            shown = running.wait("an episode for every check", lambda s: all(s.get(p) == v for p, v in expected.items()), 60)
            assert "ok" not in shown.values()
            for check in KINDS:
                [episode] = [e for e in running.episodes(check, "censored") if e.confirmed_at is not None]
                assert episode.ended_at is None and episode.confirmed_at.timestamp() >= began - 1
                last = running.summaries(check, "censored", began)[-1]
                assert not last.ok and last.failure is not None, (check, last.failure)
        running.wait("every kind ok after the outage", lambda s: everything(s, pairs, "ok"), 60)
    finally:
        running.daemon.stop()


# ---------------------------------------------------------------------------------------------
# The scenarios, round after round, from two censored vantages and a named control


@pytest.fixture(scope="module")
def matrix(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    checks = lab_checks(lab, holdoff="1s", phase="400ms", read="1s", lossy=False)
    running = run_daemon(lab, tmp_path_factory.mktemp("matrix"), checks, vantages=lab.vantages_yaml(control="clean"),
                         names="censored, censored2, clean")
    try:
        yield running
    finally:
        running.daemon.stop()


CHECKS = ("site", "cdn", "module", "tls", "proxy-https", "intranet")
VANTAGES = ("censored", "censored2", "clean")
CENSORED = ("censored", "censored2")

# scenario -> {check: the verdict both censored vantages must show}; the control must stay ok.
MATRIX = {
    "sni_rst": {"site": "sni_blocking", "tls": "sni_blocking"},
    "ip_drop": {"site": "ip_blocking"},
    "syn_rst": {"site": "rst_injection"},
    "dns_injection": {"site": "dns_poisoning"},
    "dns_hijack": {"site": "dns_poisoning", "intranet": "dns_poisoning"},
    "dot_blocked": {"site": "encrypted_dns_blocked"},
    "doh_sni": {"site": "encrypted_dns_blocked"},
    "mitm": {"site": "tls_mitm"},
    "hijack_and_sni": {"site": "dns_poisoning"},
    "tampered_zip": {"module": "module_tampered"},
    "zip_reset": {"module": "rst_injection"},
    "module_mitm": {"module": "tls_mitm", "proxy-https": "tls_mitm"},
}


@pytest.mark.timeout(300)
def test_without_censorship_every_check_stays_ok_round_after_round(matrix: Running):
    """Also the CDN-like name whose plain answers rotate: over many rounds, no verdict but ok."""
    started = time.time()
    pairs = [(c, v) for c in CHECKS for v in VANTAGES]
    matrix.wait("every check ok from every vantage", lambda s: everything(s, pairs, "ok"), 90)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and min(len(matrix.summaries("cdn", v, started)) for v in VANTAGES) < 6:
        time.sleep(1)
    for vantage in VANTAGES:
        rounds = matrix.summaries("cdn", vantage, started)
        assert len(rounds) >= 6, (vantage, len(rounds))
        assert all(r.verdict.name.value in ("ok", "inconclusive") for r in rounds), [r.verdict for r in rounds]
        assert not any(e.confirmed_at for e in matrix.episodes("cdn", vantage)), vantage
    assert everything(matrix.shown(), pairs, "ok"), matrix.shown()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(MATRIX))
def test_scenario_holds_round_after_round_from_the_censored_vantages_only(lab: Lab, matrix: Running, name: str):
    expected = MATRIX[name]
    pairs = [(c, v) for c in CHECKS for v in VANTAGES]
    matrix.wait("every check ok before the scenario", lambda s: everything(s, pairs, "ok"), 90)
    rules, injector = scenarios(lab)[name]
    with lab.scenario(*rules, injector=injector):
        wanted = {(c, v): verdict for c, verdict in expected.items() for v in CENSORED}
        shown = matrix.wait(f"{name}: {expected} from both censored vantages",
                            lambda s: all(s.get(pair) == verdict for pair, verdict in wanted.items()), 60)
        opened = time.time()
        # It holds: two more rounds, and it is still what is shown.
        time.sleep(2 * INTERVAL)
        shown = matrix.shown()
        assert all(shown.get(pair) == verdict for pair, verdict in wanted.items()), (name, shown)
        assert all(shown.get((c, "clean")) == "ok" for c in expected), (name, shown)
        for check in expected:
            for vantage in CENSORED:
                said = [r.verdict.name.value for r in matrix.summaries(check, vantage, opened)]
                assert said and "server_down" not in said, (name, check, vantage, said)
    matrix.wait(f"{name}: every check ok again after the scenario", lambda s: everything(s, pairs, "ok"), 90)


@pytest.mark.timeout(240)
def test_two_censored_vantages_and_a_named_control_give_ip_blocking_never_server_down(lab: Lab, matrix: Running):
    """Each censored vantage sees the other fail too; only the control's success counts."""
    pairs = [(c, v) for c in CHECKS for v in VANTAGES]
    matrix.wait("every check ok before the scenario", lambda s: everything(s, pairs, "ok"), 90)
    rules, _ = scenarios(lab)["ip_drop"]
    with lab.scenario(*rules):
        began = time.time()
        matrix.wait("ip_blocking from both censored vantages",
                    lambda s: all(s.get(("site", v)) == "ip_blocking" and s.get(("tls", v)) == "ip_blocking" for v in CENSORED), 60)
        time.sleep(2 * INTERVAL)
        for vantage in CENSORED:
            for check in ("site", "tls"):
                rounds = matrix.summaries(check, vantage, began + INTERVAL)
                assert rounds and all(r.verdict.name.value != "server_down" for r in rounds), (check, vantage, [r.verdict for r in rounds])
                other = next(v for v in CENSORED if v != vantage)
                last = rounds[-1]
                assert f"{other}@lab-daemon" in last.facts["compared_with"] and "clean@lab-daemon" in last.facts["compared_with"]
        assert matrix.summaries("site", "clean", began)[-1].facts.get("control_vantage") is True

        # Now the control loses its own network (no route, its resolver unreachable): it fails
        # before the layer in question, so it proves nothing, and neither does the other
        # censored vantage. The cause established stays: no round says server_down.
        lab.run(lab.clean, "ip", "route", "del", "default")
        try:
            broken = time.time()
            matrix.wait("the control failing", lambda s: s.get(("site", "clean")) == "failing", 60)
            time.sleep(2 * INTERVAL)
            shown = matrix.shown()
            assert all(shown.get((c, v)) == "ip_blocking" for c in ("site", "tls") for v in CENSORED), shown
            for vantage in CENSORED:
                said = [r.verdict.name.value for r in matrix.summaries("site", vantage, broken + INTERVAL)]
                assert said and "server_down" not in said, (vantage, said)
        finally:
            lab.run(lab.clean, "ip", "route", "add", "default", "via", lab.ip(10))
    matrix.wait("every check ok again", lambda s: everything(s, pairs, "ok"), 90)
