"""Verdicts of the kinds whose run is one result: tcp, tls, http, proxy, git, goproxy.

The failure's operation says how far the measurement got; the earliest failing layer is
judged, as in the site rules (monitor/analysis/verdicts.py), with the same cross-vantage rule
(`compare_with_peers`): another vantage that got past the layer proves the server up there;
only a named control that got as far and failed there too makes it `server_down`; without
either, the cause is not established (`inconclusive`, made `failing` by the judge step when
it repeats). One unrepeated failure is judged alike whatever it is: a reset with no other
vantage to compare with is as unexplained as a timeout.

  proxy_connect, proxy_error/proxy_auth_required      -> proxy_failure
  resolve                                              -> dns_blocking where others resolve
  connect: timeout / unreachable                       -> ip_blocking where others connect
  connect: refused / reset                             -> rst_injection (syn)
  tls_handshake: a chain that does not verify here     -> tls_mitm where another vantage verified
                 (facts.tls_chains, both issuers named)   another chain for the name
  tls_handshake: reset                                 -> rst_injection (tls) where others verify
  http_round_trip / read: reset                        -> rst_injection (mid_transfer)
  http_round_trip / read / verify: anything else       -> http_blocking where others fetch
  goproxy: checksum_mismatch, sumdb_verification_failed -> module_tampered (both hashes)
A tls check with control_sni is judged by the site rules on its one address (its SNI
experiment is a site attempt without resolvers or GET).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.analysis.observations import (
    ANYWHERE,
    CONNECTED,
    FETCHED,
    LAYER,
    PROXY_FAILURES,
    RESOLVED,
    VERIFIED,
    PeerView,
    attempt_of_experiment,
)
from monitor.analysis.verdicts import Finding, Judgement, compare_with_peers, judge_site
from monitor.model import Confidence, FailureClass, Operation, ProbeResult, Verdict, VerdictName

F = FailureClass
V = VerdictName
C = Confidence

_CERTIFICATE = {F.SSL_UNKNOWN_AUTHORITY, F.SSL_INVALID_HOSTNAME, F.SSL_INVALID_CERTIFICATE}
_REFUSED = {F.CONNECTION_REFUSED, F.CONNECTION_RESET}


def judge_result(result: ProbeResult, peers: Sequence[PeerView] = ()) -> Verdict:
    """The verdict of one single-result run."""
    if result.facts.get("sni_experiment"):
        return judge_experiment(result, peers).verdict
    failure = result.failure
    if failure is None:
        return Verdict(V.OK, C.HIGH, _integrity(result) if result.kind == "goproxy" else ())
    what = f"{_part(result)}{failure.cls.value} during {failure.operation.value}: {failure.detail}"
    if failure.cls is F.CHECKSUM_MISMATCH:
        return Verdict(V.MODULE_TAMPERED, C.HIGH, _mismatches(result) or (what,))
    if failure.cls is F.SUMDB_VERIFICATION_FAILED:
        return Verdict(V.MODULE_TAMPERED, C.HIGH, (what,))
    if failure.operation is Operation.PROXY_CONNECT or failure.cls.value in PROXY_FAILURES:
        return Verdict(V.PROXY_FAILURE, C.HIGH, (what,))
    layer = LAYER[failure.operation.value]
    if layer == 0:
        return _verdict(compare_with_peers(V.DNS_BLOCKING, "dns", (what,), peers, RESOLVED, ANYWHERE, "resolved it"))
    if layer == 1:
        if failure.cls is F.NETWORK_UNREACHABLE:  # no route from here at all: this vantage's own network
            return Verdict(V.INCONCLUSIVE, C.MEDIUM, (what, "this vantage has no route to the address: its own network is down or misconfigured"))
        refused = failure.cls in _REFUSED
        return _verdict(compare_with_peers(
            V.RST_INJECTION if refused else V.IP_BLOCKING, "tcp", ((("SYN answered by RST" if refused else "no answer to SYN")), what),
            peers, CONNECTED, RESOLVED, "connected", subtype="syn" if refused else None,
        ))
    if layer == 2:
        if failure.cls in _CERTIFICATE:
            return _verdict(_mitm(result, what, peers))
        if failure.cls is F.CONNECTION_RESET:
            return _verdict(compare_with_peers(V.RST_INJECTION, "tls", ("reset during the TLS handshake", what), peers, VERIFIED, CONNECTED,
                                               "completed the handshake", subtype="tls"))
        fine = [p.name for p in peers if p.verified]
        if fine:  # dropped or closed after the ClientHello: without a control SNI, not named
            return Verdict(V.INCONCLUSIVE, C.MEDIUM, (what, f"{', '.join(fine)} completed the handshake",
                                                       "SNI filtering is likely: a tls check with control_sni on this address would tell"))
        return _verdict(compare_with_peers(V.INCONCLUSIVE, "tls", (what,), peers, VERIFIED, CONNECTED, "completed the handshake"))
    if failure.cls is F.CONNECTION_RESET and layer == 3:
        return _verdict(compare_with_peers(V.RST_INJECTION, "http", ("reset mid-transfer", what), peers, FETCHED, VERIFIED, "fetched it",
                                           subtype="mid_transfer"))
    return _verdict(compare_with_peers(V.HTTP_BLOCKING, "http", (what,), peers, FETCHED, VERIFIED, "fetched it"))


def judge_experiment(result: ProbeResult, peers: Sequence[PeerView] = (), *, degraded_threshold: float = 0.3) -> Judgement:
    """A tls check's SNI experiment, by the site rules on its one address."""
    return judge_site([attempt_of_experiment(result)], peers, degraded_threshold=degraded_threshold)


