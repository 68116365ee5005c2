"""HTTP probe against real loopback HTTP(S) servers: server behaviour -> ok / class /
operation, phases and facts."""

from __future__ import annotations

import time

import pytest

from monitor.config import HttpCheck
from monitor.probes import probe_http
from tests.servers import tcp
from tests.servers.http import HttpServer
from tests.servers.tcp import TcpServer, closed_port, server_context


def http_check(url: str, **kw) -> HttpCheck:
    fields = dict(name="h", kind="http", url=url, interval=60, timeout=2, read_timeout=0.3, vantages=["local"])
    return HttpCheck(**(fields | kw))


async def run(check: HttpCheck, vantage):
    return await probe_http(check, vantage, deadline=time.monotonic() + check.timeout)


@pytest.fixture(params=["http", "https"])
async def server(request, serve, pki) -> HttpServer:
    context = server_context(pki.valid, alpn=["http/1.1"]) if request.param == "https" else None
    return await serve(HttpServer(ssl_context=context))


def url(server: HttpServer, path: str) -> str:
    return server.url(path, host="localhost")  # the name in the valid certificate


async def test_ok(server, vantage):
    result = await run(http_check(url(server, "/status/200")), vantage)
    assert result.ok, result.failure
    f = result.facts
    assert (f["status_code"], f["http_version"], f["redirects"], f["body_bytes"]) == (200, "HTTP/1.1", 0, 3)
    assert f["final_url"] == url(server, "/status/200")
    assert f["ip"] == "127.0.0.1"
    expected_phases = {"resolve", "connect", "ttfb", "transfer"} | ({"tls"} if server.scheme == "https" else set())
    assert set(result.phases) == expected_phases
    if server.scheme == "https":
        assert f["tls_version"] == "TLSv1.3" and f["cert_not_after"].endswith("Z")
    else:
        assert "tls_version" not in f
    assert server.requests[-1].headers["user-agent"] == "monitor/0.1"


@pytest.mark.parametrize(
    "path, overrides, cls, operation",
    [
        ("/status/404", {}, "http_status", "http_round_trip"),
        ("/status/500", {}, "http_status", "http_round_trip"),
        ("/redirect/0", {"follow_redirects": False}, "http_status", "http_round_trip"),
        ("/redirect-loop", {}, "http_protocol_error", "http_round_trip"),
        ("/redirect/2", {"max_redirects": 2}, "http_protocol_error", "http_round_trip"),
        ("/redirect-to?url=ftp://localhost/x", {}, "http_protocol_error", "http_round_trip"),
        ("/slow", {}, "generic_timeout_error", "read"),
        ("/big/1000000", {"max_body_bytes": 1000}, "response_too_large", "read"),
        ("/chunked/100000", {"max_body_bytes": 1000}, "response_too_large", "read"),
        ("/truncated", {}, "eof_error", "read"),
        ("/close", {}, "eof_error", "http_round_trip"),
        ("/junk", {}, "http_protocol_error", "http_round_trip"),
    ],
)
async def test_server_behaviour(server, vantage, path, overrides, cls, operation):
    result = await run(http_check(url(server, path), **overrides), vantage)
    assert not result.ok
    assert (result.failure.cls, result.failure.operation) == (cls, operation), result.failure.detail


async def test_status_failure_names_the_status(server, vantage):
    result = await run(http_check(url(server, "/status/404")), vantage)
    assert result.facts["status_code"] == 404
    assert result.failure.detail == "status 404, expected 2xx"
    assert "transfer" not in result.phases  # the body of an unexpected status is not read


async def test_expected_status_list(server, vantage):
    assert (await run(http_check(url(server, "/status/404"), expect_status=[404]), vantage)).ok
    result = await run(http_check(url(server, "/status/200"), expect_status=[204]), vantage)
    assert result.failure.detail == "status 200, expected 204"


