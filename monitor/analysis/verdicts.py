"""Observations -> verdicts (DESIGN §3.4): what stands between this vantage and a site.

Anchors: OONI's web_connectivity v0.5 analysis (minipipeline) and Censored Planet's outcome
order (the earliest stage that fails explains the rest). Where we go further:

- Proof beats heuristics. A handshake with the domain's SNI whose certificate verifies
  against the trusted roots proves the address it was made on good, whoever answered it —
  so CDN answers that differ between resolvers are never called poisoning, and a bogon
  (e.g. an address on a private network) that serves the real certificate is fine. So do
  the encrypted references: an address they answered too is not a lie of the plain path
  (split horizon, or a forged-pool address that is in fact the real one).
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
- In-round controls decide first, as OONI's control does: the control SNI on the same
  address, the encrypted references. "Fails here, works there" (another vantage's result,
  passed in as PeerView) separates a blocked address from a dead server only when no
  in-round control can: any vantage that got through proves the server up; only a named
  control (a vantage known clean) that got as far as the layer in question and failed
  there too makes it `server_down`. A failing vantage that is not a control may be
  censored itself; without a control that says otherwise the verdict says so
  (`inconclusive`; repeated, the judge step makes it `failing`).
- Residual blocking is part of the SNI filter that caused it. Within the hold-off after a
  trigger the control is carried forward (the last one that completed on the address) and
  a connection that cannot be made at all is residual blocking, never `ip_blocking`.

Rules per attempt (each gives a Finding with confidence and evidence):
  dns   injection (two differing UDP replies), forged-pool / Teredo / bogon answers not
        proven by a certificate nor given by a reference too (bogons in the configured
        private networks are expected), or answers whose servers fail while the proven ones
        work -> dns_poisoning; a plain resolver that denies (NXDOMAIN, no answer, SERVFAIL,
        REFUSED, timeout) while a reference answers -> dns_blocking; a reference (DoT/DoH)
        that fails while plain DNS answers -> encrypted_dns_blocked.
  tls   the target SNI reset / dropped / closed after the ClientHello while the control
        SNI completes on the same address (now, or carried forward) -> sni_blocking (subtype
        rst/drop/close); no connection at all within the hold-off after such a trigger ->
        sni_blocking (subtype residual); a chain that does not verify where another vantage
        verified another one -> tls_mitm (the same foreign issuer for every name and address
        -> a local intercepting proxy).
  tcp   no connection to any valid address for any SNI while another vantage connects:
        SYN timeouts -> ip_blocking, SYN answered by RST -> rst_injection; a named control
        failing alike -> server_down.
  http  a verified session whose GET is reset -> rst_injection; otherwise failing while
        another vantage fetches -> http_blocking.
A site that works (every attempt's resolvers, target handshakes and GET fine) is ok even
when its control SNI fails: that only weakens what could be concluded (confidence medium,
with a note).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.analysis.dns_consistency import TEREDO, forged_pool, is_bogon, is_expected_private
from monitor.analysis.observations import (
    CONNECTED,
    FETCHED,
    PROXY_FAILURES,
    RESOLVED,
    VERIFIED,
    Attempt,
    Handshake,
    PeerView,
    Resolution,
)
from monitor.model import (
    Confidence,
    FailureClass,
    Operation,
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
    V.DEGRADED, V.FAILING, V.INCONCLUSIVE, V.OK,
)
_RANK = {v: i for i, v in enumerate(PRIORITY)}
_CONFIDENCE_RANK = {C.LOW: 0, C.MEDIUM: 1, C.HIGH: 2}

_SILENCE = {F.GENERIC_TIMEOUT_ERROR.value, F.HOST_UNREACHABLE.value, F.NETWORK_UNREACHABLE.value, F.DNS_TEMPORARY_FAILURE.value}
_RESETS = {F.CONNECTION_RESET.value, F.CONNECTION_REFUSED.value}
_DENIALS = {"nxdomain", "no_answer"}
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


def attempt_findings(
    a: Attempt, peers: Sequence[PeerView], *, earlier_controls: dict[str, Handshake], pool: frozenset[str], private: Sequence[str] = (),
) -> list[Finding]:
    """Every finding one attempt supports. `earlier_controls`: per address, a control of this
    round that proves the path (completed now, or carried forward), for attempts whose own
    control was held off or failed after a trigger."""
    proven = {h.ip for h in a.handshakes if h.label == "target" and h.verified} | {ip for p in peers for ip in p.proven_ips}
    references = [r for r in a.resolutions if r.encrypted]
    plain = [r for r in a.resolutions if not r.encrypted]
    vouched = {ip for r in references if r.outcome == "answer" for ip in r.addresses}
    valid = proven | vouched
    tested = [ip for ip in a.ips if ip in valid] or a.ips
    findings: list[Finding] = []
    findings += _dns_findings(a, plain, references, proven, vouched, pool, peers, private)
    proxy = _proxy_findings(a)
    if proxy:  # nothing beyond a failing proxy can be judged from here
        return findings + proxy
    findings += _connect_findings(a, tested, peers, earlier_controls)
    findings += _tls_findings(a, tested, peers, earlier_controls)
    findings += _http_findings(a, peers)
    return findings


def _dns_findings(
    a: Attempt, plain: list[Resolution], references: list[Resolution], proven: set[str], vouched: set[str],
    pool: frozenset[str], peers: Sequence[PeerView], private: Sequence[str],
) -> list[Finding]:
    poisoned: list[tuple[Confidence, str]] = []
    denied: list[tuple[Confidence, str, bool]] = []
    answering_refs = [r.resolver for r in references if r.outcome == "answer"]
    for r in plain:
        # An address the encrypted references gave too, or a certificate proved, is no lie; nor
        # is one in a network where private answers are expected.
        unproven = [ip for ip in r.addresses if ip not in proven and ip not in vouched and not is_expected_private(ip, private)]
        if r.injection:
            poisoned.append((C.HIGH, f"{r.resolver}: differing replies to one query (an injector racing the resolver): {', '.join(r.addresses)}"))
        if r.outcome == "answer":
            forged = [ip for ip in unproven if ip in pool or ipaddress.ip_address(ip) in TEREDO]
            if forged:
                poisoned.append((C.HIGH, f"{r.resolver}: answered {', '.join(forged)}, known forged answers"))
            bogons = [ip for ip in unproven if ip not in forged and is_bogon(ip)]
            if bogons:
                poisoned.append((C.MEDIUM, f"{r.resolver}: answered {', '.join(bogons)}, not routable, and no server there showed the domain's certificate"))
            astray = [ip for ip in unproven if ip not in forged and ip not in bogons and _leads_nowhere(a, ip)]
            if astray and proven:
                poisoned.append((C.MEDIUM, f"{r.resolver}: answered {', '.join(astray)}, where no server shows the domain's certificate, while {', '.join(sorted(proven))} does"))
        elif answering_refs:
            why = r.outcome if r.outcome in _DENIALS else (r.failure or "error")
            # getaddrinfo's EAI_AGAIN (dns_temporary_failure) is a SERVFAIL or a timeout, it cannot say which: not a denial.
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
        reached_elsewhere = [p.name for p in peers if r.resolver in p.reached_resolvers]
        if reached_elsewhere:
            confidence.append(C.HIGH)
            lines.append(f"{r.resolver}: {r.failure} while plain DNS answers here and {', '.join(reached_elsewhere)} reached it")
        elif any(p.clean and p.resolved for p in peers):
            continue  # a clean control could not reach it either: that reference is down, not blocked
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
        if not h.skipped and (h.operation == Operation.PROXY_CONNECT.value or h.failure in PROXY_FAILURES)
    ]
    if a.fetch is not None and (a.fetch.operation == Operation.PROXY_CONNECT.value or a.fetch.failure in PROXY_FAILURES):
        lines.append(f"GET: {a.fetch.failure} during {a.fetch.operation}")
    return [Finding(V.PROXY_FAILURE, "proxy", C.HIGH, ("the vantage's proxy failed", *lines))] if lines else []


def _leads_nowhere(a: Attempt, ip: str) -> bool:
    """Nothing on `ip` showed the domain's certificate: no connection, or a foreign chain."""
    sent = [h for h in a.handshakes if h.ip == ip and not h.skipped]
    target = a.on(ip, "target")
    if not sent or target is None:
        return False  # not tried: no evidence either way
    return all(not h.connected for h in sent) or target.untrusted_certificate


