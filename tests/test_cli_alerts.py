"""`monitor alerts`: what fires now and why, from the store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from monitor.store import make_engine, upgrade
from monitor.store.alerts import AlertRecord, Delivery, save_alerts

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def monitor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=60)


def test_monitor_alerts_lists_what_fires_with_its_evidence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = tmp_path / "c.yaml"
    config.write_text(f'storage: {{url: "{url}"}}\n')
    assert monitor("alerts", "-c", str(config)).stdout.startswith("no alerts: the store has no alerts table yet")
    upgrade(url)
    assert monitor("alerts", "-c", str(config)).stdout == "no alerts firing\n"
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        for agent, resolved in (("probe-hk-1", None), ("probe-fra-1", None), ("probe-sha-1", T0)):
            save_alerts(session, [AlertRecord(
                episode_id=f"ep-{agent}", agent=agent, check="goproxy-site", vantage="local", verdict="sni_blocking",
                alertname="MonitorSNIBlocking", severity="critical", labels={"alertname": "MonitorSNIBlocking"},
                annotations={"description": "tls: 192.0.2.1: proxy.golang.org rst after the ClientHello\nverdict sni_blocking since …",
                             "runbook_url": "docs/runbooks/MonitorSNIBlocking.md"},
                fired_at=T0, resolved_at=resolved,
                deliveries={"alertmanager http://127.0.0.1:9093": Delivery(sent_at=T0)} if agent == "probe-hk-1" else {},
            )])
    engine.dispose()

    table = monitor("alerts", "-c", str(config))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ALERT", "SEVERITY", "CHECK", "VANTAGE@AGENT", "SINCE", "(UTC)"]  # as results and episodes
    assert lines[1].split() == ["MonitorSNIBlocking", "critical", "goproxy-site", "local@probe-fra-1", "2026-12-01", "10:00:00"]
    assert sum(line.startswith("MonitorSNIBlocking") for line in lines) == 2
    assert "    tls: 192.0.2.1: proxy.golang.org rst after the ClientHello" in lines
    assert "    runbook: docs/runbooks/MonitorSNIBlocking.md" in lines
    assert "    delivered: alertmanager http://127.0.0.1:9093 at 2026-12-01 10:00:00" in lines
    assert "    delivered: not yet (see the daemon log)" in lines
    assert "probe-sha-1" not in table.stdout  # resolved

    only = json.loads(monitor("alerts", "-c", str(config), "--agent", "probe-hk-1", "--json").stdout)
    assert [(a["agent"], a["status"], a["alertname"]) for a in only] == [("probe-hk-1", "firing", "MonitorSNIBlocking")]
    assert only[0]["deliveries"]["alertmanager http://127.0.0.1:9093"]["sent_at"] == "2026-12-01T10:00:00.000Z"


def test_monitor_alerts_on_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("alerting: {alertmanager: ['http://u:p@am:9093']}\n")
    done = monitor("alerts", "-c", str(config))
    assert done.returncode == 2 and "credentials in a URL" in done.stderr and "u:p" not in done.stderr
