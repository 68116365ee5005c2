"""DNS over TCP (RFC 7766) and over TLS (RFC 7858): one message, two-byte length prefix.

Connect and handshake are the shared _net primitives through the Measurement, so DoT is
timed, verified and (once vantages grow proxies) routed exactly as the tls probe is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import dns.exception
import dns.message

from monitor.model import Failure, FailureClass, Operation, Phase
from monitor.probes._classify import classify
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.probes.dns_exchange import Options, endpoint, finish
from monitor.probes.dns_resolvers import Resolver

_MAX_READS = 1000  # one message needs few reads; the bound stops a peer trickling bytes

Send = Callable[[bytes], Awaitable[None]]
Recv = Callable[[int], Awaitable[bytes]]


async def exchange_tcp(query: dns.message.Message, resolver: Resolver, m: Measurement, *, options: Options) -> dns.message.Message:
    sock, ip = await m.open(resolver.host, resolver.port, None, then=Operation.DNS_ROUND_TRIP)
    m.facts["resolver_address"] = endpoint(ip, resolver.port)
    loop = asyncio.get_running_loop()
    try:
        return await _round_trip(query, m, lambda data: loop.sock_sendall(sock, data), lambda n: loop.sock_recv(sock, n))
    finally:
        sock.close()


async def exchange_tls(query: dns.message.Message, resolver: Resolver, m: Measurement, *, options: Options) -> dns.message.Message:
    sock, ip = await m.open(resolver.host, resolver.port, None, then=Operation.TLS_HANDSHAKE)
    m.facts["resolver_address"] = endpoint(ip, resolver.port)
    m.facts["sni"] = resolver.auth_name
    try:
        try:
            # No ALPN: RFC 7858 defines none, and some DoT servers reject what they do not know.
            conn = await m.handshake(sock, resolver.auth_name, (), m.vantage.verify_context)
        except NetError as e:
            if e.tls is not None:
                m.facts.update(e.tls.facts())
            raise
        m.facts.update(conn.info.facts())
        return await _round_trip(query, m, conn.send, conn.recv)
    finally:
        sock.close()


async def _round_trip(query: dns.message.Message, m: Measurement, send: Send, recv: Recv) -> dns.message.Message:
    """Send the length-prefixed query, read one length-prefixed reply; time it as dns_round_trip."""
    wire = query.to_wire()
    limit = m.limit("read")
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            started = time.perf_counter()
            await send(len(wire).to_bytes(2, "big") + wire)
            length = int.from_bytes(await _read_exactly(recv, 2), "big")
            reply_wire = await _read_exactly(recv, length)
            elapsed = time.perf_counter() - started
    except (EOFError, OSError) as e:  # OSError includes TimeoutError: no reply within the limit
        elapsed = time.perf_counter() - started
        m.add(Phase.DNS_ROUND_TRIP, elapsed)
        if isinstance(e, EOFError):
            cls, detail = FailureClass.EOF_ERROR, str(e)
        else:
            cls, detail = classify(e)
            if isinstance(e, TimeoutError) and not str(e):
                detail = f"no reply within {limit:.3g}s"
        raise NetError(Failure(cls, Operation.DNS_ROUND_TRIP, detail), elapsed) from e
    return finish(query, reply_wire, m, elapsed)


async def _read_exactly(recv: Recv, count: int) -> bytes:
    data = b""
    for _ in range(_MAX_READS):
        if len(data) == count:
            return data
        chunk = await recv(count - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    raise EOFError(f"gave up after {_MAX_READS} reads ({len(data)} of {count} bytes)")
