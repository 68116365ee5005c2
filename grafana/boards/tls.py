"""TLS / SNI: handshakes, the SNI experiment (target against control name), certificates."""

from __future__ import annotations

from grafana.board import PROBE, Board, prom, runbook

UID = "monitor-tls"
TITLE = "monitor · TLS / SNI"
DESCRIPTION = "Handshake phases, the SNI experiment (target name against a control name on the same address), certificate expiry."
KINDS = "tls|http"

DAY = 86400
OK_FAILED_TLS = {1: ("verified", "green"), 0: ("failed", "red")}


def build(b: Board) -> None:
    b.row("SNI experiment")
    b.state_timeline(
        "Did the server answer each SNI?",
        "tls checks with a control_sni (and site checks) handshake the same address three times: with the target "
        "name, a control name and no name. Green: the server's hello came back. Target red while control is green "
        "on the same address is SNI blocking; all red is the address or the server.",
        prom(f"monitor_sni_server_hello{{{PROBE}}}", "{{check}} · {{attempt}} SNI · {{vantage}}"),
        values={1: ("server hello", "green"), 0: ("no answer", "red")}, h=9,
        links=[runbook("MonitorSNIBlocking"), runbook("MonitorRSTInjection"), runbook("MonitorIPBlocking")],
    )
    b.state_timeline(
        "Handshake outcome",
        "The last handshake of each tls check (the target name's): green when it completed and the certificate "
        "verified for the name.",
        prom(f'probe_success{{kind="tls", {PROBE}}}', "{{check}} · {{vantage}}"),
        values=OK_FAILED_TLS, h=9, links=[runbook("MonitorTLSMITM")],
    )

    b.row("Phases and failures")
    b.timeseries(
        "Mean time per handshake phase",
        "Name resolution, TCP connect and TLS handshake, averaged over the tls checks' runs.",
        prom(f'sum by (check, phase) (rate(monitor_probe_phase_seconds_sum{{kind="tls", phase=~"resolve|connect|tls", {PROBE}}}[$__rate_interval]))'
             f' / sum by (check, phase) (rate(monitor_probe_phase_seconds_count{{kind="tls", phase=~"resolve|connect|tls", {PROBE}}}[$__rate_interval]))',
             "{{check}} · {{phase}}"),
        unit="s", interval="1m",
    )
    b.timeseries(
        "Handshake failures by class",
        "Failed tls results per minute, by class and operation. connection_reset in tls_handshake is a reset after "
        "the ClientHello: what SNI filters do.",
        prom(f'sum by (check, class, operation) (rate(monitor_probe_failures_total{{kind="tls", {PROBE}}}[$__rate_interval])) * 60',
             "{{check}}: {{class}} in {{operation}}"),
        axis_label="failures / min", bars=True, stack=True, no_value="No handshake failure",
    )

    b.row("Certificates")
    b.bar_gauge(
        "Certificate expires in",
        "Time left until the leaf certificate the server presented expires (tls and http checks). Orange under 14 "
        "days, red under 7.",
        prom(f"min by (check, target) (probe_ssl_earliest_cert_expiry{{{PROBE}}}) - time()", "{{check}} · {{target}}", instant=True),
        unit="dtdurations", steps=[(None, "red"), (7 * DAY, "orange"), (14 * DAY, "green")], w=12,
    )
    b.table(
        "TLS version negotiated",
        "The TLS version of each check's last handshake, per vantage.",
        prom(f"max by (check, vantage, version) (probe_tls_version_info{{{PROBE}}}) == 1", instant=True), w=12,
    )
