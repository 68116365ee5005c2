"""Results -> observations: what one run saw, layer by layer, as plain values the verdict
rules can reason about (OONI's minipipeline does the same between its measurements and its
analysis). Pure functions, no I/O.

A site round's results (monitor/probes/site.py) all carry facts.round_id, facts.attempt and
facts.role:
  role "resolver"   one per resolver and attempt (a dns probe result: addresses, injection, ...)
  role "handshake"  one per answered address and attempt (a tls probe result with
                    facts.sni_experiment: the target / control / no-SNI outcomes on that address)
  role "fetch"      the HTTPS GET of an attempt (an http probe result)
  role "summary"    the last result: kind "site"; the judge step gives it the verdict and what
                    other vantages need to compare with this one (RoundFacts, read as PeerView).
A tls check with control_sni is one such handshake on its own: `attempt_of_experiment`.

What another vantage saw of the same check — any kind — is a PeerView (`peer_view`): how far
it got (resolved, connected, verified, fetched), which chains it was shown, whether it is a
named control. Layers are ordered as Censored Planet orders them: resolve, connect, TLS, then
what rides on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.model import FailureClass, Operation, ProbeResult, VerdictName

F = FailureClass
O = Operation  # noqa: E741
V = VerdictName

ENCRYPTED = ("tls", "https")
# A certificate came back but did not verify: a ServerHello was seen.
CERTIFICATE_FAILURES = frozenset({F.SSL_INVALID_HOSTNAME.value, F.SSL_UNKNOWN_AUTHORITY.value, F.SSL_INVALID_CERTIFICATE.value})
PROXY_FAILURES = frozenset({F.PROXY_ERROR.value, F.PROXY_AUTH_REQUIRED.value})
# Verdicts that say a vantage's own path is interfered with: such a vantage is no clean control.
INTERFERED = frozenset({
    V.DNS_POISONING.value, V.DNS_BLOCKING.value, V.ENCRYPTED_DNS_BLOCKED.value, V.IP_BLOCKING.value, V.SNI_BLOCKING.value,
    V.RST_INJECTION.value, V.TLS_MITM.value, V.HTTP_BLOCKING.value, V.PROXY_FAILURE.value, V.MODULE_TAMPERED.value,
})

# How far a measurement got when it failed during an operation: 0 resolve, 1 connect, 2 TLS,
# 3 the exchange riding on it, 4 checking what came back.
LAYER = {
    O.RESOLVE.value: 0, O.DNS_ROUND_TRIP.value: 0, O.PROXY_CONNECT.value: 1, O.CONNECT.value: 1,
    O.TLS_HANDSHAKE.value: 2, O.HTTP_ROUND_TRIP.value: 3, O.READ.value: 3, O.VERIFY.value: 4,
}
ANYWHERE, RESOLVED, CONNECTED, VERIFIED, FETCHED = 0, 1, 2, 3, 5  # layers a peer got past (0: nothing needed)


def seen_addresses(r: ProbeResult) -> list[str]:
    """Every address a resolver's replies carried, the accepted one's first (the dns probe's
    facts.seen_addresses; for results stored before it, rebuilt from addresses and replies)."""
    if "seen_addresses" in r.facts:
        return list(r.facts["seen_addresses"] or ())
    seen = list(r.facts.get("addresses") or ())
    for reply in r.facts.get("replies") or ():
        if reply.get("status") in ("accepted", "duplicate"):
            seen += reply.get("addresses") or ()
    return list(dict.fromkeys(seen))


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
    contaminated: bool = False  # sent within a hold-off, or after (or while) a trigger on the same address
    trigger: bool = False  # looked like a censor's reaction to the ClientHello
    carried_age: float | None = None  # skipped control: age (s) of the last control completed there
    held: bool = False  # the address was in its hold-off when the run began (a trigger came before)

    @property
    def verified(self) -> bool:
        return not self.skipped and self.failure is None

    @property
    def untrusted_certificate(self) -> bool:
        return self.failure in CERTIFICATE_FAILURES

    @property
    def proves_path(self) -> bool:
        """A control that shows the address reachable for a name other than the target's:
        one that got a ServerHello now (even within a hold-off: a completed handshake proves
        the path, whatever came before), or one carried forward from earlier."""
        return (not self.skipped and self.server_hello) or (self.skipped and self.carried_age is not None)

    def describe(self) -> str:
        if self.skipped and self.carried_age is not None:
            return f"control {self.sni} completed on the same address {self.carried_age:.0f} s ago (carried forward: held off since a trigger)"
        return f"control {self.sni} completed on the same address"


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
        """Something the check is about went wrong in this attempt: a resolver, the target SNI's
        handshake, the GET. A failing control or no-SNI handshake weakens what can be concluded
        about the address, but does not fail a site that works."""
        return (
            any(r.failure is not None or r.injection for r in self.resolutions)
            or any(h.label == "target" and not h.skipped and h.failure is not None for h in self.handshakes)
            or (self.fetch is not None and self.fetch.failure is not None)
        )


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


def attempt_of_experiment(r: ProbeResult) -> Attempt:
    """A tls check's SNI experiment as a one-address attempt (no resolvers, no GET)."""
    return Attempt(1, (), tuple(handshakes(r)), None)


