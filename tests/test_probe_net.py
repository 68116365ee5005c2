"""The timed primitives on their own: what tls_handshake returns and raises, SNI or none."""

from __future__ import annotations

import socket
import ssl

import pytest

from monitor.probes import _net
from tests.servers import tcp
from tests.servers.tcp import TcpServer, server_context


def recording_sni(leaf) -> tuple[ssl.SSLContext, list[str | None]]:
    """A server context that notes the SNI of every ClientHello it receives."""
    seen: list[str | None] = []
    context = server_context(leaf)
    context.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    return context, seen


async def handshake(server: TcpServer, vantage, server_hostname: str | None):
    sock, _ = await _net.connect("127.0.0.1", server.port, vantage, 2)
    try:
        return await _net.tls_handshake(sock, server_hostname, vantage.verify_context, ["http/1.1"], 2)
    finally:
        sock.close()


async def test_sni_is_sent_and_checked(serve, pki, vantage):
    context, seen = recording_sni(pki.valid)
    server = await serve(TcpServer(tcp.hold_open, ssl_context=context))
    conn, seconds = await handshake(server, vantage, "localhost")
    assert seen == ["localhost"]
    assert conn.info.verified
    assert 0 < conn.info.after_client_hello <= seconds


async def test_no_sni_still_verifies_the_chain_and_captures_it(serve, pki, vantage):
    context, seen = recording_sni(pki.valid)
    server = await serve(TcpServer(tcp.hold_open, ssl_context=context))
    conn, _ = await handshake(server, vantage, None)
    assert seen == [None]
    assert conn.info.verified  # chain checked against the vantage's roots; no name to check
    assert conn.info.chain_sha256 == (pki.valid.sha256,)
    assert vantage.verify_context.check_hostname  # the shared context was left as it was


async def test_no_sni_with_untrusted_chain_fails_and_keeps_it(serve, pki, vantage):
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.unknown_ca)))
    with pytest.raises(_net.NetError) as caught:
        await handshake(server, vantage, None)
    e = caught.value
    assert (e.failure.cls, e.failure.operation) == ("ssl_unknown_authority", "tls_handshake")
    assert e.tls.chain_sha256 == (pki.unknown_ca.sha256,)
    assert 0 < e.tls.after_client_hello <= e.elapsed


async def test_reset_after_client_hello_is_timed_from_the_hello(serve, vantage):
    server = await serve(TcpServer(tcp.reset_after_first_bytes))
    with pytest.raises(_net.NetError) as caught:
        await handshake(server, vantage, "localhost")
    assert caught.value.failure.cls == "connection_reset"
    assert 0 < caught.value.tls.after_client_hello <= caught.value.elapsed


async def test_tls_session_carries_data_both_ways(serve, pki, vantage):
    async def echo(reader, writer):
        writer.write(await reader.readexactly(5))
        await writer.drain()
        await reader.read()

    server = await serve(TcpServer(echo, ssl_context=server_context(pki.valid)))
    sock, _ = await _net.connect("127.0.0.1", server.port, vantage, 2)
    try:
        conn, _ = await _net.tls_handshake(sock, "localhost", vantage.verify_context, [], 2)
        await conn.send(b"hello")
        assert await conn.recv(100) == b"hello"
    finally:
        sock.close()


async def test_resolve_localhost(vantage):
    ips, seconds = await _net.resolve("localhost", vantage, 2)
    system = [info[4][0] for info in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)]
    assert ips == list(dict.fromkeys(system)) and seconds >= 0