def _connect_findings(a: Attempt, tested: list[str], peers: Sequence[PeerView], controls: dict[str, Handshake]) -> list[Finding]:
    if not tested:
        return []
    failures: list[str] = []
    residual: list[str] = []
    for ip in tested:
        sent = [h for h in a.handshakes if h.ip == ip and not h.skipped]
        if not sent or any(h.connected for h in sent):
            return []  # some address took a connection: not a connect-level block
        if all(h.contaminated for h in sent):
            residual.append(ip)  # every attempt here came after a trigger: residual blocking, maybe
        failures += [h.failure for h in sent if h.failure and not h.contaminated]
    if len(residual) == len(tested) and not _down_for_controls(peers):
        unexplained = [ip for ip in residual if _control(a, ip, controls) is None]
        if unexplained:
            return [Finding(V.INCONCLUSIVE, "tcp", C.LOW, (
                f"{', '.join(unexplained)}: no connection, within the hold-off after a trigger there: residual blocking or an "
                "IP block, not to be told apart before it lapses",
            ), silence_only=True)]
        return []  # a control proves these addresses reachable: the tls rules name it (residual blocking)
    if failures and all(f == F.NETWORK_UNREACHABLE.value for f in failures):
        return [Finding(V.INCONCLUSIVE, "tcp", C.MEDIUM, (
            f"{', '.join(tested)}: no route from this vantage: its own network is down or misconfigured",))]
    if not failures:  # every attempt came after a trigger, and a clean control fails too
        failures = [h.failure for h in a.handshakes if h.ip in tested and not h.skipped and h.failure]
    resets = any(f in _RESETS for f in failures)
    verdict = V.RST_INJECTION if resets else V.IP_BLOCKING
    how = "SYN answered by RST" if resets else f"no answer to SYN ({', '.join(sorted(set(failures)))})"
    line = f"{', '.join(tested)}:{'' if len(tested) == 1 else ' each'} {how} for every SNI"
    return [_compare_with_peers(verdict, "tcp", line, peers, CONNECTED, RESOLVED, "connected", silence_only=not resets,
                                subtype="syn" if resets else None)]


