"""The health score: 0–100 and a grade, from availability, latency and blocking measured
against the SLOs, capped when integrity failed. docs/report.md states the formula; this is it.

    budget     b   = 1 − slo.availability                  (the error budget, e.g. 0.005)
    availability   = 100 · clamp((10 − (1 − A)/b) / 9)     A: share of runs that succeeded
    latency        = 100 · clamp((3L − p95) / 2L)          L: slo.latency_p95; p95 of successful runs
    blocked        = 100 · clamp((10 − β/b) / 9)           β: share of judged runs with a censorship verdict
    score          = Σ wᵢ·partᵢ / Σ wᵢ                     over the parts that apply
    integrity      : any module_tampered or tls_mitm run caps the score at INTEGRITY_CAP

clamp(x) keeps x within [0, 1]. So a part is 100 while within its objective (A ≥ SLO, p95 ≤ L,
β ≤ b) and falls linearly to 0 at ten times the error budget (three times the latency
objective). Latency applies when some run succeeded; blocked when some run was judged (kinds
that give verdicts: site, dns, goproxy).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.model import VerdictName

V = VerdictName
# What a censor does on the path (DESIGN §3.4): time under these is "blocked".
CENSORSHIP = frozenset({
    V.DNS_POISONING, V.DNS_BLOCKING, V.ENCRYPTED_DNS_BLOCKED, V.IP_BLOCKING, V.SNI_BLOCKING, V.RST_INJECTION, V.HTTP_BLOCKING,
})
# Bytes or a connection that cannot be trusted: caps the score whatever else holds.
INTEGRITY = frozenset({V.MODULE_TAMPERED, V.TLS_MITM})
INTEGRITY_CAP = 40.0
BUDGET_MULTIPLE = 10.0  # availability and blocked reach 0 at this many error budgets
LATENCY_MULTIPLE = 3.0  # latency reaches 0 at this many times the objective
GRADES = ((90.0, "A"), (80.0, "B"), (70.0, "C"), (60.0, "D"))


@dataclass(frozen=True)
class Slo:
    availability: float
    latency_p95: float


@dataclass(frozen=True)
class Weights:
    availability: float
    latency: float
    blocked: float


@dataclass(frozen=True)
class Measured:
    """What a subject (check, check from a network, network, proxy) showed over a period."""

    runs: int
    successes: int
    latency_p95: float | None  # seconds, of successful runs
    judged: int = 0  # runs with a verdict
    blocked: int = 0  # runs with a censorship verdict
    integrity: int = 0  # runs with module_tampered or tls_mitm

    @property
    def availability(self) -> float | None:
        return self.successes / self.runs if self.runs else None


@dataclass(frozen=True)
class Score:
    value: float | None  # rounded to 0.1; None: nothing measured
    grade: str
    parts: dict[str, float]
    capped: bool = False
    exact: float | None = None  # unrounded, what group means are made of


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def _budget(slo: float) -> float:
    # 1 − 0.995 is 0.0050000000000000044 in binary floating point; the budget is 0.005.
    return round(1.0 - slo, 12)


def availability_part(availability: float, slo: float) -> float:
    burn = (1.0 - availability) / _budget(slo)
    return 100.0 * _clamp((BUDGET_MULTIPLE - burn) / (BUDGET_MULTIPLE - 1.0))


def latency_part(p95: float, objective: float) -> float:
    return 100.0 * _clamp((LATENCY_MULTIPLE * objective - p95) / ((LATENCY_MULTIPLE - 1.0) * objective))


def blocked_part(blocked_share: float, slo: float) -> float:
    burn = blocked_share / _budget(slo)
    return 100.0 * _clamp((BUDGET_MULTIPLE - burn) / (BUDGET_MULTIPLE - 1.0))


def grade(value: float | None) -> str:
    if value is None:
        return "–"
    for floor, letter in GRADES:
        if value >= floor:
            return letter
    return "F"


def score(m: Measured, slo: Slo, weights: Weights) -> Score:
    if m.runs == 0:
        return Score(None, grade(None), {})
    parts = {"availability": availability_part(m.successes / m.runs, slo.availability)}
    if m.latency_p95 is not None:
        parts["latency"] = latency_part(m.latency_p95, slo.latency_p95)
    if m.judged:
        parts["blocked"] = blocked_part(m.blocked / m.judged, slo.availability)
    weight = {"availability": weights.availability, "latency": weights.latency, "blocked": weights.blocked}
    total = sum(weight[name] for name in parts)
    value = sum(weight[name] * part for name, part in parts.items()) / total if total > 0 else parts["availability"]
    capped = m.integrity > 0 and value > INTEGRITY_CAP
    if m.integrity > 0:
        value = min(value, INTEGRITY_CAP)
    return Score(round(value, 1), grade(round(value, 1)), {name: round(part, 1) for name, part in parts.items()}, capped, value)


def mean_score(scores: list[Score], *, integrity: bool = False) -> Score:
    """A group's score (a network's, the report's): the mean of its members' scores, capped
    too when any member saw an integrity failure."""
    values = [s.exact for s in scores if s.exact is not None]
    if not values:
        return Score(None, grade(None), {})
    value = sum(values) / len(values)
    capped = integrity and value > INTEGRITY_CAP
    if integrity:
        value = min(value, INTEGRITY_CAP)
    return Score(round(value, 1), grade(round(value, 1)), {}, capped, value)
