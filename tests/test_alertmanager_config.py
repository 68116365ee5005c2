"""deploy/alertmanager.yml: valid for amtool, and its routing tree and inhibitions do in a real
Alertmanager what its comments say — several agents' alerts of one incident become one
notification; an agent or vantage that is down silences the pages it explains."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.alerts.alertmanager import AlertmanagerSink
from monitor.store.alerts import AlertRecord
from tests.conftest import require
from tests.servers.alertmanager import ALERTMANAGER, AMTOOL, Alertmanager
from tests.servers.webhook_recorder import WebhookRecorder

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "alertmanager.yml"


def test_the_example_passes_amtool_check_config() -> None:
    require(AMTOOL, "amtool (Debian package prometheus-alertmanager) not installed")
    done = subprocess.run([AMTOOL, "check-config", str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def example_pointing_at(recorder: WebhookRecorder) -> str:
    """The shipped file with its receivers aimed at the recorder and its waits cut to a second;
    the routing tree, group_by and inhibit_rules are the shipped ones."""
    config = yaml.safe_load(EXAMPLE.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = recorder.url(f"/{receiver['name']}")
    config["route"].update(group_wait="1s", group_interval="1s")
    return yaml.safe_dump(config)


@pytest.fixture
def example_alertmanager(tmp_path: Path) -> Iterator[tuple[Alertmanager, WebhookRecorder]]:
    require(ALERTMANAGER, "prometheus-alertmanager (Debian package) not installed")
    with WebhookRecorder() as recorder, Alertmanager(tmp_path / "am", example_pointing_at(recorder)) as am:
        yield am, recorder


def alert(alertname: str, agent: str, vantage: str = "local", severity: str = "critical", check: str = "goproxy-site", target: str = "proxy.golang.org") -> AlertRecord:
    labels = {"alertname": alertname, "severity": severity, "check": check, "kind": "site", "target": target,
              "vantage": vantage, "agent": agent, "verdict": "x"}
    return AlertRecord(episode_id=f"{alertname}-{agent}-{vantage}", agent=agent, check=check, vantage=vantage, verdict="x",
                       alertname=alertname, severity=severity, labels=labels, annotations={"summary": alertname}, fired_at=datetime.now(UTC))


def send(am: Alertmanager, *alerts: AlertRecord) -> None:
    async def post() -> None:
        async with httpx.AsyncClient() as client:
            await AlertmanagerSink(am.url, valid_for=300, timeout=5).send(client, list(alerts), datetime.now(UTC))

    asyncio.run(post())


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return value


def test_two_agents_seeing_one_incident_make_one_notification(example_alertmanager) -> None:
    am, recorder = example_alertmanager
    send(am, alert("MonitorSNIBlocking", "probe-hk-1"), alert("MonitorSNIBlocking", "probe-sha-1", vantage="uplink-b"))
    [page] = wait_for(lambda: recorder.received("/oncall-pager"), 20, "the pager's notification")
    assert page.json["groupLabels"] == {"alertname": "MonitorSNIBlocking", "check": "goproxy-site", "target": "proxy.golang.org"}
    assert sorted(a["labels"]["agent"] for a in page.json["alerts"]) == ["probe-hk-1", "probe-sha-1"]
    wait_for(lambda: recorder.received("/team-chat"), 20, "critical goes to chat as well (continue: true)")
    time.sleep(3)  # group_interval is 1 s here: a second notification would have come
    assert len(recorder.received("/oncall-pager")) == 1
    # warning does not page.
    send(am, alert("MonitorDegraded", "probe-hk-1", severity="warning"))
    wait_for(lambda: any(a["labels"]["alertname"] == "MonitorDegraded" for p in recorder.received("/team-chat") for a in p.json["alerts"]), 20, "warning in chat")
    assert all(a["labels"]["alertname"] != "MonitorDegraded" for p in recorder.received("/oncall-pager") for a in p.json["alerts"])


def test_an_agent_or_vantage_down_inhibits_the_pages_it_explains(example_alertmanager) -> None:
    am, _ = example_alertmanager
    send(
        am,
        alert("MonitorAgentDown", "probe-hk-1"),
        alert("MonitorCheckFailing", "probe-hk-1", check="a"),
        alert("MonitorVantageDown", "probe-sha-1", vantage="uplink-b"),
        alert("MonitorIPBlocking", "probe-sha-1", vantage="uplink-b", check="b"),
        alert("MonitorSNIBlocking", "probe-sha-1", vantage="uplink-b", check="c"),  # the path works: the control completed
        alert("MonitorIPBlocking", "probe-sha-1", vantage="local", check="b"),  # another vantage of that agent
    )

    def states() -> dict[tuple[str, str, str], str]:
        return {(a["labels"]["alertname"], a["labels"]["agent"], a["labels"]["vantage"]): a["status"]["state"] for a in am.alerts()}

    expected = {
        ("MonitorAgentDown", "probe-hk-1", "local"): "active",
        ("MonitorCheckFailing", "probe-hk-1", "local"): "suppressed",
        ("MonitorVantageDown", "probe-sha-1", "uplink-b"): "active",
        ("MonitorIPBlocking", "probe-sha-1", "uplink-b"): "suppressed",
        ("MonitorSNIBlocking", "probe-sha-1", "uplink-b"): "active",
        ("MonitorIPBlocking", "probe-sha-1", "local"): "active",
    }
    wait_for(lambda: states() == expected, 20, f"inhibitions as documented; got {states()}")