def _down_for_controls(peers: Sequence[PeerView]) -> bool:
    """No vantage connects, and a clean control that resolved the name cannot either: what
    follows a trigger may be a server gone down, not residual blocking."""
    return not any(p.connected for p in peers) and any(p.clean and p.resolved for p in peers)


def _control(a: Attempt, ip: str, controls: dict[str, Handshake]) -> Handshake | None:
    """The control that shows `ip` reachable for another name: this attempt's, else the round's."""
    own = a.on(ip, "control")
    if own is not None and own.proves_path:
        return own
    return controls.get(ip)


def _tls_findings(a: Attempt, tested: list[str], peers: Sequence[PeerView], controls: dict[str, Handshake]) -> list[Finding]:
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
        control = _control(a, ip, controls)
        if target.untrusted_certificate:
            foreign.append(target)
        elif target.after_client_hello and target.failure in _SNI_SUBTYPE and control is not None:
            subtype = _SNI_SUBTYPE[target.failure]
            blocked[ip] = (subtype, f"{ip}: {target.sni} {subtype} ({target.failure}) after the ClientHello while {control.describe()}")
        elif not target.connected and target.contaminated and control is not None and not _down_for_controls(peers):
            # Residual blocking: after the target SNI triggered, the censor blocks the address
            # outright for a while; that is the SNI filter at work, not an IP block.
            blocked[ip] = ("residual", f"{ip}: no connection ({target.failure} during {target.operation}) within the residual-blocking "
                                       f"hold-off after the target SNI triggered there, while {control.describe()}")
    findings = []
    if blocked and not working:
        subtypes = Counter(subtype for subtype, _ in blocked.values())
        confidence = C.HIGH if len(blocked) == len([ip for ip in tested if a.on(ip, "target")]) else C.MEDIUM
        subtype = subtypes.most_common(1)[0][0]
        # A drop is silence: on a path where other observations flap it may be loss, not a filter.
        findings.append(Finding(V.SNI_BLOCKING, "tls", confidence, tuple(line for _, line in blocked.values()), subtype=subtype,
                                silence_only=set(subtypes) == {"drop"}))
    if foreign and not working:
        findings.append(mitm(a, foreign, peers))
    return findings