def resolution(r: ProbeResult) -> Resolution:
    return Resolution(
        resolver=r.target,
        transport=str(r.facts.get("transport", "")),
        outcome=outcome(r),
        failure=r.failure.cls.value if r.failure else None,
        operation=r.failure.operation.value if r.failure else None,
        addresses=tuple(seen_addresses(r)),
        injection=bool(r.facts.get("injection")),
    )


def outcome(r: ProbeResult) -> str:
    """What one resolver said: answer, nxdomain, no_answer, or error (it did not answer)."""
    if r.failure is None:
        return "answer"
    if r.failure.cls is F.DNS_NXDOMAIN_ERROR:
        return "nxdomain"
    if r.failure.cls is F.DNS_NO_ANSWER:
        return "no_answer"
    return "error"


def handshakes(r: ProbeResult) -> list[Handshake]:
    ip = str(r.facts.get("ip", ""))
    held = "holdoff" in r.facts
    found = []
    for o in r.facts.get("sni_experiment") or ():
        cert = o.get("cert") or {}
        carried = o.get("carried") or {}
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
                trigger=bool(o.get("trigger")),
                carried_age=carried.get("age_s") if isinstance(carried.get("age_s"), (int, float)) else None,
                held=held,
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


# ---------------------------------------------------------------------------------------------
# What other vantages saw


@dataclass(frozen=True)
class Chain:
    """A certificate chain a server presented for a name (leaf fingerprint and issuer)."""

    sni: str | None
    leaf: str
    issuer: str | None
    verified: bool


@dataclass(frozen=True)
class PeerView:
    """What another vantage's latest run of the same check says (read from its result)."""

    vantage: str
    agent: str
    verdict: str | None
    connected: bool  # some TCP connection to the target came up
    verified: bool  # got past TLS: a chain for the target's name verified (or the check has no TLS)
    leaves: frozenset[str] = frozenset()  # leaf certificates that verified for the target's name
    proven_ips: frozenset[str] = frozenset()
    reached_resolvers: frozenset[str] = frozenset()  # resolvers (specs) that answered
    fetched: bool = False  # the whole measurement worked: the GET, the module, the refs
    control: bool = False  # a named control: a vantage known to be clean
    resolved: bool = True  # it got addresses for the target (or did not need to)
    chains: tuple[Chain, ...] = ()  # every chain it was shown, verified or not
    failure: str | None = None  # class@operation of its failure, for evidence

    @property
    def name(self) -> str:
        return f"{self.vantage}@{self.agent}" if self.agent else self.vantage

    @property
    def clean(self) -> bool:
        """A control that is itself interfered with (or whose proxy failed) proves nothing."""
        return self.control and self.verdict not in INTERFERED

    def got_past(self, layer: int) -> bool:
        return {ANYWHERE: True, RESOLVED: self.resolved, CONNECTED: self.connected, VERIFIED: self.verified, FETCHED: self.fetched}[layer]

    def verified_chains(self, sni: str | None = None) -> list[Chain]:
        return [c for c in self.chains if c.verified and (sni is None or c.sni == sni)]


