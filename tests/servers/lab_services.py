"""The censor lab's target-side services, in one process started inside the target namespace:
HTTPS servers (tests/servers/http.py) on given addresses, each with its certificate, and
small UDP DNS responders — `rotate` answers one address of a name's pool at random per
query (a CDN-like resolver), `lie` answers one fixed address for every name (the lying
resolver a DNS hijack redirects to); optionally a VCS side: a go-get server answering
`?go-get=1` with go-import meta tags (a vanity import path) and a git server (git's own
http-backend, tests/servers/git_http.py, over TLS) with an SSH banner (tests/servers/ssh_banner.py)
beside it; and, optionally, one Go module served by module
proxies (tests/servers/goproxy.py over TLS) — honest ones and tampering ones, which serve
the same module@version with one file changed — with its record in a checksum database
(tests/servers/goproxy_sumdb.py, its signing key made here); and, optionally, a git
smart-HTTP server over TLS (tests/servers/git_http.py, its repositories made here), an SSH
server's banner and an HTTP CONNECT proxy (tests/servers/proxy_python.py), so that every
check kind has a real server to measure.

    python -m tests.servers.lab_services SPEC.json

SPEC: {"https": [{"host", "port", "cert", "key"}], "dns": [{"host", "port", "mode", "records"|"lie"}],
       "goproxy": {"module", "version", "facts": PATH, "sumdb": {"name", "host", "port", "cert", "key"},
                   "proxies": [{"host", "port", "cert", "key", "tampered": bool}]},
       "vcs": {"go_get": {"host", "port", "cert", "key", "imports": {MODULE: "VCS REPO-URL"}},
               "git": {"host", "port", "ssh_port", "cert", "key", "root"}},
       "connect_proxy": {"host", "port"}}.
Writes the module's facts to PATH (the database's verifier key, the honest and the tampered
zip's go.sum hashes, the zip's size), then prints "ready" once every socket listens; stops
when its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset

from tests.servers.git_http import GitHttpServer, make_repositories
from tests.servers.goproxy import GoproxyServer, Module, Response
from tests.servers.goproxy_sumdb import SigningKey, TestLog
from tests.servers.http import HttpServer
from tests.servers.proxy_python import HttpProxy
from tests.servers.ssh_banner import banner
from tests.servers.tcp import TcpServer

# Random, so the zip does not compress: large enough on the wire for a censor to cut it
# mid-transfer well after the TLS handshake and the small .info and .mod answers.
PAYLOAD_BYTES = 512 << 10


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
    servers = [await _listen(HttpServer(host=s["host"]), s) for s in spec.get("https", [])]
    if "goproxy" in spec:
        servers += await _module_services(spec["goproxy"])
    if "vcs" in spec:
        servers += await _vcs_services(spec["vcs"])
    if "connect_proxy" in spec:
        servers.append(await _listen_plain(HttpProxy(host=spec["connect_proxy"]["host"]), spec["connect_proxy"]))
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


async def _module_services(spec: dict[str, Any]) -> list[asyncio.Server]:
    honest = Module(spec["module"], spec["version"], {"hello.go": b"package hello\n", "payload.bin": random.randbytes(PAYLOAD_BYTES)})
    tampered = Module(honest.path, honest.version, {**honest.files, "hello.go": b"package hello\n\nfunc init() { beacon() }\n"})
    db = spec["sumdb"]
    log = TestLog(SigningKey(db["name"]))
    log.fill(20)  # other modules' records around this one
    log.add_module(honest.path, honest.version, honest.zip_h1, honest.gomod_h1)
    log.fill(5)
    database = GoproxyServer(host=db["host"])
    database.log = log  # at its root, as sum.golang.org
    servers = [await _listen(database, db)]
    for p in spec["proxies"]:
        proxy = GoproxyServer(host=p["host"])
        proxy.serve_module(tampered if p["tampered"] else honest)
        servers.append(await _listen(proxy, p))
    facts = {"vkey": log.key.vkey, "h1": honest.zip_h1, "tampered_h1": tampered.zip_h1, "zip_bytes": len(honest.zip_bytes())}
    await asyncio.to_thread(Path(spec["facts"]).write_text, json.dumps(facts), encoding="utf-8")
    return servers


async def _vcs_services(spec: dict[str, Any]) -> list[asyncio.Server]:
    go_get = spec["go_get"]
    vanity = GoproxyServer(host=go_get["host"])  # a route table is all a go-get server is
    for module, repo in go_get["imports"].items():
        page = f'<html><head><meta name="go-import" content="{module} {repo}"></head><body>go get {module}</body></html>'
        vanity.routes["/" + module.split("/", 1)[1] + "?go-get=1"] = Response(200, page.encode())
    git = spec["git"]
    root = await asyncio.to_thread(make_repositories, Path(git["root"]))
    servers = [await _listen(vanity, go_get), await _listen(GitHttpServer(root, host=git["host"]), git)]
    servers.append(await _listen_plain(TcpServer(banner(), host=git["host"]), {"host": git["host"], "port": git["ssh_port"]}))
    return servers


async def _listen_plain(server: TcpServer, s: dict[str, Any]) -> asyncio.Server:
    return await asyncio.start_server(server._serve, s["host"], s["port"])


async def _listen(server: TcpServer, s: dict[str, Any]) -> asyncio.Server:
    """A server's handler over TLS on a fixed address and port (the lab's addresses are fixed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(s["cert"], s["key"])
    context.set_alpn_protocols(["http/1.1"])
    return await asyncio.start_server(server._serve, s["host"], s["port"], ssl=context)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        asyncio.run(_main(json.load(f)))
