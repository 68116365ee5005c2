"""The hostile-server matrix: one behaviour per row, across DNS, TLS, HTTP, proxies, git and
module proxies, each against a real server on loopback that misbehaves in that one way.

Every row runs its check through the runner the daemon uses (`monitor.probes.measure`) and
must come out
- classified: the (failure class, operation) the row names — never `internal_error`, which
  is what the runner makes of an exception escaping a probe (a crash);
- storable: every result serializes to JSON (a hostile server's bytes never reach the facts raw);
- bounded in memory: the peak of Python allocations while the probe runs, traced with
  tracemalloc in every thread (the zip check's included; the servers' too, which only makes
  the bound stricter), stays under MEMORY_BOUND. Gzip and zip bombs here inflate to 64 MiB:
  inflating one whole would break the bound eightfold;
- bounded in time: the slow rows (drips, slowloris, floods) end at the check's deadline, with
  the operation that ran out of time. (The runner's guard, the last resort for a probe that
  overruns its deadline, would name the kind's main operation instead — which for most rows
  is not theirs — or, for a probe that holds the event loop, not even fire: see the flood rows.)
The servers run on an event loop of their own thread (HostileDns on its own), as on another
host: a server that sends faster than the probe parses is not slowed down by sharing its loop.

The rows name the class and operation as the vocabulary defines them (DESIGN §3.3); one row,
the HTTP gzip bomb, expects success: the http probe counts a body as it crosses the wire and
never decodes it, so a bomb is 64 KiB of body like any other — its point is the memory bound.
"""

from __future__ import annotations

import contextlib
import functools
import json
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from monitor.config import Check, DnsCheck, GitCheck, GoproxyCheck, HttpCheck, ProxyCheck, TlsCheck
from monitor.model import FailureClass, ProbeResult
from monitor.probes import measure
from monitor.vantage import Proxy, Vantage
from tests.servers import tcp
from tests.servers.certs import Pki
from tests.servers.dns_doh_hostile import HostileDoh, gzip_bomb
from tests.servers.dns_hostile import HostileDns
from tests.servers.git_http import GitHttpServer
from tests.servers.goproxy import GoproxyServer, Module, Response, escape, make_zip, with_declared_size
from tests.servers.goproxy_sumdb import SigningKey, TestLog
from tests.servers.h2 import H2Server
from tests.servers.http import HttpServer
from tests.servers.loop_thread import ServerLoop
from tests.servers.proxy_python import HttpProxy, Socks5Proxy
from tests.servers.ssh_banner import banner
from tests.servers.tcp import TcpServer, server_context

T = TypeVar("T", bound=TcpServer)

MEMORY_BOUND = 8 << 20  # bytes of Python allocations at peak, per probe run
INFLATED = 64 << 20  # what the bombs inflate to

# The tests' fields for every check: a 5 s budget, 1 s for any one wait for the server (the
# drips send a byte every 50 ms: a per-read timeout never ends them).
_BASE: dict[str, Any] = {"name": "hostile", "interval": 60, "timeout": 5, "read_timeout": 1, "vantages": ["local"]}
_SLOW: dict[str, Any] = {"timeout": 1.5}  # rows that only end at the deadline

MOD = Module("example.com/hostile", "v1.0.0", {"hostile.go": b"package hostile\n"})
P = MOD.prefix  # every entry of MOD's zip starts with it
V = f"/{escape(MOD.path)}/@v/{escape(MOD.version)}"


