"""One probe run in progress: its clock, deadline, phases and facts, then its ProbeResult.

The steps every kind shares (pick an address, connect, handshake) live here so that tcp, tls
and http record phases, phase deadlines and `facts.ip` the same way. A failed step still
records the time it took before failing: a connect that timed out after 3 s shows 3 s.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Literal, Sequence

from monitor.config import Check
from monitor.model import Failure, Phase, ProbeResult, utcnow
from monitor.probes import _net
from monitor.vantage import Vantage


class Measurement:
    def __init__(self, check: Check, vantage: Vantage, deadline: float):
        self.check = check
        self.vantage = vantage
        self.deadline = deadline  # time.monotonic() by which the whole probe must end
        self.started_at = utcnow()
        self._clock = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.facts: dict[str, object] = {}

    def limit(self, which: Literal["connect", "tls", "read"]) -> float:
        """Seconds the next step of this kind may take: its phase timeout, capped by the deadline."""
        return _net.budget(self.check.phase_timeout(which), self.deadline)

    def add(self, phase: Phase, seconds: float) -> None:
        """Phases add up: an HTTP probe that follows redirects sums them, as blackbox_exporter does."""
        self.phases[phase.value] = self.phases.get(phase.value, 0.0) + seconds

    async def open(self, host: str, port: int, connect_to: str | None) -> tuple[socket.socket, str]:
        """Resolve `host` (unless `connect_to` or an IP literal says where) and connect;
        the connected socket and the address it is connected to."""
        if connect_to:
            ip = connect_to
        elif _net.is_ip(host):
            ip = host
        else:
            try:
                ips, seconds = await _net.resolve(host, self.vantage, _net.budget(self.check.timeout, self.deadline))
            except _net.NetError as e:
                self.add(Phase.RESOLVE, e.elapsed)
                raise
            self.add(Phase.RESOLVE, seconds)
            ip = ips[0]  # one address, the resolver's first choice, named in facts.ip
        self.facts["ip"] = ip
        try:
            sock, seconds = await _net.connect(ip, port, self.vantage, self.limit("connect"))
        except _net.NetError as e:
            self.add(Phase.CONNECT, e.elapsed)
            raise
        self.add(Phase.CONNECT, seconds)
        return sock, ip

    async def handshake(self, sock: socket.socket, server_hostname: str | None, alpn: Sequence[str], context: ssl.SSLContext) -> _net.TLSConn:
        try:
            conn, seconds = await _net.tls_handshake(sock, server_hostname, context, alpn, self.limit("tls"))
        except _net.NetError as e:
            self.add(Phase.TLS, e.elapsed)
            raise
        self.add(Phase.TLS, seconds)
        return conn

    def result(self, failure: Failure | None = None) -> ProbeResult:
        return ProbeResult(
            check=self.check.name,
            kind=self.check.kind,
            vantage=self.vantage.name,
            target=self.check.display_target,
            started_at=self.started_at,
            ok=failure is None,
            duration_s=time.perf_counter() - self._clock,
            phases=self.phases,
            failure=failure,
            facts=self.facts,
        )
