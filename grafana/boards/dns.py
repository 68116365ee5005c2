"""DNS: do plain and encrypted resolvers answer, do they agree, are replies injected, how fast."""

from __future__ import annotations

from grafana.board import CHECK_VANTAGE, GREEN_UNLESS_POSITIVE, OK_FAILED, PROBE, Board, prom, runbook

UID = "monitor-dns"
TITLE = "monitor · DNS"
DESCRIPTION = "Plain (UDP, TCP, system) against encrypted (DoT, DoH) resolvers: answers, consistency, injected replies, latency."
KINDS = "dns"

# A dns check has one result per resolver (target = the resolver as configured) and one
# comparison (target = the query name). Resolvers are told apart by their scheme.
PLAIN = 'target=~"(udp|tcp)://.*|system"'
ENCRYPTED = 'target=~"(tls|https)://.*"'
RESOLVERS = 'target=~"[a-z]+://.*|system"'


def build(b: Board) -> None:
    b.row("Answers")
    b.state_timeline(
        "Plain resolvers: answered?",
        "Each plain resolver (UDP, TCP, the system's) of each dns check: green when it gave a usable answer, red "
        "when it failed (timeout, refused, SERVFAIL, NXDOMAIN…). Compare with the encrypted resolvers beside it: "
        "plain failing while encrypted answers is DNS blocking on the path.",
        prom(f'probe_success{{kind="dns", {PLAIN}, {PROBE}}}', "{{check}} · {{target}} · {{vantage}}"),
        values=OK_FAILED, links=[runbook("MonitorDNSBlocking")],
    )
    b.state_timeline(
        "Encrypted resolvers (DoT, DoH): answered?",
        "Each DNS-over-TLS and DNS-over-HTTPS resolver: green when it answered. Red here while plain resolvers "
        "answer is encrypted DNS being blocked.",
        prom(f'probe_success{{kind="dns", {ENCRYPTED}, {PROBE}}}', "{{check}} · {{target}} · {{vantage}}"),
        values=OK_FAILED, links=[runbook("MonitorEncryptedDNSBlocked")],
        no_value="No encrypted resolver in the selected checks",
    )
    b.state_timeline(
        "Resolvers agree",
        "Per dns check and vantage: green when every resolver's answer is consistent with the others (a certificate "
        "check, not set equality: CDNs answer differently), red when some answer is forged, bogon or missing.",
        prom(f"monitor_dns_answers_consistent{{{CHECK_VANTAGE}}}", "{{check}} · {{vantage}}"),
        values={1: ("consistent", "green"), 0: ("inconsistent", "red")}, links=[runbook("MonitorDNSPoisoning")],
    )
    b.timeseries(
        "Injected replies (UDP)",
        "Replies to one UDP query that answered differently from the first one: forged answers racing the real "
        "one, as an injecting censor sends them. Anything above 0 is injection.",
        prom(f'monitor_dns_injected_replies{{kind="dns", {PROBE}}}', "{{check}} · {{target}} · {{vantage}}"),
        steps=GREEN_UNLESS_POSITIVE, bars=True, min_value=0, axis_label="replies", links=[runbook("MonitorDNSPoisoning")],
    )

    b.row("Latency and failures")
    b.timeseries(
        "Query time by resolver",
        "Time from the query leaving to the reply (the whole lookup for the system resolver), last round.",
        prom(f'probe_dns_lookup_time_seconds{{kind="dns", {RESOLVERS}, {PROBE}}}', "{{target}} · {{check}} · {{vantage}}"),
        unit="s",
    )
    b.timeseries(
        "Mean round trip by transport",
        "DNS round trip averaged over the selected resolvers of each transport (udp, tcp, tls = DoT, https = DoH).",
        prom(f'sum by (transport) (rate(monitor_probe_phase_seconds_sum{{kind="dns", phase="dns_round_trip", {PROBE}}}[$__rate_interval]))'
             f' / sum by (transport) (rate(monitor_probe_phase_seconds_count{{kind="dns", phase="dns_round_trip", {PROBE}}}[$__rate_interval]))',
             "{{transport}}"),
        unit="s", interval="1m",
    )
    b.timeseries(
        "Resolver failures by class",
        "Failed queries per minute, per resolver and failure class (dns_nxdomain_error, generic_timeout_error, "
        "connection_refused…).",
        prom(f'sum by (target, class) (rate(monitor_probe_failures_total{{kind="dns", {PROBE}}}[$__rate_interval])) * 60',
             "{{target}}: {{class}}"),
        axis_label="failures / min", bars=True, stack=True, no_value="No resolver failure", w=24,
    )
