"""The collector turns results into the DESIGN §3.5 series; series vanish with their check."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.export.collector import MonitorCollector
from monitor.export.state import ExporterState
from monitor.model import Failure, FailureClass, Operation, ProbeResult, utcnow


def _result(check: str, kind: str, target: str, ok: bool = True, **kw) -> ProbeResult:
    return ProbeResult(check=check, kind=kind, vantage="local", target=target, started_at=utcnow(), ok=ok, duration_s=0.5, **kw)


def _scrape(state: ExporterState, depth: int = 0) -> dict[tuple, float]:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(state, queue_depth=lambda: depth))
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict, name: str, **labels: str) -> list[float]:
    return [v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items())]


def test_http_tls_dns_goproxy_results_map_to_metrics() -> None:
    state = ExporterState()
    state.record(_result("web", "http", "https://a/", phases={"resolve": 0.001, "connect": 0.002, "tls": 0.003, "ttfb": 0.004, "transfer": 0.005},
                         facts={"status_code": 200, "tls_version": "TLSv1.3", "cert_not_after": "2030-01-01T00:00:00Z"}))
    state.record(_result("web", "http", "https://a/", ok=False, failure=Failure(FailureClass.CONNECTION_RESET, Operation.TLS_HANDSHAKE)))
    state.record(_result("dns", "dns", "udp://127.0.0.1:53", phases={"dns_round_trip": 0.01}, facts={"transport": "udp", "role": "resolver"}))
    state.record(_result("dns", "dns", "example.com", ok=False, facts={"role": "comparison", "consistent": False}))
    state.record(_result("mod", "goproxy", "m@v1.0.0 via https://p", facts={"checksum_ok": True, "zip_bytes_per_second": 1e6}))
    s = _scrape(state, depth=7)

    # The latest result wins for gauges; the failure counter keeps counting.
    assert _get(s, "probe_success", check="web") == [0.0]
    assert _get(s, "monitor_probe_failures_total", check="web", **{"class": "connection_reset", "operation": "tls_handshake"}) == [1.0]
    assert _get(s, "probe_success", check="dns", target="udp://127.0.0.1:53") == [1.0]
    assert _get(s, "probe_dns_lookup_time_seconds", check="dns", target="udp://127.0.0.1:53") == [0.01]
    assert _get(s, "monitor_dns_answers_consistent", check="dns", vantage="local") == [0.0]
    assert _get(s, "monitor_module_checksum_ok", check="mod") == [1.0]
    assert _get(s, "monitor_module_zip_bytes_per_second", check="mod") == [1e6]
    assert _get(s, "monitor_store_queue_depth") == [7.0]
    # Histogram: both http results observed a phase only when they had it.
    assert _get(s, "monitor_probe_phase_seconds_count", check="web", phase="ttfb") == [1.0]
    assert _get(s, "monitor_probe_phase_seconds_count", check="dns", phase="dns_round_trip", transport="udp") == [1.0]


def test_blackbox_http_phases_always_exposed_and_named_like_blackbox() -> None:
    state = ExporterState()
    state.record(_result("web", "http", "https://a/", phases={"resolve": 0.001, "connect": 0.002, "tls": 0.003, "ttfb": 0.004, "transfer": 0.005},
                         facts={"status_code": 404, "tls_version": "TLSv1.3", "cert_not_after": "2030-01-01T00:00:00Z"}))
    s = _scrape(state)
    phases = {dict(ls)["phase"]: v for (n, ls), v in s.items() if n == "probe_http_duration_seconds"}
    assert phases == {"resolve": 0.001, "connect": 0.002, "tls": 0.003, "processing": 0.004, "transfer": 0.005}
    assert _get(s, "probe_http_status_code", check="web") == [404.0]
    assert _get(s, "probe_tls_version_info", version="TLSv1.3") == [1.0]
    assert _get(s, "probe_ssl_earliest_cert_expiry", check="web") == [1893456000.0]


def test_series_vanish_when_check_leaves_config() -> None:
    state = ExporterState()
    state.record(_result("a", "tcp", "h:1", ok=False, failure=Failure(FailureClass.CONNECTION_REFUSED, Operation.CONNECT)))
    state.record(_result("b", "tcp", "h:2"))
    state.scheduler_lag[("a", "local")] = 0.1
    state.forget_checks_except({("b", "local")})
    s = _scrape(state)
    assert all(dict(ls).get("check") != "a" for (_, ls) in s)
    assert _get(s, "probe_success", check="b") == [1.0]


def test_detail_series_say_why_sni_dns_module_and_git_results_look_as_they_do() -> None:
    state = ExporterState()
    state.record(_result("gh-tls", "tls", "h:443", ok=False, failure=Failure(FailureClass.CONNECTION_RESET, Operation.TLS_HANDSHAKE), facts={"sni_experiment": [
        {"label": "control", "skipped": None, "server_hello": True},
        {"label": "target", "skipped": None, "server_hello": False},
        {"label": "none", "skipped": {"reason": "residual_blocking_holdoff", "remaining_s": 12.0}, "server_hello": False},
    ]}))
    state.record(_result("dns", "dns", "udp://127.0.0.1:53", facts={"transport": "udp", "replies": [
        {"status": "accepted"}, {"status": "duplicate", "differs": True}, {"status": "duplicate", "differs": False}]}))
    state.record(_result("dns", "dns", "tls://127.0.0.1", facts={"transport": "tls"}))
    state.record(_result("mod", "goproxy", "m@v1 via https://a,https://b", facts={
        "served_by": {"info": "https://a", "zip": "https://user:secret@b:8443"}, "sumdb_tree": {"name": "sum.golang.org", "size": 42, "hash": "x"}}))
    state.record(_result("repo", "git", "https://g/r + ssh://g:22", ok=False, facts={"http": {"ok": True}, "ssh": {"ok": False}}))
    state.record(_result("repo", "git", "https://g/r + ssh://g:22", facts={"http": {"ok": True}, "ssh": {"ok": True}}))
    s = _scrape(state)

    assert _get(s, "monitor_sni_server_hello", check="gh-tls", attempt="control") == [1.0]
    assert _get(s, "monitor_sni_server_hello", check="gh-tls", attempt="target") == [0.0]
    assert _get(s, "monitor_sni_server_hello", check="gh-tls", attempt="none") == []  # skipped: no evidence
    assert _get(s, "monitor_dns_injected_replies", target="udp://127.0.0.1:53") == [1.0]
    assert _get(s, "monitor_dns_injected_replies", target="tls://127.0.0.1") == []  # only UDP sees racing replies
    served = [dict(ls) for (n, ls), v in s.items() if n == "monitor_module_served_by" and v == 1.0]
    assert [labels["proxy"] for labels in served] == ["https://REDACTED@b:8443"]  # credentials never in a label (monitor.redact)
    assert _get(s, "monitor_sumdb_tree_size", check="mod", sumdb="sum.golang.org") == [42.0]
    assert _get(s, "monitor_git_part_success", check="repo", part="ssh") == [1.0]  # the latest result
    assert _get(s, "monitor_probe_runs_total", check="repo") == [2.0]
    assert _get(s, "monitor_probe_runs_total", check="dns", target="udp://127.0.0.1:53") == [1.0]
    assert all("secret" not in str(ls) for (_, ls) in s)


def test_run_counts_vanish_with_their_check() -> None:
    state = ExporterState()
    state.record(_result("a", "tcp", "h:1"))
    state.forget_checks_except(set())
    assert _get(_scrape(state), "monitor_probe_runs_total") == []


def test_streamed_exposition_is_prometheus_clients_text() -> None:
    """/metrics is written by monitor.export.exposition, chunk by chunk; joined, it must be
    exactly what prometheus-client's generate_latest makes of the same collector."""
    from monitor.export.exposition import exposition

    state = ExporterState()
    state.record(_result("web", "http", 'https://a/"quoted"\\path\nline', phases={"resolve": 0.001, "connect": 0.002, "tls": 0.003, "ttfb": 0.004, "transfer": 0.005},
                         facts={"status_code": 200, "tls_version": "TLSv1.3", "cert_not_after": "2030-01-01T00:00:00Z"}))
    state.record(_result("web", "http", "https://b/", ok=False, failure=Failure(FailureClass.CONNECTION_RESET, Operation.TLS_HANDSHAKE)))
    state.record(_result("dns", "dns", "udp://127.0.0.1:53", phases={"dns_round_trip": 0.01}, facts={"transport": "udp", "role": "resolver"}))
    state.record(_result("mod", "goproxy", "m@v1.0.0 via https://p", facts={"checksum_ok": True, "zip_bytes_per_second": 1e6}))
    for n in range(1200):  # more series than one chunk
        state.record(_result(f"tcp-{n}", "tcp", f"127.0.0.1:{1000 + n}", phases={"connect": n / 1e5}))
    registry = CollectorRegistry()
    registry.register(MonitorCollector(state, queue_depth=lambda: 3))
    chunks = list(exposition(registry))
    assert len(chunks) > 1
    assert b"".join(chunks) == generate_latest(registry)
