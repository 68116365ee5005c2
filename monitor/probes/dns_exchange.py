"""What the DNS transports share: the exchange shape, reply acceptance, reply facts.

Every transport (dns_udp, dns_stream, dns_doh, dns_system) has one shape, as dnspython's
asyncquery functions have:

    async def exchange_<transport>(query, resolver, m: Measurement, *, options) -> Message

It returns the accepted reply — whatever its rcode, since rcode is data — or raises
_net.NetError, which carries the failure (class and operation) and the time spent. Phases
and facts go into the Measurement as the exchange proceeds, as in the tcp/tls/http probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from monitor.model import Failure, FailureClass, Operation, Phase
from monitor.probes._classify import classify
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.probes.dns_errors import WrongQueryId

# RFC 6891 §6.2.5 / DNS flag day 2020: an EDNS buffer that avoids IP fragmentation.
EDNS_PAYLOAD = 1232
MAX_MESSAGE = 65535  # the largest DNS message (a 16-bit length on TCP)


@dataclass(frozen=True, slots=True)
class Options:
    """Per-check settings a transport may need."""

    injection_window: float = 0.5
    doh_method: str = "POST"


def make_query(name: str, qtype: str) -> dns.message.QueryMessage:
    """A recursive query with EDNS0 and a fresh random id."""
    return dns.message.make_query(name, qtype, use_edns=0, payload=EDNS_PAYLOAD)


def accept_reply(query: dns.message.Message, wire: bytes) -> dns.message.Message:
    """Parse `wire` as the reply to `query`, or raise why it is not one.

    Raises dns.exception.FormError (and subclasses: ShortHeader, TrailingJunk, BadPointer…)
    for bytes that are not a DNS message, WrongQueryId for another id, dns.query.BadResponse
    for a reply to a different question.
    """
    reply = dns.message.from_wire(wire)
    if reply.id != query.id:
        raise WrongQueryId(f"reply id {reply.id} does not match query id {query.id}")
    if not query.is_response(reply):
        raise dns.query.BadResponse("reply does not answer the question asked")
    return reply


def finish(query: dns.message.Message, wire: bytes, m: Measurement, elapsed: float) -> dns.message.Message:
    """The end of a TCP/DoT/DoH exchange: record the round trip and reply size, then accept
    the reply (or raise why it is none, as dns_round_trip's failure)."""
    m.add(Phase.DNS_ROUND_TRIP, elapsed)
    m.facts["response_size"] = len(wire)
    try:
        return accept_reply(query, wire)
    except dns.exception.DNSException as e:
        raise failed(e, Operation.DNS_ROUND_TRIP, elapsed) from e


def failed(exc: BaseException, operation: Operation, elapsed: float) -> NetError:
    """`exc` as the NetError a transport raises, classified by the one table (_classify)."""
    cls, detail = classify(exc)
    return NetError(Failure(cls, operation, detail), elapsed)


def reply_facts(reply: dns.message.Message) -> dict[str, Any]:
    """rcode, flags and answers (with TTLs) of a reply, JSON-ready."""
    answers = [
        {"name": rrset.name.to_text(), "type": dns.rdatatype.to_text(rrset.rdtype), "ttl": rrset.ttl, "data": rd.to_text()}
        for rrset in reply.answer
        for rd in rrset
    ]
    return {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "flags": dns.flags.to_text(reply.flags).split(),
        "answers": answers,
        "addresses": list(dict.fromkeys(a["data"] for a in answers if a["type"] in ("A", "AAAA"))),
    }


# rcode is data: these turn a reply's rcode into a failure class (DESIGN §3.3).
_RCODE_FAILURES = {
    dns.rcode.NXDOMAIN: FailureClass.DNS_NXDOMAIN_ERROR,
    dns.rcode.SERVFAIL: FailureClass.DNS_SERVFAIL_ERROR,
    dns.rcode.REFUSED: FailureClass.DNS_REFUSED_ERROR,
    dns.rcode.NOTIMP: FailureClass.DNS_REFUSED_ERROR,  # the resolver declines the query
    dns.rcode.FORMERR: FailureClass.DNS_MALFORMED,  # the resolver could not parse our query
}


def reply_failure(reply: dns.message.Message, qtype: str) -> Failure | None:
    """The failure a reply stands for, or None if it answers the question."""
    rcode = reply.rcode()
    if rcode != dns.rcode.NOERROR:
        cls = _RCODE_FAILURES.get(rcode, FailureClass.DNS_SERVFAIL_ERROR)
        return Failure(cls, Operation.DNS_ROUND_TRIP, f"rcode {dns.rcode.to_text(rcode)}")
    wanted = dns.rdatatype.from_text(qtype)
    if not any(rrset.rdtype == wanted for rrset in reply.answer):
        return Failure(FailureClass.DNS_NO_ANSWER, Operation.DNS_ROUND_TRIP, f"NOERROR without {qtype} records")
    return None


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
