"""The `site` check: everything between this vantage and one HTTPS site, in one round, to be
judged by the judge step (monitor/judgement.py, rules in monitor/analysis/verdicts.py).

    results = await run_site_round(check, vantage, deadline=d)  # every result of the round
    result = await probe_site(check, vantage, deadline=d)       # DESIGN §3.1 shape: the summary

An attempt is: the domain asked of every plain resolver and every reference (the dns
probe's round, at once); every answered address, up to max_ips, handshaken with the
domain's SNI, the control SNI and no SNI (the tls probe's SNI experiment, addresses at
once); one HTTPS GET (the http probe) on an address whose certificate verified, else on
the system's first answer. No second stack: these are the dns, tls and http probes' own
functions, given checks derived from this one.

A first attempt that shows no failure (no sub-result failed, no injected DNS reply) is the
round. Otherwise the attempt is repeated up to `attempts` times, each given an equal share
of the time left, and the judge takes the majority; the repeats also tell a censor (the same
failure every time) from a lossy path (failures that come and go). A failing control alone
does not fail an attempt: the handshake result is the target's. Residual blocking: triggers
and completed controls are remembered process-wide (the tls check's memory, keyed by
vantage, address and port; a GET reset after its ClientHello counts as a trigger too), so
after the target SNI triggered on an address, the control is not sent there within the
hold-off — not by a later attempt, a later round, nor a tls check of the same address — and
the last completed control is carried forward instead.

Results: per attempt, one per resolver (role resolver), one per address (role handshake,
with facts.sni_experiment), the GET (role fetch); then the summary (kind site, role summary),
which the judge step gives the verdict, every finding and what other vantages need to
compare with this one. All carry facts.round_id and (except the summary) facts.attempt.
"""

from __future__ import annotations

import asyncio
import time

from monitor.config import DnsCheck, HttpCheck, SiteCheck, TlsCheck
from monitor.model import Operation, ProbeResult
from monitor.probes._measure import Round
from monitor.probes._sni import RESIDUAL, TRIGGERS, ResidualBlocking, sni_experiment
from monitor.probes.dns import run_dns_round
from monitor.probes.http import probe_http
from monitor.vantage import Vantage


async def probe_site(check: SiteCheck, vantage: Vantage, *, deadline: float) -> ProbeResult:
    """The round's summary. A runner that stores results should call run_site_round."""
    return (await run_site_round(check, vantage, deadline=deadline))[-1]


async def run_site_round(
    check: SiteCheck, vantage: Vantage, *, deadline: float, residual: ResidualBlocking | None = None
) -> list[ProbeResult]:
    """`residual`: where triggers are remembered for the hold-off; the process-wide RESIDUAL by default."""
    run = Round()
    residual = RESIDUAL if residual is None else residual
    results: list[ProbeResult] = []
    attempts = 0
    for number in range(1, check.attempts + 1):  # bounded by attempts, and by the deadline below
        share = _share(deadline, check.attempts - number + 1)
        done = await _attempt(check, vantage, number, share, residual)
        for r in done:
            r.facts.update(round_id=run.id, attempt=number)
        results += done
        attempts = number
        if (number == 1 and not _failed(done)) or time.monotonic() >= deadline:
            break
    facts = {"role": "summary", "domain": check.domain, "control_sni": check.control_sni, "attempts": attempts}
    return [*results, run.summary(check, vantage, results, facts)]


def _failed(results: list[ProbeResult]) -> bool:
    """Anything in the attempt went wrong: a result failed, or a UDP reply was injected."""
    return any(not r.ok or r.facts.get("injection") for r in results)


async def _attempt(check: SiteCheck, vantage: Vantage, number: int, deadline: float, residual: ResidualBlocking) -> list[ProbeResult]:
    dns = (await run_dns_round(_dns_check(check), vantage, deadline=_share(deadline, 3)))[:-1]  # without its comparison
    for r in dns:
        r.facts["role"] = "resolver"
    ips = _addresses_to_try(check, dns)
    handshaken = list(await asyncio.gather(*(
        sni_experiment(_tls_check(check, ip), vantage, deadline=_share(deadline, 2), residual=residual) for ip in ips
    )))
    for r in handshaken:
        r.facts["role"] = "handshake"
    address = _fetch_address(ips, handshaken)
    fetched = await probe_http(_http_check(check, address), vantage, deadline=deadline)
    fetched.facts["role"] = "fetch"
    failure = fetched.failure
    if address is not None and failure is not None and failure.operation is Operation.TLS_HANDSHAKE and failure.cls in TRIGGERS:
        residual.trigger((vantage.name, address, check.port), check.holdoff)  # its ClientHello carried the domain too
    return [*dns, *handshaken, fetched]


def _addresses_to_try(check: SiteCheck, dns: list[ProbeResult]) -> list[str]:
    """Every answered address, plain resolvers' and references' taken in turn (so a cap
    cannot leave out either side), at most max_ips."""
    answers = [list(r.facts.get("seen_addresses") or ()) for r in dns]
    order: list[str] = []
    for rank in range(max((len(a) for a in answers), default=0)):
        order += [a[rank] for a in answers if rank < len(a)]
    return list(dict.fromkeys(order))[: check.max_ips]


def _fetch_address(ips: list[str], handshaken: list[ProbeResult]) -> str | None:
    """Where the GET goes: an address whose certificate verified for the domain, else the first."""
    for r in handshaken:
        for o in r.facts.get("sni_experiment") or ():
            if o["label"] == "target" and o["skipped"] is None and o["class"] is None:
                return str(r.facts["ip"])
    return ips[0] if ips else None


def _share(deadline: float, parts: int) -> float:
    now = time.monotonic()
    return now + max(0.0, deadline - now) / parts


def _common(check: SiteCheck) -> dict[str, object]:
    return {
        "name": check.name, "interval": check.interval, "timeout": check.timeout, "vantages": check.vantages,
        "connect_timeout": check.connect_timeout, "tls_timeout": check.tls_timeout, "read_timeout": check.read_timeout,
    }


def _dns_check(check: SiteCheck) -> DnsCheck:
    return DnsCheck(kind="dns", query=check.domain, type="A", resolvers=[*check.resolvers, *check.references],
                    injection_window=check.injection_window, **_common(check))


def _tls_check(check: SiteCheck, ip: str) -> TlsCheck:
    return TlsCheck(kind="tls", target=f"{check.domain}:{check.port}", connect_to=ip, control_sni=check.control_sni,
                    alpn=["http/1.1"], holdoff=check.holdoff, control_max_age=check.control_max_age, **_common(check))


def _http_check(check: SiteCheck, ip: str | None) -> HttpCheck:
    return HttpCheck(kind="http", url=check.url, connect_to=ip, expect_status=check.expect_status, **_common(check))