class Lab:
    """What a row needs to build its servers: started for this test (on the server thread),
    stopped after it."""

    def __init__(self, servers: ServerLoop, pki: Pki, vantage: Vantage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: contextlib.ExitStack):
        self._servers = servers
        self.pki = pki
        self.vantage = vantage
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self._stack = stack

    async def start(self, server: T) -> T:
        return self._servers.start(server)

    def dns(self, behaviour: str) -> HostileDns:
        return self._stack.enter_context(HostileDns(behaviour))

    def tls_context(self, leaf: str = "valid", alpn: list[str] | None = None):
        return server_context(getattr(self.pki, leaf), alpn=alpn)

    async def module_proxy(self, *, log_class: type[TestLog] = TestLog) -> tuple[GoproxyServer, TestLog]:
        """A module proxy over TLS serving MOD, that is also the checksum database (at its
        root) holding MOD's record among others — under a name of this run's own, so no two
        rows (or runs) ever share a verified tree in the process-wide store of trees."""
        server = await self.start(GoproxyServer(ssl_context=self.tls_context(alpn=["http/1.1"])))
        server.serve_module(MOD)
        log = log_class(SigningKey(f"sum-{uuid.uuid4().hex[:12]}.example"))
        log.fill(300)
        log.add_module(MOD.path, MOD.version, MOD.zip_h1, MOD.gomod_h1)
        log.fill(40)
        server.log = log
        return server, log


@dataclass(frozen=True)
class Row:
    id: str
    build: Callable[[Lab], Awaitable[tuple[Check, Vantage | None]]]
    expected: tuple[str, str] | None  # (class, operation); None: the probe succeeds


ROWS: list[Row] = []


def row(id: str, cls: str | None, operation: str | None = None):
    def register(build: Callable[[Lab], Awaitable[Check | tuple[Check, Vantage]]]):
        async def built(lab: Lab) -> tuple[Check, Vantage | None]:
            made = await build(lab)
            return made if isinstance(made, tuple) else (made, None)

        ROWS.append(Row(id, built, (cls, operation) if cls else None))
        return build

    return register


def http(url: str, **fields: Any) -> HttpCheck:
    return HttpCheck(**(_BASE | {"kind": "http", "url": url} | fields))


def tls(target: str, **fields: Any) -> TlsCheck:
    return TlsCheck(**(_BASE | {"kind": "tls", "target": target, "sni": "localhost"} | fields))


def dns(resolver: str, **fields: Any) -> DnsCheck:
    values = _BASE | {"kind": "dns", "query": "www.example.test", "resolvers": [resolver], "injection_window": 0.2} | fields
    return DnsCheck.model_validate(values)


def proxy(proxy_url: str, **fields: Any) -> ProxyCheck:
    return ProxyCheck(**(_BASE | {"kind": "proxy", "proxy": proxy_url, "target": "localhost:443", "connect_timeout": 1} | fields))


def git(**fields: Any) -> GitCheck:
    return GitCheck(**(_BASE | {"kind": "git"} | fields))


def goproxy(server: GoproxyServer, log: TestLog, **fields: Any) -> GoproxyCheck:
    values = {"kind": "goproxy", "proxy": server.url, "module": MOD.path, "version": MOD.version,
              "sumdb": log.key.name, "sumdb_key": log.key.vkey, "sumdb_url": server.url}
    return GoproxyCheck(**(_BASE | values | fields))


# --- DNS -----------------------------------------------------------------------------------------


def _udp_row(id: str, behaviour: str, cls: str) -> None:
    async def build(lab: Lab) -> DnsCheck:
        # Replies it cannot use do not end the wait for one that it can: the deadline does.
        return dns(lab.dns(behaviour).udp, **_SLOW)

    row(f"dns/udp-{id}", cls, "dns_round_trip")(build)


_udp_row("junk", "junk", "dns_malformed")
_udp_row("wrong-query-id", "wrong_id", "dns_reply_with_wrong_query_id")
_udp_row("reply-cut-short", "cut_short", "dns_malformed")
_udp_row("compression-pointer-loop", "pointer_loop", "dns_malformed")
_udp_row("reply-to-another-question", "other_question", "dns_malformed")
_udp_row("junk-flood", "junk_flood", "dns_malformed")  # ends sooner: at 32 datagrams, no more are read


@row("dns/udp-truncated-then-tcp-reset", "connection_reset", "dns_round_trip")
async def _(lab):
    return dns(lab.dns("truncate_reset").udp)


def _tcp_row(id: str, behaviour: str, cls: str, **limits: Any) -> None:
    async def build(lab: Lab) -> DnsCheck:
        return dns(lab.dns(behaviour).tcp, **limits)

    row(f"dns/tcp-{id}", cls, "dns_round_trip")(build)


