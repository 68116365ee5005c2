"""Proxy vantages: every probe of a vantage with `via` leaves through that proxy — tcp, tls
(and its SNI experiment), http, DNS over TCP/DoT/DoH, goproxy, git — as the proxy's own log
shows; `bind` sets the source address of the connection to the proxy; UDP cannot go through
one and says so."""

from __future__ import annotations

import re
from typing import Iterator

import pytest

from monitor.config import DnsCheck, GitCheck, GoproxyCheck, HttpCheck, ProxyCheck, TcpCheck, TlsCheck, load_config_text
from monitor.model import ProbeResult
from monitor.probes import measure, run_probe
from monitor.vantage import Proxy, Vantage, vantages_from_config
from tests.conftest import require
from tests.servers import tcp
from tests.servers.certs import Pki
from tests.servers.dns_unbound import UNBOUND, Unbound, run_unbound
from tests.servers.goproxy import GoproxyServer, Module
from tests.servers.http import HttpServer
from tests.servers.proxy_debian import DebianProxy
from tests.servers.proxy_python import HttpProxy
from tests.servers.ssh_banner import OPENSSH, banner
from tests.servers.tcp import TcpServer, closed_port, server_context

COMMON = dict(interval=60, timeout=3, read_timeout=1, vantages=["proxied"])
NAME = "www.example.test"
MOD = Module("example.com/hello", "v1.0.0", {"hello.go": b"package hello\n"})


@pytest.fixture(scope="module")
def unbound(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:  # noqa: F811
    require(UNBOUND, "unbound is not installed (Debian: unbound)")
    with run_unbound(tmp_path_factory.mktemp("unbound"), [f"{NAME}. 300 IN A 192.0.2.7"], tls=pki.valid) as server:
        yield server


def through(proxy_url: str, vantage: Vantage, **kw) -> Vantage:  # noqa: F811
    return Vantage(name="proxied", extra_ca_files=vantage.extra_ca_files, via=(Proxy.from_url(proxy_url),), **kw)


def went_through(tiny: DebianProxy, port: int) -> bool:
    """tinyproxy logged a request for this port (CONNECT host:port, or a forward GET)."""
    return re.search(rf"Request \(file descriptor \d+\): \S+ \S*:{port}\b", tiny.log()) is not None


def proxied_phases(result: ProbeResult) -> bool:
    return {"proxy_connect", "proxy_handshake"} <= set(result.phases) and "connect" not in result.phases


async def test_tcp_tls_http_leave_through_tinyproxy(tiny, serve, pki, vantage):  # noqa: F811
    https = await serve(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
    plain = await serve(HttpServer())
    v = through(tiny.url, vantage)
    checks = [
        (TcpCheck(name="t", kind="tcp", target=f"localhost:{plain.port}", **COMMON), plain.port),
        (TlsCheck(name="s", kind="tls", target=f"localhost:{https.port}", **COMMON), https.port),
        (HttpCheck(name="h", kind="http", url=https.url("/status/200", host="localhost"), **COMMON), https.port),
        (HttpCheck(name="p", kind="http", url=plain.url("/status/204", host="localhost"), **COMMON), plain.port),
    ]
    for check, port in checks:
        before = len(tiny.log())
        result = await run_probe(check, v)
        assert result.ok, (check.kind, result.failure)
        assert proxied_phases(result), result.phases
        assert result.facts["proxy"] == tiny.url and result.facts["proxy_status"] == 200
        assert "ip" not in result.facts  # tinyproxy resolved the name; its choice is not known here
        assert went_through(tiny, port) and len(tiny.log()) > before, check.name
    assert [r.target for r in https.requests] == ["/status/200"] and plain.requests[-1].target == "/status/204"


async def test_tls_failure_through_the_proxy_keeps_its_class(tiny, serve, pki, vantage):  # noqa: F811
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.wrong_host)))
    check = TlsCheck(name="s", kind="tls", target=f"localhost:{server.port}", **COMMON)
    result = await run_probe(check, through(tiny.url, vantage))
    assert (result.failure.cls, result.failure.operation) == ("ssl_invalid_hostname", "tls_handshake")
    assert result.facts["proxy_status"] == 200


