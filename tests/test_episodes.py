"""Verdict episodes: the pure state machine, then the store half (monitor/judgement.py) with
another vantage's result in the store turning an unexplained failure into a verdict, and
monitor_verdict on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session

from monitor.analysis.episodes import current_verdict, step
from monitor.config import load_config_text
from monitor.export.collector import MonitorCollector
from monitor.export.state import ExporterState
from monitor.judgement import Judge
from monitor.model import Confidence, ProbeResult, Verdict, VerdictName
from monitor.store import save_results, upgrade
from monitor.store.episodes import current_episode, episodes_between
from tests import test_verdicts as built

V = VerdictName
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def verdicts(*names: str) -> list[Verdict]:
    return [Verdict(V(n), Confidence.HIGH, (n,)) for n in names]


def run(names, *, confirmations=2, clean_rounds=2):
    """Feed verdicts one per minute; every (kept, ended, dropped) along the way."""
    current, ended, dropped, trail = None, [], [], []
    for i, v in enumerate(verdicts(*names)):
        s = step(current, v, T0 + timedelta(minutes=i), check="c", vantage="v", agent="a", confirmations=confirmations, clean_rounds=clean_rounds)
        current = s.current
        ended += [s.ended] if s.ended else []
        dropped += [s.dropped] if s.dropped else []
        trail.append(current_verdict(current).value)
    return current, ended, dropped, trail


def test_an_episode_opens_after_confirmations_and_closes_after_clean_rounds():
    current, ended, dropped, trail = run(["sni_blocking", "sni_blocking", "sni_blocking", "ok", "ok", "ok"])
    assert trail == ["ok", "sni_blocking", "sni_blocking", "sni_blocking", "ok", "ok"]
    [episode] = ended
    assert episode.started_at == T0 and episode.confirmed_at == T0 + timedelta(minutes=1)
    assert episode.ended_at == T0 + timedelta(minutes=4) and episode.rounds == 3
    assert current is None and dropped == []


def test_a_single_bad_round_never_opens_and_inconclusive_changes_nothing():
    current, ended, dropped, trail = run(["ip_blocking", "ok", "inconclusive", "ip_blocking", "inconclusive", "ip_blocking"])
    assert trail == ["ok", "ok", "ok", "ok", "ok", "ip_blocking"]
    assert len(dropped) == 1 and ended == []
    assert current is not None and current.open


def test_an_ok_round_between_bad_ones_does_not_close_before_clean_rounds():
    *_, trail = run(["dns_poisoning"] * 2 + ["ok", "dns_poisoning", "ok", "ok"])
    assert trail == ["ok", "dns_poisoning", "dns_poisoning", "dns_poisoning", "dns_poisoning", "ok"]


def test_another_verdict_ends_the_open_episode_and_starts_its_own():
    current, ended, _, trail = run(["sni_blocking"] * 2 + ["ip_blocking"] * 2, confirmations=2)
    assert trail == ["ok", "sni_blocking", "ok", "ip_blocking"]
    assert [e.verdict for e in ended] == [V.SNI_BLOCKING]
    assert current is not None and current.verdict is V.IP_BLOCKING


def test_one_confirmation_opens_at_once():
    *_, trail = run(["tls_mitm", "ok"], confirmations=1, clean_rounds=1)
    assert trail == ["tls_mitm", "ok"]


# ---------------------------------------------------------------------------------------------


CONFIG = """
agent: here-agent
storage: {{url: "{url}"}}
analysis: {{confirmations: 2, clean_rounds: 1}}
vantages: [{{name: here}}, {{name: clean}}]
checks:
  - {{name: s, kind: site, domain: site.example, control_sni: control.example, vantages: [here],
     references: ["tls://1.1.1.1", "https://dns.google/dns-query"]}}
"""


def site_run(results: list[ProbeResult], vantage: str, agent: str, at: datetime) -> list[ProbeResult]:
    """A stored-shape run: the hand-built sub-results plus a summary, as site.py gives them."""
    from monitor.analysis.observations import attempts_of, round_facts

    runs = []
    for r in results:
        r.vantage, r.agent, r.started_at, r.check = vantage, agent, at, "s"
        runs.append(r)
    summary = ProbeResult(check="s", kind="site", vantage=vantage, target="site.example", started_at=at, ok=True, duration_s=1.0,
                          facts={"role": "summary", **round_facts(attempts_of(results)).to_facts()}, agent=agent)
    return [*runs, summary]


def test_judge_uses_other_vantages_and_stores_episodes(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    cfg = load_config_text(CONFIG.format(url=url))
    check = cfg.check("s")
    judge = Judge(url, cfg.analysis, cfg.agent)
    state = ExporterState()
    try:
        now = datetime.now(UTC)
        blocked = lambda: built.repeated(lambda a: built._dead(a, "syn_timeout"))
        # Alone, nothing tells a blocked address from a dead server.
        alone = site_run(blocked(), "here", "here-agent", now)
        assert judge.conclude(check, alone) is V.OK  # pending: nothing confirmed yet
        assert alone[-1].verdict.name is V.INCONCLUSIVE
        # Another agent's vantage connects fine: the same failure here is IP blocking.
        with Session(judge.engine) as session, session.begin():
            save_results(session, site_run(built.clean_attempt(), "clean", "other-agent", now))
        for minute in (1, 2):
            run_ = site_run(blocked(), "here", "here-agent", now + timedelta(minutes=minute))
            shown = judge.conclude(check, run_)
            state.record_verdict("s", "here", shown.value)
            assert run_[-1].verdict.name is V.IP_BLOCKING
            assert run_[-1].facts["compared_with"] == ["clean@other-agent"]
        assert shown is V.IP_BLOCKING
        with Session(judge.engine) as session:
            episode = current_episode(session, "s", "here", "here-agent")
            assert episode is not None and episode.open and episode.verdict is V.IP_BLOCKING
        # A clean round closes it (clean_rounds: 1), and it stays in the store.
        clean = site_run(built.clean_attempt(), "here", "here-agent", now + timedelta(minutes=3))
        assert judge.conclude(check, clean) is V.OK
        with Session(judge.engine) as session:
            assert current_episode(session, "s", "here", "here-agent") is None
            [closed] = episodes_between(session, now - timedelta(hours=1), now + timedelta(hours=1), "s")
            assert closed.verdict is V.IP_BLOCKING and closed.ended_at == now + timedelta(minutes=3)
    finally:
        judge.close()

    registry = CollectorRegistry()
    registry.register(MonitorCollector(state))
    text = generate_latest(registry).decode()
    assert 'monitor_verdict{check="s",vantage="here",verdict="ip_blocking"} 1.0' in text
    assert 'monitor_verdict{check="s",vantage="here",verdict="ok"} 0.0' in text
    state.forget_checks_except(set())
    assert "monitor_verdict{" not in generate_latest(registry).decode()


def test_store_unreachable_keeps_the_probe_verdict(tmp_path):
    cfg = load_config_text(CONFIG.format(url=f"sqlite:///{tmp_path / 'missing' / 'm.db'}"))
    judge = Judge(cfg.storage.url, cfg.analysis, cfg.agent)
    try:
        results = site_run(built.clean_attempt(), "here", "here-agent", datetime.now(UTC))
        results[-1].verdict = Verdict(V.OK, Confidence.HIGH)
        assert judge.conclude(cfg.check("s"), results) is None
        assert results[-1].verdict.name is V.OK
    finally:
        judge.close()
