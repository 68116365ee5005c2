"""Alerts (DESIGN §1): verdict episodes in the store become alerts with their evidence, sent to
Alertmanager (API v2) and a JSON webhook. `AlertEngine` is what the daemon runs; the
vocabulary (one alertname per verdict) is in `catalog`, when an episode alerts in `policy`."""

from monitor.alerts.catalog import CATALOG, alert_kind, runbook_file
from monitor.alerts.engine import AlertEngine

__all__ = ["CATALOG", "AlertEngine", "alert_kind", "runbook_file"]
