"""A connect() that fails with ECONNRESET came after the TCP handshake completed (Linux
reports a reset in SYN-SENT as ECONNREFUSED): each probe reports it under the operation that
follows the connect. The kernel's timing cannot be forced on loopback (the server's RST comes
long after asyncio has read the connect's outcome), so the connect primitive is made to
report what the kernel would; everything above it is the probes' real code."""

from __future__ import annotations

import errno
import time

import pytest

from monitor.config import HttpCheck, TcpCheck, TlsCheck
from monitor.probes import _net, probe_http, probe_tcp, probe_tls
from monitor.probes._classify import classify
from monitor.model import Failure, Operation


@pytest.fixture
def connect_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect(ip, port, vantage, timeout):
        cls, detail = classify(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
        raise _net.NetError(Failure(cls, Operation.CONNECT, detail), 0.001)

    monkeypatch.setattr(_net, "connect", connect)


COMMON = dict(name="c", interval=60, timeout=2, vantages=["local"])


@pytest.mark.parametrize("check, probe, operation", [
    (TcpCheck(kind="tcp", target="127.0.0.1:9", **COMMON), probe_tcp, "read"),
    (TlsCheck(kind="tls", target="127.0.0.1:9", **COMMON), probe_tls, "tls_handshake"),
    (TlsCheck(kind="tls", target="example.test:9", connect_to="127.0.0.1", control_sni="control.test", **COMMON), probe_tls, "tls_handshake"),
    (HttpCheck(kind="http", url="https://127.0.0.1:9/", **COMMON), probe_http, "tls_handshake"),
    (HttpCheck(kind="http", url="http://127.0.0.1:9/", **COMMON), probe_http, "http_round_trip"),
], ids=["tcp", "tls", "tls-sni-experiment", "https", "http"])
async def test_a_reset_just_after_the_handshake_is_the_next_operation_s(connect_resets, vantage, check, probe, operation):
    result = await probe(check, vantage, deadline=time.monotonic() + check.timeout)
    assert (result.failure.cls.value, result.failure.operation.value) == ("connection_reset", operation)
    assert "connect" in result.phases  # the connect itself was timed
