"""One run of any check -> its verdict: the one entry point of the rules (pure, no I/O).

A run is what the probe runner returned for one (check, vantage): one result, or for the
round-based kinds the sub-results and their summary, last. `judge_run` picks the rules by
kind — site rounds (verdicts.judge_site), dns rounds (dns_consistency.judge_dns), a tls
check's SNI experiment and every other single result (single.judge_result) — and says what
the run's last result must carry: the verdict, whether the run worked (`ok`), the failure
the verdict rests on (a summary has none of its own), and the facts other vantages read.
The judge step (monitor/judgement.py) adds what spans rounds (peers, episodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.analysis.dns_consistency import judge_dns
from monitor.analysis.observations import PeerView, attempts_of, round_facts
from monitor.analysis.single import judge_experiment, judge_result
from monitor.analysis.verdicts import Judgement, judge_site
from monitor.config import AnalysisConfig
from monitor.model import Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName


@dataclass(frozen=True)
class RunJudgement:
    verdict: Verdict
    ok: bool  # the run worked (a summary's ok; a single result keeps its own)
    failure: Failure | None  # what the verdict rests on, when not ok
    facts: dict[str, Any] = field(default_factory=dict)  # to add to the run's last result
    # The check failed in this run, as episodes count it: not ok — except a site round where
    # a failure did not repeat in a majority of its attempts (a blip, not a failing check).
    failed: bool | None = None

    def __post_init__(self) -> None:
        if self.failed is None:
            object.__setattr__(self, "failed", not self.ok)

    def apply(self, results: Sequence[ProbeResult]) -> ProbeResult:
        """Write the judgement on the run's last result (a round's summary takes ok and failure
        from it; a single result keeps its own) and return that result."""
        last = results[-1]
        last.facts.update(self.facts)
        if last.facts.get("role") in SUMMARY_ROLES:
            last.ok, last.failure = self.ok, self.failure
        last.verdict = self.verdict
        return last


# The roles of a round's last result: a site summary, a dns comparison.
SUMMARY_ROLES = ("summary", "comparison")


def judge_run(results: Sequence[ProbeResult], peers: Sequence[PeerView] = (), analysis: AnalysisConfig | None = None) -> RunJudgement:
    analysis = analysis or AnalysisConfig()
    last = results[-1]
    role = last.facts.get("role")
    if last.kind == "site" and role == "summary":
        attempts = attempts_of(results)
        judged = judge_site(attempts, peers, degraded_threshold=analysis.degraded_threshold, private=analysis.private_networks)
        ok = judged.verdict.name is VerdictName.OK
        failed_attempts = sum(1 for v in judged.votes if v != VerdictName.OK.value)
        return RunJudgement(judged.verdict, ok, None if ok else _site_failure(results, judged),
                            {**round_facts(attempts).to_facts(), **judged.facts()}, failed=failed_attempts * 2 > len(judged.votes))
    if last.kind == "dns" and role == "comparison":
        dns = judge_dns(results[:-1], peers, private=analysis.private_networks)
        return RunJudgement(dns.verdict, dns.ok, dns.failure, dns.facts)
    if last.facts.get("sni_experiment"):
        experiment = judge_experiment(last, peers, degraded_threshold=analysis.degraded_threshold)
        return RunJudgement(experiment.verdict, last.ok, last.failure, _experiment_facts(experiment))
    return RunJudgement(judge_result(last, peers), last.ok, last.failure)


def _experiment_facts(j: Judgement) -> dict[str, Any]:
    facts = j.facts()
    return {k: facts[k] for k in ("findings", "subtype") if k in facts}


# The sub-results a site verdict rests on, by the layer of its main finding.
_ROLES_BY_LAYER = {
    "dns": ("resolver", "handshake", "fetch"),
    "proxy": ("handshake", "fetch"),
    "tcp": ("handshake", "fetch"),
    "tls": ("handshake", "fetch"),
    "http": ("fetch", "handshake"),
}


def _site_failure(results: Sequence[ProbeResult], j: Judgement) -> Failure:
    """The failure a site summary carries: of the last attempt's sub-results, the one of the
    layer the verdict comes from (a target handshake for sni_blocking, the GET for
    http_blocking…); an answer that cannot be right when nothing failed (poisoning)."""
    layer = next((f.layer for f in j.findings if f.verdict is j.verdict.name), None)
    attempts = [r.facts.get("attempt") for r in results if isinstance(r.facts.get("attempt"), int)]
    last = [r for r in results if r.facts.get("attempt") == max(attempts)] if attempts else []
    for role in _ROLES_BY_LAYER.get(layer or "", ("resolver", "handshake", "fetch")):
        for r in last:
            if r.facts.get("role") == role and r.failure is not None:
                return r.failure
    found = next((r.failure for r in results if r.failure is not None and r.facts.get("role") != "summary"), None)
    if found is not None:
        return found
    return Failure(FailureClass.DNS_BOGON_ERROR, Operation.VERIFY, (j.verdict.evidence or ("answers that cannot be right",))[-1])
