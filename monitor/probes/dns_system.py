"""The operating system's resolver (getaddrinfo) as one more resolver in the round.

It is what every other program on the host sees, so it is the comparison point for what
the wire-level transports saw. It only knows addresses: no rcode, no TTLs, no other types
(config validation allows `system` for A and AAAA only). Its answer is put into a DNS
message so that every transport returns the same thing; the facts say the TTLs are unknown.
"""

from __future__ import annotations

import ipaddress

import dns.message
import dns.rdatatype
import dns.rrset

from monitor.probes._measure import Measurement
from monitor.probes.dns_exchange import Options, reply_facts
from monitor.probes.dns_resolvers import Resolver

_VERSION = {"A": 4, "AAAA": 6}


async def exchange_system(query: dns.message.Message, resolver: Resolver, m: Measurement, *, options: Options) -> dns.message.Message:
    question = query.question[0]
    qtype = dns.rdatatype.to_text(question.rdtype)
    name = question.name.to_text(omit_final_dot=True)
    addresses = await m.resolve(name)
    m.facts["resolver_address"] = "system"
    # getaddrinfo asked for every family the vantage can use; keep the one the check asked for.
    wanted = [a for a in addresses if ipaddress.ip_address(a).version == _VERSION[qtype]]
    reply = dns.message.make_response(query)
    if wanted:
        reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", qtype, *wanted))
    facts = reply_facts(reply)
    for answer in facts["answers"]:
        answer["ttl"] = None  # getaddrinfo does not say
    m.facts.update(facts, rcode=None, flags=None)  # nor these: the message above is our own
    return reply