async def test_sni_experiment_through_a_proxy(tiny, serve, pki, vantage):  # noqa: F811
    server = await serve(TcpServer(tcp.hold_open, ssl_context=server_context(pki.valid)))
    check = TlsCheck(name="s", kind="tls", target=f"localhost:{server.port}", connect_to="127.0.0.1", control_sni="other.example", **COMMON)
    result = await run_probe(check, through(tiny.url, vantage))
    assert result.ok, result.failure
    assert [o["connected"] for o in result.facts["sni_experiment"]] == [True, True, True]
    # connect_to: the proxy is asked for the address, the same for every attempt
    assert len(re.findall(rf"CONNECT 127\.0\.0\.1:{server.port}\b", tiny.log())) == 3


async def test_dns_over_tcp_dot_doh_leave_through_tinyproxy(tiny, unbound, vantage):  # noqa: F811
    v = through(tiny.url, vantage)
    for spec, port in ((unbound.tcp, unbound.port), (unbound.tls("localhost"), unbound.tls_port), (unbound.https(), unbound.https_port)):
        check = DnsCheck(name="d", kind="dns", query=NAME, resolvers=[spec], **COMMON)
        resolver_result, _summary = await measure(check, v)
        assert resolver_result.ok, (spec, resolver_result.failure)
        assert proxied_phases(resolver_result), (spec, resolver_result.phases)
        assert went_through(tiny, port), spec


