"""When an open verdict episode becomes an alert, and what the alert says.

Conditions come from `defaults.alert`, overridden key by key by the check's own `alert`
(labels merge, the check's win). An open episode (analysis.confirmations rounds said its
verdict) fires once it has also lasted `for` since its first round and said its verdict in
`rounds` rounds; it resolves when the episode closes (analysis.clean_rounds clean rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from monitor.alerts.catalog import AlertKind, alert_kind, runbook_file
from monitor.analysis.episodes import Episode
from monitor.config import AlertConditions, AlertingConfig, Check
from monitor.model import VerdictName, format_time
from monitor.store.alerts import AlertRecord


@dataclass(frozen=True)
class Conditions:
    enabled: bool
    verdicts: frozenset[VerdictName] | None  # None: every verdict that has an alertname
    for_s: float
    rounds: int
    severity: str | dict[VerdictName, str] | None
    labels: dict[str, str]

    def severity_of(self, verdict: VerdictName, kind: AlertKind) -> str:
        if isinstance(self.severity, str):
            return self.severity
        if isinstance(self.severity, dict) and verdict in self.severity:
            return self.severity[verdict]
        return kind.severity


def conditions_for(check: Check, defaults: AlertConditions) -> Conditions:
    own = check.alert or AlertConditions()

    def pick(key: str, fallback: object) -> object:
        for source in (own, defaults):
            value = getattr(source, key)
            if value is not None:
                return value
        return fallback

    verdicts = pick("verdicts", None)
    return Conditions(
        enabled=bool(pick("enabled", True)),
        verdicts=frozenset(verdicts) if verdicts is not None else None,  # type: ignore[arg-type]
        for_s=float(pick("for_", 0.0)),  # type: ignore[arg-type]
        rounds=int(pick("rounds", 1)),  # type: ignore[call-overload]
        severity=pick("severity", None),  # type: ignore[arg-type]
        labels={**defaults.labels, **own.labels},
    )


def alerts_on(episode: Episode, conditions: Conditions) -> AlertKind | None:
    """The alert an episode's verdict would raise under these conditions (ignoring time), or None."""
    kind = alert_kind(episode.verdict)
    if kind is None or not conditions.enabled:
        return None
    if conditions.verdicts is not None and episode.verdict not in conditions.verdicts:
        return None
    return kind


def due(episode: Episode, conditions: Conditions, now: datetime) -> bool:
    """Whether an open episode has met the conditions by `now`."""
    return (
        episode.open
        and episode.rounds >= conditions.rounds
        and now >= episode.started_at + timedelta(seconds=conditions.for_s)
    )


def new_alert(episode: Episode, check: Check, kind: AlertKind, conditions: Conditions, alerting: AlertingConfig, now: datetime) -> AlertRecord:
    """The alert for an episode that fires now: Alertmanager's labels and annotations."""
    verdict = episode.verdict
    severity = conditions.severity_of(verdict, kind)
    own = {
        "alertname": kind.alertname, "severity": severity, "check": check.name, "kind": check.kind,
        "target": check.display_target, "vantage": episode.vantage, "agent": episode.agent, "verdict": verdict.value,
    }
    labels = {**conditions.labels, **own}
    annotations = {
        "summary": f"{check.name}: {kind.title} — {check.display_target} from {episode.vantage} on {episode.agent}",
        "description": "\n".join([
            *episode.evidence,
            f"verdict {verdict.value} (confidence {episode.confidence}) since {format_time(episode.started_at)}, "
            f"said in {episode.rounds} round(s); episode {episode.id}",
        ]),
        "runbook_url": f"{alerting.runbook_base_url.rstrip('/')}/{runbook_file(kind.alertname)}",
        "episode_id": episode.id,
    }
    if alerting.dashboard_url:
        annotations["dashboard_url"] = alerting.dashboard_url.format_map({k: quote(v, safe="") for k, v in own.items()})
    return AlertRecord(
        episode_id=episode.id, agent=episode.agent, check=check.name, vantage=episode.vantage, verdict=verdict.value,
        alertname=kind.alertname, severity=severity, labels=labels, annotations=annotations, fired_at=now,
    )
