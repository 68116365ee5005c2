"""TCP probe against real loopback servers: what the server did -> ok / class / operation."""

from __future__ import annotations

import socket
import time

from monitor.config import TcpCheck
from monitor.probes import probe_tcp
from monitor.vantage import Vantage
from tests.servers.tcp import TcpServer, closed_port, full_backlog, silent


def tcp_check(target: str, **kw) -> TcpCheck:
    fields = dict(name="t", kind="tcp", target=target, interval=60, timeout=2, vantages=["local"])
    return TcpCheck(**(fields | kw))


def deadline_for(check: TcpCheck) -> float:
    return time.monotonic() + check.timeout


async def test_open_port_connects(serve, vantage):
    server = await serve(TcpServer(silent))
    check = tcp_check(server.address)
    result = await probe_tcp(check, vantage, deadline=deadline_for(check))
    assert result.ok and result.failure is None
    assert result.facts == {"ip": "127.0.0.1", "port": server.port}
    assert set(result.phases) == {"connect"}
    assert (result.check, result.kind, result.vantage, result.target) == ("t", "tcp", "local", server.address)


async def test_name_is_resolved_first(serve, vantage):
    first = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]  # ::1 on some hosts
    server = await serve(TcpServer(silent, host=first))
    check = tcp_check(f"localhost:{server.port}")
    result = await probe_tcp(check, vantage, deadline=deadline_for(check))
    assert result.ok, result.failure
    assert set(result.phases) == {"resolve", "connect"}
    assert result.facts["ip"] == first


async def test_connect_to_skips_resolution(serve, vantage):
    # .invalid never resolves: if the probe tried, it would fail (and leave loopback).
    server = await serve(TcpServer(silent))
    check = tcp_check(f"never-resolved.invalid:{server.port}", connect_to="127.0.0.1")
    result = await probe_tcp(check, vantage, deadline=deadline_for(check))
    assert result.ok
    assert "resolve" not in result.phases
    assert result.facts["ip"] == "127.0.0.1"


async def test_ipv6_loopback(serve, vantage):
    server = await serve(TcpServer(silent, host="::1"))
    check = tcp_check(server.address)
    result = await probe_tcp(check, vantage, deadline=deadline_for(check))
    assert result.ok, result.failure
    assert result.facts["ip"] == "::1"


async def test_closed_port_is_refused(vantage):
    check = tcp_check(f"127.0.0.1:{closed_port()}")
    result = await probe_tcp(check, vantage, deadline=deadline_for(check))
    assert not result.ok
    assert (result.failure.cls, result.failure.operation) == ("connection_refused", "connect")
    assert "connect" in result.phases


async def test_unanswered_syn_times_out_at_connect_timeout(vantage):
    with full_backlog() as port:
        check = tcp_check(f"127.0.0.1:{port}", connect_timeout=0.3)
        result = await probe_tcp(check, vantage, deadline=deadline_for(check))
    assert (result.failure.cls, result.failure.operation) == ("generic_timeout_error", "connect")
    assert "0.3s" in result.failure.detail


async def test_deadline_caps_the_connect_timeout(serve, vantage):
    server = await serve(TcpServer(silent))
    check = tcp_check(server.address)  # connect_timeout defaults to the 2 s timeout
    result = await probe_tcp(check, vantage, deadline=time.monotonic() - 1)  # already spent
    assert (result.failure.cls, result.failure.operation) == ("generic_timeout_error", "connect")
    assert result.failure.detail == "no time left before the probe's deadline"


async def test_source_address_missing_on_this_host(vantage):
    # 192.0.2.1 (TEST-NET-1) is not ours: bind() fails before any packet leaves.
    check = tcp_check("127.0.0.1:9")
    result = await probe_tcp(check, Vantage(name="bound", bind="192.0.2.1"), deadline=deadline_for(check))
    assert (result.failure.cls, result.failure.operation) == ("network_unreachable", "connect")
    assert "EADDRNOTAVAIL" in result.failure.detail
    assert result.vantage == "bound"
