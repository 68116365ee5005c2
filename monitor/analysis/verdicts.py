"""Observations -> verdicts (DESIGN §3.4): what stands between this vantage and a site.

Anchors: OONI's web_connectivity v0.5 analysis (minipipeline) and Censored Planet's outcome
order (the earliest stage that fails explains the rest). Where we go further:

- Proof beats heuristics. A handshake with the domain's SNI whose certificate verifies
  against the trusted roots proves the address it was made on good, whoever answered it —
  so CDN answers that differ between resolvers are never called poisoning, and a bogon
  (e.g. an address on a private network) that serves the real certificate is fine.
- Every layer is judged on its own and every finding is kept (`Judgement.findings`): DNS
  poisoning and SNI blocking on the genuine address are both reported, one does not hide
  the other. The verdict's name is the earliest layer's finding (PRIORITY), its evidence
  carries every layer's lines, prefixed with the layer.
- Censorship is repeatable, noise is not. A round that shows a failure is repeated; a
  finding stands if it explains a majority of attempts. Findings that rest on timeouts
  alone (a resolver or an address that does not answer) are dismissed when other
  observations of the same round flapped between failing and working: that is a lossy
  path (`degraded` above the threshold), not a censor. Resets, NXDOMAIN, injected replies
  and foreign certificates are not dismissed that way.
- "Fails here, works there": when a connection cannot be made at all, only another vantage
  (another agent's or an earlier run's result in the store, passed in as PeerView) tells
  censorship from a server that is down; without one the verdict says so (`inconclusive`).

Rules per attempt (each gives a Finding with confidence and evidence):
  dns   injection (two differing UDP replies), forged-pool / Teredo / bogon answers not
        proven by a certificate, or answers whose servers fail while the proven ones work
        -> dns_poisoning; a plain resolver that denies (NXDOMAIN, no answer, SERVFAIL,
        REFUSED, timeout) while a reference answers -> dns_blocking; a reference (DoT/DoH)
        that fails while plain DNS answers -> encrypted_dns_blocked.
  tls   the target SNI reset / dropped / closed after the ClientHello while the control
        SNI completes on the same address -> sni_blocking (subtype rst/drop/close); a chain
        that does not verify where another vantage verified another one -> tls_mitm (the
        same foreign issuer for every name and address -> a local intercepting proxy).
  tcp   no connection to any valid address for any SNI while another vantage connects:
        SYN timeouts -> ip_blocking, SYN answered by RST -> rst_injection; another vantage
        failing alike -> server_down.
  http  a verified session whose GET is reset -> rst_injection; otherwise failing while
        another vantage fetches -> http_blocking.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.analysis.dns_consistency import TEREDO, forged_pool, is_bogon
from monitor.analysis.observations import Attempt, Handshake, PeerView, Resolution
from monitor.model import (
    Confidence,
    FailureClass,
    Operation,
    ProbeResult,
    Verdict,
    VerdictName,
)

F = FailureClass
V = VerdictName
C = Confidence

# Earliest layer first (Censored Planet's order: resolve, connect, TLS, HTTP), then what
# concerns the references and the integrity of content, then the non-censorship outcomes.
PRIORITY = (
    V.DNS_POISONING, V.DNS_BLOCKING, V.PROXY_FAILURE, V.IP_BLOCKING, V.RST_INJECTION, V.TLS_MITM, V.SNI_BLOCKING,
    V.HTTP_BLOCKING, V.ENCRYPTED_DNS_BLOCKED, V.MODULE_TAMPERED, V.SERVER_DOWN,
    V.DEGRADED, V.INCONCLUSIVE, V.OK,
)
_RANK = {v: i for i, v in enumerate(PRIORITY)}
_CONFIDENCE_RANK = {C.LOW: 0, C.MEDIUM: 1, C.HIGH: 2}

_SILENCE = {F.GENERIC_TIMEOUT_ERROR.value, F.HOST_UNREACHABLE.value, F.NETWORK_UNREACHABLE.value}
_RESETS = {F.CONNECTION_RESET.value, F.CONNECTION_REFUSED.value}
_DENIALS = {"nxdomain", "no_answer"}
_PROXY_FAILURES = {F.PROXY_ERROR.value, F.PROXY_AUTH_REQUIRED.value}
_SNI_SUBTYPE = {F.CONNECTION_RESET.value: "rst", F.GENERIC_TIMEOUT_ERROR.value: "drop", F.EOF_ERROR.value: "close"}


@dataclass(frozen=True)
class Finding:
    verdict: VerdictName
    layer: str  # dns | tcp | tls | http | module
    confidence: Confidence
    evidence: tuple[str, ...]
    subtype: str | None = None
    # Rests on silence alone (timeouts, unreachable): dismissed on a path that flaps.
    silence_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value, "layer": self.layer, "confidence": self.confidence.value,
            "evidence": list(self.evidence), "subtype": self.subtype,
        }


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    findings: tuple[Finding, ...]  # every finding that explains a majority of attempts
    votes: tuple[str, ...]  # each attempt's own verdict, in order
    failure_share: float  # failed observations / observations, over the attempts
    flapping: tuple[str, ...]  # observations that failed in one attempt and worked in another

    def facts(self) -> dict[str, Any]:
        subtype = next((f.subtype for f in self.findings if f.verdict is self.verdict.name and f.subtype), None)
        return {
            "findings": [f.to_json() for f in self.findings],
            "attempt_verdicts": list(self.votes),
            "failure_share": round(self.failure_share, 4),
            "flapping": list(self.flapping),
            **({"subtype": subtype} if subtype else {}),
        }


# ---------------------------------------------------------------------------------------------
# One attempt


def attempt_findings(a: Attempt, peers: Sequence[PeerView], *, earlier_controls: dict[str, Handshake], pool: frozenset[str]) -> list[Finding]:
    """Every finding one attempt supports. `earlier_controls`: the first control handshake
    made on each address in this round, for attempts whose control was held off."""
    proven = {h.ip for h in a.handshakes if h.label == "target" and h.verified} | {ip for p in peers for ip in p.proven_ips}
    references = [r for r in a.resolutions if r.encrypted]
    plain = [r for r in a.resolutions if not r.encrypted]
    vouched = {ip for r in references if r.outcome == "answer" for ip in r.addresses}
    valid = proven | vouched
    tested = [ip for ip in a.ips if ip in valid] or a.ips
    findings: list[Finding] = []
    findings += _dns_findings(a, plain, references, proven, vouched, pool, peers)
    proxy = _proxy_findings(a)
    if proxy:  # nothing beyond a failing proxy can be judged from here
        return findings + proxy
    findings += _connect_findings(a, tested, peers)
    findings += _tls_findings(a, tested, peers, earlier_controls)
    findings += _http_findings(a, peers)
    return findings


def _dns_findings(
    a: Attempt, plain: list[Resolution], references: list[Resolution], proven: set[str], vouched: set[str],
    pool: frozenset[str], peers: Sequence[PeerView],
) -> list[Finding]:
    poisoned: list[tuple[Confidence, str]] = []
    denied: list[tuple[Confidence, str, bool]] = []
    answering_refs = [r.resolver for r in references if r.outcome == "answer"]
    for r in plain:
        unproven = [ip for ip in r.addresses if ip not in proven]
        if r.injection:
            poisoned.append((C.HIGH, f"{r.resolver}: differing replies to one query (an injector racing the resolver): {', '.join(r.addresses)}"))
        if r.outcome == "answer":
            forged = [ip for ip in unproven if ip in pool or ipaddress.ip_address(ip) in TEREDO]
            if forged:
                poisoned.append((C.HIGH, f"{r.resolver}: answered {', '.join(forged)}, known forged answers"))
            bogons = [ip for ip in unproven if ip not in forged and ip not in vouched and is_bogon(ip)]
            if bogons:
                poisoned.append((C.MEDIUM, f"{r.resolver}: answered {', '.join(bogons)}, not routable, and no server there showed the domain's certificate"))
            astray = [ip for ip in unproven if ip not in forged and ip not in bogons and ip not in vouched and _leads_nowhere(a, ip)]
            if astray and proven:
                poisoned.append((C.MEDIUM, f"{r.resolver}: answered {', '.join(astray)}, where no server shows the domain's certificate, while {', '.join(sorted(proven))} does"))
        elif answering_refs:
            why = r.outcome if r.outcome in _DENIALS else (r.failure or "error")
            # getaddrinfo's EAI_AGAIN is a SERVFAIL or a timeout, it cannot say which: not a denial.
            silence = r.failure in _SILENCE or (r.transport == "system" and r.outcome == "error")
            denied.append((C.HIGH if r.outcome == "nxdomain" else C.MEDIUM, f"{r.resolver}: {why} while {', '.join(answering_refs)} answered", silence))
    findings = []
    if poisoned:
        findings.append(Finding(V.DNS_POISONING, "dns", _strongest(c for c, _ in poisoned), tuple(e for _, e in poisoned)))
    if denied:
        findings.append(Finding(V.DNS_BLOCKING, "dns", _strongest(c for c, _, _ in denied), tuple(e for _, e, _ in denied), silence_only=all(s for _, _, s in denied)))
    findings += _encrypted_dns_findings(plain, references, peers)
    return findings


def _encrypted_dns_findings(plain: list[Resolution], references: list[Resolution], peers: Sequence[PeerView]) -> list[Finding]:
    if not any(r.outcome == "answer" for r in plain):
        return []
    lines, confidence, silence = [], [], []
    for r in references:
        if r.outcome != "error":
            continue
        reached_elsewhere = [p.vantage for p in peers if r.resolver in p.reached_resolvers]
        if reached_elsewhere:
            confidence.append(C.HIGH)
            lines.append(f"{r.resolver}: {r.failure} while plain DNS answers here and {', '.join(reached_elsewhere)} reached it")
        elif peers:
            continue  # unreachable from everywhere we know of: that reference is down, not blocked
        else:
            confidence.append(C.MEDIUM)
            lines.append(f"{r.resolver}: {r.failure} while plain DNS answers")
        # A reference whose own name did not resolve was never contacted: no sign of a block on it.
        silence.append(r.failure in _SILENCE or r.operation == Operation.RESOLVE.value)
    if not lines:
        return []
    return [Finding(V.ENCRYPTED_DNS_BLOCKED, "dns", _strongest(confidence), tuple(lines), silence_only=all(silence))]


def _proxy_findings(a: Attempt) -> list[Finding]:
    lines = [
        f"{h.ip} ({h.label}): {h.failure} during {h.operation}" for h in a.handshakes
        if not h.skipped and (h.operation == Operation.PROXY_CONNECT.value or h.failure in _PROXY_FAILURES)
    ]
    if a.fetch is not None and (a.fetch.operation == Operation.PROXY_CONNECT.value or a.fetch.failure in _PROXY_FAILURES):
        lines.append(f"GET: {a.fetch.failure} during {a.fetch.operation}")
    return [Finding(V.PROXY_FAILURE, "proxy", C.HIGH, ("the vantage's proxy failed", *lines))] if lines else []


def _leads_nowhere(a: Attempt, ip: str) -> bool:
    """Nothing on `ip` showed the domain's certificate: no connection, or a foreign chain."""
    sent = [h for h in a.handshakes if h.ip == ip and not h.skipped]
    target = a.on(ip, "target")
    if not sent or target is None:
        return False  # not tried: no evidence either way
    return all(not h.connected for h in sent) or target.untrusted_certificate


