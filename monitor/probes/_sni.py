"""SNI experiment (a tls check with `control_sni`): the same address handshaken with the
target's SNI, with a control SNI and with no SNI, each on a fresh connection, so that an SNI
filter (the target reset or dropped after its ClientHello while the control completes on the
same IP) is told apart from a server that is down or an address that is blocked outright.

Order: the control first, before any trigger of ours could taint it; then the target and
no-SNI in random order, so that neither always inherits what the other left behind.

Residual blocking: after a trigger — a reset, EOF or timeout after a ClientHello left —
censors such as the GFW block new connections to the same (dst IP, dst port) for minutes.
So every attempt after a trigger within a run is marked `contaminated` (also one during
which another check triggered on the same address), and RESIDUAL remembers, per (vantage,
dst IP, dst port), the last trigger and the last control that completed there, across runs
and checks. Within the check's `holdoff` after a trigger the control is not sent again: the
last completed control is carried forward instead (the skipped outcome names it, with its
age), as long as it is at most `control_max_age` old. With no such control the control is
sent anyway, first, and marked contaminated: if it completes, it is the fresh comparison
(a completed handshake proves the path open whatever came before); if it fails, it proves
nothing. The attempts that run within the hold-off are marked contaminated. This memory
lives in the process, keyed per vantage; an agent starting again (or `probe --once`)
recalls it from its stored results (ResidualBlocking.recall). The probe never touches the
store. Through a proxy that resolves names the address is not known here: the key is then
the host name and the attempts may reach different addresses of it (give connect_to to pin
one).

The check's result is the target attempt's, as without the experiment; every attempt's
outcome is in facts.sni_experiment, in the order run. A completed handshake and a failed
certificate verification both mean the ServerHello (and the certificate) came back, hence
`server_hello`: a control name the server has no certificate for still proves the path open.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from monitor.config import TlsCheck, split_host_port
from monitor.model import Failure, FailureClass, Operation, ProbeResult, format_time, utcnow
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError, TLSInfo
from monitor.vantage import Vantage

F = FailureClass

# What a censor's reaction to a ClientHello looks like from here (site.py's GET uses the same).
TRIGGERS = {F.CONNECTION_RESET, F.EOF_ERROR, F.GENERIC_TIMEOUT_ERROR}
# Failures that need the server's certificate, hence its ServerHello.
_CERTIFICATE_CHECKED = {F.SSL_INVALID_HOSTNAME, F.SSL_UNKNOWN_AUTHORITY, F.SSL_INVALID_CERTIFICATE}

Key = tuple[str, str, int]  # (vantage, dst IP — or the name a proxy resolves —, dst port)


@dataclass(frozen=True)
class Carried:
    """The last control that completed on an address, carried forward while it is held off."""

    sni: str | None
    age_s: float

    def facts(self) -> dict[str, Any]:
        completed = utcnow() - timedelta(seconds=self.age_s)
        return {"sni": self.sni, "age_s": round(self.age_s, 3), "completed_at": format_time(completed)}


class ResidualBlocking:
    """Per (vantage, dst, port): when a trigger was last seen there, and when (and with which
    name) a control handshake last completed there. Entries older than the longest hold-off
    or control age asked about are dropped, so the map holds only recent addresses."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._triggered: dict[Key, float] = {}
        self._controls: dict[Key, tuple[str | None, float]] = {}
        self._longest = 0.0

    def remaining(self, key: Key, holdoff: float) -> float:
        """Seconds left of `key`'s hold-off; 0 when it is clear."""
        self._longest = max(self._longest, holdoff)
        at = self._triggered.get(key)
        return 0.0 if at is None else max(0.0, at + holdoff - self.clock())

    def triggered_ago(self, key: Key) -> float | None:
        at = self._triggered.get(key)
        return None if at is None else self.clock() - at

    def triggered_since(self, key: Key, since: float) -> bool:
        at = self._triggered.get(key)
        return at is not None and at >= since

    def trigger(self, key: Key, holdoff: float, *, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        self._longest = max(self._longest, holdoff)
        self._prune()
        self._triggered[key] = max(at, self._triggered.get(key, at))

    def control_completed(self, key: Key, sni: str | None, *, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        known = self._controls.get(key)
        if known is None or known[1] <= at:
            self._controls[key] = (sni, at)

    def last_control(self, key: Key, max_age: float) -> Carried | None:
        """The last control that completed on `key`, if at most `max_age` old."""
        self._longest = max(self._longest, max_age)
        known = self._controls.get(key)
        if known is None:
            return None
        age = self.clock() - known[1]
        return Carried(known[0], age) if age <= max_age else None

    def recall(self, results: Iterable[ProbeResult]) -> None:
        """Learn triggers and completed controls from stored results of SNI experiments (a tls
        check's, or a site round's handshakes): what an agent that starts again, or a one-off
        `probe --once`, must know of the rounds before it. Times are the runs' start times."""
        now_wall, now = utcnow(), self.clock()
        for r in results:
            outcomes = r.facts.get("sni_experiment")
            address = r.facts.get("ip")
            if not outcomes or not address:
                continue
            try:
                _, port = split_host_port(r.target)
            except ValueError:
                continue
            key = (r.vantage, str(address), port)
            at = now - (now_wall - r.started_at).total_seconds()
            for o in outcomes:
                if o.get("trigger"):
                    self._triggered[key] = max(at, self._triggered.get(key, at))
                if o.get("label") == "control" and o.get("server_hello") and not o.get("skipped"):
                    self.control_completed(key, o.get("sni"), at=at)

    def _prune(self) -> None:
        now = self.clock()
        self._triggered = {k: t for k, t in self._triggered.items() if now - t < self._longest}
        self._controls = {k: c for k, c in self._controls.items() if now - c[1] < self._longest}


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
    carried = residual.last_control(key, check.control_max_age) if held > 0 else None
    if held > 0:
        m.facts["holdoff"] = {"remaining_s": round(held, 3), "triggered_s_ago": round(residual.triggered_ago(key) or 0.0, 3)}
    contaminated = held > 0
    rest: list[tuple[str, str | None]] = [("target", target_sni), ("none", None)]
    shuffle(rest)
    plan = [("control", check.control_sni), *rest]

    outcomes: list[dict[str, Any]] = []
    target: tuple[Measurement, Failure | None, TLSInfo | None] | None = None
    for i, (label, sni) in enumerate(plan):
        if label == "control" and carried is not None:
            outcomes.append(_skipped(label, sni, held, carried))
            continue
        # An equal share of the time left, so a dropped handshake cannot starve the next one.
        a = Measurement(check, vantage, _share(deadline, len(plan) - i))
        started = residual.clock()
        failure, info = await _attempt(a, host, port, ip, sni, check)
        trigger = _is_trigger(failure, info)
        # Another check's trigger on the same address while this attempt ran taints it too.
        tainted = contaminated or residual.triggered_since(key, started)
        outcomes.append(_outcome(label, sni, failure, info, tainted, trigger))
        if trigger:
            residual.trigger(key, check.holdoff)
            contaminated = True
        if label == "control" and outcomes[-1]["server_hello"]:
            residual.control_completed(key, sni)
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
        sock, _ = await a.open(host, port, ip, then=Operation.TLS_HANDSHAKE)
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
    return _after_client_hello(failure, info) and failure is not None and failure.cls in TRIGGERS


def _outcome(label: str, sni: str | None, failure: Failure | None, info: TLSInfo | None, contaminated: bool, trigger: bool = False) -> dict[str, Any]:
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
        # Looked like a censor's reaction to the ClientHello: arms the hold-off on this address.
        "trigger": trigger,
    }


def _skipped(label: str, sni: str | None, remaining: float, carried: Carried) -> dict[str, Any]:
    outcome = _outcome(label, sni, None, None, contaminated=False)
    outcome.update(
        skipped={"reason": "residual_blocking_holdoff", "remaining_s": round(remaining, 3)},
        connected=False,
        server_hello=False,
        carried=carried.facts(),
    )
    return outcome
