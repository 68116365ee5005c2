"""One probe run in progress: its clock, deadline, phases and facts, then its ProbeResult.

The steps every kind shares (pick an address, connect, handshake) live here so that tcp, tls
and http record phases, phase deadlines and `facts.ip` the same way. A failed step still
records the time it took before failing: a connect that timed out after 3 s shows 3 s.

Through proxies (the vantage's `via`, plus the proxy a proxy check tests) `open` connects to
the first proxy (timed as proxy_connect) and has each proxy set up the tunnel to the next hop
and the last one to the target (proxy_handshake); every kind that connects through `open`
is proxied alike. The target's name then goes to the proxy, which resolves it (remote DNS),
unless `connect_to` gives the address or the proxy is socks5:// (resolved here, as curl does).

Every TLS handshake made through `handshake` records the chain the server presented in
facts.tls_chains, by server name ("" for none): its issuer, leaf fingerprint and whether it
verified — also when verification failed. That is what tells an intercepting middlebox
(a chain that verifies elsewhere and not here) from a server with a broken certificate.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
import uuid
from typing import Any, Literal, Sequence

from monitor.config import Check
from monitor.model import Failure, FailureClass, Operation, Phase, ProbeResult, utcnow
from monitor.probes import _net, _proxy_tunnel
from monitor.vantage import Proxy, Vantage


class Measurement:
    def __init__(self, check: Check, vantage: Vantage, deadline: float):
        self.check = check
        self.vantage = vantage
        self.deadline = deadline  # time.monotonic() by which the whole probe must end
        self.started_at = utcnow()
        self._clock = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.facts: dict[str, object] = {}
        # The proxies this measurement's connections go through, first hop first: the
        # vantage's, to which the proxy check appends the proxy it tests.
        self.via: tuple[Proxy, ...] = vantage.via

    def limit(self, which: Literal["connect", "tls", "read"]) -> float:
        """Seconds the next step of this kind may take: its phase timeout, capped by the deadline."""
        return _net.budget(self.check.phase_timeout(which), self.deadline)

    def add(self, phase: Phase, seconds: float) -> None:
        """Phases add up: an HTTP probe that follows redirects sums them, as blackbox_exporter does."""
        key = phase._value_  # the plain str; Enum.value is a slow property, and this runs per phase
        self.phases[key] = self.phases.get(key, 0.0) + seconds

    async def address(self, host: str, connect_to: str | None) -> str | None:
        """The IP a connection to `host` goes to (named in facts.ip): `connect_to`, an IP
        literal, or the system resolver's first answer — or None when the last proxy is sent
        the name and resolves it itself."""
        if connect_to:
            ip = connect_to
        elif _net.is_ip(host):
            ip = host
        elif self.via and self.via[-1].resolves_names:
            return None
        else:
            ip = (await self.resolve(host))[0]  # one address, the resolver's first choice
        self.facts["ip"] = ip
        return ip

    async def resolve(self, host: str) -> list[str]:
        """The vantage's addresses for `host`, the time taken recorded as the resolve phase
        (also when the lookup fails)."""
        try:
            ips, seconds = await _net.resolve(host, self.vantage, _net.budget(self.check.timeout, self.deadline))
        except _net.NetError as e:
            self.add(Phase.RESOLVE, e.elapsed)
            raise
        self.add(Phase.RESOLVE, seconds)
        return ips

    async def open(self, host: str, port: int, connect_to: str | None, *, then: Operation) -> tuple[socket.socket, str]:
        """Connect to `host` (at `address`), directly or through the proxies; the connected
        socket and its peer: the IP, or `host` itself when a proxy resolved the name.

        `then` is the operation that follows the connect. A connect() that fails with a reset
        came after the handshake completed (Linux reports a reset in SYN-SENT as a refusal),
        so it is reported under `then`: the connection was made, what came next was reset."""
        ip = await self.address(host, connect_to)
        if self.via:
            return await self._through_proxies(ip or host, port), ip or host
        assert ip is not None  # only a proxy leaves the address to be found
        try:
            sock, seconds = await _net.connect(ip, port, self.vantage, self.limit("connect"))
        except _net.NetError as e:
            self.add(Phase.CONNECT, e.elapsed)
            if reset_after_connect(e) and then is not Operation.CONNECT:
                raise _net.NetError(dataclasses.replace(e.failure, operation=then), e.elapsed) from e
            raise
        self.add(Phase.CONNECT, seconds)
        return sock, ip

    async def _through_proxies(self, host: str, port: int) -> socket.socket:
        first = self.via[0]
        self.facts["proxy"] = first.url
        spent = 0.0
        try:
            if _net.is_ip(first.host):
                proxy_ip = first.host
            else:
                ips, spent = await _net.resolve(first.host, self.vantage, self.limit("connect"))
                proxy_ip = ips[0]
            self.facts["proxy_ip"] = proxy_ip
            sock, seconds = await _net.connect(proxy_ip, first.port, self.vantage, self.limit("connect"))
        except _net.NetError as e:  # finding or reaching the proxy: the operation says so
            self.add(Phase.PROXY_CONNECT, spent + e.elapsed)
            raise _net.NetError(dataclasses.replace(e.failure, operation=Operation.PROXY_CONNECT), e.elapsed) from e
        self.add(Phase.PROXY_CONNECT, spent + seconds)
        hops = [(p.host, p.port) for p in self.via[1:]] + [(host, port)]
        try:
            for proxy, (next_host, next_port) in zip(self.via, hops):
                self.facts["proxy"] = proxy.url  # the proxy that answered last, or failed
                try:
                    seconds, answer = await _proxy_tunnel.open_tunnel(sock, proxy, next_host, next_port, self.limit("connect"))
                except _proxy_tunnel.TunnelError as e:
                    self.add(Phase.PROXY_HANDSHAKE, e.elapsed)
                    self.facts.update(e.facts)
                    raise
                self.add(Phase.PROXY_HANDSHAKE, seconds)
                self.facts.update(answer)
        except BaseException:
            sock.close()
            raise
        return sock

    async def handshake(self, sock: socket.socket, server_hostname: str | None, alpn: Sequence[str], context: ssl.SSLContext) -> _net.TLSConn:
        try:
            conn, seconds = await _net.tls_handshake(sock, server_hostname, context, alpn, self.limit("tls"))
        except _net.NetError as e:
            self.add(Phase.TLS, e.elapsed)
            if e.tls is not None:
                self._chain(server_hostname, e.tls)
            raise
        self.add(Phase.TLS, seconds)
        self._chain(server_hostname, conn.info)
        return conn

    def _chain(self, server_hostname: str | None, info: _net.TLSInfo) -> None:
        if not info.chain_sha256:
            return  # no certificate came back
        chains = self.facts.setdefault("tls_chains", {})
        assert isinstance(chains, dict)
        chains[server_hostname or ""] = {"issuer": info.issuer, "leaf_sha256": info.chain_sha256[0], "verified": info.verified}

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


class Round:
    """A run of a round-based kind (dns, site): its id, shared by every result of the run,
    and the clock of the whole round, which its summary result reports."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.started_at = utcnow()
        self._clock = time.perf_counter()

    def summary(self, check: Check, vantage: Vantage, results: Sequence[ProbeResult], facts: dict[str, Any]) -> ProbeResult:
        """The round's last result, before judgement: ok if every result of the round is, its
        failure the first failed one's. The judge step (monitor/judgement.py) then gives it
        its verdict, and its ok and failure by what the verdict rests on."""
        failed = next((r.failure for r in results if r.failure is not None), None)
        return ProbeResult(
            check=check.name,
            kind=check.kind,
            vantage=vantage.name,
            target=check.display_target,
            started_at=self.started_at,
            ok=failed is None,
            duration_s=time.perf_counter() - self._clock,
            failure=failed,
            facts={"round_id": self.id, **facts},
        )


def reset_after_connect(e: _net.NetError) -> bool:
    """A connect that failed with a reset: the handshake had completed (see Measurement.open)."""
    return e.failure.cls is FailureClass.CONNECTION_RESET and e.failure.operation is Operation.CONNECT