def _connect_findings(a: Attempt, tested: list[str], peers: Sequence[PeerView]) -> list[Finding]:
    if not tested:
        return []
    failures: list[str] = []
    for ip in tested:
        sent = [h for h in a.handshakes if h.ip == ip and not h.skipped]
        if not sent or any(h.connected for h in sent):
            return []  # some address took a connection: not a connect-level block
        failures += [h.failure for h in sent if h.failure]
    resets = any(f in _RESETS for f in failures)
    verdict = V.RST_INJECTION if resets else V.IP_BLOCKING
    how = "SYN answered by RST" if resets else f"no answer to SYN ({', '.join(sorted(set(failures)))})"
    line = f"{', '.join(tested)}:{'' if len(tested) == 1 else ' each'} {how} for every SNI"
    return [_compare_with_peers(verdict, "tcp", line, peers, lambda p: p.connected, "connected", silence_only=not resets,
                                subtype="syn" if resets else None)]


def _tls_findings(a: Attempt, tested: list[str], peers: Sequence[PeerView], earlier_controls: dict[str, Handshake]) -> list[Finding]:
    blocked: dict[str, tuple[str, str]] = {}  # ip -> (subtype, evidence)
    foreign: list[Handshake] = []
    working: list[str] = []
    for ip in tested:
        target = a.on(ip, "target")
        if target is None or target.skipped:
            continue
        if target.verified:
            working.append(ip)
            continue
        control = a.on(ip, "control")
        if control is None or control.skipped:
            control = earlier_controls.get(ip)
        if target.untrusted_certificate:
            foreign.append(target)
        elif (
            target.after_client_hello and target.failure in _SNI_SUBTYPE
            and control is not None and control.server_hello and not control.contaminated
        ):
            subtype = _SNI_SUBTYPE[target.failure]
            blocked[ip] = (subtype, f"{ip}: {target.sni} {subtype} ({target.failure}) after the ClientHello while control {control.sni} completed on the same address")
    findings = []
    if blocked and not working:
        subtypes = Counter(subtype for subtype, _ in blocked.values())
        confidence = C.HIGH if len(blocked) == len([ip for ip in tested if a.on(ip, "target")]) else C.MEDIUM
        subtype = subtypes.most_common(1)[0][0]
        # A drop is silence: on a path where other observations flap it may be loss, not a filter.
        findings.append(Finding(V.SNI_BLOCKING, "tls", confidence, tuple(line for _, line in blocked.values()), subtype=subtype,
                                silence_only=set(subtypes) == {"drop"}))
    if foreign and not working:
        findings.append(_mitm(a, foreign, peers))
    return findings


