"""DNS over UDP, listening past the first reply to catch on-path injectors.

An injector (the GFW's, for one) sees the query on the wire and races the real resolver
with a forged reply carrying the resolver's source address and the right query id. A stub
takes the first reply and never learns; the real reply still arrives a few milliseconds
later. So: a fresh socket per query, and after the first acceptable reply keep listening
for `injection_window` seconds, recording every datagram — its RTT, its IP TTL (an injector
sits fewer hops away, so its TTL differs) and what it said. Two acceptable replies that
differ are the signature of injection.

The socket is left unconnected on purpose: a connected UDP socket makes the kernel drop
datagrams from other sources, and a reply from the wrong source is evidence worth keeping.
IP_RECVERR brings back what connect() would have given: an ICMP port-unreachable surfaces
as ConnectionRefusedError instead of a silent timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import time
from contextlib import closing
from dataclasses import replace
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query

from monitor.model import Failure, FailureClass, Operation, Phase
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.probes.dns_errors import WrongQueryId
from monitor.probes.dns_exchange import Options, accept_reply, endpoint, failed, reply_facts
from monitor.probes.dns_resolvers import Resolver
from monitor.probes.dns_stream import exchange_tcp

# Linux values where Python 3.11's socket module does not export the constant.
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)

MAX_DATAGRAM = 65535
MAX_REPLIES = 32  # a flood of replies to one query is recorded up to here, then ignored
_ANCILLARY_SPACE = socket.CMSG_SPACE(4) * 2  # the TTL (an int), with room to spare

# Which rejection explains a timeout best when several kinds arrived: a wrong id says more
# about the path than junk does.
_REJECTION_RANK = {"wrong_id": 0, "wrong_question": 1, "malformed": 2}


def _enable_ancillary(sock: socket.socket, family: int) -> None:
    """Ask for the IP TTL / hop limit of each datagram and for ICMP errors, where the OS allows."""
    options = (
        [(socket.IPPROTO_IP, IP_RECVTTL), (socket.IPPROTO_IP, IP_RECVERR)]
        if family == socket.AF_INET
        else [(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT), (socket.IPPROTO_IPV6, IPV6_RECVERR)]
    )
    for level, name in options:
        try:
            sock.setsockopt(level, name, 1)
        except OSError:
            pass  # not on this OS: replies just carry no TTL, refusals become timeouts


def _ip_ttl(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)):
            return int.from_bytes(data[:4], sys.byteorder)
    return None


async def _receive(sock: socket.socket, until: float) -> tuple[bytes, int | None, tuple[str, int], float] | None:
    """Next datagram as (bytes, ip_ttl, source, perf_counter at arrival), or None once `until`
    (time.monotonic) passes."""
    loop = asyncio.get_running_loop()
    for _ in range(MAX_REPLIES * 4):  # spurious wake-ups are rare; the count only bounds the loop
        try:
            data, ancillary, _flags, source = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY_SPACE)
            return data, _ip_ttl(ancillary), source[:2], time.perf_counter()
        except (BlockingIOError, InterruptedError):
            pass
        remaining = until - time.monotonic()
        if remaining <= 0:
            return None
        readable = loop.create_future()
        loop.add_reader(sock.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, remaining)
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(sock.fileno())
    return None


def _same_endpoint(a: tuple[str, int], b: tuple[str, int]) -> bool:
    return ipaddress.ip_address(a[0].split("%")[0]) == ipaddress.ip_address(b[0].split("%")[0]) and a[1] == b[1]


def _meaning(reply: dns.message.Message) -> tuple[int, frozenset[tuple[int, str]]]:
    """What a reply says, TTLs aside: a resolver's own retransmission is not a second opinion."""
    return reply.rcode(), frozenset((rrset.rdtype, rd.to_text()) for rrset in reply.answer for rd in rrset)


