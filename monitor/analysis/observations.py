"""Results -> observations: what one round of a `site` check saw, layer by layer, as plain
values the verdict rules can reason about (OONI's minipipeline does the same between its
measurements and its analysis). Pure functions, no I/O.

A site round's results (monitor/probes/site.py) all carry facts.round_id, facts.attempt and
facts.role:
  role "resolver"   one per resolver and attempt (a dns probe result: addresses, injection, ...)
  role "handshake"  one per answered address and attempt (a tls probe result with
                    facts.sni_experiment: the target / control / no-SNI outcomes on that address)
  role "fetch"      the HTTPS GET of an attempt (an http probe result)
  role "summary"    the last result: kind "site", the verdict, and what other vantages need
                    to compare with this one (see PeerView).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.model import FailureClass, ProbeResult

F = FailureClass

ENCRYPTED = ("tls", "https")
# A certificate came back but did not verify: a ServerHello was seen.
CERTIFICATE_FAILURES = frozenset({F.SSL_INVALID_HOSTNAME.value, F.SSL_UNKNOWN_AUTHORITY.value, F.SSL_INVALID_CERTIFICATE.value})


@dataclass(frozen=True)
class Resolution:
    """One resolver's answer in one attempt."""

    resolver: str
    transport: str
    outcome: str  # answer | nxdomain | no_answer | error
    failure: str | None  # the failure class, if any
    addresses: tuple[str, ...] = ()  # every address its replies carried (accepted first)
    operation: str | None = None  # where it failed: resolve = the DoT/DoH server's own name, never contacted
    injection: bool = False  # two differing UDP replies to one query

    @property
    def encrypted(self) -> bool:
        return self.transport in ENCRYPTED


@dataclass(frozen=True)
class Handshake:
    """One TLS attempt on one address: the target SNI, the control SNI, or none."""

    ip: str
    label: str  # target | control | none
    sni: str | None
    failure: str | None  # failure class; None = completed and verified
    operation: str | None
    connected: bool  # TCP (or the tunnel) was up
    after_client_hello: bool  # failed after our ClientHello left
    server_hello: bool  # a certificate came back (completed, or failed verification)
    issuer: str | None = None
    leaf_sha256: str | None = None
    skipped: bool = False  # not sent: the address is in its residual-blocking hold-off
    contaminated: bool = False  # sent after a trigger on the same address

    @property
    def verified(self) -> bool:
        return not self.skipped and self.failure is None

    @property
    def untrusted_certificate(self) -> bool:
        return self.failure in CERTIFICATE_FAILURES


@dataclass(frozen=True)
class Fetch:
    ip: str | None
    failure: str | None
    operation: str | None
    status: int | None


@dataclass(frozen=True)
class Attempt:
    number: int
    resolutions: tuple[Resolution, ...] = ()
    handshakes: tuple[Handshake, ...] = ()
    fetch: Fetch | None = None

    def on(self, ip: str, label: str) -> Handshake | None:
        for h in self.handshakes:
            if h.ip == ip and h.label == label:
                return h
        return None

    @property
    def ips(self) -> list[str]:
        return list(dict.fromkeys(h.ip for h in self.handshakes))

    @property
    def failed(self) -> bool:
        """Anything at all went wrong in this attempt."""
        return (
            any(r.failure is not None or r.injection for r in self.resolutions)
            or any(not h.skipped and h.failure is not None for h in self.handshakes)
            or (self.fetch is not None and self.fetch.failure is not None)
        )


@dataclass(frozen=True)
class PeerView:
    """What another vantage's latest site round says (read from its summary result's facts)."""

    vantage: str
    agent: str
    verdict: str | None
    connected: bool  # some TCP connection to the domain's addresses came up
    verified: bool  # some handshake with the domain's SNI verified
    leaves: frozenset[str] = frozenset()  # leaf certificates that verified for the domain
    proven_ips: frozenset[str] = frozenset()
    reached_resolvers: frozenset[str] = frozenset()  # resolvers (specs) that answered
    fetched: bool = False  # the HTTPS GET succeeded