def _mitm(a: Attempt, foreign: list[Handshake], peers: Sequence[PeerView]) -> Finding:
    presented = [h for h in a.handshakes if h.server_hello and not h.skipped]
    issuers = {h.issuer for h in presented}
    everywhere = len(presented) >= 2 and all(h.untrusted_certificate for h in presented) and len(issuers) == 1
    leaves = {h.leaf_sha256 for h in foreign}
    lines = [f"{h.ip}: {h.sni} presented a chain that does not verify ({h.failure}), issued by {h.issuer}" for h in foreign]
    if everywhere:
        lines.append(f"the same foreign issuer ({next(iter(issuers))}) signs every name on every address: a local intercepting proxy (TLS inspection) on this path")
    genuine = {leaf for p in peers for leaf in p.leaves}
    if genuine and not leaves & genuine:
        verifiers = ", ".join(p.vantage for p in peers if p.leaves)
        return Finding(V.TLS_MITM, "tls", C.HIGH, (*lines, f"{verifiers} verified the genuine chain for this domain"))
    if peers and not genuine:
        return Finding(V.SERVER_DOWN, "tls", C.MEDIUM, (*lines, "no other vantage verifies this domain's chain either: the server's certificate is broken"))
    if everywhere:
        return Finding(V.TLS_MITM, "tls", C.MEDIUM, tuple(lines))
    return Finding(V.INCONCLUSIVE, "tls", C.LOW, (*lines, "no other vantage to compare the chain with"))


