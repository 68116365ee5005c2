"""SNI experiment (a tls check with `control_sni`): the same address handshaken with the
target's SNI, with a control SNI and with no SNI, each on a fresh connection, so that an SNI
filter (the target reset or dropped after its ClientHello while the control completes on the
same IP) is told apart from a server that is down or an address that is blocked outright.

Order: the control first, before any trigger of ours could taint it; then the target and
no-SNI in random order, so that neither always inherits what the other left behind.

Residual blocking: after a trigger — a reset, EOF or timeout after a ClientHello left —
censors such as the GFW block new connections to the same (dst IP, dst port) for minutes.
So every attempt after a trigger within a run is marked `contaminated`, and RESIDUAL
remembers each (vantage, dst IP, dst port)'s last trigger across runs: within the check's
`holdoff` the control is not sent there (its outcome says it was skipped and for how much
longer) and the attempts that do run are marked contaminated. This memory lives in the
process, module-level and keyed per vantage; the probe never touches the store. Through a
proxy that resolves names the address is not known here: the key is then the host name and
the attempts may reach different addresses of it (give connect_to to pin one).

The check's result is the target attempt's, as without the experiment; every attempt's
outcome is in facts.sni_experiment, in the order run. A completed handshake and a failed
certificate verification both mean the ServerHello (and the certificate) came back, hence
`server_hello`: a control name the server has no certificate for still proves the path open.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from monitor.config import TlsCheck, split_host_port
from monitor.model import Failure, FailureClass, Operation, ProbeResult
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError, TLSInfo
from monitor.vantage import Vantage

F = FailureClass

# What a censor's reaction to a ClientHello looks like from here.
_TRIGGERS = {F.CONNECTION_RESET, F.EOF_ERROR, F.GENERIC_TIMEOUT_ERROR}
# Failures that need the server's certificate, hence its ServerHello.
_CERTIFICATE_CHECKED = {F.SSL_INVALID_HOSTNAME, F.SSL_UNKNOWN_AUTHORITY, F.SSL_INVALID_CERTIFICATE}

Key = tuple[str, str, int]  # (vantage, dst IP — or the name a proxy resolves —, dst port)


class ResidualBlocking:
    """When each (vantage, dst, port) last saw a trigger; entries older than the longest
    hold-off asked about are dropped, so the map holds only recently triggered addresses."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._triggered: dict[Key, float] = {}
        self._longest = 0.0

    def remaining(self, key: Key, holdoff: float) -> float:
        """Seconds left of `key`'s hold-off; 0 when it is clear."""
        self._longest = max(self._longest, holdoff)
        at = self._triggered.get(key)
        return 0.0 if at is None else max(0.0, at + holdoff - self._clock())

    def trigger(self, key: Key, holdoff: float) -> None:
        now = self._clock()
        self._longest = max(self._longest, holdoff)
        self._triggered = {k: t for k, t in self._triggered.items() if now - t < self._longest}
        self._triggered[key] = now


RESIDUAL = ResidualBlocking()


async def sni_experiment(
    check: TlsCheck, vantage: Vantage, *, deadline: float, residual: ResidualBlocking, shuffle: Callable[[list[Any]], None] = random.shuffle
) -> ProbeResult:
    """`shuffle` puts the attempts after the control in their order (tests pass a fixed one)."""
    assert check.control_sni is not None
    m = Measurement(check, vantage, deadline)
    host, port = split_host_port(check.target)
    target_sni = check.sni or host
    m.facts.update(sni=target_sni, control_sni=check.control_sni)
    try:
        ip = await m.address(host, check.connect_to)  # once: every attempt goes to this address
    except NetError as e:
        m.facts["sni_experiment"] = []
        return m.result(e.failure)
    key = (vantage.name, ip or host, port)
    held = residual.remaining(key, check.holdoff)
    contaminated = held > 0
    rest: list[tuple[str, str | None]] = [("target", target_sni), ("none", None)]
    shuffle(rest)
    plan = [("control", check.control_sni), *rest]

    outcomes: list[dict[str, Any]] = []
    target: tuple[Measurement, Failure | None, TLSInfo | None] | None = None
    for i, (label, sni) in enumerate(plan):
        if label == "control" and held > 0:
            outcomes.append(_skipped(label, sni, held))
            continue
        # An equal share of the time left, so a dropped handshake cannot starve the next one.
        a = Measurement(check, vantage, _share(deadline, len(plan) - i))
        failure, info = await _attempt(a, host, port, ip, sni, check)
        outcomes.append(_outcome(label, sni, failure, info, contaminated))
        if _is_trigger(failure, info):
            residual.trigger(key, check.holdoff)
            contaminated = True
        if label == "target":
            target = (a, failure, info)
    assert target is not None  # the target attempt always runs

    attempt, failure, info = target
    for phase, seconds in attempt.phases.items():
        m.phases[phase] = m.phases.get(phase, 0.0) + seconds
    m.facts.update(attempt.facts)
    if info is not None:
        m.facts.update(info.facts())
    m.facts["sni_experiment"] = outcomes
    return m.result(failure)


async def _attempt(a: Measurement, host: str, port: int, ip: str | None, sni: str | None, check: TlsCheck) -> tuple[Failure | None, TLSInfo | None]:
    """One handshake on a fresh connection; None as sni sends none (the chain is still verified)."""
    try:
        sock, _ = await a.open(host, port, ip)
    except NetError as e:
        return e.failure, None
    try:
        conn = await a.handshake(sock, sni, check.alpn, a.vantage.verify_context)
    except NetError as e:
        return e.failure, e.tls
    finally:
        sock.close()
    return None, conn.info


def _share(deadline: float, attempts_left: int) -> float:
    now = time.monotonic()
    return now + max(0.0, deadline - now) / attempts_left


def _after_client_hello(failure: Failure | None, info: TLSInfo | None) -> bool:
    return failure is not None and failure.operation == Operation.TLS_HANDSHAKE and info is not None and info.after_client_hello is not None


def _is_trigger(failure: Failure | None, info: TLSInfo | None) -> bool:
    return _after_client_hello(failure, info) and failure is not None and failure.cls in _TRIGGERS


def _outcome(label: str, sni: str | None, failure: Failure | None, info: TLSInfo | None, contaminated: bool) -> dict[str, Any]:
    presented = info is not None and bool(info.chain_sha256)
    elapsed = info.after_client_hello if info is not None else None
    return {
        "label": label,
        "sni": sni,
        "skipped": None,
        # A failure in the handshake means the connection (or the tunnel) was up.
        "connected": failure is None or failure.operation == Operation.TLS_HANDSHAKE,
        "after_client_hello": _after_client_hello(failure, info),
        "server_hello": failure is None or failure.cls in _CERTIFICATE_CHECKED,
        "class": failure.cls.value if failure else None,
        "operation": failure.operation.value if failure else None,
        "detail": failure.detail if failure else None,
        "cert": {"subject": info.subject, "issuer": info.issuer, "sha256": info.chain_sha256[0]} if presented and info else None,
        # From the ClientHello leaving to the handshake's end: the failure, or completion.
        "ms_after_client_hello": round(elapsed * 1000, 3) if elapsed is not None else None,
        "contaminated": contaminated,
    }


def _skipped(label: str, sni: str | None, remaining: float) -> dict[str, Any]:
    outcome = _outcome(label, sni, None, None, contaminated=False)
    outcome.update(
        skipped={"reason": "residual_blocking_holdoff", "remaining_s": round(remaining, 3)},
        connected=False,
        server_hello=False,
    )
    return outcome