async def exchange_udp(query: dns.message.Message, resolver: Resolver, m: Measurement, *, options: Options) -> dns.message.Message:
    family = socket.AF_INET6 if ":" in resolver.host else socket.AF_INET
    destination = (resolver.host, resolver.port)
    m.facts["resolver_address"] = endpoint(*destination)
    m.facts["injection_window_s"] = options.injection_window
    loop = asyncio.get_running_loop()
    sent_at = time.perf_counter()
    try:
        sock = m.vantage.new_socket(family, socket.SOCK_DGRAM)
    except OSError as e:  # e.g. the vantage's source address is not on this host
        raise failed(e, Operation.DNS_ROUND_TRIP, 0.0) from e
    with closing(sock):
        _enable_ancillary(sock, family)
        try:
            sent_at = time.perf_counter()
            await loop.sock_sendto(sock, query.to_wire(), destination)
            accepted, rtt, rejection = await _listen(sock, query, destination, sent_at, m, options)
        except OSError as e:  # sending failed, or an ICMP error came back before any answer
            m.add(Phase.DNS_ROUND_TRIP, time.perf_counter() - sent_at)
            raise failed(e, Operation.DNS_ROUND_TRIP, time.perf_counter() - sent_at) from e
    if accepted is None:
        waited = time.perf_counter() - sent_at
        m.add(Phase.DNS_ROUND_TRIP, waited)
        if rejection is not None:  # only unusable replies came: that is the story, not the timeout
            raise failed(rejection, Operation.DNS_ROUND_TRIP, waited) from rejection
        raise NetError(Failure(FailureClass.GENERIC_TIMEOUT_ERROR, Operation.DNS_ROUND_TRIP, f"no reply within {waited:.3g}s"), waited)
    m.add(Phase.DNS_ROUND_TRIP, rtt)
    if accepted.flags & dns.flags.TC:
        return await _retry_over_tcp(query, resolver, m, options)
    return accepted


async def _listen(
    sock: socket.socket, query: dns.message.Message, destination: tuple[str, int], sent_at: float, m: Measurement, options: Options
) -> tuple[dns.message.Message | None, float, Exception | None]:
    """Receive until the deadline, or until the injection window after the first good reply
    closes; every datagram goes into facts.replies. Returns the accepted reply, its RTT, and
    the most telling rejection (for when nothing was accepted)."""
    replies: list[dict[str, Any]] = m.facts.setdefault("replies", [])
    accepted: dns.message.Message | None = None
    rtt = 0.0
    until = m.deadline
    rejection: tuple[int, Exception] | None = None  # (rank, exception) of the most telling one
    while len(replies) < MAX_REPLIES:
        try:
            got = await _receive(sock, until)
        except OSError as e:
            if accepted is None:
                raise  # ICMP error before any answer: refused, unreachable…
            replies.append({"status": "icmp_error", "detail": str(e)})
            break
        if got is None:
            break
        wire, ip_ttl, source, arrived = got
        entry: dict[str, Any] = {"rtt_s": round(arrived - sent_at, 6), "ip_ttl": ip_ttl, "source": endpoint(*source), "size": len(wire)}
        replies.append(entry)
        if not _same_endpoint(source, destination):
            entry["status"] = "wrong_source"
            continue
        try:
            reply = accept_reply(query, wire)
        except WrongQueryId as e:
            entry["status"], rejection = "wrong_id", _more_telling(rejection, "wrong_id", e)
            continue
        except dns.query.BadResponse as e:
            entry["status"], rejection = "wrong_question", _more_telling(rejection, "wrong_question", e)
            continue
        except dns.exception.DNSException as e:
            entry["status"], rejection = "malformed", _more_telling(rejection, "malformed", e)
            entry["detail"] = f"{type(e).__name__}: {e}"
            continue
        facts = reply_facts(reply)
        entry.update(rcode=facts["rcode"], tc=bool(reply.flags & dns.flags.TC), addresses=facts["addresses"])
        if accepted is None:
            accepted, rtt = reply, arrived - sent_at
            entry["status"] = "accepted"
            m.facts.update(facts, response_size=len(wire))
            until = min(m.deadline, time.monotonic() + options.injection_window)
        else:
            entry["status"] = "duplicate"
            entry["differs"] = _meaning(reply) != _meaning(accepted)
    m.facts["injection"] = any(r.get("differs") for r in replies)
    return accepted, rtt, rejection[1] if rejection else None


def _more_telling(current: tuple[int, Exception] | None, kind: str, new: Exception) -> tuple[int, Exception]:
    candidate = (_REJECTION_RANK[kind], new)
    return candidate if current is None or candidate[0] < current[0] else current


async def _retry_over_tcp(query: dns.message.Message, resolver: Resolver, m: Measurement, options: Options) -> dns.message.Message:
    """RFC 7766 §5: a truncated reply is retried over TCP. The UDP reply stays in facts.udp
    and facts.replies; connect and the TCP round trip add to the phases."""
    m.facts["truncated"] = True
    m.facts["udp"] = {k: m.facts.pop(k) for k in ("rcode", "flags", "answers", "addresses", "response_size") if k in m.facts}
    return await exchange_tcp(query, replace(resolver, transport="tcp"), m, options=options)
