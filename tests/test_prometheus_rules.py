"""deploy/prometheus/rules: promtool checks the rules and runs their unit tests; every rule has
a test where it fires and one where it stays quiet; every metric a rule reads is one monitor
exports (README's metrics table) or Prometheus's own `up`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import require

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "rules"
RULE_TESTS = REPO / "deploy" / "prometheus" / "rules-tests" / "monitor_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require(shutil.which("promtool"), "promtool (Debian package prometheus) not installed")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=RULES, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((RULES / "monitor.yml").read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", "monitor.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {r["alert"] for r in rules()}
    assert names - firing == set(), "rules never shown firing"
    assert names - quiet == set(), "rules never shown staying quiet"
    # Every rule (the same alertname may have several, e.g. per severity) fires in some test.
    severities = {(c["alertname"], a["exp_labels"]["severity"]) for c in cases for a in c.get("exp_alerts") or []}
    assert {(r["alert"], r["labels"]["severity"]) for r in rules()} <= severities


def test_rules_read_only_metrics_that_monitor_exports() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)", readme, re.M))
    for rule in rules():
        used = set(re.findall(r"\b((?:probe|monitor)_[a-z_]+)\b", rule["expr"]))
        assert used or re.search(r"\bup\{", rule["expr"]), rule["alert"]
        assert used <= documented, f"{rule['alert']} reads {sorted(used - documented)}, not in README's metrics table"


def test_every_rule_says_severity_summary_and_runbook() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
