"""What each verdict is called when it alerts, and how loud it is by default.

One alertname per verdict that describes a problem; `ok` and `inconclusive` never alert.
Default severities (overridable per check, `alert.severity`):
- critical (pages): the path is broken or dishonest from where the agent stands — a build on
  that network fails, or worse, gets other bytes than everyone else;
- warning (does not page): something works around it or it is partial — encrypted DNS
  blocked while plain DNS still answers honestly, a path that fails some of the time.
The example deploy/alertmanager.yml pages on critical and sends warning to a chat receiver.
Each alert has a runbook, docs/runbooks/<alertname>.md (tests/test_runbooks.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.model import VerdictName as V


@dataclass(frozen=True)
class AlertKind:
    alertname: str
    severity: str  # the default: critical, warning or info
    title: str  # what the verdict means, for the summary line


CATALOG: dict[V, AlertKind] = {
    V.DNS_POISONING: AlertKind("MonitorDNSPoisoning", "critical", "forged DNS answers"),
    V.DNS_BLOCKING: AlertKind("MonitorDNSBlocking", "critical", "DNS blocked"),
    V.ENCRYPTED_DNS_BLOCKED: AlertKind("MonitorEncryptedDNSBlocked", "warning", "DoT/DoH blocked"),
    V.IP_BLOCKING: AlertKind("MonitorIPBlocking", "critical", "addresses blackholed"),
    V.SNI_BLOCKING: AlertKind("MonitorSNIBlocking", "critical", "TLS blocked by server name (SNI filter)"),
    V.RST_INJECTION: AlertKind("MonitorRSTInjection", "critical", "connections reset by a middlebox"),
    V.TLS_MITM: AlertKind("MonitorTLSMITM", "critical", "TLS intercepted (certificate not the site's)"),
    V.HTTP_BLOCKING: AlertKind("MonitorHTTPBlocking", "critical", "HTTP blocked over a verified TLS session"),
    V.PROXY_FAILURE: AlertKind("MonitorProxyFailure", "critical", "the egress proxy fails"),
    V.MODULE_TAMPERED: AlertKind("MonitorModuleTampered", "critical", "module bytes do not match the checksum database"),
    V.DEGRADED: AlertKind("MonitorDegraded", "warning", "failing part of the time"),
    V.FAILING: AlertKind("MonitorCheckFailing", "critical", "failing round after round, cause not established"),
    V.SERVER_DOWN: AlertKind("MonitorServerDown", "critical", "down from every vantage that tried"),
}


def alert_kind(verdict: V) -> AlertKind | None:
    """None for the verdicts that never alert (ok, inconclusive)."""
    return CATALOG.get(verdict)


def runbook_file(alertname: str) -> str:
    """The runbook's file name under docs/runbooks/."""
    return f"{alertname}.md"
