"""Verdict episodes: the pure state machine, then the store half (monitor/judgement.py) with
another vantage's result in the store turning an unexplained failure into a verdict, and
monitor_verdict on /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session

from monitor.analysis.episodes import State, shown, step
from monitor.config import load_config_text
from monitor.export.collector import MonitorCollector
from monitor.export.state import ExporterState
from monitor.judgement import Judge
from monitor.model import Confidence, ProbeResult, Verdict, VerdictName
from monitor.store import save_results, upgrade
from monitor.store.episodes import current_episode, episode_state, episodes_between
from tests import test_verdicts as built

V = VerdictName
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def run(names, *, confirmations=2, clean_rounds=2):
    """Feed verdicts one per minute; a name ending in "~" is a run that did not fail (an
    inconclusive comparison of answers that all came), every other non-ok name one that did.
    Returns the state, the episodes ended and dropped, what alerts saw after each round,
    and each round's own verdict."""
    state, ended, dropped, trail, said = State(), [], [], [], []
    for i, name in enumerate(names):
        verdict = Verdict(V(name.rstrip("~")), Confidence.HIGH, (name,))
        s = step(state, verdict, T0 + timedelta(minutes=i), failed=name != "ok" and not name.endswith("~"), check="c", vantage="v",
                 agent="a", confirmations=confirmations, clean_rounds=clean_rounds)
        state = s.state
        ended += [e for e in s.changed if e.ended_at is not None]
        dropped += list(s.dropped)
        trail.append(shown(state).value)
        said.append(s.verdict.name.value)
    return state, ended, dropped, trail, said


def test_an_episode_opens_after_confirmations_and_closes_after_clean_rounds():
    state, ended, dropped, trail, _ = run(["sni_blocking", "sni_blocking", "sni_blocking", "ok", "ok", "ok"])
    assert trail == ["ok", "sni_blocking", "sni_blocking", "sni_blocking", "ok", "ok"]
    [episode] = ended
    assert episode.started_at == T0 and episode.confirmed_at == T0 + timedelta(minutes=1)
    assert episode.ended_at == T0 + timedelta(minutes=4) and episode.rounds == 3
    assert state == State() and dropped == []


def test_a_single_bad_round_never_opens_and_a_quiet_round_changes_nothing():
    state, ended, dropped, trail, _ = run(["ip_blocking", "ok", "inconclusive~", "ip_blocking", "inconclusive~", "ip_blocking"])
    assert trail == ["ok", "ok", "ok", "ok", "ok", "ip_blocking"]
    assert len(dropped) == 1 and ended == []
    assert state.open is not None and state.open.verdict is V.IP_BLOCKING


def test_an_ok_round_between_bad_ones_does_not_close_before_clean_rounds():
    *_, trail, _ = run(["dns_poisoning"] * 2 + ["ok", "dns_poisoning", "ok", "ok"])
    assert trail == ["ok", "dns_poisoning", "dns_poisoning", "dns_poisoning", "dns_poisoning", "ok"]


def test_another_verdict_takes_over_once_confirmed_never_dropping_to_ok_between():
    state, ended, _, trail, _ = run(["sni_blocking"] * 2 + ["ip_blocking"] * 2, confirmations=2)
    assert trail == ["ok", "sni_blocking", "sni_blocking", "ip_blocking"]
    assert [e.verdict for e in ended] == [V.SNI_BLOCKING] and ended[0].ended_at == T0 + timedelta(minutes=3)
    assert state.open is not None and state.open.verdict is V.IP_BLOCKING and state.pending is None
    # A challenger that does not repeat in a row is dropped; the open episode never left.
    state, ended, dropped, trail, _ = run(["sni_blocking"] * 2 + ["ip_blocking", "sni_blocking", "ip_blocking"])
    assert trail == ["ok"] + ["sni_blocking"] * 4 and ended == [] and len(dropped) == 1
    assert state.pending is not None and state.pending.verdict is V.IP_BLOCKING and state.pending.rounds == 1


