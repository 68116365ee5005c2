"""The alert engine against a real Alertmanager (Debian prometheus-alertmanager on loopback)
and a recording webhook receiver, over episodes written to the store as the judge step
writes them: fire with the evidence, resolve, restart without re-firing or re-paging, a
signed and authorised webhook, a failing sink retried while the others go on."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from monitor.alerts import AlertEngine
from monitor.analysis.episodes import Episode
from monitor.config import AlertConditions, Config, load_config_text
from monitor.model import VerdictName
from monitor.store import make_engine, upgrade
from monitor.store.alerts import firing_alerts
from monitor.store.episodes import save_episode
from tests.conftest import require
from tests.servers.alertmanager import ALERTMANAGER, Alertmanager, receiver_config
from tests.servers.postgres_private import private_postgres, private_postgres_unavailable
from tests.servers.webhook_recorder import WebhookRecorder

EVIDENCE = (
    "2 of 2 attempts",
    "tls: 127.0.0.1: site.test rst (connection_reset) after the ClientHello while control control.test completed on the same address",
)

CONFIG = """
agent: agent-a
storage: {{url: "{url}"}}
vantages: [{{name: local}}, {{name: uplink-b}}]
defaults: {{alert: {{labels: {{team: sre}}}}}}
checks:
  - {{name: gh-site, kind: site, domain: site.test, control_sni: control.test, vantages: [local, uplink-b],
     references: ["tls://127.0.0.1:853", "https://localhost/dns-query"]}}
  - {{name: quiet-site, kind: site, domain: quiet.test, control_sni: control.test,
     references: ["tls://127.0.0.1:853", "https://localhost/dns-query"], alert: {{enabled: false}}}}
alerting:
  alertmanager: [{am}]
  resend_interval: {resend}
  poll_interval: 200ms
  timeout: 3s
{extra}
"""


@pytest.fixture
def recorder() -> Iterator[WebhookRecorder]:
    with WebhookRecorder() as r:
        yield r


@pytest.fixture
def alertmanager(tmp_path: Path, recorder: WebhookRecorder) -> Iterator[Alertmanager]:
    require(ALERTMANAGER, "prometheus-alertmanager (Debian package) not installed")
    with Alertmanager(tmp_path / "am", receiver_config(recorder.url("/am"))) as am:
        yield am


def config(tmp_path: Path, am: str, *, resend: str = "60s", extra: str = "", url: str | None = None) -> Config:
    url = url or f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    return load_config_text(CONFIG.format(url=url, am=am, resend=resend, extra=extra))


def episode(verdict: str = "sni_blocking", *, vantage: str = "local", check: str = "gh-site", ago: float = 120, **changes) -> Episode:
    start = datetime.now(UTC) - timedelta(seconds=ago)
    fields = dict(check=check, vantage=vantage, agent="agent-a", verdict=VerdictName(verdict), started_at=start,
                  last_seen_at=start + timedelta(seconds=60), rounds=2, confirmed_at=start + timedelta(seconds=60),
                  confidence="high", evidence=EVIDENCE)
    return Episode(**(fields | changes))


def put(cfg: Config, *episodes: Episode) -> None:
    engine = make_engine(cfg.storage.url)
    try:
        with Session(engine) as session, session.begin():
            for e in episodes:
                save_episode(session, e)
    finally:
        engine.dispose()


def stored_firing(cfg: Config) -> list:
    engine = make_engine(cfg.storage.url)
    try:
        with Session(engine) as session:
            return firing_alerts(session)
    finally:
        engine.dispose()


def notifications(recorder: WebhookRecorder, status: str) -> list[dict]:
    """The alerts in Alertmanager's notifications of this status, one entry per notification."""
    return [p.json for p in recorder.received("/am") if p.json["status"] == status]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


