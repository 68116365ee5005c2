"""Acceptance: a daemon with one agent pages through a real Alertmanager when an SNI filter
starts resetting the target's connections, with the evidence and a runbook link; a restart
while it fires neither duplicates the alert nor pages again; it resolves when the filter
goes. And: Alertmanager down for 30 s while an alert opens gets it once it is back.

The scenario needs no root: a `site` check on loopback (unbound answers the site's name with
127.0.0.1, where an SNI filter — tests/servers/sni_front.py — resets connections whose
ClientHello names the site and relays the control name to a real HTTPS server). The tls
kind gives no verdict yet, hence the site check. analysis.confirmations is 1: after the first
trigger the site check holds the control back for the residual-blocking hold-off (180 s), so
the next rounds are inconclusive (they keep an open episode open, but cannot confirm one).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.daemon_harness import DaemonProcess, start_daemon, value
from tests.servers.alertmanager import ALERTMANAGER, Alertmanager, receiver_config
from tests.servers.http import HttpServer
from tests.servers.sni_front import SniFilter
from tests.servers.webhook_recorder import WebhookRecorder
from tests.test_site_probe import CONTROL, SITE, site_context, unbound  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
INTERVAL = 3.0
CONFIRMATIONS = 1
TOKEN, SECRET = "bearer-" + "5" * 24, "hmac-" + "9" * 24
HOOK = "/hooks/B0123/secret-path-part"

CONFIG = """
agent: agent-a
storage: {{url: "sqlite:///{db}"}}
exporter: {{listen: "127.0.0.1:{{port}}"}}
trust: {{extra_ca_files: ["{ca1}", "{ca2}"]}}
analysis: {{confirmations: {confirmations}, clean_rounds: 1}}
defaults: {{alert: {{labels: {{team: build-infra}}}}}}
checks:
  - name: goproxy-site
    kind: site
    domain: {site}
    control_sni: {control}
    port: {port}
    path: /status/200
    resolvers: ["{udp}"]
    references: ["{dot}", "{doh}"]
    attempts: 2
    interval: {interval}s
    timeout: 2500ms
    connect_timeout: 1s
    tls_timeout: 1s
    read_timeout: 1s
alerting:
  alertmanager: ["{am}"]
  webhook: {{url: "{hook}", token_env: MONITOR_TEST_WEBHOOK_TOKEN, secret_env: MONITOR_TEST_WEBHOOK_SECRET}}
  poll_interval: 500ms
  resend_interval: 2s
  runbook_base_url: "https://runbooks.example/monitor/"