def _verdict(finding: Finding) -> Verdict:
    return Verdict(finding.verdict, finding.confidence, finding.evidence)


def _part(result: ProbeResult) -> str:
    """Which part of a git check failed ("ssh: "), since one result holds both."""
    if result.kind != "git" or result.failure is None:
        return ""
    for part in ("http", "ssh"):
        if (result.facts.get(part) or {}).get("failure") == result.failure.to_json():
            return f"{part}: "
    return ""


def _mitm(result: ProbeResult, what: str, peers: Sequence[PeerView]) -> Finding:
    """A chain that does not verify here (facts.tls_chains): tls_mitm if another vantage was
    shown one that verifies for the same name, with both issuers; the server's own broken
    certificate if a clean control is shown the same chain; else not established."""
    chains: dict[str, Any] = result.facts.get("tls_chains") or {}
    failing = [(sni, c) for sni, c in chains.items() if isinstance(c, dict) and not c.get("verified")]
    if not failing:
        return Finding(V.INCONCLUSIVE, "tls", C.LOW, (what, "no certificate chain recorded to compare"))
    sni, mine = failing[-1]
    here = f"{sni or '(no SNI)'}: the chain presented here does not verify, issued by {mine.get('issuer')} (leaf {str(mine.get('leaf_sha256'))[:16]}…)"
    genuine = [(p, c) for p in peers for c in p.verified_chains(sni or None)]
    if genuine and mine.get("leaf_sha256") not in {c.leaf for _, c in genuine}:
        there = [f"{p.name} verified the chain for {sni}, issued by {c.issuer} (leaf {c.leaf[:16]}…)" for p, c in genuine]
        return Finding(V.TLS_MITM, "tls", C.HIGH, (what, here, *dict.fromkeys(there)))
    broken = [p.name for p in peers if p.clean and any(not c.verified and c.leaf == mine.get("leaf_sha256") for c in p.chains)]
    if broken:
        return Finding(V.SERVER_DOWN, "tls", C.MEDIUM, (what, here, f"control {', '.join(broken)} is shown the same chain and cannot verify it either: the server's certificate is broken"))
    return Finding(V.INCONCLUSIVE, "tls", C.LOW, (what, here, f"no other vantage verified a chain for {sni} to compare with"))


def _integrity(result: ProbeResult) -> tuple[str, ...]:
    """What a module's hashes were checked against (goproxy facts)."""
    lines = []
    for what, sources in (result.facts.get("expected") or {}).items():
        got = result.facts.get("h1" if what == "zip" else "gomod_h1")
        lines += [f"{what} {got} matches {source}" for source, expected in sources.items() if expected == got]
    return tuple(lines)


def _mismatches(result: ProbeResult) -> tuple[str, ...]:
    """Both hashes of every mismatch: what the served bytes hash to, and what the source says."""
    served = result.facts.get("served_by") or {}
    lines = []
    for what, sources in (result.facts.get("expected") or {}).items():
        got = result.facts.get("h1" if what == "zip" else "gomod_h1")
        origin = served.get("zip" if what == "zip" else "mod")
        for source, expected in sources.items():
            if expected != got:
                lines += [f"{what} from {origin} hashes to {got}", f"{what} in {source} is {expected}"]
    return tuple(dict.fromkeys(lines))