_tcp_row("junk", "junk", "dns_malformed")
_tcp_row("compression-pointer-loop", "pointer_loop", "dns_malformed")
_tcp_row("length-prefix-lies", "length_lie", "eof_error")
_tcp_row("reply-drips", "drip", "generic_timeout_error", **_SLOW)


@row("dns/dot-garbage-instead-of-tls", "ssl_failed_handshake", "tls_handshake")
async def _(lab):
    server = await lab.start(TcpServer(tcp.junk))
    return dns(f"tls://127.0.0.1:{server.port}#localhost")


@row("dns/doh-gzip-bomb", "response_too_large", "read")
async def _(lab):
    server = await lab.start(HostileDoh("gzip_bomb", lab.tls_context()))
    return dns(server.url())


@row("dns/doh-html-page", "dns_malformed", "dns_round_trip")
async def _(lab):
    server = await lab.start(HostileDoh("html", lab.tls_context()))
    return dns(server.url())


@row("dns/doh-http2-garbage-frames", "http_protocol_error", "http_round_trip")
async def _(lab):
    server = await lab.start(H2Server(ssl_context=lab.tls_context(alpn=["h2"]), behaviour="garbage"))
    return dns(f"https://127.0.0.1:{server.port}/dns-query")


# --- TLS -----------------------------------------------------------------------------------------


@row("tls/garbage-instead-of-tls", "ssl_failed_handshake", "tls_handshake")
async def _(lab):
    return tls((await lab.start(TcpServer(tcp.junk))).address)


@row("tls/alert-handshake-failure", "ssl_failed_handshake", "tls_handshake")
async def _(lab):
    return tls((await lab.start(TcpServer(tcp.tls_alert))).address)


@row("tls/reset-after-client-hello", "connection_reset", "tls_handshake")
async def _(lab):
    return tls((await lab.start(TcpServer(tcp.reset_after_first_bytes))).address)


@row("tls/close-after-client-hello", "eof_error", "tls_handshake")
async def _(lab):
    return tls((await lab.start(TcpServer(tcp.close_after_first_bytes))).address)


@row("tls/handshake-drips", "generic_timeout_error", "tls_handshake")
async def _(lab):
    return tls((await lab.start(TcpServer(tcp.tls_drip))).address, **_SLOW)


def _certificate_row(leaf: str, cls: str) -> None:
    async def build(lab: Lab) -> TlsCheck:
        return tls((await lab.start(TcpServer(tcp.hold_open, ssl_context=lab.tls_context(leaf)))).address)

    row(f"tls/certificate-{leaf.replace('_', '-')}", cls, "tls_handshake")(build)


_certificate_row("wrong_host", "ssl_invalid_hostname")
_certificate_row("expired", "ssl_invalid_certificate")
_certificate_row("not_yet_valid", "ssl_invalid_certificate")
_certificate_row("self_signed", "ssl_unknown_authority")
_certificate_row("unknown_ca", "ssl_unknown_authority")


# --- HTTP ----------------------------------------------------------------------------------------


async def _http_server(lab: Lab, *, tls_: bool = False) -> HttpServer:
    return await lab.start(HttpServer(ssl_context=lab.tls_context(alpn=["http/1.1"]) if tls_ else None))


def _http_row(id: str, path: str, cls: str | None, operation: str | None = None, **fields: Any) -> None:
    async def build(lab: Lab) -> HttpCheck:
        return http((await _http_server(lab)).url(path), **fields)

    row(f"http/{id}", cls, operation)(build)


