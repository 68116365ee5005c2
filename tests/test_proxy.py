"""The proxy check against real proxies on loopback — tinyproxy (HTTP CONNECT and forward) and
dante (SOCKS5) from Debian — and Python proxies that misbehave on demand (407, 502, a close
mid-handshake, junk, SOCKS5 reply codes): proxy behaviour -> class, operation and facts."""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest

from monitor.config import ProxyCheck
from monitor.probes import probe_proxy, run_probe
from monitor.vantage import Vantage
from tests.conftest import require
from tests.servers import tcp
from tests.servers.http import HttpServer
from tests.servers.proxy_debian import DebianProxy, missing, tinyproxy
from tests.servers.proxy_python import HttpProxy, Socks5Proxy
from tests.servers.tcp import TcpServer, closed_port, server_context

SECRET = ("alice", "s3cret-never-shown")


@pytest.fixture(scope="module")
def tiny_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebianProxy]:
    reason = missing("tinyproxy")
    require(reason is None, reason or "")
    with tinyproxy(tmp_path_factory.mktemp("tinyproxy-auth"), credentials=SECRET) as proxy:
        yield proxy


@pytest.fixture
async def https(serve, pki) -> HttpServer:
    return await serve(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))


def proxy_check(proxy: str, **kw) -> ProxyCheck:
    fields = dict(name="px", kind="proxy", proxy=proxy, interval=60, timeout=3, read_timeout=1, vantages=["local"])
    return ProxyCheck(**(fields | kw))


async def run(check: ProxyCheck, vantage: Vantage):
    return await probe_proxy(check, vantage, deadline=time.monotonic() + check.timeout)


# --- real proxies --------------------------------------------------------------------------------


async def test_connect_then_tls_through_tinyproxy(tiny, https, vantage):
    result = await run(proxy_check(tiny.url, target=f"localhost:{https.port}"), vantage)
    assert result.ok, result.failure
    assert set(result.phases) == {"proxy_connect", "proxy_handshake", "tls"}
    f = result.facts
    assert (f["proxy"], f["proxy_ip"], f["proxy_status"], f["mode"]) == (tiny.url, "127.0.0.1", 200, "connect")
    assert f["verified"] is True and f["subject"] == "CN=localhost"
    assert "ip" not in f  # the proxy resolved the name; the address it chose is not known here
    assert f"CONNECT localhost:{https.port}" in tiny.log()  # sent by name: remote DNS


async def test_request_through_the_tunnel(tiny, https, vantage):
    result = await run(proxy_check(tiny.url, url=https.url("/status/200", host="localhost")), vantage)
    assert result.ok, result.failure
    assert set(result.phases) == {"proxy_connect", "proxy_handshake", "tls", "ttfb", "transfer"}
    assert (result.facts["status_code"], result.facts["proxy_status"]) == (200, 200)
    assert https.requests[-1].target == "/status/200"


async def test_target_status_through_the_tunnel_is_the_targets(tiny, https, vantage):
    result = await run(proxy_check(tiny.url, url=https.url("/status/500", host="localhost")), vantage)
    assert (result.failure.cls, result.failure.operation) == ("http_status", "http_round_trip")
    assert result.facts["proxy_status"] == 200  # the proxy did its part


async def test_forward_get_through_tinyproxy(tiny, serve, vantage):
    origin = await serve(HttpServer())
    result = await run(proxy_check(tiny.url, mode="forward", url=origin.url("/status/200")), vantage)
    assert result.ok, result.failure
    assert set(result.phases) == {"proxy_connect", "ttfb", "transfer"}
    assert result.facts["proxy_ip"] == "127.0.0.1" and "ip" not in result.facts
    assert origin.requests[-1].target == "/status/200"
    assert f"GET {origin.url('/status/200')}" in tiny.log()


async def test_tinyproxy_cannot_reach_the_target(tiny, vantage):
    port = closed_port()
    connect = await run(proxy_check(tiny.url, target=f"127.0.0.1:{port}"), vantage)
    assert (connect.failure.cls, connect.failure.operation) == ("proxy_error", "proxy_connect")
    assert connect.facts["proxy_status"] == 500 and "500" in connect.failure.detail
    forward = await run(proxy_check(tiny.url, mode="forward", url=f"http://127.0.0.1:{port}/"), vantage)
    assert (forward.failure.cls, forward.facts["proxy_status"]) == ("proxy_error", 500)


