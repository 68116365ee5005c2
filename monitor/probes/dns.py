"""The `dns` check: one round asks every configured resolver the same question at once.

    results = await run_dns_round(check, vantage, deadline=d)  # every result of the round
    result = await probe_dns(check, vantage, deadline=d)       # DESIGN §3.1 shape: the comparison

A round yields one ProbeResult per resolver, in config order, with `target` = the resolver
spec (e.g. "udp://114.114.114.114"), then one comparison result, `target` = the query name,
which the judge step (monitor/judgement.py) fills with whether the answers are consistent and
why not, and the verdict that suggests (monitor/analysis/dns_consistency.py). All of them
carry facts.round_id.

Per-resolver phases: resolve (the DoT/DoH server's own name; the whole lookup for `system`),
connect, tls, dns_round_trip (query out to reply in; for DoH, request headers out to body
in). Per-resolver facts: transport, resolver, resolver_address, rcode, flags, answers
[{name, type, ttl, data}], addresses, response_size; UDP adds replies (every datagram with
rtt_s, ip_ttl, source, status) and injection; DoT/DoH add the TLS facts, DoH the HTTP ones.
Every per-resolver result has seen_addresses: every address its replies carried, the
accepted reply's first (UDP replies that lost the race to another one of the resolver's, an
injector's included, still name theirs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.message

from monitor.config import DnsCheck
from monitor.model import ProbeResult
from monitor.probes._measure import Measurement, Round
from monitor.probes._net import NetError
from monitor.probes.dns_doh import exchange_doh
from monitor.probes.dns_exchange import Options, make_query, reply_facts, reply_failure
from monitor.probes.dns_resolvers import Resolver, parse_resolver
from monitor.probes.dns_stream import exchange_tcp, exchange_tls
from monitor.probes.dns_system import exchange_system
from monitor.probes.dns_udp import exchange_udp
from monitor.redact import redact_url
from monitor.vantage import Vantage

Exchange = Callable[..., Awaitable[dns.message.Message]]
TRANSPORTS: dict[str, Exchange] = {
    "udp": exchange_udp,
    "tcp": exchange_tcp,
    "tls": exchange_tls,
    "https": exchange_doh,
    "system": exchange_system,
}


async def probe_dns(check: DnsCheck, vantage: Vantage, *, deadline: float) -> ProbeResult:
    """The round's comparison result (unjudged). A runner that stores results should call
    run_dns_round and keep all of them."""
    return (await run_dns_round(check, vantage, deadline=deadline))[-1]


async def run_dns_round(check: DnsCheck, vantage: Vantage, *, deadline: float) -> list[ProbeResult]:
    """One result per resolver (config order), then the comparison result."""
    run = Round()
    options = Options(injection_window=check.injection_window, doh_method=check.doh_method)
    per_resolver = await asyncio.gather(
        *(_ask(check, parse_resolver(spec), vantage, deadline, options, run.id) for spec in check.resolvers)
    )
    facts = {"role": "comparison", "query": check.query, "qtype": check.type}
    return [*per_resolver, run.summary(check, vantage, per_resolver, facts)]


async def _ask(check: DnsCheck, resolver: Resolver, vantage: Vantage, deadline: float, options: Options, round_id: str) -> ProbeResult:
    m = Measurement(check, vantage, deadline)  # type: ignore[arg-type]  # any check with phase timeouts
    m.facts.update(round_id=round_id, role="resolver", resolver=redact_url(resolver.spec), transport=resolver.transport, query=check.query, qtype=check.type)
    query = make_query(check.query, check.type)
    try:
        reply = await TRANSPORTS[resolver.transport](query, resolver, m, options=options)
    except NetError as e:
        result = m.result(e.failure)
    else:
        if "answers" not in m.facts:  # udp and system describe their reply themselves
            m.facts.update(reply_facts(reply))
        result = m.result(reply_failure(reply, check.type))
    result.target = redact_url(resolver.spec)  # a label and a stored value: no token in it
    result.facts["seen_addresses"] = _seen_addresses(result)
    return result


def _seen_addresses(r: ProbeResult) -> list[str]:
    """Every address the resolver's replies carried, the accepted one's first, no repeats.
    Replies from another source or with another id are not the resolver speaking."""
    seen = list(r.facts.get("addresses") or ())
    for reply in r.facts.get("replies") or ():
        if reply.get("status") in ("accepted", "duplicate"):
            seen += reply.get("addresses") or ()
    return list(dict.fromkeys(seen))