_http_row("slowloris-headers", "/slowloris-headers", "generic_timeout_error", "http_round_trip", **_SLOW)
_http_row("header-block-never-ends", "/endless-headers", "http_protocol_error", "http_round_trip")
_http_row("huge-header", "/huge-header", "http_protocol_error", "http_round_trip")
_http_row("body-drips", "/drip", "generic_timeout_error", "read", **_SLOW)
_http_row("reset-mid-body", "/reset-mid-body", "connection_reset", "read")
_http_row("content-length-longer-than-body", "/truncated", "eof_error", "read")
_http_row("content-length-not-a-number", "/length-invalid", "http_protocol_error", "http_round_trip")
_http_row("content-length-twice-differing", "/length-conflict", "http_protocol_error", "http_round_trip")
_http_row("chunked-encoding-garbage", "/chunked-garbage", "http_protocol_error", "read")
_http_row("endless-redirects", "/redirect-loop", "http_protocol_error", "http_round_trip")
_http_row("redirect-to-ftp", "/redirect-to?url=ftp://127.0.0.1/x", "http_protocol_error", "http_round_trip")
_http_row("redirect-to-file", "/redirect-to?url=file:///etc/passwd", "http_protocol_error", "http_round_trip")
_http_row("status-line-junk", "/junk", "http_protocol_error", "http_round_trip")
_http_row("informational-responses-forever", "/informational-flood", "generic_timeout_error", "http_round_trip", **_SLOW)
_http_row("gzip-bomb-counted-raw", "/gzip-bomb", None)


@row("http/tls-then-body-drips", "generic_timeout_error", "read")
async def _(lab):
    return http((await _http_server(lab, tls_=True)).url("/drip", host="localhost"), **_SLOW)


@row("http/http2-garbage-frames", "http_protocol_error", "http_round_trip")
async def _(lab):
    server = await lab.start(H2Server(ssl_context=lab.tls_context(alpn=["h2"]), behaviour="garbage"))
    return http(f"https://localhost:{server.port}/", http2=True)


@row("http/http2-data-on-stream-0", "http_protocol_error", "http_round_trip")
async def _(lab):
    server = await lab.start(H2Server(ssl_context=lab.tls_context(alpn=["h2"]), behaviour="bad_frame"))
    return http(f"https://localhost:{server.port}/", http2=True)


@row("http/http2-continuation-flood", "http_protocol_error", "http_round_trip")
async def _(lab):
    server = await lab.start(H2Server(ssl_context=lab.tls_context(alpn=["h2"]), behaviour="continuation_flood"))
    return http(f"https://localhost:{server.port}/", http2=True)


# --- git -----------------------------------------------------------------------------------------


@row("git/advertisement-gzip-bomb", "http_protocol_error", "verify")
async def _(lab):
    server = await lab.start(GitHttpServer(lab.tmp_path))
    return git(url=server.url("/bomb/repo.git"))


@row("git/advertisement-never-reaches-a-ref", "http_protocol_error", "verify")
async def _(lab):
    server = await lab.start(GitHttpServer(lab.tmp_path))
    return git(url=server.url("/versions/repo.git"))


@row("git/ssh-junk-without-line-end", "http_protocol_error", "read")
async def _(lab):
    return git(ssh=(await lab.start(TcpServer(banner(b"\x00junk" * 100)))).address)


# --- proxies -------------------------------------------------------------------------------------


@row("proxy/connect-200-then-close", "eof_error", "tls_handshake")
async def _(lab):
    return proxy((await lab.start(HttpProxy("lie"))).url)


@row("proxy/connect-answer-never-ends", "proxy_error", "proxy_connect")
async def _(lab):
    return proxy((await lab.start(HttpProxy("endless_head"))).url)


@row("proxy/connect-answer-drips", "generic_timeout_error", "proxy_connect")
async def _(lab):
    return proxy((await lab.start(HttpProxy("drip"))).url, **_SLOW)


@row("proxy/407-to-every-credential", "proxy_auth_required", "proxy_connect")
async def _(lab):
    lab.monkeypatch.setenv("HOSTILE_PROXY_AUTH", "alice:right-password")
    return proxy((await lab.start(HttpProxy("status", status=407))).url, auth_env="HOSTILE_PROXY_AUTH")


@row("proxy/forward-407", "proxy_auth_required", "proxy_connect")
async def _(lab):
    server = await lab.start(HttpProxy("status", status=407))
    return proxy(server.url, mode="forward", url="http://127.0.0.1:9/", target=None)


@row("proxy/socks5-wrong-version", "proxy_error", "proxy_connect")
async def _(lab):
    return proxy((await lab.start(Socks5Proxy("wrong_version"))).url())


@row("proxy/socks5-bad-address-type", "proxy_error", "proxy_connect")
async def _(lab):
    return proxy((await lab.start(Socks5Proxy("bad_address_type"))).url())