@pytest.mark.parametrize("mode", ["connect", "forward"])
async def test_tinyproxy_basic_auth(tiny_with_auth, serve, vantage, monkeypatch, tmp_path, mode):
    origin = await serve(HttpServer())
    where = dict(url=origin.url("/status/200")) if mode == "forward" else dict(target=origin.address, tls=False)
    check = proxy_check(tiny_with_auth.url, mode=mode, **where)

    without = await run(check, vantage)
    assert (without.failure.cls, without.failure.operation) == ("proxy_auth_required", "proxy_connect")
    assert without.facts["proxy_status"] == 407

    monkeypatch.setenv("TEST_PROXY_AUTH", "alice:wrong")
    wrong = await run(check.model_copy(update={"auth_env": "TEST_PROXY_AUTH"}), vantage)
    # tinyproxy refuses wrong credentials with 401, not 407. Answering a CONNECT, only the
    # proxy can have said it; answering a forwarded GET, the origin could have as well.
    assert wrong.failure.cls == ("proxy_auth_required" if mode == "connect" else "http_status")
    assert wrong.facts.get("proxy_status", wrong.facts.get("status_code")) == 401

    secret_file = tmp_path / "proxy-auth"
    secret_file.write_text(":".join(SECRET) + "\n")
    right = await run(check.model_copy(update={"auth_file": str(secret_file)}), vantage)
    assert right.ok, right.failure
    for result in (without, wrong, right):
        assert SECRET[1] not in json.dumps(result.to_json()) and "wrong" not in json.dumps(result.to_json())


async def test_socks5_through_dante(socks, https, vantage):
    result = await run(proxy_check(socks.url, target=f"localhost:{https.port}"), vantage)
    assert result.ok, result.failure
    assert set(result.phases) == {"proxy_connect", "proxy_handshake", "tls"}
    assert result.facts["proxy_reply"] == 0
    assert f".{https.port}" in socks.log()  # dante logs the destination as ADDRESS.PORT


async def test_socks5_target_refused_is_the_targets_failure(socks, vantage):
    result = await run(proxy_check(socks.url, target=f"127.0.0.1:{closed_port()}", tls=False), vantage)
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "connect")
    assert result.facts["proxy_reply"] == 5


# --- misbehaving proxies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, cls",
    [(407, "proxy_auth_required"), (502, "proxy_error"), (403, "proxy_error"), (503, "proxy_error")],
)
async def test_connect_refused_with_a_status(serve, vantage, status, cls):
    proxy = await serve(HttpProxy("status", status=status))
    result = await run(proxy_check(proxy.url, target="example.test:443"), vantage)
    assert (result.failure.cls, result.failure.operation) == (cls, "proxy_connect")
    assert result.facts["proxy_status"] == status and str(status) in result.failure.detail
    assert set(result.phases) == {"proxy_connect", "proxy_handshake"}


@pytest.mark.parametrize(
    "scheme, proxy_server, cls",
    [
        ("http", lambda: HttpProxy("close"), "eof_error"),
        ("http", lambda: HttpProxy("junk"), "proxy_error"),
        ("http", lambda: Socks5Proxy(), "proxy_error"),  # a SOCKS5 proxy asked to CONNECT
        ("http", lambda: TcpServer(tcp.reset_after_first_bytes), "connection_reset"),
        ("http", lambda: TcpServer(tcp.silent), "generic_timeout_error"),
        ("socks5h", lambda: Socks5Proxy("close"), "eof_error"),
        ("socks5h", lambda: Socks5Proxy("not_socks"), "proxy_error"),
        ("socks5h", lambda: TcpServer(tcp.reset_after_first_bytes), "connection_reset"),
        ("socks5h", lambda: TcpServer(tcp.silent), "generic_timeout_error"),
    ],
    ids=["http-close", "http-junk", "http-to-socks", "http-reset", "http-silent", "socks-close", "socks-not-socks", "socks-reset", "socks-silent"],
)
async def test_proxy_breaking_the_handshake(serve, vantage, scheme, proxy_server, cls):
    proxy = await serve(proxy_server())
    result = await run(proxy_check(f"{scheme}://{proxy.address}", target="example.test:443", connect_timeout=0.3), vantage)
    assert (result.failure.cls, result.failure.operation) == (cls, "proxy_connect")
    assert "proxy_handshake" in result.phases


