"""What the store holds, as an on-call engineer reads it: aligned tables or JSON lines, for
`monitor results` and `monitor episodes`. Pure formatting; the CLI does the reading."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from monitor.analysis.episodes import Episode
from monitor.model import ProbeResult, format_time, utcnow


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) if i < len(widths) - 1 else c for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in [list(header), *rows]]


def short_time(t: datetime) -> str:
    return format_time(t).replace("T", " ")[:19]


def duration(seconds: float) -> str:
    """Compact: 850ms, 42s, 3m12s, 5h04m, 2d03h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def result_rows(results: Sequence[ProbeResult]) -> list[str]:
    header = ("TIME (UTC)", "CHECK", "VANTAGE", "AGENT", "OK", "DURATION", "FAILURE", "VERDICT", "TARGET")
    rows = [
        (
            short_time(r.started_at), r.check, r.vantage, r.agent, "ok" if r.ok else "FAIL", duration(r.duration_s),
            f"{r.failure.cls.value}@{r.failure.operation.value}" if r.failure else "-",
            f"{r.verdict.name.value} ({r.verdict.confidence.value})" if r.verdict else "-",
            r.target,
        )
        for r in results
    ]
    return table(header, rows)


def result_lines(results: Sequence[ProbeResult]) -> list[str]:
    return [json.dumps(r.to_json(), separators=(",", ":")) for r in results]


def episode_json(e: Episode, now: datetime) -> dict[str, Any]:
    end = e.ended_at or now
    return {
        "id": e.id, "check": e.check, "vantage": e.vantage, "agent": e.agent, "verdict": e.verdict.value,
        "confidence": e.confidence, "started_at": format_time(e.started_at),
        "confirmed_at": format_time(e.confirmed_at) if e.confirmed_at else None,
        "ended_at": format_time(e.ended_at) if e.ended_at else None, "open": e.ended_at is None,
        "duration_s": round((end - e.started_at).total_seconds(), 3), "rounds": e.rounds, "evidence": list(e.evidence),
    }


def episode_rows(episodes: Sequence[Episode], *, now: datetime | None = None) -> list[str]:
    """A table of episodes, each followed by its evidence lines, indented."""
    now = now or utcnow()
    header = ("STARTED (UTC)", "ENDED", "DURATION", "CHECK", "VANTAGE", "AGENT", "VERDICT", "CONFIDENCE", "ROUNDS")
    rows = [
        (short_time(e.started_at), short_time(e.ended_at) if e.ended_at else "open", duration(((e.ended_at or now) - e.started_at).total_seconds()),
         e.check, e.vantage, e.agent, e.verdict.value, e.confidence, str(e.rounds))
        for e in episodes
    ]
    lines = table(header, rows)
    out = [lines[0]]
    for line, e in zip(lines[1:], episodes):
        out.append(line)
        out += [f"    {evidence}" for evidence in e.evidence]
    return out


def episode_lines(episodes: Sequence[Episode], *, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    return [json.dumps(episode_json(e, now), separators=(",", ":")) for e in episodes]


def alert_rows(alerts: Sequence[Any]) -> list[str]:
    """Firing alerts (monitor.store.alerts), each followed by its evidence, runbook and deliveries."""
    rows = [(a.alertname, a.severity, a.check, f"{a.vantage}@{a.agent}", short_time(a.fired_at)) for a in alerts]
    lines = table(("ALERT", "SEVERITY", "CHECK", "VANTAGE@AGENT", "SINCE (UTC)"), rows)
    out = [lines[0]]
    for line, a in zip(lines[1:], alerts):
        out.append(line)
        out += [f"    {evidence}" for evidence in a.annotations.get("description", "").splitlines()]
        out.append(f"    runbook: {a.annotations.get('runbook_url', '-')}")
        sent = [f"{sink} at {short_time(d.sent_at)}" for sink, d in sorted(a.deliveries.items()) if d.sent_at]
        out.append(f"    delivered: {'; '.join(sent) if sent else 'not yet (see the daemon log)'}")
    return out