async def test_an_open_episode_fires_with_its_evidence_and_resolves_when_it_closes(tmp_path, alertmanager, recorder):
    cfg = config(tmp_path, alertmanager.url)
    opened = episode()
    put(cfg, opened, episode(check="quiet-site"), episode("inconclusive", vantage="uplink-b"))
    async with AlertEngine(lambda: cfg) as engine:
        await engine.step()
        [alert] = alertmanager.alerts()
        assert alert["labels"] == {
            "alertname": "MonitorSNIBlocking", "severity": "critical", "check": "gh-site", "kind": "site", "target": "site.test",
            "vantage": "local", "agent": "agent-a", "verdict": "sni_blocking", "team": "sre",
        }
        description = alert["annotations"]["description"]
        assert EVIDENCE[1] in description and opened.id in description
        assert alert["annotations"]["runbook_url"] == "docs/runbooks/MonitorSNIBlocking.md"
        assert "gh-site" in alert["annotations"]["summary"]
        ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
        assert ends > datetime.now(UTC) + timedelta(minutes=3)  # valid for 4 resend intervals
        [firing] = wait_until(lambda: notifications(recorder, "firing"), 15, "Alertmanager notifies the receiver")
        assert firing["alerts"][0]["annotations"]["description"] == description
        assert [a.alertname for a in stored_firing(cfg)] == ["MonitorSNIBlocking"]

        closed_at = datetime.now(UTC).replace(microsecond=0)
        put(cfg, dataclasses.replace(opened, ended_at=closed_at, clean=1))
        await engine.step()
        assert alertmanager.alerts() == []
        [resolved] = wait_until(lambda: notifications(recorder, "resolved"), 15, "the resolution is notified")
        assert resolved["alerts"][0]["endsAt"].startswith(closed_at.strftime("%Y-%m-%dT%H:%M:%S"))
        assert stored_firing(cfg) == []
        await engine.step()
        assert engine.firing() == [] and engine._alerts == {}  # settled: nothing left to do


@pytest.mark.timeout(120)
async def test_a_restart_resumes_the_firing_alert_without_a_duplicate_or_a_second_page(tmp_path, alertmanager, recorder, db_url):
    cfg = config(tmp_path, alertmanager.url, resend="1s", url=db_url)
    opened = episode()
    put(cfg, opened)
    async with AlertEngine(lambda: cfg) as first:
        await first.step()
    [before] = alertmanager.alerts()
    wait_until(lambda: notifications(recorder, "firing"), 15, "the first page")

    async with AlertEngine(lambda: cfg) as second:  # the daemon, restarted: a new engine, the same store
        for _ in range(6):  # several resend intervals: it re-sends, Alertmanager only refreshes
            await second.step()
            time.sleep(0.6)
        assert [a.alertname for a in second.firing()] == ["MonitorSNIBlocking"]
    [after] = alertmanager.alerts()
    assert after["fingerprint"] == before["fingerprint"] and after["startsAt"] == before["startsAt"]
    assert after["endsAt"] > before["endsAt"]  # it was re-sent
    time.sleep(3)  # several group_intervals: a changed group would have been notified by now
    assert len(notifications(recorder, "firing")) == 1

    # Resolved, then the same episode (id) seen open again after a restart: it never fires twice.
    put(cfg, dataclasses.replace(opened, ended_at=datetime.now(UTC), clean=1))
    async with AlertEngine(lambda: cfg) as third:
        await third.step()
    put(cfg, opened)
    async with AlertEngine(lambda: cfg) as fourth:
        await fourth.step()
        assert fourth.firing() == []
    assert alertmanager.alerts() == []