def mitm(a: Attempt, foreign: list[Handshake], peers: Sequence[PeerView]) -> Finding:
    """A chain that does not verify here: interception, or the server's own broken certificate."""
    presented = [h for h in a.handshakes if h.server_hello and not h.skipped]
    issuers = {h.issuer for h in presented}
    everywhere = len(presented) >= 2 and all(h.untrusted_certificate for h in presented) and len(issuers) == 1
    leaves = {h.leaf_sha256 for h in foreign}
    lines = [f"{h.ip}: {h.sni} presented a chain that does not verify ({h.failure}), issued by {h.issuer}" for h in foreign]
    if everywhere:
        lines.append(f"the same foreign issuer ({next(iter(issuers))}) signs every name on every address: a local intercepting proxy (TLS inspection) on this path")
    verifiers = [p for p in peers if p.verified and p.leaves]
    genuine = {leaf for p in verifiers for leaf in p.leaves}
    if genuine and not leaves & genuine:
        seen = sorted({f"{c.issuer}" for p in verifiers for c in p.verified_chains() if c.issuer})
        by = f", issued by {', '.join(seen)}" if seen else ""
        return Finding(V.TLS_MITM, "tls", C.HIGH, (*lines, f"{', '.join(p.name for p in verifiers)} verified the genuine chain for this domain{by}"))
    broken = [p.name for p in peers if p.clean and p.connected and leaves & {c.leaf for c in p.chains if not c.verified}]
    if broken:
        return Finding(V.SERVER_DOWN, "tls", C.MEDIUM, (*lines, f"control {', '.join(broken)} is shown the same chain and cannot verify it either: the server's certificate is broken"))
    if everywhere:
        return Finding(V.TLS_MITM, "tls", C.MEDIUM, tuple(lines))
    return Finding(V.INCONCLUSIVE, "tls", C.LOW, (*lines, "no other vantage verified this domain's chain to compare with"))


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
    return [_compare_with_peers(V.HTTP_BLOCKING, "http", what, peers, FETCHED, VERIFIED, "fetched it")]


def _compare_with_peers(
    verdict: VerdictName, layer: str, line: str, peers: Sequence[PeerView], past: int, before: int, worked: str, *,
    silence_only: bool = False, subtype: str | None = None,
) -> Finding:
    """Fails here at one layer: censorship if another vantage got past it; server_down if a
    clean control got as far (`before`) and failed there too; else not established."""
    return compare_with_peers(verdict, layer, (line,), peers, past, before, worked, silence_only=silence_only, subtype=subtype)


