"""The report as one document (plain JSON data): scores per check, per check from each
network, per network and per module proxy; trend against the previous period; incidents;
GOPROXY advice; the series the charts draw. `--format json` prints it as is; the HTML and
Markdown renderers only lay it out, so every format says the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.model import VerdictName, format_time
from monitor.redact import redact_text
from monitor.report.advice import NEVER, ProxyView, advise
from monitor.report.compute import PeriodData, Series, days
from monitor.report.score import CENSORSHIP, INTEGRITY, Measured, Score, Slo, Weights, mean_score, score
from monitor.store.histogram import quantile
from monitor.store.rollups import Tally

QUIET = {VerdictName.OK.value, VerdictName.INCONCLUSIVE.value}
@dataclass(frozen=True)
class Settings:
    title: str
    slo: Slo
    weights: Weights
    logo: str | None = None  # a data: URI, already read


def measured(tally: Tally) -> Measured:
    return Measured(
        runs=tally.probes,
        successes=tally.successes,
        latency_p95=quantile(tally.latency, 0.95),
        judged=sum(tally.verdicts.values()),
        blocked=sum(n for v, n in tally.verdicts.items() if v in CENSORSHIP),
        integrity=sum(n for v, n in tally.verdicts.items() if v in INTEGRITY),
    )


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _seconds(x: float | None) -> float | None:
    return round(x, 4) if x is not None else None


def _time(t: datetime | None) -> str | None:
    return format_time(t) if t is not None else None


def _merge(series: Iterable[Series]) -> Tally:
    total = Tally()
    for s in series:
        total.add(s.tally)
    return total


def _score_fields(s: Score) -> dict[str, Any]:
    return {"score": s.value, "grade": s.grade, "parts": s.parts, "capped": s.capped}


def _minutes(verdicts: Counter[str], slice_minutes: int) -> dict[str, float]:
    return {v: n * slice_minutes for v, n in sorted(verdicts.items()) if v not in QUIET and n}


def _check_scores(data: PeriodData, settings: Settings) -> dict[str, tuple[Score, Tally, list[Series]]]:
    by_check: dict[str, list[Series]] = {}
    for s in data.series.values():
        by_check.setdefault(s.check, []).append(s)
    out = {}
    for check, members in by_check.items():
        tally = _merge(members)
        out[check] = (score(measured(tally), settings.slo, settings.weights), tally, members)
    return out


def _network_scores(data: PeriodData, settings: Settings) -> dict[str, Score]:
    by_network: dict[str, list[Series]] = {}
    for s in data.series.values():
        by_network.setdefault(s.network, []).append(s)
    out = {}
    for network, members in by_network.items():
        ms = [measured(s.tally) for s in members]
        out[network] = mean_score([score(m, settings.slo, settings.weights) for m in ms], integrity=any(m.integrity for m in ms))
    return out


def build(current: PeriodData, previous: PeriodData, settings: Settings, *, generated_at: datetime) -> dict[str, Any]:
    period = current.period
    checks = _check_scores(current, settings)
    before = _check_scores(previous, settings)
    networks = _network_scores(current, settings)
    networks_before = _network_scores(previous, settings)

    check_entries = []
    for check in sorted(checks):
        sc, tally, members = checks[check]
        m = measured(tally)
        k = current.slice_minutes[check]
        up, reported = current.uptime.get(check, [0, 0])
        prev = before.get(check)
        first = min((s.first for s in members if s.first is not None), default=None)
        last = max((s.last for s in members if s.last is not None), default=None)
        newest = max(members, key=lambda s: (s.last is not None, s.last or period.start.date()))
        vantages = []
        for s in sorted(members, key=lambda s: (s.vantage, s.agent)):
            ms = measured(s.tally)
            vs = score(ms, settings.slo, settings.weights)
            vantages.append({
                "check": check, "vantage": s.vantage, "agent": s.agent, "network": s.network, **_score_fields(vs),
                "reachability": _ratio(ms.successes, ms.runs), "runs": ms.runs, "successes": ms.successes,
                "latency_p95_s": _seconds(ms.latency_p95), "blocked_minutes": ms.blocked * k,
                "integrity_events": ms.integrity, "verdict_minutes": _minutes(s.tally.verdicts, k),
                "failures": dict(s.tally.failures.most_common(5)),
            })
        check_entries.append({
            "check": check, "kind": newest.kind, "target": redact_text(newest.target), **_score_fields(sc),
            "previous_score": prev[0].value if prev else None,
            "trend": round(sc.value - prev[0].value, 1) if prev and sc.value is not None and prev[0].value is not None else None,
            "uptime": _ratio(up, reported), "reachability": _ratio(m.successes, m.runs),
            "runs": m.runs, "successes": m.successes,
            "latency_p50_s": _seconds(quantile(tally.latency, 0.5)), "latency_p95_s": _seconds(m.latency_p95),
            "latency_p99_s": _seconds(quantile(tally.latency, 0.99)),
            "blocked_minutes": m.blocked * k, "integrity_events": m.integrity, "verdict_minutes": _minutes(tally.verdicts, k),
            "failures": dict(tally.failures.most_common(5)),
            "slice_minutes": k, "coverage": round(min(1.0, reported * k * 60 / period.seconds), 6),
            "first_seen": first.isoformat() if first else None, "last_seen": last.isoformat() if last else None,
            "new": check not in before, "networks": len(members), "vantages": vantages,
        })

    network_entries = []
    for network in sorted(networks):
        members = [s for s in current.series.values() if s.network == network]
        tally = _merge(members)
        m = measured(tally)
        prev_score = networks_before.get(network)
        sc = networks[network]
        network_entries.append({
            "network": network, "vantage": members[0].vantage, "agent": members[0].agent, **_score_fields(sc),
            "previous_score": prev_score.value if prev_score else None,
            "trend": round(sc.value - prev_score.value, 1) if prev_score and sc.value is not None and prev_score.value is not None else None,
            "checks": len(members), "runs": m.runs, "reachability": _ratio(m.successes, m.runs),
            "blocked_minutes": sum(measured(s.tally).blocked * current.slice_minutes[s.check] for s in members),
            "integrity_events": m.integrity,
        })

    proxy_entries, advice_entries = _proxies(current, settings)
    overall = mean_score([checks[c][0] for c in checks], integrity=any(e["integrity_events"] for e in check_entries))
    overall_before = mean_score([before[c][0] for c in before], integrity=any(measured(before[c][1]).integrity for c in before))
    total = _merge(current.series.values())
    ups = sum(u for u, _ in current.uptime.values())
    reported = sum(r for _, r in current.uptime.values())
    summary = {
        **_score_fields(overall), "previous_score": overall_before.value,
        "trend": round(overall.value - overall_before.value, 1) if overall.value is not None and overall_before.value is not None else None,
        "checks": len(check_entries), "networks": len(network_entries), "runs": total.probes,
        "uptime": _ratio(ups, reported), "reachability": _ratio(total.successes, total.probes),
        "blocked_minutes": sum(c["blocked_minutes"] for c in check_entries),
        "integrity_events": sum(c["integrity_events"] for c in check_entries),
        "incidents": len(current.episodes),
    }
    summary["lines"] = _summary_lines(summary, check_entries, network_entries, advice_entries, period.label, previous.period.label)

    return {
        "title": settings.title,
        "generated_at": format_time(generated_at),
        "period": {"label": period.label, "from": format_time(period.start), "to": format_time(period.end)},
        "previous_period": {"label": previous.period.label, "from": format_time(previous.period.start), "to": format_time(previous.period.end)},
        "slo": {"availability": settings.slo.availability, "latency_p95_s": settings.slo.latency_p95},
        "weights": {"availability": settings.weights.availability, "latency": settings.weights.latency, "blocked": settings.weights.blocked},
        "summary": summary,
        "checks": check_entries,
        "networks": network_entries,
        "proxies": proxy_entries,
        "advice": advice_entries,
        "advice_note": NEVER,
        "incidents": _incidents(current),
        "series": _series(current, check_entries),
    }


def _proxies(data: PeriodData, settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_network: dict[str, list[ProxyView]] = {}
    entries = []
    for key in sorted(data.proxies):
        p = data.proxies[key]
        m = measured(p.tally)
        sc = score(m, settings.slo, settings.weights)
        view = ProxyView(redact_text(p.proxy), p.tally.probes, p.tally.successes, m.latency_p95, p.tally.failures, p.tally.verdicts, sc)
        by_network.setdefault(p.network, []).append(view)
        entries.append({
            "network": p.network, "vantage": p.vantage, "agent": p.agent, "proxy": view.proxy, **_score_fields(sc),
            "availability": _ratio(view.served, view.asked), "asked": view.asked, "served": view.served,
            "fetch_p50_s": _seconds(quantile(p.tally.latency, 0.5)), "fetch_p95_s": _seconds(view.fetch_p95),
            "tampered": view.tampered, "failures": dict(p.tally.failures.most_common(5)),
            "verdicts": {v: n for v, n in sorted(p.tally.verdicts.items()) if v != VerdictName.OK.value},
            "checks": sorted(p.checks),
        })
    advice = []
    for network in sorted(by_network):
        a = advise(network, by_network[network])
        advice.append({
            "network": network, "goproxy": a.goproxy,
            "use": [{"proxy": p.proxy, "availability": round(p.availability, 6), "fetch_p95_s": _seconds(p.fetch_p95), "score": p.score.value} for p in a.use],
            "avoid": [{"proxy": p.proxy, "why": why} for p, why in a.avoid],
        })
    return entries, advice


def _incidents(data: PeriodData) -> list[dict[str, Any]]:
    out = []
    for e in data.episodes:
        opened = e.confirmed_at or e.started_at
        start = max(e.started_at, data.period.start)
        end = min(e.ended_at or e.last_seen_at, data.period.end)
        out.append({
            "check": e.check, "vantage": e.vantage, "agent": e.agent, "network": f"{e.vantage}@{e.agent}",
            "verdict": e.verdict.value, "started_at": format_time(e.started_at), "confirmed_at": format_time(opened),
            "ended_at": _time(e.ended_at), "duration_s": round(max(0.0, (end - start).total_seconds()), 3),
            "rounds": e.rounds, "confidence": e.confidence, "evidence": [redact_text(x) for x in e.evidence[:5]],
        })
    return out


def _series(data: PeriodData, check_entries: list[dict[str, Any]]) -> dict[str, Any]:
    all_days = days(data.period)
    networks = sorted({s.network for s in data.series.values()})
    availability = {n: [_daily_ratio(data.daily.get((n, d))) for d in all_days] for n in networks}
    uptime = [_ratio(*data.daily_uptime[d]) if d in data.daily_uptime else None for d in all_days]
    weeks = sorted({d - timedelta(days=d.weekday()) for d in all_days})
    minutes: dict[str, list[float]] = {}
    for (check, day), rounds in data.verdict_rounds.items():
        week = weeks.index(day - timedelta(days=day.weekday()))
        for verdict, n in rounds.items():
            if verdict in QUIET or not n:
                continue
            minutes.setdefault(verdict, [0.0] * len(weeks))[week] += n * data.slice_minutes[check]
    return {
        "days": [d.isoformat() for d in all_days],
        "availability": availability,
        "uptime": uptime,
        "weeks": [w.isoformat() for w in weeks],
        "verdict_minutes": dict(sorted(minutes.items())),
        "latency": [
            {"check": c["check"], "p50_s": c["latency_p50_s"], "p95_s": c["latency_p95_s"], "p99_s": c["latency_p99_s"]}
            for c in check_entries if c["latency_p95_s"] is not None
        ],
    }


def _daily_ratio(runs_successes: list[int] | None) -> float | None:
    return _ratio(runs_successes[1], runs_successes[0]) if runs_successes else None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.3f}%"


def _summary_lines(
    summary: dict[str, Any], checks: list[dict[str, Any]], networks: list[dict[str, Any]], advice: list[dict[str, Any]],
    label: str, previous_label: str,
) -> list[str]:
    if not checks:
        return [f"No results were stored for {label}: nothing to score."]
    lines = []
    trend = summary["trend"]
    change = f", {trend:+.1f} against {previous_label}" if trend is not None else f" (no data for {previous_label} to compare)"
    lines.append(f"Overall health {summary['score']:.1f}/100, grade {summary['grade']}{change}.")
    lines.append(
        f"{summary['checks']} checks measured from {summary['networks']} networks, {summary['runs']:,} runs; "
        f"uptime {_pct(summary['uptime'])}, reachability {_pct(summary['reachability'])}."
    )
    if summary["integrity_events"]:
        hit = sorted({c["check"] for c in checks if c["integrity_events"]})
        lines.append(f"Integrity: {summary['integrity_events']} runs saw tampered modules or TLS interception ({', '.join(hit)}); those scores are capped.")
    else:
        lines.append("Integrity: no tampered module and no TLS interception seen.")
    if summary["blocked_minutes"]:
        worst = max(networks, key=lambda n: n["blocked_minutes"])
        lines.append(f"Blocking: {summary['blocked_minutes']:,.0f} minutes under censorship verdicts, most from {worst['network']} ({worst['blocked_minutes']:,.0f}).")
    else:
        lines.append("Blocking: no censorship verdict.")
    scored = sorted((c for c in checks if c["score"] is not None), key=lambda c: c["score"])[:3]
    if scored:
        lines.append("Weakest: " + ", ".join(f"{c['check']} {c['score']:.1f} ({c['grade']})" for c in scored) + ".")
    new = [c["check"] for c in checks if c["new"]]
    if new:
        lines.append(f"New this period: {', '.join(new)} (scored over the time they were measured).")
    for a in advice:
        lines.append(f"From {a['network']}: GOPROXY={a['goproxy']}")
    return lines