def _http_findings(a: Attempt, peers: Sequence[PeerView]) -> list[Finding]:
    f = a.fetch
    if f is None or f.failure is None or f.ip is None:
        return []
    target = a.on(f.ip, "target")
    if target is None or not target.verified or f.operation in (Operation.CONNECT.value, Operation.TLS_HANDSHAKE.value):
        return []  # failed before HTTP: the connect and TLS rules speak for it
    what = f"GET over a verified session to {f.ip}: {f.failure} during {f.operation}"
    if f.failure == F.CONNECTION_RESET.value:
        return [Finding(V.RST_INJECTION, "http", C.HIGH if any(p.fetched for p in peers) else C.MEDIUM, (what,), subtype="mid_transfer")]
    return [_compare_with_peers(V.HTTP_BLOCKING, "http", what, peers, lambda p: p.fetched, "fetched it")]


def _compare_with_peers(verdict: VerdictName, layer: str, line: str, peers: Sequence[PeerView], works, worked: str, *, silence_only: bool = False, subtype: str | None = None) -> Finding:
    """Fails here: censorship if another vantage succeeds, server_down if all fail, else unknown."""
    fine = [p.vantage for p in peers if works(p)]
    if fine:
        return Finding(verdict, layer, C.HIGH, (line, f"{', '.join(fine)} {worked}"), subtype=subtype, silence_only=silence_only)
    if peers:
        return Finding(V.SERVER_DOWN, layer, C.HIGH, (line, f"{', '.join(p.vantage for p in peers)} failed too"))
    return Finding(V.INCONCLUSIVE, layer, C.LOW, (line, f"{verdict.value}, or the server is down: no other vantage to compare with"))


