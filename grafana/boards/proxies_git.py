"""Proxies and Git: does each proxy carry traffic, where its time goes; Git over HTTPS and SSH."""

from __future__ import annotations

from grafana.board import OK_FAILED, PROBE, Board, prom

UID = "monitor-proxies-git"
TITLE = "monitor · Proxies and Git"
DESCRIPTION = "HTTP CONNECT, SOCKS5 and forward proxies phase by phase; Git hosts over smart HTTP and SSH."
KINDS = "proxy|git"


def build(b: Board) -> None:
    b.row("Proxies")
    b.state_timeline(
        "Proxy carries traffic",
        "Each proxy check: green when the proxy accepted the connection, set up the tunnel (CONNECT 2xx or SOCKS5 "
        "success) and the request through it completed.",
        prom(f'probe_success{{kind="proxy", {PROBE}}}', "{{check}} · {{vantage}}"),
        values=OK_FAILED,
    )
    b.timeseries(
        "Mean time per proxy phase",
        "proxy_connect: TCP to the proxy; proxy_handshake: CONNECT or SOCKS5 set-up; then resolve, tls and ttfb "
        "through the tunnel.",
        prom(f'sum by (check, phase) (rate(monitor_probe_phase_seconds_sum{{kind="proxy", {PROBE}}}[$__rate_interval]))'
             f' / sum by (check, phase) (rate(monitor_probe_phase_seconds_count{{kind="proxy", {PROBE}}}[$__rate_interval]))',
             "{{check}} · {{phase}}"),
        unit="s", stack=True, interval="1m",
    )
    b.timeseries(
        "Proxy failures by class",
        "Failed proxy checks per minute: proxy_error (the proxy refused or answered 4xx/5xx), proxy_auth_required, "
        "connection_refused in proxy_connect…",
        prom(f'sum by (check, class, operation) (rate(monitor_probe_failures_total{{kind="proxy", {PROBE}}}[$__rate_interval])) * 60',
             "{{check}}: {{class}} in {{operation}}"),
        axis_label="failures / min", bars=True, stack=True, no_value="No proxy failure", w=24,
    )

    b.row("Git")
    b.state_timeline(
        "Git over smart HTTP and SSH",
        "Each git check's two ways in: http = GET info/refs as git clone starts; ssh = TCP and the SSH banner. SSH "
        "red while HTTPS is green: use the HTTPS remote.",
        prom(f'monitor_git_part_success{{kind="git", {PROBE}}}', "{{check}} · {{part}} · {{vantage}}"),
        values=OK_FAILED,
    )
    b.timeseries(
        "Git check duration",
        "How long the last git check took (both parts, run side by side).",
        prom(f'probe_duration_seconds{{kind="git", {PROBE}}}', "{{check}} · {{vantage}}"),
        unit="s",
    )
