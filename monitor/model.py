"""The result model shared by every part of monitor (DESIGN §3.2–§3.4). No I/O here.

A probe turns what the network did into a :class:`ProbeResult`: a success bit, the time
spent in each phase, a :class:`Failure` (closed class + the operation it happened in),
facts about what was seen, and — for checks that compare — a :class:`Verdict`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any


class Operation(StrEnum):
    """Where in a measurement a failure happened (OONI's `operation`)."""

    RESOLVE = "resolve"
    DNS_ROUND_TRIP = "dns_round_trip"
    CONNECT = "connect"
    PROXY_CONNECT = "proxy_connect"
    TLS_HANDSHAKE = "tls_handshake"
    HTTP_ROUND_TRIP = "http_round_trip"
    READ = "read"
    VERIFY = "verify"


class FailureClass(StrEnum):
    """Closed failure vocabulary, spelled as OONI spells it where one exists."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    GENERIC_TIMEOUT_ERROR = "generic_timeout_error"
    EOF_ERROR = "eof_error"
    HOST_UNREACHABLE = "host_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    DNS_NXDOMAIN_ERROR = "dns_nxdomain_error"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_SERVFAIL_ERROR = "dns_servfail_error"
    # No answer for now, cause unknown (getaddrinfo's EAI_AGAIN: no resolver reachable, or
    # one that timed out or failed): OONI's spelling.
    DNS_TEMPORARY_FAILURE = "dns_temporary_failure"
    DNS_REFUSED_ERROR = "dns_refused_error"
    DNS_BOGON_ERROR = "dns_bogon_error"
    DNS_REPLY_WITH_WRONG_QUERY_ID = "dns_reply_with_wrong_query_id"
    DNS_MALFORMED = "dns_malformed"
    SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
    SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
    SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
    SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
    HTTP_STATUS = "http_status"
    HTTP_PROTOCOL_ERROR = "http_protocol_error"
    PROXY_ERROR = "proxy_error"
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    SUMDB_VERIFICATION_FAILED = "sumdb_verification_failed"
    MODULE_NOT_FOUND = "module_not_found"
    BAD_MODULE_ZIP = "bad_module_zip"
    RESPONSE_TOO_LARGE = "response_too_large"
    INTERNAL_ERROR = "internal_error"


class Phase(StrEnum):
    """Timed phases a result may carry in `phases` (seconds)."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    PROXY_CONNECT = "proxy_connect"
    PROXY_HANDSHAKE = "proxy_handshake"
    TLS = "tls"
    DNS_ROUND_TRIP = "dns_round_trip"
    TTFB = "ttfb"
    TRANSFER = "transfer"


class VerdictName(StrEnum):
    OK = "ok"
    DNS_POISONING = "dns_poisoning"
    DNS_BLOCKING = "dns_blocking"
    ENCRYPTED_DNS_BLOCKED = "encrypted_dns_blocked"
    IP_BLOCKING = "ip_blocking"
    SNI_BLOCKING = "sni_blocking"
    RST_INJECTION = "rst_injection"
    TLS_MITM = "tls_mitm"
    HTTP_BLOCKING = "http_blocking"
    PROXY_FAILURE = "proxy_failure"
    MODULE_TAMPERED = "module_tampered"
    DEGRADED = "degraded"
    # Failing round after round with no cause established (no comparison to make, or none
    # that explains it): never reported as ok, so a lone agent still opens an episode.
    FAILING = "failing"
    SERVER_DOWN = "server_down"
    INCONCLUSIVE = "inconclusive"


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class Failure:
    cls: FailureClass
    operation: Operation
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"class": self.cls.value, "operation": self.operation.value, "detail": self.detail}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Failure:
        return cls(FailureClass(d["class"]), Operation(d["operation"]), d.get("detail", ""))


@dataclass(frozen=True, slots=True)
class Verdict:
    name: VerdictName
    confidence: Confidence
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name.value, "confidence": self.confidence.value, "evidence": list(self.evidence)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        return cls(VerdictName(d["name"]), Confidence(d["confidence"]), tuple(d.get("evidence", ())))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_time(t: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, as in DESIGN §3.2."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(slots=True)
class ProbeResult:
    """One measurement of one check from one vantage.

    `id` is a random UUID fixed at creation so that a result replayed from a spool is
    stored once (idempotent insert); `agent` names the process that measured it.
    """

    check: str
    kind: str
    vantage: str
    target: str
    started_at: datetime
    ok: bool
    duration_s: float
    phases: dict[str, float] = field(default_factory=dict)
    failure: Failure | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict | None = None
    agent: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        """The §3.2 object. `verdict` appears only on checks that compare."""
        d: dict[str, Any] = {
            "check": self.check,
            "kind": self.kind,
            "vantage": self.vantage,
            "target": self.target,
            "started_at": format_time(self.started_at),
            "ok": self.ok,
            "duration_s": round(self.duration_s, 6),
            "phases": {k: round(v, 6) for k, v in self.phases.items()},
            "failure": self.failure.to_json() if self.failure else None,
            "facts": self.facts,
        }
        if self.verdict is not None:
            d["verdict"] = self.verdict.to_json()
        d["agent"] = self.agent
        d["id"] = self.id
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProbeResult:
        return cls(
            check=d["check"],
            kind=d["kind"],
            vantage=d["vantage"],
            target=d["target"],
            started_at=parse_time(d["started_at"]),
            ok=bool(d["ok"]),
            duration_s=float(d["duration_s"]),
            phases=dict(d.get("phases") or {}),
            failure=Failure.from_json(d["failure"]) if d.get("failure") else None,
            facts=dict(d.get("facts") or {}),
            verdict=Verdict.from_json(d["verdict"]) if d.get("verdict") else None,
            agent=d.get("agent", ""),
            id=d.get("id") or uuid.uuid4().hex,
        )
