"""Overview: what is wrong now, from where, since when, and why (the episodes' evidence)."""

from __future__ import annotations

from grafana.board import CHECK_VANTAGE, GREEN_UNLESS_POSITIVE, PROBE, SQL_CHECK_VANTAGE_AGENT, Board, prom
from monitor.model import VerdictName

UID = "monitor-overview"
TITLE = "monitor · Overview"
DESCRIPTION = "Verdict per check and vantage, availability, open verdict episodes with their evidence, and which networks see blocking."
KINDS = ".*"

# Every verdict's place in the health matrix: a code for the state timeline and a colour.
# Green is ok; yellow and orange are doubt and partial failure; red is failure without a
# culprit; purple is interference by the network (censorship, interception, tampering).
VERDICT_COLOURS: dict[VerdictName, str] = {
    VerdictName.OK: "green",
    VerdictName.INCONCLUSIVE: "yellow",
    VerdictName.DEGRADED: "orange",
    VerdictName.FAILING: "red",
    VerdictName.SERVER_DOWN: "dark-red",
    VerdictName.PROXY_FAILURE: "dark-orange",
    VerdictName.DNS_POISONING: "purple",
    VerdictName.DNS_BLOCKING: "purple",
    VerdictName.ENCRYPTED_DNS_BLOCKED: "light-purple",
    VerdictName.IP_BLOCKING: "purple",
    VerdictName.SNI_BLOCKING: "purple",
    VerdictName.RST_INJECTION: "purple",
    VerdictName.HTTP_BLOCKING: "purple",
    VerdictName.TLS_MITM: "dark-purple",
    VerdictName.MODULE_TAMPERED: "dark-purple",
}
VERDICT_CODES = {verdict: code for code, verdict in enumerate(VerdictName)}


def verdict_code_expr(selector: str) -> str:
    """monitor_verdict is a state set (1 for the current verdict, 0 for the others); this turns
    it into one series per (agent, check, vantage) whose value is the verdict's code."""
    codes = " or ".join(f'label_replace(vector({code}), "verdict", "{v.value}", "", "")' for v, code in VERDICT_CODES.items())
    return f"max by (agent, check, vantage) ((monitor_verdict{{{selector}}} == 1) * on (verdict) group_left () ({codes}))"