async def test_conditions_hold_an_alert_back_until_for_and_rounds_are_met(tmp_path, alertmanager):
    cfg = config(tmp_path, alertmanager.url)
    held = cfg.checks[0].model_copy(update={"alert": AlertConditions.model_validate({"for": "10m", "rounds": 3})})
    cfg = cfg.model_copy(update={"checks": [held]})
    young = episode(ago=120)
    put(cfg, young)
    clock = [datetime.now(UTC)]
    async with AlertEngine(lambda: cfg, clock=lambda: clock[0]) as engine:
        await engine.step()
        assert alertmanager.alerts() == [] and engine.firing() == []
        clock[0] += timedelta(minutes=9)  # lasted long enough now, but said in 2 rounds only
        await engine.step()
        assert engine.firing() == []
        put(cfg, dataclasses.replace(young, rounds=3))
        await engine.step()
        [alert] = alertmanager.alerts()
        assert alert["labels"]["alertname"] == "MonitorSNIBlocking"


async def test_a_check_leaving_the_config_resolves_its_alert(tmp_path, alertmanager):
    cfg = config(tmp_path, alertmanager.url)
    put(cfg, episode())
    current = [cfg]
    async with AlertEngine(lambda: current[0]) as engine:
        await engine.step()
        assert len(alertmanager.alerts()) == 1
        current[0] = cfg.model_copy(update={"checks": cfg.checks[1:]})
        await engine.step()
        assert alertmanager.alerts() == []
    [row] = [a for a in _all_alerts(cfg)]
    assert row.resolution == "the check is no longer configured"


def _all_alerts(cfg: Config) -> list:
    from sqlalchemy import select

    from monitor.store.alerts import _record
    from monitor.store.models import AlertRow

    engine = make_engine(cfg.storage.url)
    try:
        with Session(engine) as session:
            return [_record(r) for r in session.scalars(select(AlertRow))]
    finally:
        engine.dispose()


WEBHOOK = """  webhook:
    url: "{url}"
    token_env: MONITOR_TEST_WEBHOOK_TOKEN
    secret_file: "{secret}"
"""