async def test_goproxy_leaves_through_tinyproxy(tiny, serve, pki, vantage):  # noqa: F811
    server = await serve(GoproxyServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
    server.serve_module(MOD)
    check = GoproxyCheck(
        name="g", kind="goproxy", proxy=f"https://localhost:{server.port}", module=MOD.path, version=MOD.version,
        sumdb="off", expect_h1=MOD.zip_h1, expect_gomod_h1=MOD.gomod_h1, **COMMON,
    )
    result = await run_probe(check, through(tiny.url, vantage))
    assert result.ok, result.failure
    assert went_through(tiny, server.port)
    assert server.requests  # the module proxy was reached, through tinyproxy


async def test_git_ssh_banner_survives_the_tunnel(tiny, serve, vantage):  # noqa: F811
    # The SSH server speaks first: its banner may arrive with the proxy's 200; it must not be eaten.
    sshd = await serve(TcpServer(banner()))
    check = GitCheck(name="git", kind="git", ssh=f"localhost:{sshd.port}", **COMMON)
    result = await run_probe(check, through(tiny.url, vantage))
    assert result.ok, result.failure
    assert result.facts["ssh"]["banner"] == OPENSSH.decode().strip()
    assert went_through(tiny, sshd.port)


async def _connect_answer_and_banner(reader, writer) -> None:
    """A proxy whose 200 and the target's banner arrive in one segment."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n" + OPENSSH)
    await writer.drain()
    await tcp.silent(reader, writer)


async def _socks_reply_and_banner(reader, writer) -> None:
    await reader.readexactly(3)  # greeting: version, 1 method, no auth
    writer.write(b"\x05\x00")
    request = await reader.readexactly(5)  # version, command, reserved, ATYP 3, name length
    await reader.readexactly(request[4] + 2)
    writer.write(b"\x05\x00\x00\x03\x09localhost\x00\x16" + OPENSSH)  # reply (bound: a name) + banner
    await writer.drain()
    await tcp.silent(reader, writer)


@pytest.mark.parametrize("via, handler", [("http", _connect_answer_and_banner), ("socks5h", _socks_reply_and_banner)])
async def test_bytes_sent_with_the_proxy_answer_are_kept(serve, vantage, via, handler):  # noqa: F811
    proxy = await serve(TcpServer(handler))
    check = GitCheck(name="git", kind="git", ssh="ssh.example.test:22", **COMMON)  # the proxy never resolves it
    result = await run_probe(check, through(f"{via}://{proxy.address}", vantage))
    assert result.ok, result.failure
    assert result.facts["ssh"]["banner"] == OPENSSH.decode().strip()


async def test_tcp_tls_http_leave_through_dante(socks, serve, pki, vantage):  # noqa: F811
    https = await serve(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
    v = through(socks.url, vantage)
    for check in (
        TcpCheck(name="t", kind="tcp", target=f"localhost:{https.port}", **COMMON),
        TlsCheck(name="s", kind="tls", target=f"localhost:{https.port}", **COMMON),
        HttpCheck(name="h", kind="http", url=https.url("/status/200", host="localhost"), **COMMON),
    ):
        result = await run_probe(check, v)
        assert result.ok, (check.kind, result.failure)
        assert proxied_phases(result) and result.facts["proxy_reply"] == 0
    assert len(re.findall(rf"tcp/connect \[: .* -> .*\.{https.port}\b", socks.log())) >= 3


async def test_bind_sets_the_source_of_the_connection_to_the_proxy(serve, vantage):  # noqa: F811
    proxy = await serve(HttpProxy())
    target = await serve(HttpServer())
    check = TcpCheck(name="t", kind="tcp", target=target.address, **COMMON)
    result = await run_probe(check, through(proxy.url, vantage, bind="127.0.0.2"))
    assert result.ok, result.failure
    assert proxy.asked[-1].peer == "127.0.0.2"


async def test_a_proxy_check_from_a_proxy_vantage_chains_them(tiny, socks, serve, pki, vantage):  # noqa: F811
    https = await serve(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
    check = ProxyCheck(name="px", kind="proxy", proxy=socks.url, url=https.url("/status/200", host="localhost"), **COMMON)
    result = await run_probe(check, through(tiny.url, vantage))
    assert result.ok, result.failure
    assert (result.facts["proxy"], result.facts["proxy_reply"]) == (socks.url, 0)  # the last hop answered
    assert went_through(tiny, socks.port)  # tinyproxy carried the way to dante
    assert re.search(rf"-> .*\.{https.port}\b", socks.log())  # and dante the way to the target


async def test_failing_vantage_proxy_is_named(vantage):  # noqa: F811
    check = TcpCheck(name="t", kind="tcp", target="localhost:80", **COMMON)
    result = await run_probe(check, through(f"http://127.0.0.1:{closed_port()}", vantage))
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "proxy_connect")
    assert set(result.phases) == {"proxy_connect"}


async def test_udp_dns_cannot_leave_through_a_proxy(vantage, caplog):  # noqa: F811
    # The config refuses it (tests/configs/invalid/proxy_vantage_udp_dns.yaml); a vantage built
    # in code gets a clear failure, never a query sent from here instead of from the proxy.
    check = DnsCheck(name="d", kind="dns", query=NAME, resolvers=["udp://127.0.0.1:53"], **COMMON)
    results = await measure(check, through("http://127.0.0.1:9", vantage))
    assert results[0].failure.cls == "internal_error"
    assert "carries TCP streams only" in results[0].failure.detail


def test_vantages_from_config_carry_the_proxy() -> None:
    cfg = load_config_text(
        """
vantages:
  - {name: local}
  - {name: corp, via: "socks5h://proxy.corp:1080", auth_env: CORP_PROXY, bind: 127.0.0.1}
"""
    )
    corp = vantages_from_config(cfg)["corp"]
    assert corp.via == (Proxy("socks5h", "proxy.corp", 1080, auth_env="CORP_PROXY"),)
    assert (corp.bind, corp.via[0].url, corp.via[0].resolves_names) == ("127.0.0.1", "socks5h://proxy.corp:1080", True)
    assert vantages_from_config(cfg)["local"].via == ()