@row("proxy/vantage-via-lying-proxy", "eof_error", "http_round_trip")
async def _(lab):
    liar = await lab.start(HttpProxy("lie"))
    via = Vantage(name="local", extra_ca_files=lab.vantage.extra_ca_files, via=(Proxy.from_url(liar.url),))
    return http("http://127.0.0.1:9/"), via


# --- module proxies and the checksum database ----------------------------------------------------


@functools.cache
def _honest_bomb() -> bytes:
    """MOD's zip with a file of 64 MiB of zeros, declared as such: a valid zip, under Go's
    limits, that a careless checker would inflate whole."""
    return make_zip({P + "go.mod": MOD.gomod, P + "hostile.go": MOD.files["hostile.go"], P + "zeros.bin": bytes(INFLATED)})


@functools.cache
def _lying_bomb() -> bytes:
    """A zip whose entry declares 10 bytes and inflates to 64 MiB."""
    return with_declared_size(make_zip({P + "go.mod": MOD.gomod, P + "bomb": bytes(INFLATED)}), P + "bomb", 10)


def _module_row(id: str, cls: str, operation: str, serve: Callable[[GoproxyServer, TestLog], None], **fields: Any) -> None:
    async def build(lab: Lab) -> GoproxyCheck:
        server, log = await lab.module_proxy()
        serve(server, log)
        return goproxy(server, log, **fields)

    row(f"goproxy/{id}", cls, operation)(build)


def _zip(data: bytes, **response: Any) -> Callable[[GoproxyServer, TestLog], None]:
    def serve(server: GoproxyServer, log: TestLog) -> None:
        server.routes[f"{V}.zip"] = Response(200, data, **response)

    return serve


_module_row("zip-path-traversal", "bad_module_zip", "verify", _zip(make_zip({P + "go.mod": MOD.gomod, P + "../../../etc/cron.d/x": b"* * * * * root sh\n"})))
_module_row("zip-bomb-lying-about-its-size", "bad_module_zip", "verify", _zip(_lying_bomb()))
_module_row("zip-bomb-64MiB-declared", "checksum_mismatch", "verify", _zip(_honest_bomb()))
_module_row("zip-html-page", "bad_module_zip", "verify", _zip(b"<html><body>Please log in</body></html>\n"))
_module_row("zip-content-length-shorter", "bad_module_zip", "verify", _zip(MOD.zip_bytes(), content_length=len(MOD.zip_bytes()) - 100))
_module_row("zip-content-length-longer", "eof_error", "read", _zip(MOD.zip_bytes(), content_length=len(MOD.zip_bytes()) + 100))
_module_row("zip-in-one-byte-chunks", "bad_module_zip", "verify", _zip(b"PK\x03\x04" + bytes(4 << 10), chunk_size=1))


def _mod_mismatch(server: GoproxyServer, log: TestLog) -> None:
    server.routes[f"{V}.mod"] = Response(200, b"module example.com/hostile\n\nrequire evil.example/x v1.0.0\n")


def _endless_list(server: GoproxyServer, log: TestLog) -> None:
    server.routes[f"/{escape(MOD.path)}/@v/list"] = Response(200, b"".join(b"v0.0.%d\n" % i for i in range(100)), endless=True)


def _junk_info(server: GoproxyServer, log: TestLog) -> None:
    server.routes[f"{V}.info"] = Response(200, b'{"Version": "v1.0.0", "Time": \x00\xff junk')


def _bad_signature(server: GoproxyServer, log: TestLog) -> None:
    note = bytearray(log.signed_tree())
    note[-10] ^= 0x01  # inside the base64 signature: same key, wrong signature
    server.routes[f"/lookup/{escape(MOD.path)}@{escape(MOD.version)}"] = Response(200, log.lookup(300, note=bytes(note)))


def _deep_info(server: GoproxyServer, log: TestLog) -> None:
    server.routes[f"{V}.info"] = Response(200, b"[" * 100_000)


