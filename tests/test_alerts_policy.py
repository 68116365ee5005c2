"""When an episode alerts and what its alert says (monitor/alerts/policy.py): pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.alerts.catalog import CATALOG, alert_kind
from monitor.alerts.policy import alerts_on, conditions_for, due, new_alert
from monitor.analysis.episodes import Episode
from monitor.config import load_config_text
from monitor.model import VerdictName as V

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

CONFIG = """
defaults: {{alert: {{for: 5m, labels: {{team: sre, tier: "1"}}, severity: {{degraded: info}}}}}}
checks:
  - {{name: s, kind: site, domain: a.test, control_sni: b.test, references: ["tls://127.0.0.1", "https://localhost/q"]{alert}}}
alerting: {{dashboard_url: "https://grafana.example/d/m?var-check={{check}}&var-target={{target}}&var-agent={{agent}}"}}
"""


def setup(alert: str = ""):
    cfg = load_config_text(CONFIG.format(alert=f", alert: {alert}" if alert else ""))
    check = cfg.checks[0]
    return cfg, check, conditions_for(check, cfg.defaults.alert)


def episode(verdict: V = V.SNI_BLOCKING, **changes) -> Episode:
    fields = dict(check="s", vantage="local", agent="hk", verdict=verdict, started_at=T0, last_seen_at=T0 + timedelta(minutes=1),
                  rounds=2, confirmed_at=T0 + timedelta(minutes=1), evidence=("line one", "line two"), confidence="high", id="e1")
    return Episode(**(fields | changes))


def test_defaults_apply_and_a_check_overrides_them_key_by_key():
    _, _, c = setup()
    assert (c.enabled, c.for_s, c.rounds, c.labels) == (True, 300.0, 1, {"team": "sre", "tier": "1"})
    _, _, c = setup("{for: 1m, rounds: 3, labels: {team: build}, severity: warning}")
    assert (c.for_s, c.rounds, c.labels, c.severity) == (60.0, 3, {"team": "build", "tier": "1"}, "warning")


def test_severity_defaults_per_verdict_and_overrides():
    _, _, c = setup()
    assert c.severity_of(V.SNI_BLOCKING, CATALOG[V.SNI_BLOCKING]) == "critical"
    assert c.severity_of(V.ENCRYPTED_DNS_BLOCKED, CATALOG[V.ENCRYPTED_DNS_BLOCKED]) == "warning"
    assert c.severity_of(V.DEGRADED, CATALOG[V.DEGRADED]) == "info"  # defaults.alert.severity per verdict
    _, _, c = setup("{severity: warning}")
    assert c.severity_of(V.MODULE_TAMPERED, CATALOG[V.MODULE_TAMPERED]) == "warning"


def test_which_episodes_alert():
    _, _, c = setup()
    assert alerts_on(episode(V.SNI_BLOCKING), c).alertname == "MonitorSNIBlocking"
    assert alerts_on(episode(V.FAILING), c).alertname == "MonitorCheckFailing"
    assert alerts_on(episode(V.INCONCLUSIVE), c) is None and alert_kind(V.OK) is None
    _, _, c = setup("{verdicts: [dns_poisoning]}")
    assert alerts_on(episode(V.SNI_BLOCKING), c) is None and alerts_on(episode(V.DNS_POISONING), c) is not None
    _, _, c = setup("{enabled: false}")
    assert alerts_on(episode(V.MODULE_TAMPERED), c) is None


def test_an_open_episode_is_due_after_for_and_rounds():
    _, _, c = setup("{rounds: 3}")  # for: 5m from defaults
    pending = episode(confirmed_at=None)
    assert not due(pending, c, T0 + timedelta(hours=1))
    assert not due(episode(rounds=3), c, T0 + timedelta(minutes=4))
    assert not due(episode(rounds=2), c, T0 + timedelta(minutes=6))
    assert due(episode(rounds=3), c, T0 + timedelta(minutes=5))
    assert not due(episode(rounds=3, ended_at=T0 + timedelta(minutes=5)), c, T0 + timedelta(minutes=6))


def test_the_alert_carries_labels_evidence_runbook_and_dashboard():
    cfg, check, c = setup()
    e = episode()
    alert = new_alert(e, check, CATALOG[e.verdict], c, cfg.alerting, T0 + timedelta(minutes=6))
    assert alert.labels == {
        "alertname": "MonitorSNIBlocking", "severity": "critical", "check": "s", "kind": "site", "target": "a.test",
        "vantage": "local", "agent": "hk", "verdict": "sni_blocking", "team": "sre", "tier": "1",
    }
    assert alert.annotations["description"].splitlines() == [
        "line one", "line two", "verdict sni_blocking (confidence high) since 2026-12-01T10:00:00.000Z, said in 2 round(s); episode e1",
    ]
    assert alert.annotations["summary"] == "s: TLS blocked by server name (SNI filter) — a.test from local on hk"
    assert alert.annotations["runbook_url"] == "docs/runbooks/MonitorSNIBlocking.md"
    assert alert.annotations["dashboard_url"] == "https://grafana.example/d/m?var-check=s&var-target=a.test&var-agent=hk"
    assert (alert.episode_id, alert.fired_at, alert.firing) == ("e1", T0 + timedelta(minutes=6), True)


def test_dashboard_values_are_url_quoted():
    cfg, check, c = setup()
    alert = new_alert(episode(agent="a b&c"), check, CATALOG[V.SNI_BLOCKING], c, cfg.alerting, T0)
    assert alert.annotations["dashboard_url"].endswith("var-agent=a%20b%26c")


def test_every_alerting_key_is_documented_in_the_example_config():
    import re
    from pathlib import Path

    from monitor.config import AlertConditions, AlertingConfig, WebhookConfig

    example = (Path(__file__).resolve().parent.parent / "config.example.yaml").read_text()
    for model in (AlertingConfig, WebhookConfig, AlertConditions):
        for name, field in model.model_fields.items():
            key = field.alias or name
            assert re.search(rf"\b{key}:", example), f"{model.__name__}.{key} is not in config.example.yaml"
