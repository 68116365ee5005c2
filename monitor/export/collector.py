"""Prometheus Collector over ExporterState (DESIGN §3.5).

Blackbox-compatible names where the meaning is the same, so existing rules and boards work;
our own under `monitor_`. Every probe series is labelled check/kind/vantage/target, all of
which come from the config — never free text from the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.export.exposition import Counter, Gauge, Histogram
from monitor.export.state import PHASE_BUCKETS, ExporterState
from monitor.model import Phase, ProbeResult, VerdictName
from monitor.redact import redact_url

PROBE_LABELS = ["check", "kind", "vantage", "target"]

# blackbox_exporter's http prober names the header wait "processing".
_BLACKBOX_HTTP_PHASE = {Phase.RESOLVE: "resolve", Phase.CONNECT: "connect", Phase.TLS: "tls", Phase.TTFB: "processing", Phase.TRANSFER: "transfer"}


def _labels(r: ProbeResult) -> list[str]:
    return [r.check, r.kind, r.vantage, r.target]


def _unix_time(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


class MonitorCollector(Collector):
    def __init__(self, state: ExporterState, queue_depth: Callable[[], int] = lambda: 0, spooled: Callable[[], int] = lambda: 0):
        self.state = state
        # Both read at scrape time from the store writer.
        self.queue_depth = queue_depth
        self.spooled = spooled

    def collect(self) -> Iterator[Metric]:
        s = self.state.snapshot()
        yield from self._probe_metrics(s)
        yield from self._detail_metrics(s)
        yield from self._history_metrics(s)
        yield self._verdict_metric(s)
        yield from self._daemon_metrics(s)

    def _probe_metrics(self, s: ExporterState) -> Iterator[Metric]:
        success = Gauge("probe_success", "1 if the last probe succeeded", labels=PROBE_LABELS)
        duration = Gauge("probe_duration_seconds", "Duration of the last probe", labels=PROBE_LABELS)
        dns_time = Gauge("probe_dns_lookup_time_seconds", "Time spent resolving the target name", labels=PROBE_LABELS)
        http_phase = Gauge("probe_http_duration_seconds", "HTTP request phases of the last probe", labels=PROBE_LABELS + ["phase"])
        status = Gauge("probe_http_status_code", "HTTP status of the last response", labels=PROBE_LABELS)
        expiry = Gauge("probe_ssl_earliest_cert_expiry", "Unix time the presented leaf certificate expires", labels=PROBE_LABELS)
        tls_version = Gauge("probe_tls_version_info", "TLS version of the last handshake", labels=PROBE_LABELS + ["version"])
        checksum_ok = Gauge(
            "monitor_module_checksum_ok", "1 if the fetched module matched its pinned / checksum-database hashes", labels=PROBE_LABELS
        )
        consistent = Gauge(
            "monitor_dns_answers_consistent", "1 if the resolvers of the last DNS round agreed", labels=["check", "vantage"]
        )
        zip_rate = Gauge("monitor_module_zip_bytes_per_second", "Module zip download throughput", labels=PROBE_LABELS)
        for r in s.latest.values():
            labels = _labels(r)
            success.add_metric(labels, 1.0 if r.ok else 0.0)
            duration.add_metric(labels, r.duration_s)
            # For a dns check, the query itself (the system resolver has only `resolve`);
            # for every other kind, resolving the target's name.
            lookup = r.phases.get(Phase.DNS_ROUND_TRIP, r.phases.get(Phase.RESOLVE)) if r.kind == "dns" else r.phases.get(Phase.RESOLVE)
            if lookup is not None:
                dns_time.add_metric(labels, lookup)
            if r.facts.get("role") == "comparison" and isinstance(r.facts.get("consistent"), bool):
                consistent.add_metric([r.check, r.vantage], 1.0 if r.facts["consistent"] else 0.0)
            if r.kind == "http":
                # Blackbox always exposes every phase; an unreached phase reads 0.
                for ours, theirs in _BLACKBOX_HTTP_PHASE.items():
                    http_phase.add_metric(labels + [theirs], r.phases.get(ours, 0.0))
                if "status_code" in r.facts:
                    status.add_metric(labels, float(r.facts["status_code"]))
            not_after = r.facts.get("cert_not_after")
            if isinstance(not_after, str) and (ts := _unix_time(not_after)) is not None:
                expiry.add_metric(labels, ts)
            if isinstance(r.facts.get("tls_version"), str):
                tls_version.add_metric(labels + [r.facts["tls_version"]], 1.0)
            # Absent when integrity was never decided (e.g. the proxy was unreachable).
            if isinstance(r.facts.get("checksum_ok"), bool):
                checksum_ok.add_metric(labels, 1.0 if r.facts["checksum_ok"] else 0.0)
            if isinstance(r.facts.get("zip_bytes_per_second"), (int, float)):
                zip_rate.add_metric(labels, float(r.facts["zip_bytes_per_second"]))
        yield from (success, duration, dns_time, http_phase, status, expiry, tls_version, checksum_ok, zip_rate, consistent)

    def _detail_metrics(self, s: ExporterState) -> Iterator[Metric]:
        """What a kind's last result saw beyond success: the facts a board or rule needs to say why."""
        server_hello = Gauge(
            "monitor_sni_server_hello",
            "1 if the server answered the ClientHello of this attempt of the last SNI experiment (target, control or none SNI)",
            labels=PROBE_LABELS + ["attempt"],
        )
        injected = Gauge(
            "monitor_dns_injected_replies", "Replies to the last UDP query that answered otherwise than the first one (forged replies racing it)", labels=PROBE_LABELS
        )
        served_by = Gauge(
            "monitor_module_served_by", "1 for the proxy of the GOPROXY list that served the module zip in the last probe", labels=PROBE_LABELS + ["proxy"]
        )
        tree_size = Gauge(
            "monitor_sumdb_tree_size", "Records in the checksum database tree the last probe verified", labels=PROBE_LABELS + ["sumdb"]
        )
        git_part = Gauge(
            "monitor_git_part_success", "1 if this part of the last git probe succeeded: smart HTTP (http) or the SSH banner (ssh)", labels=PROBE_LABELS + ["part"]
        )
        for r in s.latest.values():
            labels = _labels(r)
            for attempt in r.facts.get("sni_experiment") or ():
                # A skipped attempt (residual-blocking hold-off) says nothing about the path.
                if isinstance(attempt, dict) and attempt.get("skipped") is None and attempt.get("label") in ("target", "control", "none"):
                    server_hello.add_metric(labels + [attempt["label"]], 1.0 if attempt.get("server_hello") else 0.0)
            if isinstance(r.facts.get("replies"), list):
                injected.add_metric(labels, float(sum(1 for reply in r.facts["replies"] if isinstance(reply, dict) and reply.get("differs"))))
            served = r.facts.get("served_by")
            if isinstance(served, dict) and isinstance(served.get("zip"), str):
                served_by.add_metric(labels + [redact_url(served["zip"])], 1.0)
            tree = r.facts.get("sumdb_tree")
            if isinstance(tree, dict) and isinstance(tree.get("size"), int) and isinstance(tree.get("name"), str):
                tree_size.add_metric(labels + [tree["name"]], float(tree["size"]))
            if r.kind == "git":
                for part in ("http", "ssh"):
                    if isinstance(r.facts.get(part), dict):
                        git_part.add_metric(labels + [part], 1.0 if r.facts[part].get("ok") else 0.0)
        yield from (server_hello, injected, served_by, tree_size, git_part)

    def _history_metrics(self, s: ExporterState) -> Iterator[Metric]:
        kinds = {key: r.kind for key, r in s.latest.items()}
        runs = Counter("monitor_probe_runs", "Probe results measured (a dns or site round counts each of its results)", labels=PROBE_LABELS)
        for (check, vantage, target), n in s.runs.items():
            runs.add_metric([check, kinds.get((check, vantage, target), ""), vantage, target], n)
        yield runs
        failures = Counter(
            "monitor_probe_failures", "Probe failures by class and operation", labels=PROBE_LABELS + ["class", "operation"]
        )
        for (check, vantage, target, cls, op), n in s.failures.items():
            failures.add_metric([check, kinds.get((check, vantage, target), ""), vantage, target, cls, op], n)
        yield failures
        phases = Histogram(
            "monitor_probe_phase_seconds", "Time spent in each probe phase", labels=PROBE_LABELS + ["phase", "transport"], bounds=PHASE_BUCKETS
        )
        for (check, vantage, target, phase, transport), h in s.phases.items():
            phases.add_metric([check, kinds.get((check, vantage, target), ""), vantage, target, phase, transport], [*h.cumulative(), h.total], h.sum)
        yield phases

    def _verdict_metric(self, s: ExporterState) -> Metric:
        # A state set: every verdict of the closed vocabulary, 1 for the current one, so that
        # an alert rule can match `== 1` and a dashboard can stack them over time.
        verdict = Gauge(
            "monitor_verdict", "1 for the current verdict of a check from a vantage (its open episode's, else ok)", labels=["check", "vantage", "verdict"]
        )
        for (check, vantage), current in s.verdicts.items():
            for name in VerdictName:
                verdict.add_metric([check, vantage, name.value], 1.0 if name.value == current else 0.0)
        return verdict

    def _daemon_metrics(self, s: ExporterState) -> Iterator[Metric]:
        lag = Gauge(
            "monitor_scheduler_lag_seconds", "How late the last run of a check started (or, still waiting to start, is so far)", labels=["check", "vantage"]
        )
        for (check, vantage), seconds in s.scheduler_lag.items():
            lag.add_metric([check, vantage], seconds)
        yield lag
        skipped = Counter(
            "monitor_scheduler_skipped_runs", "Runs that did not happen: overlap (the previous one still going) or late (coalesced, missed)",
            labels=["check", "vantage", "reason"],
        )
        for (check, vantage, reason), runs in s.skipped_runs.items():
            skipped.add_metric([check, vantage, reason], runs)
        yield skipped
        yield GaugeMetricFamily("monitor_store_queue_depth", "Results waiting for the store writer", value=self.queue_depth())
        yield GaugeMetricFamily("monitor_store_spooled_results", "Results kept on local disk until the store takes them", value=self.spooled())
        yield GaugeMetricFamily("monitor_config_last_reload_successful", "1 if the last config (re)load succeeded", value=1.0 if s.reload_ok else 0.0)
        yield GaugeMetricFamily(
            "monitor_config_last_reload_success_timestamp_seconds", "Unix time of the last successful config load", value=s.reload_time
        )