def _strongest(confidences: Iterable[Confidence]) -> Confidence:
    return max(confidences, key=_CONFIDENCE_RANK.__getitem__)


def primary(findings: Sequence[Finding]) -> VerdictName | None:
    return min((f.verdict for f in findings), key=_RANK.__getitem__, default=None)


# ---------------------------------------------------------------------------------------------
# A round of attempts


def judge_site(attempts: Sequence[Attempt], peers: Sequence[PeerView] = (), *, degraded_threshold: float = 0.3, pool: Iterable[str] | None = None) -> Judgement:
    """The verdict of one site round: each attempt judged, then the majority, then noise."""
    pool_set = forged_pool() if pool is None else frozenset(pool)
    controls: dict[str, Handshake] = {}
    for a in attempts:
        for h in a.handshakes:
            if h.label == "control" and not h.skipped:
                controls.setdefault(h.ip, h)
    per_attempt = [attempt_findings(a, peers, earlier_controls=controls, pool=pool_set) for a in attempts]
    votes = [_vote(a, fs) for a, fs in zip(attempts, per_attempt)]
    share, flapping = _noise(attempts)
    n = len(attempts)
    tally = Counter(votes)
    winner, count = tally.most_common(1)[0] if tally else (V.OK, 0)
    failed = n - tally[V.OK]

    def judgement(verdict: Verdict, findings: Sequence[Finding] = ()) -> Judgement:
        return Judgement(verdict, tuple(findings), tuple(v.value for v in votes), share, tuple(flapping))

    if failed == 0:
        return judgement(Verdict(V.OK, C.HIGH if n else C.LOW, ()))
    if winner is not V.OK and count * 2 > n:
        # Every finding present in a majority of attempts, not only the winner's: DNS and SNI both.
        kept = _majority_findings(per_attempt, n, winner)
        main = [f for f in kept if f.verdict is winner]
        if not (flapping and all(f.silence_only for f in main)):
            return judgement(_verdict(winner, kept, count, n), kept)
        # Timeouts on a path that flaps: fall through to the noise rules.
    if failed == 1 and n > 1:
        lines = _lines([f for fs in per_attempt for f in fs]) or ("a failure without a pattern",)
        return judgement(Verdict(V.INCONCLUSIVE, C.LOW, (f"1 of {n} attempts failed, not repeated", *lines)))
    if share >= degraded_threshold:
        return judgement(Verdict(V.DEGRADED, C.MEDIUM if n > 1 else C.LOW, (
            f"{share:.0%} of observations failed over {n} attempts (threshold {degraded_threshold:.0%}), without one explanation holding",
            *(f"flapping: {k}" for k in flapping[:8]),
        )))
    return judgement(Verdict(V.INCONCLUSIVE, C.LOW, (f"{failed} of {n} attempts failed, {share:.0%} of observations, without one explanation holding",)))


def _vote(a: Attempt, findings: Sequence[Finding]) -> VerdictName:
    if not a.failed and not findings:
        return V.OK
    return primary(findings) or V.INCONCLUSIVE


def _majority_findings(per_attempt: Sequence[Sequence[Finding]], n: int, winner: VerdictName) -> list[Finding]:
    """Findings of a majority of attempts; `inconclusive` ones only when nothing more definite won."""
    seen: dict[VerdictName, list[Finding]] = {}
    for fs in per_attempt:
        for v in {f.verdict for f in fs}:
            seen.setdefault(v, []).append(next(f for f in fs if f.verdict is v))
    kept = [fs[0] for v, fs in seen.items() if len(fs) * 2 > n and (v is not V.INCONCLUSIVE or winner is V.INCONCLUSIVE)]
    return sorted(kept, key=lambda f: _RANK[f.verdict])