def build(b: Board) -> None:
    b.row("Now")
    b.state_timeline(
        "Health matrix: verdict per check and vantage",
        "One row per check as seen from one vantage of one agent, coloured by its current verdict: the open verdict "
        "episode's, else ok. Green ok; yellow inconclusive (one unrepeated failure); orange degraded; red failing or "
        "server down (also failing from other vantages); purple the network interferes (DNS poisoning or blocking, "
        "SNI/IP blocking, RST injection, TLS interception, a tampered module). Hover for the verdict; the episodes "
        "table below gives the evidence.",
        prom(verdict_code_expr(CHECK_VANTAGE), "{{check}} · {{vantage}} ({{agent}})"),
        values={code: (v.value, VERDICT_COLOURS[v]) for v, code in VERDICT_CODES.items()},
        w=24, h=10,
        no_value="No check with a verdict (site, dns, goproxy) in this selection",
        links=[("All runbooks", "${runbooks}/"), ("Runbook: MonitorCheckFailing", "${runbooks}/MonitorCheckFailing.md")],
        data_links=[("Show only ${__field.labels.check} from ${__field.labels.vantage}",
                     "/d/monitor-overview?var-check=${__field.labels.check}&var-vantage=${__field.labels.vantage}&${__url_time_range}")],
    )
    b.stat(
        "Checks not ok now",
        "Checks (per vantage and agent) whose current verdict is anything but ok.",
        prom(f'sum(max by (agent, check, vantage) (monitor_verdict{{verdict!="ok", {CHECK_VANTAGE}}}))', instant=True),
        steps=GREEN_UNLESS_POSITIVE, w=6,
    )
    b.stat(
        "Measurements failing now",
        "Latest results that failed, over every check, target and resolver: probe_success == 0.",
        prom(f"sum(1 - probe_success{{{PROBE}}})", instant=True),
        steps=GREEN_UNLESS_POSITIVE, w=6,
    )
    b.stat(
        "Availability over the range",
        "Share of the time the latest result was a success, over every selected series and the whole time range.",
        prom(f"avg(avg_over_time(probe_success{{{PROBE}}}[$__range]))", instant=True),
        unit="percentunit", decimals=2, steps=[(None, "red"), (0.95, "orange"), (0.99, "green")], w=6,
    )
    b.stat(
        "Probes per second",
        "Results measured per second by the selected agents: zero means nothing is being measured.",
        prom(f"sum(rate(monitor_probe_runs_total{{{PROBE}}}[$__rate_interval]))", instant=True),
        unit="short", decimals=2, steps=[(None, "red"), (0.0001, "green")], w=6,
    )

    b.row("Where and since when")
    b.bar_gauge(
        "Availability by check and vantage over the range",
        "Share of the time range each check's latest result from each vantage was a success (worst first is the "
        "one to look at). Under 99 % is orange, under 95 % red.",
        prom(f"avg by (agent, check, vantage) (avg_over_time(probe_success{{{PROBE}}}[$__range]))",
             "{{check}} · {{vantage}} ({{agent}})", instant=True),
        unit="percentunit", min_value=0, max_value=1, decimals=2, steps=[(None, "red"), (0.95, "orange"), (0.99, "green")],
        w=8, h=9,
    )
    b.bar_gauge(
        "Checks not ok, per network",
        "Where trouble is seen from: per agent and vantage, how many checks have a verdict other than ok now. One "
        "network with many is that network's path (censorship, a broken proxy); every network with the same check "
        "is the service.",
        prom(f'sum by (agent, vantage) (monitor_verdict{{verdict!="ok", {CHECK_VANTAGE}}})', "{{vantage}} ({{agent}})", instant=True),
        steps=GREEN_UNLESS_POSITIVE, min_value=0, decimals=0, w=8, h=9,
    )
    b.table(
        "Verdicts seen now, per network",
        "Each verdict other than ok now held by some check, with the agent and vantage that see it and how many checks.",
        prom(f'count by (agent, vantage, verdict) (monitor_verdict{{verdict!="ok", {CHECK_VANTAGE}}} == 1)', instant=True),
        no_value="Every check is ok from every network", w=8, h=9,
    )

    b.row("Why: the store's episodes and failures")
    b.sql_table(
        "Open verdict episodes and their evidence",
        "Episodes open now (confirmed, not ended), oldest first, from the store: what monitor concluded, how sure, "
        "for how many rounds, and the evidence it rests on.",
        f"""
        SELECT confirmed_at AS "open since", "check", vantage, agent, verdict, confidence, rounds,
               (SELECT string_agg(line, ' · ') FROM jsonb_array_elements_text(evidence) AS line) AS evidence
        FROM verdict_episodes
        WHERE ended_at IS NULL AND confirmed_at IS NOT NULL AND {SQL_CHECK_VANTAGE_AGENT}
        ORDER BY confirmed_at
        """,
        no_value="No open episode", h=8,
    )
    b.sql_table(
        "Latest failures and what the network did",
        "The newest failed results in the time range (at most 100), with the failure class, the operation it happened "
        "in and the probe's detail.",
        f"""
        SELECT started_at AS "time", "check", kind, vantage, agent, target,
               failure_class AS "class", failure_operation AS "operation", failure_detail AS "detail"
        FROM results
        WHERE $__timeFilter(started_at) AND NOT ok AND failure_class IS NOT NULL
          AND kind ~ '^${{kind:regex}}$' AND {SQL_CHECK_VANTAGE_AGENT}
        ORDER BY started_at DESC
        LIMIT 100
        """,
        no_value="No failure in this time range", h=10,
    )
    b.timeseries(
        "Failures by class and operation",
        "Failed results per minute, by failure class and the operation it happened in (e.g. connection_reset in "
        "tls_handshake: resets after the ClientHello).",
        prom(f"sum by (class, operation) (rate(monitor_probe_failures_total{{{PROBE}}}[$__rate_interval])) * 60",
             "{{class}} in {{operation}}"),
        axis_label="failures / min", bars=True, stack=True, no_value="No failure", w=24,
    )