async def test_redirects_are_followed_and_counted(server, vantage):
    result = await run(http_check(url(server, "/redirect/2")), vantage)
    assert result.ok, result.failure
    assert result.facts["redirects"] == 3
    assert result.facts["final_url"] == url(server, "/status/200")
    assert "too many" in (await run(http_check(url(server, "/redirect-loop")), vantage)).failure.detail


async def test_body_within_cap_is_read_whole(server, vantage):
    result = await run(http_check(url(server, "/chunked/200000"), max_body_bytes=200000), vantage)
    assert result.ok, result.failure
    assert result.facts["body_bytes"] == 200000  # counted after de-chunking, before any decoding


async def test_head_is_not_judged_by_content_length(server, vantage):
    result = await run(http_check(url(server, "/status/200"), method="HEAD", max_body_bytes=1), vantage)
    assert result.ok, result.failure
    assert result.facts["body_bytes"] == 0


async def test_connect_to_pins_the_host_and_keeps_the_name(server, vantage):
    check = http_check(url(server, "/status/200"), connect_to="127.0.0.1")
    result = await run(check, vantage)
    assert result.ok, result.failure
    assert "resolve" not in result.phases
    assert server.requests[-1].headers["host"] == f"localhost:{server.port}"


async def test_http2_offered_http11_answered(serve, pki, vantage):
    server = await serve(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
    result = await run(http_check(url(server, "/status/200"), http2=True), vantage)
    assert result.ok, result.failure
    assert result.facts["http_version"] == "HTTP/1.1"


@pytest.mark.parametrize(
    "leaf, cls", [("unknown_ca", "ssl_unknown_authority"), ("expired", "ssl_invalid_certificate"), ("wrong_host", "ssl_invalid_hostname")]
)
async def test_https_certificate_failures(serve, pki, vantage, leaf, cls):
    cert = getattr(pki, leaf)
    server = await serve(HttpServer(ssl_context=server_context(cert)))
    result = await run(http_check(url(server, "/status/200")), vantage)
    assert (result.failure.cls, result.failure.operation) == (cls, "tls_handshake")
    assert result.facts["chain_sha256"] == [cert.sha256]
    assert server.requests == []


@pytest.mark.parametrize(
    "behaviour, scheme, cls, operation",
    [
        (tcp.reset_on_accept, "http", "connection_reset", "http_round_trip"),
        (tcp.reset_after_first_bytes, "http", "connection_reset", "http_round_trip"),
        (tcp.silent, "http", "generic_timeout_error", "http_round_trip"),
        (tcp.reset_after_first_bytes, "https", "connection_reset", "tls_handshake"),
        (tcp.silent, "https", "generic_timeout_error", "tls_handshake"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
async def test_hostile_servers(serve, vantage, behaviour, scheme, cls, operation):
    server = await serve(TcpServer(behaviour))
    check = http_check(f"{scheme}://localhost:{server.port}/", tls_timeout=0.3)
    result = await run(check, vantage)
    assert (result.failure.cls, result.failure.operation) == (cls, operation), result.failure.detail


async def test_closed_port(vantage):
    result = await run(http_check(f"http://127.0.0.1:{closed_port()}/"), vantage)
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "connect")
    assert result.facts["ip"] == "127.0.0.1"


async def test_http2(serve, pki, vantage):
    pytest.importorskip("h2")
    from tests.servers.h2 import H2Server

    server = await serve(H2Server(ssl_context=server_context(pki.valid, alpn=["h2", "http/1.1"])))
    result = await run(http_check(f"https://localhost:{server.port}/x", http2=True), vantage)
    assert result.ok, result.failure
    assert (result.facts["http_version"], result.facts["body_bytes"]) == ("HTTP/2", 3)
    assert {"connect", "tls", "ttfb", "transfer"} <= set(result.phases)
    assert server.requests[-1][":path"] == "/x" and server.requests[-1]["user-agent"] == "monitor/0.1"