def _verdict(name: VerdictName, findings: Sequence[Finding], count: int, n: int) -> Verdict:
    main = [f for f in findings if f.verdict is name]
    confidence = _strongest(f.confidence for f in main) if main else C.LOW
    if n > 1 and count < n and confidence is C.HIGH:
        confidence = C.MEDIUM  # not every attempt agreed
    others = [f.verdict.value for f in findings if f.verdict is not name]
    return Verdict(name, confidence, (
        f"{count} of {n} attempts",
        *_lines(main),
        *_lines([f for f in findings if f.verdict is not name]),
        *([f"also: {', '.join(others)}"] if others else []),
    ))


def _lines(findings: Iterable[Finding]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f"{f.layer}: {line}" for f in findings for line in f.evidence))


def _noise(attempts: Sequence[Attempt]) -> tuple[float, list[str]]:
    """Share of failed observations, and the observations that failed in one attempt and
    worked in another (a resolver, a handshake on an address with one SNI, the GET)."""
    outcomes: dict[str, set[bool]] = {}
    failed = total = 0
    for a in attempts:
        for r in a.resolutions:
            bad = r.failure is not None or r.injection
            outcomes.setdefault(f"dns {r.resolver}", set()).add(bad)
            failed, total = failed + bad, total + 1
        for h in a.handshakes:
            if h.skipped or h.contaminated:
                continue
            bad = h.failure is not None
            outcomes.setdefault(f"tls {h.ip} {h.label}", set()).add(bad)
            failed, total = failed + bad, total + 1
        if a.fetch is not None:
            bad = a.fetch.failure is not None
            outcomes.setdefault("http GET", set()).add(bad)
            failed, total = failed + bad, total + 1
    flapping = sorted(k for k, seen in outcomes.items() if seen == {True, False})
    return (failed / total if total else 0.0), flapping


# ---------------------------------------------------------------------------------------------
# Single-result kinds


def judge_module(result: ProbeResult, peers: Sequence[ProbeResult]) -> Verdict:
    """A goproxy fetch: tampered bytes, a reset mid-transfer, a failing egress proxy, or down
    for everyone (`peers`: the latest results of the same check from other vantages)."""
    failure = result.failure
    if failure is None:
        return result.verdict or Verdict(V.OK, C.HIGH, ())
    if failure.cls in (F.CHECKSUM_MISMATCH, F.SUMDB_VERIFICATION_FAILED):
        return result.verdict or Verdict(V.MODULE_TAMPERED, C.HIGH, (f"{failure.cls.value}: {failure.detail}",))
    what = f"{failure.cls.value} during {failure.operation.value}: {failure.detail}"
    if failure.operation is Operation.PROXY_CONNECT or failure.cls in (F.PROXY_ERROR, F.PROXY_AUTH_REQUIRED):
        return Verdict(V.PROXY_FAILURE, C.HIGH, (what,))
    fine = [p.vantage for p in peers if p.ok]
    mid_transfer = failure.operation in (Operation.READ, Operation.HTTP_ROUND_TRIP, Operation.TLS_HANDSHAKE)
    if failure.cls is F.CONNECTION_RESET and mid_transfer and (fine or not peers):
        # Which subtype of reset, said in the evidence (a Verdict has no subtype field).
        when = "reset during the TLS handshake" if failure.operation is Operation.TLS_HANDSHAKE else "reset mid-transfer"
        return Verdict(V.RST_INJECTION, C.HIGH if fine else C.MEDIUM, (when, what, *([f"{', '.join(fine)} fetched it"] if fine else [])))
    if peers and not fine:
        return Verdict(V.SERVER_DOWN, C.HIGH, (what, f"{', '.join(p.vantage for p in peers)} failed too"))
    if fine:
        return Verdict(V.INCONCLUSIVE, C.MEDIUM, (what, f"{', '.join(fine)} fetched it"))
    return Verdict(V.INCONCLUSIVE, C.LOW, (what, "no other vantage to compare with"))