"""


@pytest.fixture
def recorder():
    with WebhookRecorder() as r:
        yield r


@pytest.fixture
def alertmanager(tmp_path: Path, recorder: WebhookRecorder):
    require(ALERTMANAGER, "prometheus-alertmanager (Debian package) not installed")
    with Alertmanager(tmp_path / "am", receiver_config(recorder.url("/am"))) as am:
        yield am


async def scenario(serve, site_context, pki, unbound, blocked: set[str], tmp_path: Path, am: Alertmanager, recorder: WebhookRecorder, monkeypatch) -> str:
    """The SNI filter in front of a real HTTPS site, and the daemon's config text."""
    ca, context = site_context
    backend = await serve(HttpServer(ssl_context=context))
    censor = await serve(SniFilter(backend.port, blocked))
    monkeypatch.setenv("MONITOR_TEST_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("MONITOR_TEST_WEBHOOK_SECRET", SECRET)
    return CONFIG.format(
        db=tmp_path / "m.db", ca1=pki.ca_path, ca2=ca.path, confirmations=CONFIRMATIONS, site=SITE, control=CONTROL, port=censor.port,
        udp=unbound.udp, dot=unbound.tls("localhost"), doh=unbound.https(), interval=INTERVAL, am=am.url, hook=recorder.url(HOOK),
    )


async def until(condition, timeout: float, what: str, daemon: DaemonProcess | None = None):
    """Poll a blocking `condition` on a thread (the loop keeps serving the site) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(condition)
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}" + (f"\n--- daemon log ---\n{daemon.log()[-6000:]}" if daemon else ""))
        await asyncio.sleep(0.25)


def ours(am: Alertmanager) -> list[dict]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == "MonitorSNIBlocking"]


def notifications(recorder: WebhookRecorder, status: str) -> list[dict]:
    return [p.json for p in recorder.received("/am") if p.json["status"] == status]


def hook_posts(recorder: WebhookRecorder, status: str) -> list:
    return [p for p in recorder.received(HOOK) if p.json["alerts"][0]["status"] == status]


def monitor_alerts(config_path: Path) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "monitor", "alerts", "-c", str(config_path), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(240)
async def test_sni_rst_pages_with_evidence_survives_a_restart_and_resolves(
    serve, site_context, pki, unbound, tmp_path, alertmanager, recorder, monkeypatch
):
    blocked: set[str] = set()
    config = await scenario(serve, site_context, pki, unbound, blocked, tmp_path, alertmanager, recorder, monkeypatch)
    daemon = await asyncio.to_thread(start_daemon, config, tmp_path, log_level="debug")
    logs = []
    try:
        # First the site works: a clean verdict, nothing in Alertmanager.
        await until(lambda: 'monitor_verdict{check="goproxy-site",vantage="local",verdict="ok"} 1.0' in daemon.metrics(), 30, "a clean round", daemon)
        assert await asyncio.to_thread(ours, alertmanager) == []
        # Then the filter starts resetting the site's ClientHellos.
        blocked.add(SITE)
        started = time.monotonic()
        # interval × confirmations (+ the first run's phase, up to 10 s), one round's own time, a poll, and slack for a busy machine.
        [alert] = await until(lambda: ours(alertmanager), INTERVAL * CONFIRMATIONS * 1.1 + 15, "the SNI alert in Alertmanager", daemon)
        print(f"alert in Alertmanager {time.monotonic() - started:.1f} s after the filter started")
        labels, annotations = alert["labels"], alert["annotations"]
        assert labels == {
            "alertname": "MonitorSNIBlocking", "severity": "critical", "check": "goproxy-site", "kind": "site", "target": SITE,
            "vantage": "local", "agent": "agent-a", "verdict": "sni_blocking", "team": "build-infra",
        }
        assert f"{SITE} rst (connection_reset) after the ClientHello while control {CONTROL} completed" in annotations["description"]
        assert annotations["runbook_url"] == "https://runbooks.example/monitor/MonitorSNIBlocking.md"
        assert (REPO / "docs" / "runbooks" / "MonitorSNIBlocking.md").is_file()
        [page] = await until(lambda: notifications(recorder, "firing"), 20, "Alertmanager's notification")
        assert [a["labels"]["alertname"] for a in page["alerts"]] == ["MonitorSNIBlocking"]

        # The webhook: signed, authorised JSON, once.
        [post] = await until(lambda: hook_posts(recorder, "firing"), 20, "the webhook's firing notification")
        assert post.headers["authorization"] == f"Bearer {TOKEN}"
        assert post.headers["x-monitor-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.json["alerts"][0]["annotations"]["description"] == annotations["description"]

        # What is firing, from the store, and on /metrics.
        [listed] = await asyncio.to_thread(monitor_alerts, daemon.config_path)
        assert listed["alertname"] == "MonitorSNIBlocking" and listed["status"] == "firing"
        assert any(d["sent_at"] for sink, d in listed["deliveries"].items() if sink.startswith("alertmanager"))
        text = await asyncio.to_thread(daemon.metrics)
        assert value(text, "monitor_alerts_firing", alertname="MonitorSNIBlocking", severity="critical") == 1.0
        assert value(text, "monitor_alert_notifications_total", sink="alertmanager", url=alertmanager.url, outcome="success") >= 1
        assert value(text, "monitor_alert_notifications_pending", sink="webhook", url=recorder.url("").rstrip("/")) == 0
        if shutil.which("promtool"):
            lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout + lint.stderr

        # Restart while it fires: the same alert, refreshed; no second page, no second webhook post.
        assert await asyncio.to_thread(daemon.stop) == 0
        logs.append(daemon.log())
        daemon = await asyncio.to_thread(start_daemon, config, tmp_path, log_level="debug")
        await until(lambda: f"alertmanager {alertmanager.url}: sent" in daemon.log(), 30, "a re-send after the restart", daemon)
        await asyncio.sleep(3 * 2.0)  # several resend intervals, and Alertmanager group intervals
        [again] = await asyncio.to_thread(ours, alertmanager)
        assert again["fingerprint"] == alert["fingerprint"] and again["startsAt"] == alert["startsAt"]
        assert len(notifications(recorder, "firing")) == 1
        assert len(hook_posts(recorder, "firing")) == 1

        # The filter goes: the next clean round closes the episode and the alert resolves.
        blocked.clear()
        healed = time.monotonic()
        await until(lambda: not ours(alertmanager), INTERVAL * 2 + 20, "the alert resolved in Alertmanager", daemon)
        print(f"resolved {time.monotonic() - healed:.1f} s after the filter went")
        [resolved] = await until(lambda: notifications(recorder, "resolved"), 20, "Alertmanager's resolution notification")
        assert resolved["alerts"][0]["labels"]["alertname"] == "MonitorSNIBlocking"
        [post] = await until(lambda: hook_posts(recorder, "resolved"), 20, "the webhook's resolution")
        assert post.json["alerts"][0]["endsAt"]
        assert await asyncio.to_thread(monitor_alerts, daemon.config_path) == []
    finally:
        code = await asyncio.to_thread(daemon.stop)
        logs.append(daemon.log())
    assert code == 0
    everything = "\n".join(logs)
    assert "alert MonitorSNIBlocking (critical) firing" in everything and "alert MonitorSNIBlocking resolved" in everything
    for secret in (TOKEN, SECRET, "secret-path-part"):
        assert secret not in everything


@pytest.mark.timeout(240)
async def test_an_alert_that_opens_while_alertmanager_is_down_is_delivered_once_it_is_back(
    serve, site_context, pki, unbound, tmp_path, alertmanager, recorder, monkeypatch
):
    config = await scenario(serve, site_context, pki, unbound, {SITE}, tmp_path, alertmanager, recorder, monkeypatch)
    await asyncio.to_thread(alertmanager.stop)
    down_since = time.monotonic()
    daemon = await asyncio.to_thread(start_daemon, config, tmp_path, log_level="info")
    try:
        # The alert fires (the webhook hears of it) while every send to Alertmanager fails.
        await until(lambda: hook_posts(recorder, "firing"), INTERVAL * CONFIRMATIONS + INTERVAL + 20, "the alert firing", daemon)
        await until(
            lambda: (value(daemon.metrics(), "monitor_alert_notifications_total", sink="alertmanager", outcome="failure") or 0) >= 1,
            20, "a failed send to Alertmanager", daemon,
        )
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - down_since)))
        await asyncio.to_thread(alertmanager.start)
        back = time.monotonic()
        [alert] = await until(lambda: ours(alertmanager), 60 + 20, "the alert delivered after the outage", daemon)
        print(f"delivered {time.monotonic() - back:.1f} s after Alertmanager came back")
        assert "after the ClientHello" in alert["annotations"]["description"]
        await until(lambda: notifications(recorder, "firing"), 20, "Alertmanager's notification")
        log = daemon.log()
        assert log.count("alertmanager " + alertmanager.url + ": sending") == 1  # one line for the outage
        assert f"alertmanager {alertmanager.url}: reachable again" in log
    finally:
        assert await asyncio.to_thread(daemon.stop) == 0