def test_one_confirmation_opens_at_once():
    *_, trail, _ = run(["tls_mitm", "ok"], confirmations=1, clean_rounds=1)
    assert trail == ["tls_mitm", "ok"]


def test_a_failure_with_no_cause_that_repeats_is_failing():
    """One agent alone: nothing to compare with, every round fails."""
    state, _, _, trail, said = run(["inconclusive"] * 4)
    assert said == ["inconclusive", "failing", "failing", "failing"]
    assert trail == ["ok", "failing", "failing", "failing"]
    assert state.open is not None and state.open.verdict is V.FAILING and state.open.started_at == T0
    # Even with one confirmation, a single unrepeated failure stays inconclusive.
    *_, trail, said = run(["inconclusive", "ok", "inconclusive", "inconclusive"], confirmations=1)
    assert said == ["inconclusive", "ok", "inconclusive", "failing"] and trail == ["ok", "ok", "ok", "failing"]


def test_an_unexplained_round_continues_the_open_episode_of_an_established_cause():
    """Sustained blocking whose cause cannot be re-established in some rounds stays what it
    was: the episode neither closes nor turns into `failing`."""
    state, ended, _, trail, said = run(["sni_blocking"] * 2 + ["inconclusive"] * 3 + ["sni_blocking", "ok", "ok"])
    assert trail == ["ok"] + ["sni_blocking"] * 5 + ["sni_blocking", "ok"]
    assert said[2:5] == ["inconclusive"] * 3
    [episode] = ended
    assert episode.rounds == 3 and episode.last_seen_at == T0 + timedelta(minutes=5)
    # An ok round among them is not clean enough to close it before clean_rounds.
    *_, trail, _ = run(["sni_blocking"] * 2 + ["inconclusive", "ok", "inconclusive", "ok"])
    assert trail == ["ok"] + ["sni_blocking"] * 5


def test_a_cause_found_later_takes_over_from_failing():
    state, ended, _, trail, _ = run(["inconclusive"] * 3 + ["ip_blocking"] * 2)
    assert trail == ["ok", "failing", "failing", "failing", "ip_blocking"]
    assert [e.verdict for e in ended] == [V.FAILING]


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
    runs = []
    for r in results:
        r.vantage, r.agent, r.started_at, r.check = vantage, agent, at, "s"
        runs.append(r)
    summary = ProbeResult(check="s", kind="site", vantage=vantage, target="site.example", started_at=at, ok=True, duration_s=1.0,
                          facts={"role": "summary"}, agent=agent)
    return [*runs, summary]