@dataclass(frozen=True)
class RoundFacts:
    """What a site summary records so that other vantages can compare with it."""

    connected: bool
    verified: bool
    leaves: tuple[str, ...]
    proven_ips: tuple[str, ...]
    reached_resolvers: tuple[str, ...]
    fetched: bool
    chains: tuple[Chain, ...] = ()

    def to_facts(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "verified": self.verified,
            "verified_leaves": list(self.leaves),
            "proven_ips": list(self.proven_ips),
            "reached_resolvers": list(self.reached_resolvers),
            "fetched": self.fetched,
            "chains": [{"sni": c.sni, "leaf_sha256": c.leaf, "issuer": c.issuer, "verified": c.verified} for c in self.chains],
        }


def round_facts(attempts: Sequence[Attempt]) -> RoundFacts:
    hs = [h for a in attempts for h in a.handshakes if not h.skipped]
    verified_targets = [h for h in hs if h.label == "target" and h.verified]
    chains = {
        (h.sni, h.leaf_sha256): Chain(h.sni, h.leaf_sha256, h.issuer, h.verified)
        for h in hs if h.label == "target" and h.leaf_sha256
    }
    return RoundFacts(
        connected=any(h.connected for h in hs),
        verified=bool(verified_targets),
        leaves=tuple(dict.fromkeys(h.leaf_sha256 for h in verified_targets if h.leaf_sha256)),
        proven_ips=tuple(dict.fromkeys(h.ip for h in verified_targets)),
        reached_resolvers=tuple(dict.fromkeys(r.resolver for a in attempts for r in a.resolutions if r.outcome != "error")),
        fetched=any(a.fetch is not None and a.fetch.failure is None for a in attempts),
        chains=tuple(chains.values()),
    )


def peer_view(result: ProbeResult, *, control: bool = False) -> PeerView:
    """Another vantage's latest run of a check, whatever its kind: a site summary, a dns
    comparison, a tls check's SNI experiment, or a single result."""
    f = result.facts
    common = {
        "vantage": result.vantage, "agent": result.agent, "control": control,
        "verdict": result.verdict.name.value if result.verdict else None,
        "failure": f"{result.failure.cls.value}@{result.failure.operation.value}" if result.failure else None,
    }
    if result.kind == "site":
        chains = tuple(Chain(c.get("sni"), c["leaf_sha256"], c.get("issuer"), bool(c.get("verified"))) for c in f.get("chains") or ())
        if not chains:  # stored before chains were recorded
            chains = tuple(Chain(None, leaf, None, True) for leaf in f.get("verified_leaves") or ())
        reached = frozenset(f.get("reached_resolvers") or ())
        return PeerView(
            connected=bool(f.get("connected")), verified=bool(f.get("verified")), leaves=frozenset(c.leaf for c in chains if c.verified),
            proven_ips=frozenset(f.get("proven_ips") or ()), reached_resolvers=reached, fetched=bool(f.get("fetched")),
            resolved=bool(reached) or bool(f.get("connected")), chains=chains, **common,
        )
    if f.get("role") == "comparison":  # a dns round: how far it got is which resolvers answered
        reached = frozenset(s["resolver"] for s in f.get("resolvers") or () if s.get("failure") in (None, F.DNS_NXDOMAIN_ERROR.value, F.DNS_NO_ANSWER.value))
        return PeerView(connected=bool(reached), verified=bool(reached), reached_resolvers=reached, fetched=result.ok,
                        resolved=bool(reached), **common)
    chains = tuple(
        Chain(sni or None, c["leaf_sha256"], c.get("issuer"), bool(c.get("verified")))
        for sni, c in (f.get("tls_chains") or {}).items() if isinstance(c, dict) and c.get("leaf_sha256")
    )
    if "sni_experiment" in f:
        experiment = handshakes(result)
        target = next((h for h in experiment if h.label == "target"), None)
        return PeerView(
            connected=any(h.connected for h in experiment if not h.skipped), verified=target is not None and target.verified,
            leaves=frozenset(c.leaf for c in chains if c.verified), fetched=result.ok, resolved=bool(experiment) or result.ok,
            chains=chains, **common,
        )
    reached = LAYER.get(result.failure.operation.value, 4) if result.failure else 5
    return PeerView(
        connected=reached >= 2, verified=reached >= 3, leaves=frozenset(c.leaf for c in chains if c.verified),
        fetched=result.ok, resolved=reached >= 1, chains=chains, **common,
    )
