"""The censor lab's target-side services, in one process started inside the target namespace:
HTTPS servers (tests/servers/http.py) on given addresses, each with its certificate, and
small UDP DNS responders — `rotate` answers one address of a name's pool at random per
query (a CDN-like resolver), `lie` answers one fixed address for every name (the lying
resolver a DNS hijack redirects to).

    python -m tests.servers.lab_services SPEC.json

SPEC: {"https": [{"host", "port", "cert", "key"}], "dns": [{"host", "port", "mode", "records"|"lie"}]}.
Prints "ready" once every socket listens; stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
from typing import Any

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset

from tests.servers.http import HttpServer


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        reply = dns.message.make_response(query)
        q = query.question[0]
        if q.rdtype == dns.rdatatype.A:
            if self.spec["mode"] == "lie":
                addresses = [self.spec["lie"]]
            else:
                pool = self.spec["records"].get(q.name.to_text(), [])
                addresses = [random.choice(pool)] if pool else []
            if addresses:
                reply.answer.append(dns.rrset.from_text(q.name, 30, "IN", "A", *addresses))
        self.transport.sendto(reply.to_wire(), addr)


async def _main(spec: dict[str, Any]) -> None:
    servers = []
    for s in spec.get("https", []):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(s["cert"], s["key"])
        context.set_alpn_protocols(["http/1.1"])
        servers.append(await _listen(HttpServer(host=s["host"], ssl_context=context), s["host"], s["port"], context))
    loop = asyncio.get_running_loop()
    endpoints = [
        (await loop.create_datagram_endpoint(lambda d=d: _Responder(d), local_addr=(d["host"], d["port"])))[0]
        for d in spec.get("dns", [])
    ]
    print("ready", flush=True)
    try:
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    finally:
        for e in endpoints:
            e.close()
        for server in servers:
            server.close()


async def _listen(http: HttpServer, host: str, port: int, context: ssl.SSLContext) -> asyncio.Server:
    """An HttpServer's handler on a fixed address and port (the lab's addresses are fixed)."""
    return await asyncio.start_server(http._serve, host, port, ssl=context)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        asyncio.run(_main(json.load(f)))
