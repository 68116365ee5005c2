"""TCP probe: can the vantage open a connection to host:port? Refused, reset, timed out and
unreachable are told apart by the connect primitive's classification."""

from __future__ import annotations

from monitor.config import TcpCheck, split_host_port
from monitor.model import Operation, ProbeResult
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.vantage import Vantage


async def probe_tcp(check: TcpCheck, vantage: Vantage, *, deadline: float) -> ProbeResult:
    m = Measurement(check, vantage, deadline)
    host, port = split_host_port(check.target)
    m.facts["port"] = port
    try:
        # A reset right after the handshake is what the peer did with the open connection.
        sock, _ = await m.open(host, port, check.connect_to, then=Operation.READ)
    except NetError as e:
        return m.result(e.failure)
    sock.close()
    return m.result()