def compare_with_peers(
    verdict: VerdictName, layer: str, lines: tuple[str, ...], peers: Sequence[PeerView], past: int, before: int, worked: str, *,
    silence_only: bool = False, subtype: str | None = None, alone: Confidence = C.LOW,
) -> Finding:
    """The cross-vantage rule, for every kind. Any vantage that got past the layer proves the
    server up there: `verdict`. Only a named control that is itself clean, got past the layer
    before, and failed at this one makes it `server_down`: a vantage that is not a control
    may be censored too, and one that failed earlier (its proxy, its DNS) says nothing here."""
    fine = [p.name for p in peers if p.got_past(past)]
    if fine:
        return Finding(verdict, layer, C.HIGH, (*lines, f"{', '.join(fine)} {worked}"), subtype=subtype, silence_only=silence_only)
    down = [p.name for p in peers if p.clean and p.got_past(before)]
    if down:
        return Finding(V.SERVER_DOWN, layer, C.HIGH, (*lines, f"control {', '.join(down)} failed too"))
    others = [p.name for p in peers if not p.got_past(past)]
    unusable = [f"{', '.join(others)} failed too, but {'is' if len(others) == 1 else 'are'} no clean control (not named as one, "
                "interfered with, or failed earlier)"] if others else []
    suspected = "blocked here" if verdict is V.INCONCLUSIVE else verdict.value
    return Finding(V.INCONCLUSIVE, layer, alone, (*lines, *unusable, f"{suspected}, or the server is down: no clean control to compare with"))


def _strongest(confidences: Iterable[Confidence]) -> Confidence:
    return max(confidences, key=_CONFIDENCE_RANK.__getitem__)


def primary(findings: Sequence[Finding]) -> VerdictName | None:
    return min((f.verdict for f in findings), key=_RANK.__getitem__, default=None)


# ---------------------------------------------------------------------------------------------
# A round of attempts


def judge_site(
    attempts: Sequence[Attempt], peers: Sequence[PeerView] = (), *, degraded_threshold: float = 0.3, pool: Iterable[str] | None = None,
    private: Sequence[str] = (),
) -> Judgement:
    """The verdict of one site round: each attempt judged, then the majority, then noise."""
    pool_set = forged_pool() if pool is None else frozenset(pool)
    controls: dict[str, Handshake] = {}
    for a in attempts:
        for h in a.handshakes:
            if h.label == "control" and h.proves_path:
                controls.setdefault(h.ip, h)
    per_attempt = [attempt_findings(a, peers, earlier_controls=controls, pool=pool_set, private=private) for a in attempts]
    votes = [_vote(a, fs) for a, fs in zip(attempts, per_attempt)]
    share, flapping = _noise(attempts)
    n = len(attempts)
    tally = Counter(votes)
    winner, count = tally.most_common(1)[0] if tally else (V.OK, 0)
    failed = n - tally[V.OK]

    def judgement(verdict: Verdict, findings: Sequence[Finding] = ()) -> Judgement:
        return Judgement(verdict, tuple(findings), tuple(v.value for v in votes), share, tuple(flapping))

    if failed == 0:
        notes = _failing_controls(attempts)
        return judgement(Verdict(V.OK, (C.MEDIUM if notes else C.HIGH) if n else C.LOW, notes))
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
    lines = _lines([f for fs in per_attempt for f in fs])
    return judgement(Verdict(V.INCONCLUSIVE, C.LOW, (f"{failed} of {n} attempts failed, {share:.0%} of observations, without one explanation holding", *lines)))


def _failing_controls(attempts: Sequence[Attempt]) -> tuple[str, ...]:
    """Notes for a working site whose control SNI failed on an address: nothing is wrong with
    the site, but no SNI comparison can be made there."""
    notes = []
    for a in attempts:
        for h in a.handshakes:
            if h.label == "control" and not h.skipped and not h.server_hello and not h.contaminated:
                notes.append(f"the site works; control {h.sni} failed on {h.ip} ({h.failure} during {h.operation}), "
                             "so this address has no working control to compare with")
    return tuple(dict.fromkeys(notes))


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
