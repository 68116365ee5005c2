"""Hostile DNS servers on loopback, each misbehaving in one way a probe must classify.

Behaviours (UDP; TCP on the same port answers the full reply where that makes sense):
  inject        a racing injector: a forged A reply at once (IP TTL `forged_ttl`), then the
                true reply, fetched from `upstream` (a real resolver) when one is given
  duplicate     the true reply twice, identical: a duplicating network, not an injector
  lie           a lying resolver: one reply, forged addresses
  wrong_id      the true reply under another query id
  wrong_source  the true reply, sent from another port
  junk          bytes that are not a DNS message
  truncate      UDP reply with TC set and no answers; TCP gives the full answer
  truncate_reset  UDP reply with TC set; the TCP retry is reset once the query is in
  cut_short     the true reply cut off in the middle of its answer
  pointer_loop  a reply whose question name is a compression pointer to itself
  other_question  a true reply, to another question (right id)
  junk_flood    a flood of junk datagrams for one query (more than a client should record)
  length_lie    TCP: a length prefix of 512, 10 bytes, then close
  drip          TCP: a length prefix, then the reply one byte at a time, slower and slower
  silent        never answers
  nxdomain / servfail / refused / noanswer   a reply with that outcome
The server runs its own event loop in a thread so that sync and async tests, and a CLI
subprocess, can all talk to it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.servers.dns_unbound import free_port
from tests.servers.tcp import HOLD_MAX, reset

JUNK_FLOOD = 200  # datagrams answered to one query by junk_flood
_DRIP_BYTES = 200  # bytes drip sends at most, one per interval

TRUE_ADDRESSES = {"A": ("93.184.216.34",), "AAAA": ("2606:2800:220:1:248:1893:25c8:1946",)}
FORGED_ADDRESSES = {"A": ("31.13.94.37",), "AAAA": ("2001::4136:e378:8000:63bf:3fff:fdd2",)}  # GFW pool / Teredo


@dataclass
class HostileDns:
    behaviour: str
    upstream: tuple[str, int] | None = None
    forged: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(FORGED_ADDRESSES))
    true: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(TRUE_ADDRESSES))
    forged_ttl: int = 200
    port: int = 0

    @property
    def udp(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    @property
    def tcp(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> HostileDns:
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"hostile-dns-{self.behaviour}", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("hostile DNS server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.port = free_port()
        self._other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # for wrong_source
        self._other.bind(("127.0.0.1", 0))
        udp, _ = self._loop.run_until_complete(
            self._loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=("127.0.0.1", self.port))
        )
        tcp = self._loop.run_until_complete(asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            udp.close()
            tcp.close()
            self._other.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    # -- replies -----------------------------------------------------------------------------

    def _response(self, query: dns.message.Message, addresses: dict[str, tuple[str, ...]], rcode: int = dns.rcode.NOERROR) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        q = query.question[0]
        qtype = dns.rdatatype.to_text(q.rdtype)
        if rcode == dns.rcode.NOERROR and addresses.get(qtype):
            reply.answer.append(dns.rrset.from_text(q.name, 300, "IN", qtype, *addresses[qtype]))
        return reply

    async def _true_reply(self, query: dns.message.Message) -> bytes:
        if self.upstream is not None:
            upstream = await dns.asyncquery.udp(query, self.upstream[0], port=self.upstream[1], timeout=2)
            return upstream.to_wire()
        return self._response(query, self.true).to_wire()

    async def answer_udp(self, wire: bytes, source: tuple[str, int], transport: asyncio.DatagramTransport) -> None:
        query = dns.message.from_wire(wire)
        b = self.behaviour
        sock = transport.get_extra_info("socket")
        if b == "silent":
            return
        if b == "inject":  # the forged reply leaves with another IP TTL, as from fewer hops away
            usual_ttl = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.forged_ttl)
            transport.sendto(self._response(query, self.forged).to_wire(), source)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, usual_ttl)
            transport.sendto(await self._true_reply(query), source)
        elif b == "duplicate":
            true = await self._true_reply(query)
            transport.sendto(true, source)
            transport.sendto(true, source)
        elif b == "lie":
            transport.sendto(self._response(query, self.forged).to_wire(), source)
        elif b == "wrong_id":
            reply = dns.message.from_wire(await self._true_reply(query))
            reply.id = query.id ^ 0x5A5A
            transport.sendto(reply.to_wire(), source)
        elif b == "wrong_source":
            self._other.sendto(await self._true_reply(query), source)
        elif b == "junk":
            transport.sendto(wire[:2] + b"<html>", source)  # right id, then not a DNS header
        elif b in ("truncate", "truncate_reset"):
            reply = self._response(query, {})
            reply.flags |= dns.flags.TC
            transport.sendto(reply.to_wire(), source)
        elif b == "cut_short":
            true = await self._true_reply(query)
            transport.sendto(true[: len(true) - 7], source)  # inside the answer's address
        elif b == "pointer_loop":
            transport.sendto(pointer_loop(query), source)
        elif b == "other_question":
            other = dns.message.make_query("other.example.test", query.question[0].rdtype)
            other.id = query.id
            transport.sendto(self._response(other, self.true).to_wire(), source)
        elif b == "junk_flood":
            for i in range(JUNK_FLOOD):
                transport.sendto(wire[:2] + b"junk %d" % i, source)
        else:
            transport.sendto(self._outcome(query).to_wire(), source)

    def _outcome(self, query: dns.message.Message) -> dns.message.Message:
        rcodes = {"nxdomain": dns.rcode.NXDOMAIN, "servfail": dns.rcode.SERVFAIL, "refused": dns.rcode.REFUSED}
        if self.behaviour in rcodes:
            return self._response(query, {}, rcodes[self.behaviour])
        if self.behaviour == "noanswer":
            return self._response(query, {})
        raise ValueError(f"unknown behaviour {self.behaviour!r}")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length = int.from_bytes(await reader.readexactly(2), "big")
            query = dns.message.from_wire(await reader.readexactly(length))
            if self.behaviour == "silent":  # hold the connection open until the client gives up
                await asyncio.wait_for(reader.read(), HOLD_MAX)
                return
            if self.behaviour in ("nxdomain", "servfail", "refused", "noanswer"):
                wire = self._outcome(query).to_wire()
            elif self.behaviour == "wrong_id":
                reply = self._response(query, self.true)
                reply.id = query.id ^ 0x5A5A
                wire = reply.to_wire()
            elif self.behaviour == "junk":
                wire = b"<html></html>"
            elif self.behaviour == "truncate_reset":
                reset(writer)
                return
            elif self.behaviour == "pointer_loop":
                wire = pointer_loop(query)
            elif self.behaviour == "length_lie":
                writer.write((512).to_bytes(2, "big") + self._response(query, self.true).to_wire()[:10])
                await writer.drain()
                return
            elif self.behaviour == "drip":
                await _drip(writer, self._response(query, self.true).to_wire())
                return
            else:
                wire = self._response(query, self.true).to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


def pointer_loop(query: dns.message.Message) -> bytes:
    """A reply header (right id, one question, one answer) whose question name is a
    compression pointer to its own offset (12): a loop for a parser that follows it."""
    header = struct.pack("!6H", query.id, 0x8180, 1, 1, 0, 0)
    question = b"\xc0\x0c" + struct.pack("!2H", 1, 1)
    answer = b"\xc0\x0c" + struct.pack("!2HIH", 1, 1, 300, 4) + bytes([93, 184, 216, 34])
    return header + question + answer


async def _drip(writer: asyncio.StreamWriter, reply: bytes) -> None:
    """The length prefix of a reply padded to _DRIP_BYTES, then its bytes one at a time, each
    after a longer pause (10 ms more each time): a client waiting per read never times out."""
    body = reply.ljust(_DRIP_BYTES, b"\0")
    writer.write(len(body).to_bytes(2, "big"))
    for i, byte in enumerate(body):
        await writer.drain()
        await asyncio.sleep(min(0.01 * (i + 1), 0.2))
        writer.write(bytes([byte]))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: HostileDns):
        self.server = server
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self.server.answer_udp(data, addr, self.transport))  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
