"""run_probe: the deadline, the common result fields, and the last-resort guards."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from monitor.config import HttpCheck, TcpCheck, TlsCheck
from monitor.model import ProbeResult
from monitor.probes import _MAIN_OPERATION, PROBES, run_probe
from tests.servers import tcp
from tests.servers.http import HttpServer
from tests.servers.tcp import TcpServer

COMMON = dict(interval=60, timeout=2, vantages=["local"])


def test_every_kind_has_a_probe_and_a_main_operation():
    assert {"tcp", "tls", "http"} <= set(PROBES)
    assert set(_MAIN_OPERATION) == set(PROBES)


async def test_result_carries_check_vantage_agent_and_time(serve, vantage):
    server = await serve(HttpServer())
    checks = [
        TcpCheck(name="c-tcp", kind="tcp", target=server.address, **COMMON),
        TlsCheck(name="c-tls", kind="tls", target=server.address, tls_timeout=0.3, **COMMON),  # fails: plain HTTP
        HttpCheck(name="c-http", kind="http", url=server.url("/status/200"), **COMMON),
    ]
    for check in checks:
        before = datetime.now(timezone.utc)
        result = await run_probe(check, vantage, agent="probe-1")
        assert (result.check, result.kind, result.vantage, result.target, result.agent) == (
            check.name, check.kind, "local", check.display_target, "probe-1"
        )
        assert before <= result.started_at <= datetime.now(timezone.utc)
        assert result.duration_s >= sum(result.phases.values()) > 0
        assert ProbeResult.from_json(result.to_json()).to_json() == result.to_json()


async def test_probe_that_overruns_its_deadline_is_cut(monkeypatch, vantage):
    async def stuck(check, vantage, *, deadline):
        await asyncio.sleep(10)

    monkeypatch.setitem(PROBES, "tcp", stuck)
    check = TcpCheck(name="stuck", kind="tcp", target="127.0.0.1:9", **(COMMON | {"timeout": 0.1}))
    result = await run_probe(check, vantage)
    assert (result.failure.cls, result.failure.operation) == ("generic_timeout_error", "connect")
    assert "overran" in result.failure.detail
    assert (result.check, result.vantage) == ("stuck", "local")


async def test_a_bug_becomes_internal_error_and_is_logged(monkeypatch, vantage, caplog):
    async def broken(check, vantage, *, deadline):
        raise KeyError("oops")

    monkeypatch.setitem(PROBES, "tls", broken)
    check = TlsCheck(name="broken", kind="tls", target="127.0.0.1:9", **COMMON)
    with caplog.at_level(logging.ERROR, logger="monitor.probes"):
        result = await run_probe(check, vantage, agent="a")
    assert (result.failure.cls, result.failure.operation) == ("internal_error", "tls_handshake")
    assert "KeyError" in result.failure.detail and result.agent == "a"
    assert "Traceback" in caplog.text and "oops" in caplog.text


async def test_silent_server_is_timed_out_by_the_probe_not_the_guard(serve, vantage):
    server = await serve(TcpServer(tcp.silent))
    check = TlsCheck(name="t", kind="tls", target=server.address, **(COMMON | {"timeout": 0.3}))
    result = await run_probe(check, vantage)
    assert (result.failure.cls, result.failure.operation) == ("generic_timeout_error", "tls_handshake")
    assert "overran" not in result.failure.detail