def attempts_of(results: Iterable[ProbeResult]) -> list[Attempt]:
    """The attempts of one site round, in order, from its sub-results."""
    by_number: dict[int, dict[str, list[Any]]] = {}
    for r in results:
        role, number = r.facts.get("role"), r.facts.get("attempt")
        if not isinstance(number, int) or role not in ("resolver", "handshake", "fetch"):
            continue
        parts = by_number.setdefault(number, {"resolver": [], "handshake": [], "fetch": []})
        if role == "resolver":
            parts["resolver"].append(resolution(r))
        elif role == "handshake":
            parts["handshake"] += handshakes(r)
        else:
            parts["fetch"].append(fetch(r))
    return [
        Attempt(n, tuple(p["resolver"]), tuple(p["handshake"]), p["fetch"][0] if p["fetch"] else None)
        for n, p in sorted(by_number.items())
    ]


def resolution(r: ProbeResult) -> Resolution:
    if r.failure is None:
        outcome = "answer"
    elif r.failure.cls is F.DNS_NXDOMAIN_ERROR:
        outcome = "nxdomain"
    elif r.failure.cls is F.DNS_NO_ANSWER:
        outcome = "no_answer"
    else:
        outcome = "error"
    seen = list(r.facts.get("addresses") or ())
    for reply in r.facts.get("replies") or ():  # replies that lost the race still name their addresses
        if reply.get("status") in ("accepted", "duplicate"):
            seen += reply.get("addresses") or ()
    return Resolution(
        resolver=r.target,
        transport=str(r.facts.get("transport", "")),
        outcome=outcome,
        failure=r.failure.cls.value if r.failure else None,
        operation=r.failure.operation.value if r.failure else None,
        addresses=tuple(dict.fromkeys(seen)),
        injection=bool(r.facts.get("injection")),
    )


def handshakes(r: ProbeResult) -> list[Handshake]:
    ip = str(r.facts.get("ip", ""))
    found = []
    for o in r.facts.get("sni_experiment") or ():
        cert = o.get("cert") or {}
        found.append(
            Handshake(
                ip=ip,
                label=o["label"],
                sni=o.get("sni"),
                failure=o.get("class"),
                operation=o.get("operation"),
                connected=bool(o.get("connected")),
                after_client_hello=bool(o.get("after_client_hello")),
                server_hello=bool(o.get("server_hello")),
                issuer=cert.get("issuer"),
                leaf_sha256=cert.get("sha256"),
                skipped=o.get("skipped") is not None,
                contaminated=bool(o.get("contaminated")),
            )
        )
    return found


def fetch(r: ProbeResult) -> Fetch:
    status = r.facts.get("status_code")
    return Fetch(
        ip=r.facts.get("ip"),
        failure=r.failure.cls.value if r.failure else None,
        operation=r.failure.operation.value if r.failure else None,
        status=status if isinstance(status, int) else None,
    )


@dataclass(frozen=True)
class RoundFacts:
    """What a summary result records so that other vantages can compare with it."""

    connected: bool
    verified: bool
    leaves: tuple[str, ...]
    proven_ips: tuple[str, ...]
    reached_resolvers: tuple[str, ...]
    fetched: bool

    def to_facts(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "verified": self.verified,
            "verified_leaves": list(self.leaves),
            "proven_ips": list(self.proven_ips),
            "reached_resolvers": list(self.reached_resolvers),
            "fetched": self.fetched,
        }


def round_facts(attempts: Sequence[Attempt]) -> RoundFacts:
    hs = [h for a in attempts for h in a.handshakes if not h.skipped]
    verified_targets = [h for h in hs if h.label == "target" and h.verified]
    return RoundFacts(
        connected=any(h.connected for h in hs),
        verified=bool(verified_targets),
        leaves=tuple(dict.fromkeys(h.leaf_sha256 for h in verified_targets if h.leaf_sha256)),
        proven_ips=tuple(dict.fromkeys(h.ip for h in verified_targets)),
        reached_resolvers=tuple(dict.fromkeys(r.resolver for a in attempts for r in a.resolutions if r.outcome != "error")),
        fetched=any(a.fetch is not None and a.fetch.failure is None for a in attempts),
    )


def peer_view(summary: ProbeResult) -> PeerView:
    f = summary.facts
    return PeerView(
        vantage=summary.vantage,
        agent=summary.agent,
        verdict=summary.verdict.name.value if summary.verdict else None,
        connected=bool(f.get("connected")),
        verified=bool(f.get("verified")),
        leaves=frozenset(f.get("verified_leaves") or ()),
        proven_ips=frozenset(f.get("proven_ips") or ()),
        reached_resolvers=frozenset(f.get("reached_resolvers") or ()),
        fetched=bool(f.get("fetched")),
    )