def test_judge_uses_other_vantages_and_stores_episodes(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    cfg = load_config_text(CONFIG.format(url=url))
    check = cfg.check("s")
    judge = Judge(cfg, others_recheck_s=0)  # the other agent appears between two runs: look every time
    state = ExporterState()
    try:
        now = datetime.now(UTC)
        blocked = lambda: built.repeated(lambda a: built._dead(a, "syn_timeout"))
        # Alone, nothing tells a blocked address from a dead server.
        alone = site_run(blocked(), "here", "here-agent", now)
        assert judge.conclude(check, alone).shown is V.OK  # pending: nothing confirmed yet
        assert alone[-1].verdict.name is V.INCONCLUSIVE
        assert not alone[-1].ok and alone[-1].failure is not None and alone[-1].failure.operation.value == "connect"
        # Another agent's vantage connects fine: the same failure here is IP blocking.
        with Session(judge.engine) as session, session.begin():
            save_results(session, judged_site_run(built.clean_attempt(), "clean", "other-agent", now))
        for minute in (1, 2):
            run_ = site_run(blocked(), "here", "here-agent", now + timedelta(minutes=minute))
            shown_ = judge.conclude(check, run_).shown
            state.record_verdict("s", "here", shown_.value)
            assert run_[-1].verdict.name is V.IP_BLOCKING
            assert run_[-1].facts["compared_with"] == ["clean@other-agent"]
        assert shown_ is V.IP_BLOCKING
        with Session(judge.engine) as session:
            episode = current_episode(session, "s", "here", "here-agent")
            assert episode is not None and episode.open and episode.verdict is V.IP_BLOCKING
        # A clean round closes it (clean_rounds: 1), and it stays in the store.
        clean = site_run(built.clean_attempt(), "here", "here-agent", now + timedelta(minutes=3))
        assert judge.conclude(check, clean).shown is V.OK
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


def test_another_agent_appearing_is_consulted_once_the_judge_looks_again(tmp_path):
    """With no other agent in the store the judge does not ask it for peers on every run; it
    asks whether one appeared every `others_recheck_s`, and from then on consults its results."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    cfg = load_config_text(CONFIG.format(url=url))
    check = cfg.check("s")
    judge = Judge(cfg, others_recheck_s=1.0)
    try:
        now = datetime.now(UTC)
        blocked = lambda: built.repeated(lambda a: built._dead(a, "syn_timeout"))
        judge.conclude(check, site_run(blocked(), "here", "here-agent", now))  # looks: nobody else
        with Session(judge.engine) as session, session.begin():
            save_results(session, judged_site_run(built.clean_attempt(), "clean", "other-agent", now))
        soon = site_run(blocked(), "here", "here-agent", now + timedelta(seconds=1))
        judge.conclude(check, soon)
        assert soon[-1].facts["compared_with"] == []  # within the recheck period: not seen yet
        time.sleep(1.1)
        later = site_run(blocked(), "here", "here-agent", now + timedelta(seconds=2))
        judge.conclude(check, later)
        assert later[-1].facts["compared_with"] == ["clean@other-agent"]
        assert later[-1].verdict.name is V.IP_BLOCKING
    finally:
        judge.close()


def judged_site_run(results, vantage, agent, at):
    """A run as another agent stored it: judged by its own judge step."""
    run_ = site_run(results, vantage, agent, at)
    from monitor.analysis.runs import judge_run

    judged = judge_run(run_)
    run_[-1].facts.update(judged.facts)
    run_[-1].verdict, run_[-1].ok = judged.verdict, judged.ok
    return run_


def test_a_one_off_run_continues_the_episode_a_previous_process_left_in_the_store(tmp_path):
    """`probe --once` runs are separate processes: each reads the episode state the last one stored."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    cfg = load_config_text(CONFIG.format(url=url))
    now = datetime.now(UTC)
    said = []
    for minute in range(3):
        judge = Judge(cfg)
        try:
            run_ = site_run(built.repeated(lambda a: built._dead(a, "syn_timeout")), "here", "here-agent", now + timedelta(minutes=minute))
            said.append(judge.conclude(cfg.check("s"), run_).shown.value)
        finally:
            judge.close()
    assert said == ["ok", "failing", "failing"]
    with Session(Judge(cfg, store=True).engine) as session:
        state = episode_state(session, "s", "here", "here-agent")
    assert state.open is not None and state.open.verdict is V.FAILING and state.open.rounds == 3


def test_store_unreachable_still_judges_and_moves_no_episode(tmp_path):
    cfg = load_config_text(CONFIG.format(url=f"sqlite:///{tmp_path / 'missing' / 'm.db'}"))
    judge = Judge(cfg)
    try:
        results = site_run(built.clean_attempt(), "here", "here-agent", datetime.now(UTC))
        conclusion = judge.conclude(cfg.check("s"), results)
        assert conclusion.shown is None and conclusion.verdict.name is V.OK
        assert results[-1].verdict.name is V.OK and results[-1].ok
    finally:
        judge.close()


def test_without_a_store_the_state_lives_in_memory(tmp_path):
    cfg = load_config_text(CONFIG.format(url=f"sqlite:///{tmp_path / 'missing' / 'm.db'}"))
    judge = Judge(cfg, store=False)
    try:
        now = datetime.now(UTC)
        shown_ = [judge.conclude(cfg.check("s"), site_run(built.repeated(lambda a: built._dead(a, "syn_timeout")), "here", "here-agent",
                                                          now + timedelta(minutes=m))).shown for m in range(2)]
        assert shown_ == [V.OK, V.FAILING]
    finally:
        judge.close()
