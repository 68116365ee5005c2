"""The one door from doctor to monitor.analysis: every verdict doctor shows is asked here.

Doctor measures with the probes and judges with analysis's rules, as the daemon does; this
module is the only one in doctor that imports monitor.analysis, so that when the rules move
(verdicts computed in one place, a verdict for every kind) only these functions follow them.

    judge_host(results, peers)         a host's site round -> verdict + findings
    judge_fetch(result, peers)         a module fetch through one proxy -> verdict
    judge_ssh(part, https_ok, peers)   git's SSH part -> verdict (rule kept here, see below)
    judge_env_proxy(result)            an HTTP(S) proxy from the environment -> verdict
    unexplained(verdict, failure)      a failure no rule explains -> `failing`

`peers` are the same measurements from the comparison vantages (--vantage after the first):
"fails here, works there" is what tells censorship from a server that is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitor.analysis.observations import attempts_of, peer_view
from monitor.analysis.single import judge_result
from monitor.analysis.verdicts import judge_site
from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName

V = VerdictName
C = Confidence
QUIET = (V.OK, V.INCONCLUSIVE)


@dataclass(frozen=True)
class HostVerdict:
    verdict: Verdict
    findings: tuple[dict[str, Any], ...] = ()

    @property
    def explains(self) -> bool:
        """The round found a cause (not ok, not inconclusive)."""
        return self.verdict.name not in QUIET


def judge_host(results: Sequence[ProbeResult], peers: Sequence[ProbeResult]) -> HostVerdict:
    """`results`: one site round (summary last); `peers`: other vantages' summaries of it.
    The comparison vantages (--vantage after the first) are named controls: their failing
    too is what makes a host `server_down` rather than blocked."""
    judgement = judge_site(attempts_of(results), [peer_view(p, control=True) for p in peers])
    return HostVerdict(judgement.verdict, tuple(f.to_json() for f in judgement.findings))


def judge_fetch(result: ProbeResult, peers: Sequence[ProbeResult]) -> Verdict:
    return judge_result(result, [peer_view(p, control=True) for p in peers])


def judge_ssh(part: dict[str, Any], https_ok: bool, peers: Sequence[dict[str, Any]]) -> Verdict:
    """git's SSH part (facts.ssh of a git result) that failed.

    analysis has no rule for SSH; this one applies its connect-level rule (SYN answered by
    RST -> rst_injection, no answer -> ip_blocking; another vantage failing alike ->
    server_down) with one more in-round control: HTTPS to the same host answering shows the
    host is up, so port 22 alone is refused or dropped."""
    failure = Failure.from_json(part["failure"])
    what = f"SSH to {part.get('ip', 'the host')}:22: {failure.cls.value} during {failure.operation.value}"
    if failure.operation not in (Operation.CONNECT, Operation.RESOLVE):
        return Verdict(V.FAILING, C.LOW, (what, "the connection came up: the SSH server itself did not answer as one"))
    if failure.operation is Operation.RESOLVE:
        return Verdict(V.FAILING, C.LOW, (what,))
    verdict = V.RST_INJECTION if failure.cls in (FailureClass.CONNECTION_REFUSED, FailureClass.CONNECTION_RESET) else V.IP_BLOCKING
    fine = [p for p in peers if p.get("ok")]
    if fine:
        return Verdict(verdict, C.HIGH, (what, "another vantage reached the SSH server"))
    if peers:
        return Verdict(V.SERVER_DOWN, C.HIGH, (what, "the other vantages failed too"))
    if https_ok:
        return Verdict(verdict, C.MEDIUM, (what, "HTTPS on the same host answers: port 22 alone is filtered (or the host runs no SSH service)"))
    return Verdict(V.INCONCLUSIVE, C.LOW, (what, "no other vantage to compare with"))


def judge_env_proxy(result: ProbeResult) -> Verdict:
    """A proxy check of HTTPS_PROXY / HTTP_PROXY: any failure reaching or through it is the
    proxy's, as analysis reads a failing vantage proxy (proxy_connect, proxy_error)."""
    if result.failure is None:
        return Verdict(V.OK, C.HIGH, ())
    f = result.failure
    what = f"{f.cls.value} during {f.operation.value}: {f.detail}"
    if f.operation is Operation.PROXY_CONNECT or f.cls in (FailureClass.PROXY_ERROR, FailureClass.PROXY_AUTH_REQUIRED):
        return Verdict(V.PROXY_FAILURE, C.HIGH, (what,))
    return Verdict(V.FAILING, C.LOW, (what, "the proxy answered; the failure is past it"))


def unexplained(verdict: Verdict | None, failure: Failure | None) -> Verdict:
    """A hop that failed although no rule names a cause: `failing`, never ok (DESIGN §3.4)."""
    if verdict is not None and verdict.name not in QUIET:
        return verdict
    evidence = tuple(verdict.evidence) if verdict is not None else ()
    if failure is not None:
        evidence = (f"{failure.cls.value} during {failure.operation.value}: {failure.detail}", *evidence)
    return Verdict(V.FAILING, C.LOW, tuple(dict.fromkeys(evidence)))