def _unicode_record_id(server: GoproxyServer, log: TestLog) -> None:
    body = log.lookup(300).replace(b"300\n", "³⁰⁰\n".encode(), 1)  # str.isdigit() says yes; int() says no
    server.routes[f"/lookup/{escape(MOD.path)}@{escape(MOD.version)}"] = Response(200, body)


_module_row("mod-does-not-match-the-zip", "checksum_mismatch", "verify", _mod_mismatch)
_module_row("info-nested-100000-deep", "http_protocol_error", "read", _deep_info)
_module_row("sumdb-record-id-in-unicode-digits", "sumdb_verification_failed", "verify", _unicode_record_id)
_module_row("endless-version-list", "response_too_large", "read", _endless_list, version="latest")
_module_row("info-junk-json", "http_protocol_error", "read", _junk_info)
_module_row("sumdb-note-bad-signature", "sumdb_verification_failed", "verify", _bad_signature)


class _TilesThatDoNotHash(TestLog):
    """A database whose every tile has one bit flipped."""

    __test__ = False

    def tile(self, path: str, size: int | None = None) -> bytes | None:
        data = super().tile(path, size)
        return None if data is None else bytes([data[0] ^ 1]) + data[1:]


@row("goproxy/sumdb-tiles-do-not-hash", "sumdb_verification_failed", "verify")
async def _(lab):
    server, log = await lab.module_proxy(log_class=_TilesThatDoNotHash)
    return goproxy(server, log)


# -------------------------------------------------------------------------------------------------


@pytest.fixture
def lab(pki, vantage, tmp_path, monkeypatch):
    with ServerLoop() as servers, contextlib.ExitStack() as stack:
        yield Lab(servers, pki, vantage, tmp_path, monkeypatch, stack)


def test_the_matrix_is_wide():
    areas = {r.id.split("/")[0] for r in ROWS}
    assert len([r for r in ROWS if r.expected is not None]) >= 30
    assert areas == {"dns", "tls", "http", "git", "proxy", "goproxy"}
    assert len({r.id for r in ROWS}) == len(ROWS)
    for r in ROWS:
        if r.expected is not None:
            FailureClass(r.expected[0])  # a class of the closed vocabulary
            assert r.expected[0] != "internal_error"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("behaviour", ROWS, ids=lambda r: r.id)
async def test_hostile_server(behaviour: Row, lab: Lab):
    check, via = await behaviour.build(lab)
    # Made before tracing: the bombs the servers send are theirs, not the probe's.
    gzip_bomb()
    tracemalloc.start()
    try:
        results = await measure(check, via or lab.vantage)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    result: ProbeResult = results[0]  # a dns round: the resolver's own result comes first
    got = (result.failure.cls.value, result.failure.operation.value) if result.failure else None
    for r in results:
        assert r.failure is None or r.failure.cls is not FailureClass.INTERNAL_ERROR, r.failure.detail
        json.dumps(r.to_json())  # storable as is
    assert got == behaviour.expected, result.failure.detail if result.failure else result.facts
    assert peak < MEMORY_BOUND, f"{peak} bytes at peak"


# --- what the matrix found, kept as plain tests ----------------------------------------------------


async def _traced(check: Check, vantage: Vantage) -> tuple[ProbeResult, int]:
    tracemalloc.start()
    try:
        results = await measure(check, vantage)
        return results[0], tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_body_in_tiny_chunks_costs_its_bytes_not_an_object_per_chunk(lab):
    # A .mod sent in 2-byte chunks was kept as one bytes object per chunk (~48 bytes of
    # memory per 2 bytes of body): the caps on what a proxy may send (16 MiB for a .mod)
    # then cost ~24 times as much memory. Compared with the same body sent whole.
    body = b"module example.com/hostile\n\n" + b"// padding\n" * ((64 << 10) // 11)
    peaks = {}
    for chunk_size in (0, 2):
        server, log = await lab.module_proxy()
        server.routes[f"{V}.mod"] = Response(200, body, chunk_size=chunk_size)
        result, peaks[chunk_size] = await _traced(goproxy(server, log), lab.vantage)
        assert (result.failure.cls, result.failure.operation) == ("checksum_mismatch", "verify")
    assert peaks[2] - peaks[0] < 4 * len(body), peaks
