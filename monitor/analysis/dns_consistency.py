"""Do the resolvers of one DNS round agree, and if not, who lies? Pure functions, no network.

Input: the per-resolver results of one round of a `dns` check (monitor.probes.dns). Each
carries in `facts`: `resolver` (spec), `transport`, `qtype`, `addresses` (A/AAAA answers),
`answers` (every answer record as {name, type, ttl, data}) and, for UDP, `replies` (every
datagram that arrived, each with its own `addresses`) and `injection`.

Rules, each giving a named reason:
- forged_ip: an address from the published GFW forged-answer pool (monitor/data) that no
  other resolver in the round returned. The pool holds real addresses of blocked services,
  so agreement with another resolver clears an address.
- teredo: an AAAA answer in 2001::/32. The GFW answers AAAA queries with Teredo addresses;
  no public service is reached over Teredo.
- bogon: an answer that is not globally routable (private, loopback, reserved, ...) that an
  encrypted resolver (DoT/DoH) of the round answered differently. A private answer the
  encrypted resolvers agree with, or that no encrypted resolver contradicts, is split
  horizon or an internal resolver, normal where monitor runs (facts.private_ips); one in
  the configured private networks (analysis.private_networks) is expected outright.
- injection: two replies to one UDP query that differ: the signature of an on-path injector.
- nxdomain_vs_answers: one resolver says the name does not exist while another answers.
- no_ip_overlap / answers_differ: an answering resolver shares nothing with the others.
  CDNs answer differently by location and resolver, so this alone never yields a verdict
  stronger than `inconclusive` (OONI's rule: set difference alone proves nothing), and the
  round is not failed for it.
- all_failed: no resolver answered at all (timeouts, refusals, SERVFAIL): nothing to compare.
Addresses are taken from every reply seen, not only the accepted one, so forged addresses
are named even when the injector lost the race.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from monitor.analysis.observations import PeerView, outcome, seen_addresses
from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName

TEREDO = ipaddress.ip_network("2001::/32")
ADDRESS_TYPES = ("A", "AAAA")


@cache
def forged_pool() -> frozenset[str]:
    """The shipped GFW forged-answer pool (addresses in canonical text form)."""
    text = resources.files("monitor").joinpath("data/gfw_forged_ips.txt").read_text(encoding="utf-8")
    return parse_pool(text)


def parse_pool(text: str) -> frozenset[str]:
    found = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            found.add(str(ipaddress.ip_address(line)))
    return frozenset(found)


def is_bogon(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def is_expected_private(address: str, networks: Iterable[str]) -> bool:
    """Whether `address` lies in one of the configured private networks (analysis.private_networks)."""
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


@dataclass(frozen=True)
class Reason:
    rule: str  # forged_ip | teredo | bogon | injection | nxdomain_vs_answers | no_ip_overlap | answers_differ
    resolvers: tuple[str, ...]
    addresses: tuple[str, ...] = ()
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "resolvers": list(self.resolvers), "addresses": list(self.addresses), "detail": self.detail}


@dataclass(frozen=True)
class Comparison:
    consistent: bool
    reasons: tuple[Reason, ...]
    verdict: Verdict
    forged_ips: tuple[str, ...] = ()
    bogon_ips: tuple[str, ...] = ()
    summary: tuple[dict[str, Any], ...] = field(default=())
    private_ips: tuple[str, ...] = ()  # not routable, but agreed (split horizon) or expected

    def facts(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "reasons": [r.to_json() for r in self.reasons],
            "forged_ips": list(self.forged_ips),
            "bogon_ips": list(self.bogon_ips),
            "private_ips": list(self.private_ips),
            "resolvers": list(self.summary),
        }


def _record_set(r: ProbeResult) -> frozenset[str]:
    """What an answering resolver said, comparable across resolvers."""
    qtype = r.facts.get("qtype")
    if qtype in ADDRESS_TYPES:
        return frozenset(r.facts.get("addresses") or ())
    return frozenset(f"{a['type']} {a['data']}" for a in r.facts.get("answers") or () if a.get("type") == qtype)


def compare(results: Sequence[ProbeResult], pool: Iterable[str] | None = None, private: Iterable[str] = ()) -> Comparison:
    """Compare the per-resolver results of one round."""
    pool = forged_pool() if pool is None else frozenset(str(ipaddress.ip_address(a)) for a in pool)
    private = tuple(private)
    reasons: list[Reason] = []
    seen = {r.target: seen_addresses(r) for r in results}
    outcomes = {r.target: outcome(r) for r in results}
    encrypted = [r.target for r in results if r.facts.get("transport") in ("tls", "https") and outcomes[r.target] == "answer"]
    forged: list[str] = []
    bogons: list[str] = []
    agreed: list[str] = []

    for r in results:
        mine = seen[r.target]
        others = {a for t, addrs in seen.items() if t != r.target for a in addrs}
        teredo = [a for a in mine if ipaddress.ip_address(a) in TEREDO]
        if teredo:
            reasons.append(Reason("teredo", (r.target,), tuple(teredo), "AAAA answer in Teredo 2001::/32"))
        unroutable = [a for a in mine if a not in teredo and is_bogon(a)]
        # Poisoning only where an encrypted resolver answered without it; expected networks never.
        disagreeing = [e for e in encrypted if e != r.target]
        bad = [a for a in unroutable if not is_expected_private(a, private) and any(a not in seen[e] for e in disagreeing)]
        agreed += [a for a in unroutable if a not in bad]
        if bad:
            refs = ", ".join(e for e in disagreeing if any(a not in seen[e] for a in bad))
            reasons.append(Reason("bogon", (r.target,), tuple(bad), f"answer not globally routable, and {refs} answered otherwise"))
            bogons += bad
        in_pool = [a for a in mine if a in pool and a not in others]
        if in_pool:
            reasons.append(Reason("forged_ip", (r.target,), tuple(in_pool), "address from the GFW forged-answer pool"))
            forged += in_pool
        if r.facts.get("injection"):
            reasons.append(Reason("injection", (r.target,), tuple(mine), f"{len(r.facts.get('replies') or ())} differing replies to one UDP query"))

    nx = tuple(t for t, o in outcomes.items() if o == "nxdomain")
    answering = [r for r in results if outcomes[r.target] == "answer"]
    if nx and answering:
        reasons.append(Reason("nxdomain_vs_answers", nx + tuple(r.target for r in answering), (),
                              f"NXDOMAIN from {', '.join(nx)} while {', '.join(r.target for r in answering)} answered"))
    if results and all(o == "error" for o in outcomes.values()):
        reasons.append(Reason("all_failed", tuple(outcomes), (), "no resolver answered"))

    sets = {r.target: _record_set(r) for r in answering}
    if len(sets) >= 2:
        outliers = tuple(t for t, s in sets.items() if s.isdisjoint(set().union(*(o for u, o in sets.items() if u != t))))
        if outliers:
            rule = "no_ip_overlap" if answering[0].facts.get("qtype") in ADDRESS_TYPES else "answers_differ"
            reasons.append(Reason(rule, outliers, (), "shares no answer with any other resolver"))

    consistent = not reasons
    summary = tuple(
        {"resolver": r.target, "ok": r.ok, "failure": r.failure.cls.value if r.failure else None,
         "addresses": r.facts.get("addresses") or []}
        for r in results
    )
    return Comparison(consistent, tuple(reasons), _verdict(results, outcomes, reasons),
                      tuple(dict.fromkeys(forged)), tuple(dict.fromkeys(bogons)), summary, tuple(dict.fromkeys(agreed)))


def _verdict(results: Sequence[ProbeResult], outcomes: dict[str, str], reasons: list[Reason]) -> Verdict:
    rules = {r.rule for r in reasons}
    evidence = tuple(f"{r.rule}: {', '.join(r.resolvers)}" + (f" -> {', '.join(r.addresses)}" if r.addresses else "") + (f" ({r.detail})" if r.detail else "") for r in reasons)
    if rules & {"forged_ip", "injection", "teredo"}:
        return Verdict(VerdictName.DNS_POISONING, Confidence.HIGH, evidence)
    if "bogon" in rules:
        return Verdict(VerdictName.DNS_POISONING, Confidence.MEDIUM, evidence)
    if "nxdomain_vs_answers" in rules:
        return Verdict(VerdictName.DNS_BLOCKING, Confidence.MEDIUM, evidence)

    failed = [r for r in results if outcomes[r.target] == "error"]
    answered = [r for r in results if outcomes[r.target] == "answer"]
    failures = tuple(f"{r.target}: {r.failure.cls.value} during {r.failure.operation.value}" for r in failed if r.failure)
    if rules - {"all_failed"}:  # answers that differ, nothing more
        return Verdict(VerdictName.INCONCLUSIVE, Confidence.LOW, evidence + failures + ("CDNs answer differently by location; a verified TLS certificate would settle it",))
    if not failed:
        return Verdict(VerdictName.OK, Confidence.HIGH if answered else Confidence.MEDIUM, ())
    encrypted = [r for r in results if r.facts.get("transport") in ("tls", "https")]
    plain_answered = [r for r in answered if r.facts.get("transport") not in ("tls", "https")]
    if encrypted and all(r in failed for r in encrypted) and plain_answered:
        return Verdict(VerdictName.ENCRYPTED_DNS_BLOCKED, Confidence.MEDIUM, failures)
    if answered:
        return Verdict(VerdictName.DEGRADED, Confidence.LOW, failures)
    return Verdict(VerdictName.INCONCLUSIVE, Confidence.LOW, ("no resolver answered", *failures))


@dataclass(frozen=True)
class DnsJudgement:
    verdict: Verdict
    ok: bool  # the round worked: every resolver answered or denied alike, and nobody lies
    failure: Failure | None  # what the verdict rests on, when not ok
    facts: dict[str, Any]


def judge_dns(results: Sequence[ProbeResult], peers: Sequence[PeerView] = (), *, pool: Iterable[str] | None = None,
              private: Iterable[str] = ()) -> DnsJudgement:
    """A dns round's comparison, then what the other vantages add: a resolver that fails here
    but that another vantage reached is blocked (a clean control failing it too: it is down)."""
    comparison = compare(results, pool, private)
    verdict = comparison.verdict
    failed = [r for r in results if outcome(r) == "error"]
    if failed and {r.rule for r in comparison.reasons} <= {"all_failed"}:  # resolvers fail, nobody lies
        verdict = _across_vantages(verdict, failed, peers)
    unexplained_difference = verdict.name is VerdictName.INCONCLUSIVE and not failed
    ok = verdict.name is VerdictName.OK or unexplained_difference
    failure = None
    if not ok:
        first = next((r.failure for r in results if r.failure is not None and outcome(r) == "error"), None)
        first = first or next((r.failure for r in results if r.failure is not None), None)
        failure = first or Failure(FailureClass.DNS_BOGON_ERROR, Operation.VERIFY, (verdict.evidence or ("answers that cannot be right",))[0])
    return DnsJudgement(verdict, ok, failure, comparison.facts())


def _across_vantages(verdict: Verdict, failed: Sequence[ProbeResult], peers: Sequence[PeerView]) -> Verdict:
    lines = [f"{r.target}: {r.failure.cls.value} during {r.failure.operation.value}" for r in failed if r.failure]
    reached = {r.target: [p.name for p in peers if r.target in p.reached_resolvers] for r in failed}
    blocked = {t: names for t, names in reached.items() if names}
    if blocked:
        transports = {r.facts.get("transport") for r in failed if r.target in blocked}
        name = VerdictName.ENCRYPTED_DNS_BLOCKED if transports <= {"tls", "https"} else VerdictName.DNS_BLOCKING
        return Verdict(name, Confidence.HIGH, (*lines, *(f"{t}: {', '.join(n)} reached it" for t, n in blocked.items())))
    down = [p.name for p in peers if p.clean and not p.reached_resolvers & set(reached)]
    if verdict.name is VerdictName.INCONCLUSIVE and down:
        return Verdict(VerdictName.SERVER_DOWN, Confidence.HIGH, (*lines, f"control {', '.join(down)} reached none of them either"))
    return verdict
