"""TLS probe against real loopback TLS servers: certificate and server behaviour ->
ok / class / operation, and the facts (the presented chain also when verification fails)."""

from __future__ import annotations

import time

import pytest

from monitor.config import TlsCheck
from monitor.probes import probe_tls
from monitor.vantage import Vantage
from tests.servers import tcp
from tests.servers.tcp import TcpServer, closed_port, server_context


def tls_check(port: int, **kw) -> TlsCheck:
    fields = dict(name="t", kind="tls", target=f"localhost:{port}", connect_to="127.0.0.1", interval=60, timeout=2, vantages=["local"])
    return TlsCheck(**(fields | kw))


async def run(check: TlsCheck, vantage):
    return await probe_tls(check, vantage, deadline=time.monotonic() + check.timeout)


async def test_valid_certificate(serve, pki, vantage):
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
    result = await run(tls_check(server.port), vantage)
    assert result.ok, result.failure
    assert set(result.phases) == {"connect", "tls"}
    f = result.facts
    assert f["ip"] == "127.0.0.1" and f["sni"] == "localhost"
    assert f["verified"] is True
    assert f["tls_version"] == "TLSv1.3" and f["cipher"]
    assert f["alpn"] == "http/1.1"
    assert f["subject"] == "CN=localhost" and f["issuer"] == "CN=monitor test CA"
    assert f["sans"] == ["localhost", "127.0.0.1"]
    assert f["chain_sha256"] == [pki.valid.sha256]
    assert f["cert_not_after"].endswith("Z")


@pytest.mark.parametrize(
    "leaf, cls",
    [
        ("expired", "ssl_invalid_certificate"),
        ("not_yet_valid", "ssl_invalid_certificate"),
        ("wrong_host", "ssl_invalid_hostname"),
        ("unknown_ca", "ssl_unknown_authority"),
        ("self_signed", "ssl_unknown_authority"),
    ],
)
async def test_bad_certificate_fails_with_chain_in_facts(serve, pki, vantage, leaf, cls):
    cert = getattr(pki, leaf)
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(cert)))
    result = await run(tls_check(server.port), vantage)
    assert not result.ok
    assert (result.failure.cls, result.failure.operation) == (cls, "tls_handshake")
    assert "verify code" in result.failure.detail
    assert result.facts["verified"] is False
    assert result.facts["chain_sha256"] == [cert.sha256]
    assert result.facts["sni"] == "localhost"
    assert "tls" in result.phases


@pytest.mark.parametrize(
    "behaviour, cls, operation",
    [
        (tcp.reset_on_accept, "connection_reset", "tls_handshake"),
        (tcp.reset_after_first_bytes, "connection_reset", "tls_handshake"),
        (tcp.close_after_first_bytes, "eof_error", "tls_handshake"),
        (tcp.silent, "generic_timeout_error", "tls_handshake"),
        (tcp.junk, "ssl_failed_handshake", "tls_handshake"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
async def test_server_behaviour(serve, vantage, behaviour, cls, operation):
    server = await serve(TcpServer(behaviour))
    result = await run(tls_check(server.port, tls_timeout=0.3), vantage)
    assert not result.ok
    assert (result.failure.cls, result.failure.operation) == (cls, operation)
    assert result.facts["chain_sha256"] == []  # nothing was presented


async def test_closed_port(vantage):
    result = await run(tls_check(closed_port()), vantage)
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "connect")
    assert "tls" not in result.phases


async def test_sni_is_the_name_checked(serve, pki, vantage):
    # The wrong-host leaf is for other.example: asking for that name makes it the right one.
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.wrong_host)))
    result = await run(tls_check(server.port, sni="other.example"), vantage)
    assert result.ok, result.failure
    assert result.facts["sni"] == "other.example"
    assert result.facts["sans"] == ["other.example"]


async def test_ip_target_checks_the_ip_san(serve, pki, vantage):
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.valid)))
    result = await run(tls_check(server.port, target=f"127.0.0.1:{server.port}", connect_to=None), vantage)
    assert result.ok, result.failure
    assert result.facts["verified"] is True


async def test_alpn_offer_is_the_checks(serve, pki, vantage):
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.valid, alpn=["h2", "http/1.1"])))
    assert (await run(tls_check(server.port), vantage)).facts["alpn"] == "h2"
    assert (await run(tls_check(server.port, alpn=["http/1.1"]), vantage)).facts["alpn"] == "http/1.1"


async def test_default_roots_do_not_trust_the_test_ca(serve, pki):
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.valid)))
    result = await run(tls_check(server.port), Vantage.local())
    assert result.failure.cls == "ssl_unknown_authority"
