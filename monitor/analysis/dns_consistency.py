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
- bogon: an answer that is not globally routable (private, loopback, reserved, ...).
- injection: two replies to one UDP query that differ: the signature of an on-path injector.
- nxdomain_vs_answers: one resolver says the name does not exist while another answers.
- no_ip_overlap / answers_differ: an answering resolver shares nothing with the others.
  CDNs answer differently by location and resolver, so this alone never yields a verdict
  stronger than `inconclusive` (OONI's rule: set difference alone proves nothing).
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

from monitor.model import Confidence, FailureClass, ProbeResult, Verdict, VerdictName

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

    def facts(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "reasons": [r.to_json() for r in self.reasons],
            "forged_ips": list(self.forged_ips),
            "bogon_ips": list(self.bogon_ips),
            "resolvers": list(self.summary),
        }


def _outcome(r: ProbeResult) -> str:
    if r.failure is None:
        return "answer"
    if r.failure.cls is FailureClass.DNS_NXDOMAIN_ERROR:
        return "nxdomain"
    if r.failure.cls is FailureClass.DNS_NO_ANSWER:
        return "no_answer"
    return "error"


def _seen_addresses(r: ProbeResult) -> list[str]:
    """Every address this resolver's replies carried, accepted reply first, no repeats.
    Replies from another source or with another id are not the resolver speaking."""
    seen = list(r.facts.get("addresses") or ())
    for reply in r.facts.get("replies") or ():
        if reply.get("status") in ("accepted", "duplicate"):
            seen += reply.get("addresses") or ()
    return list(dict.fromkeys(seen))


def _record_set(r: ProbeResult) -> frozenset[str]:
    """What an answering resolver said, comparable across resolvers."""
    qtype = r.facts.get("qtype")
    if qtype in ADDRESS_TYPES:
        return frozenset(r.facts.get("addresses") or ())
    return frozenset(f"{a['type']} {a['data']}" for a in r.facts.get("answers") or () if a.get("type") == qtype)


def compare(results: Sequence[ProbeResult], pool: Iterable[str] | None = None) -> Comparison:
    """Compare the per-resolver results of one round."""
    pool = forged_pool() if pool is None else frozenset(str(ipaddress.ip_address(a)) for a in pool)
    reasons: list[Reason] = []
    seen = {r.target: _seen_addresses(r) for r in results}
    forged: list[str] = []
    bogons: list[str] = []

    for r in results:
        mine = seen[r.target]
        others = {a for t, addrs in seen.items() if t != r.target for a in addrs}
        teredo = [a for a in mine if ipaddress.ip_address(a) in TEREDO]
        if teredo:
            reasons.append(Reason("teredo", (r.target,), tuple(teredo), "AAAA answer in Teredo 2001::/32"))
        bad = [a for a in mine if a not in teredo and is_bogon(a)]
        if bad:
            reasons.append(Reason("bogon", (r.target,), tuple(bad), "answer not globally routable"))
            bogons += bad
        in_pool = [a for a in mine if a in pool and a not in others]
        if in_pool:
            reasons.append(Reason("forged_ip", (r.target,), tuple(in_pool), "address from the GFW forged-answer pool"))
            forged += in_pool
        if r.facts.get("injection"):
            reasons.append(Reason("injection", (r.target,), tuple(mine), f"{len(r.facts.get('replies') or ())} differing replies to one UDP query"))

    outcomes = {r.target: _outcome(r) for r in results}
    nx = tuple(t for t, o in outcomes.items() if o == "nxdomain")
    answering = [r for r in results if outcomes[r.target] == "answer"]
    if nx and answering:
        reasons.append(Reason("nxdomain_vs_answers", nx + tuple(r.target for r in answering), (),
                              f"NXDOMAIN from {', '.join(nx)} while {', '.join(r.target for r in answering)} answered"))

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
                      tuple(dict.fromkeys(forged)), tuple(dict.fromkeys(bogons)), summary)


def _verdict(results: Sequence[ProbeResult], outcomes: dict[str, str], reasons: list[Reason]) -> Verdict:
    rules = {r.rule for r in reasons}
    evidence = tuple(f"{r.rule}: {', '.join(r.resolvers)}" + (f" -> {', '.join(r.addresses)}" if r.addresses else "") + (f" ({r.detail})" if r.detail else "") for r in reasons)
    if rules & {"forged_ip", "injection", "teredo"}:
        return Verdict(VerdictName.DNS_POISONING, Confidence.HIGH, evidence)
    if "bogon" in rules:
        return Verdict(VerdictName.DNS_POISONING, Confidence.MEDIUM, evidence)
    if "nxdomain_vs_answers" in rules:
        return Verdict(VerdictName.DNS_BLOCKING, Confidence.MEDIUM, evidence)
    if rules:
        return Verdict(VerdictName.INCONCLUSIVE, Confidence.LOW, evidence + ("CDNs answer differently by location; a verified TLS certificate would settle it",))

    failed = [r for r in results if outcomes[r.target] == "error"]
    answered = [r for r in results if outcomes[r.target] == "answer"]
    failures = tuple(f"{r.target}: {r.failure.cls.value} during {r.failure.operation.value}" for r in failed if r.failure)
    if not failed:
        return Verdict(VerdictName.OK, Confidence.HIGH if answered else Confidence.MEDIUM, ())
    encrypted = [r for r in results if r.facts.get("transport") in ("tls", "https")]
    plain_answered = [r for r in answered if r.facts.get("transport") not in ("tls", "https")]
    if encrypted and all(r in failed for r in encrypted) and plain_answered:
        return Verdict(VerdictName.ENCRYPTED_DNS_BLOCKED, Confidence.MEDIUM, failures)
    if answered:
        return Verdict(VerdictName.DEGRADED, Confidence.LOW, failures)
    return Verdict(VerdictName.INCONCLUSIVE, Confidence.LOW, failures)
