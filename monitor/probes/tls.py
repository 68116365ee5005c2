"""TLS probe: connect, then handshake with SNI (check.sni, else the target's host) and ALPN,
verifying against the vantage's roots. The facts describe the certificate chain as the server
presented it, also when verification failed — that chain is the evidence for a verdict.
With `control_sni` the check runs the SNI experiment instead (see _sni.py): one result, the
target's, with every handshake's outcome side by side in facts.sni_experiment."""

from __future__ import annotations

from monitor.config import TlsCheck, split_host_port
from monitor.model import Operation, ProbeResult
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.probes._sni import RESIDUAL, ResidualBlocking, sni_experiment
from monitor.vantage import Vantage


async def probe_tls(check: TlsCheck, vantage: Vantage, *, deadline: float, residual: ResidualBlocking | None = None) -> ProbeResult:
    """`residual`: where triggers are remembered for the hold-off; the process-wide RESIDUAL by default."""
    if check.control_sni is not None:
        return await sni_experiment(check, vantage, deadline=deadline, residual=RESIDUAL if residual is None else residual)
    m = Measurement(check, vantage, deadline)
    host, port = split_host_port(check.target)
    sni = check.sni or host
    m.facts["sni"] = sni
    try:
        sock, _ = await m.open(host, port, check.connect_to, then=Operation.TLS_HANDSHAKE)
        try:
            conn = await m.handshake(sock, sni, check.alpn, vantage.verify_context)
        finally:
            sock.close()
    except NetError as e:
        if e.tls is not None:
            m.facts.update(e.tls.facts())
        return m.result(e.failure)
    m.facts.update(conn.info.facts())
    return m.result()