async def test_the_webhook_gets_signed_authorised_json_once_per_transition_and_the_token_is_never_logged(
    tmp_path, alertmanager, recorder, monkeypatch, caplog
):
    token, secret = "tok-" + "7" * 24, "key-" + "3" * 24
    monkeypatch.setenv("MONITOR_TEST_WEBHOOK_TOKEN", token)
    (tmp_path / "secret").write_text(secret + "\n")
    path = "/hooks/T0123/very-secret-path"
    cfg = config(tmp_path, alertmanager.url, resend="1s", extra=WEBHOOK.format(url=recorder.url(path), secret=tmp_path / "secret"))
    opened = episode()
    put(cfg, opened)
    caplog.set_level(logging.DEBUG)
    async with AlertEngine(lambda: cfg) as engine:
        await engine.step()
        time.sleep(1.1)
        await engine.step()  # a resend to Alertmanager; nothing new for the webhook
        put(cfg, dataclasses.replace(opened, ended_at=datetime.now(UTC), clean=1))
        await engine.step()
        await engine.step()
    posts = recorder.received(path)
    assert [p.json["alerts"][0]["status"] for p in posts] == ["firing", "resolved"]
    for post in posts:
        assert post.headers["authorization"] == f"Bearer {token}"
        expected = "sha256=" + hmac.new(secret.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.headers["x-monitor-signature-256"] == expected
        assert post.headers["content-type"] == "application/json"
        body = post.json
        assert body["agent"] == "agent-a" and body["alerts"][0]["episode_id"] == opened.id
        assert body["alerts"][0]["labels"]["alertname"] == "MonitorSNIBlocking"
        assert EVIDENCE[1] in body["alerts"][0]["annotations"]["description"]
    assert posts[1].json["alerts"][0]["endsAt"] is not None
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "alert MonitorSNIBlocking (critical) firing" in logged
    for leak in (token, secret, "very-secret-path"):
        assert leak not in logged
    [webhook_sink] = [s for s in engine.sinks() if s.kind == "webhook"]
    assert "very-secret-path" not in webhook_sink.id and webhook_sink.url == recorder.url("").rstrip("/")


async def test_a_failing_sink_is_retried_with_backoff_while_the_others_are_served(tmp_path, alertmanager, monkeypatch, caplog):
    with WebhookRecorder(status=503) as failing:
        (tmp_path / "secret").write_text("k\n")
        monkeypatch.setenv("MONITOR_TEST_WEBHOOK_TOKEN", "t")
        cfg = config(tmp_path, alertmanager.url, extra=WEBHOOK.format(url=failing.url("/hook"), secret=tmp_path / "secret"))
        put(cfg, episode())
        clock = [datetime.now(UTC)]
        key = failing.url("").rstrip("/")
        async with AlertEngine(lambda: cfg, clock=lambda: clock[0]) as engine:
            await engine.step()
            assert len(alertmanager.alerts()) == 1  # Alertmanager got it; the webhook's 503 held nothing up
            assert len(failing.received()) == 1
            await engine.step()  # within the backoff (poll_interval at first): no attempt
            assert len(failing.received()) == 1
            clock[0] += timedelta(seconds=0.2)
            await engine.step()  # the backoff passed: a second attempt, failing again, doubles it
            assert len(failing.received()) == 2
            clock[0] += timedelta(seconds=0.3)
            await engine.step()
            assert len(failing.received()) == 2
            failing.status = 200
            clock[0] += timedelta(seconds=0.2)
            await engine.step()
            assert len(failing.received()) == 3 and failing.received()[-1].json["alerts"][0]["status"] == "firing"
            await engine.step()
            assert len(failing.received()) == 3  # delivered once: a webhook is not re-sent
            assert engine.notifications[("webhook", key, "failure")] == 2
            assert engine.notifications[("webhook", key, "success")] == 1
            assert engine.notifications[("alertmanager", alertmanager.url, "success")] == 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum("sending 1 alert(s) failed (HTTP 503)" in m for m in warnings) == 1  # one line per outage
        assert any(f"webhook {key}: reachable again" in m for m in warnings)


async def test_a_reload_that_adds_an_alertmanager_sends_it_what_fires(tmp_path, alertmanager):
    without = config(tmp_path, alertmanager.url).model_copy()
    without = without.model_copy(update={"alerting": without.alerting.model_copy(update={"alertmanager": []})})
    put(without, episode())
    current = [without]
    async with AlertEngine(lambda: current[0]) as engine:
        await engine.step()
        assert [a.alertname for a in engine.firing()] == ["MonitorSNIBlocking"]  # kept in the store, no sink yet
        assert alertmanager.alerts() == [] and engine.sinks() == []
        current[0] = config(tmp_path, alertmanager.url)  # the reloaded config
        await engine.step()
        [alert] = alertmanager.alerts()
        assert alert["labels"]["alertname"] == "MonitorSNIBlocking"
        assert engine.notifications[("alertmanager", alertmanager.url, "success")] == 1


async def test_while_the_store_is_unreachable_firing_alerts_are_still_resent(tmp_path, alertmanager, caplog):
    reason = private_postgres_unavailable()
    require(reason is None, reason or "")
    with private_postgres() as pg:
        cfg = config(tmp_path, alertmanager.url, resend="1s", url=pg.url)
        put(cfg, episode())
        clock = [datetime.now(UTC)]
        async with AlertEngine(lambda: cfg, clock=lambda: clock[0]) as engine:
            await engine.step()
            [first] = alertmanager.alerts()
            pg.stop()
            clock[0] += timedelta(seconds=2)
            await engine.step()
            [during] = alertmanager.alerts()
            assert during["endsAt"] > first["endsAt"]  # re-sent from memory while the store is down
            pg.start()
            clock[0] += timedelta(seconds=2)
            await engine.step()
            assert [a.alertname for a in stored_firing(cfg)] == ["MonitorSNIBlocking"]
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(m.startswith("alerts: store unavailable") for m in messages) == 1
    assert "alerts: store reachable again" in messages