async def test_proxy_not_listening(vantage):
    result = await run(proxy_check(f"http://127.0.0.1:{closed_port()}", target="example.test:443"), vantage)
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "proxy_connect")
    assert set(result.phases) == {"proxy_connect"}


@pytest.mark.parametrize(
    "reply, cls, operation",
    [
        (1, "proxy_error", "proxy_connect"),
        (2, "proxy_error", "proxy_connect"),
        (3, "network_unreachable", "connect"),
        (4, "host_unreachable", "connect"),
        (5, "connection_refused", "connect"),
        (6, "generic_timeout_error", "connect"),
        (7, "proxy_error", "proxy_connect"),
    ],
)
async def test_socks5_reply_codes(serve, vantage, reply, cls, operation):
    proxy = await serve(Socks5Proxy("reply", reply=reply))
    result = await run(proxy_check(proxy.url(), target="example.test:443"), vantage)
    assert (result.failure.cls, result.failure.operation) == (cls, operation)
    assert result.facts["proxy_reply"] == reply and f"reply {reply}" in result.failure.detail


async def test_socks5_credentials(serve, https, vantage, monkeypatch):
    proxy = await serve(Socks5Proxy(credentials=SECRET))
    check = proxy_check(proxy.url(), target=f"localhost:{https.port}")
    without = await run(check, vantage)
    assert (without.failure.cls, without.failure.operation) == ("proxy_auth_required", "proxy_connect")

    monkeypatch.setenv("TEST_SOCKS_AUTH", "alice:nope")
    wrong = await run(check.model_copy(update={"auth_env": "TEST_SOCKS_AUTH"}), vantage)
    assert wrong.failure.cls == "proxy_auth_required" and wrong.facts["proxy_auth_status"] == 1

    monkeypatch.setenv("TEST_SOCKS_AUTH", ":".join(SECRET))
    right = await run(check.model_copy(update={"auth_env": "TEST_SOCKS_AUTH"}), vantage)
    assert right.ok, right.failure
    assert proxy.asked[-1].credentials == SECRET
    assert SECRET[1] not in json.dumps(right.to_json())


async def test_unset_credentials_are_named_not_shown(serve, vantage, monkeypatch):
    proxy = await serve(HttpProxy(credentials=SECRET))
    monkeypatch.delenv("TEST_UNSET_AUTH", raising=False)
    result = await run(proxy_check(proxy.url, target="example.test:443", auth_env="TEST_UNSET_AUTH"), vantage)
    assert (result.failure.cls, result.failure.operation) == ("proxy_auth_required", "proxy_connect")
    assert "environment variable TEST_UNSET_AUTH is not set" in result.failure.detail
    assert proxy.asked == []  # nothing was sent without the credentials it was told to use


@pytest.mark.parametrize("scheme, address_type, sent", [("socks5h", 3, "localhost"), ("socks5", 1, "127.0.0.1")])
async def test_socks5_vs_socks5h_name_resolution(serve, https, vantage, scheme, address_type, sent):
    proxy = await serve(Socks5Proxy())
    result = await run(proxy_check(proxy.url(scheme), target=f"localhost:{https.port}"), vantage)
    assert result.ok, result.failure
    assert (proxy.asked[-1].address_type, proxy.asked[-1].target) == (address_type, f"{sent}:{https.port}")
    assert ("ip" in result.facts) == (scheme == "socks5")  # resolved here, so known here


async def test_connect_to_asks_the_proxy_for_the_address(serve, https, vantage):
    proxy = await serve(HttpProxy())
    result = await run(proxy_check(proxy.url, target=f"localhost:{https.port}", connect_to="127.0.0.1"), vantage)
    assert result.ok, result.failure
    assert proxy.asked[-1].target == f"127.0.0.1:{https.port}"
    assert result.facts["ip"] == "127.0.0.1" and result.facts["subject"] == "CN=localhost"  # SNI still the name


async def test_through_the_runner(vantage):
    check = proxy_check(f"http://127.0.0.1:{closed_port()}", target="example.test:443")
    result = await run_probe(check, vantage)
    assert (result.kind, result.target) == ("proxy", f"example.test:443 via {check.proxy}")
    assert result.failure.operation == "proxy_connect"
