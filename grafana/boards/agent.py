"""Agent health: is each agent measuring, keeping up, storing, and within its means."""

from __future__ import annotations

from grafana.board import AGENT, AGENT_TARGET, CHECK_VANTAGE, GREEN_UNLESS_POSITIVE, PROBE, SQL_CHECK_VANTAGE_AGENT, Board, Sql, prom

UID = "monitor-agent"
TITLE = "monitor · Agent health"
DESCRIPTION = "Each agent process: probes per second, scheduler lag, store queue and disk spool, config reloads, CPU and memory."
KINDS = ".*"


def build(b: Board) -> None:
    b.row("Measuring")
    b.state_timeline(
        "Agent scraped",
        "Whether Prometheus reaches each agent's /metrics (its `up` series; scrape targets labelled with an agent). "
        "Red: the agent is down or unreachable, and every board goes quiet for it.",
        prom(f"up{{{AGENT_TARGET}}}", "{{agent}} ({{instance}})"),
        values={1: ("up", "green"), 0: ("DOWN", "red")}, w=24, h=5,
    )
    b.timeseries(
        "Probes per second",
        "Results measured per second by each agent (a dns or site round counts each of its results).",
        prom(f"sum by (agent) (rate(monitor_probe_runs_total{{{PROBE}}}[$__rate_interval]))", "{{agent}}"),
        axis_label="probes / s", min_value=0,
    )
    b.timeseries(
        "Scheduler lag",
        "How late the last run of each check started. Growing lag means the agent cannot keep up with its checks "
        "(raise scheduler.max_concurrency, lengthen intervals, or add an agent).",
        prom(f"max by (agent, check, vantage) (monitor_scheduler_lag_seconds{{{CHECK_VANTAGE}}})", "{{check}} · {{vantage}} ({{agent}})"),
        unit="s", steps=[(None, "green"), (5, "orange"), (30, "red")], min_value=0,
    )
    b.timeseries(
        "Skipped runs",
        "Runs that did not happen: overlap (the previous run of the check was still going: its timeout is too close to "
        "its interval, or the store is slow) or late (the agent was busy past the next run's time). Any: the check's "
        "data has gaps.",
        prom(f"sum by (agent, check, vantage, reason) (increase(monitor_scheduler_skipped_runs_total{{{CHECK_VANTAGE}}}[$__rate_interval]))",
             "{{check}} · {{vantage}} {{reason}} ({{agent}})"),
        steps=GREEN_UNLESS_POSITIVE, min_value=0, axis_label="runs", bars=True, w=24,
    )

    b.row("Storing")
    b.timeseries(
        "Store queue depth",
        "Results measured and waiting for the store writer. A queue that keeps growing means the store is slow.",
        prom(f"monitor_store_queue_depth{{{AGENT}}}", "{{agent}}"),
        min_value=0, axis_label="results", w=8,
    )
    b.timeseries(
        "Results spooled to disk",
        "Results kept on the agent's disk because the store cannot be written; replayed in order once it answers. "
        "Above 0 for long: the agent cannot reach the store.",
        prom(f"monitor_store_spooled_results{{{AGENT}}}", "{{agent}}"),
        steps=GREEN_UNLESS_POSITIVE, min_value=0, axis_label="results", w=8,
    )
    b.timeseries(
        "Results stored per minute (store)",
        "Rows the store received per minute from each agent, read from PostgreSQL: compare with probes per second "
        "above to see results that do not arrive.",
        Sql(f"""
        SELECT date_trunc('minute', started_at) AS time, agent AS metric, count(*) AS value
        FROM results
        WHERE $__timeFilter(started_at) AND {SQL_CHECK_VANTAGE_AGENT}
        GROUP BY 1, 2 ORDER BY 1
        """, fmt="time_series"),
        axis_label="results / min", bars=True, w=8,
    )

    b.row("Process")
    b.state_timeline(
        "Last config load",
        "Whether the last config (re)load succeeded. A rejected reload keeps the running config: fix the file "
        "(`monitor check-config FILE`) and reload again.",
        prom(f"monitor_config_last_reload_successful{{{AGENT}}}", "{{agent}}"),
        values={1: ("loaded", "green"), 0: ("REJECTED", "red")}, w=12, h=5,
    )
    b.stat(
        "Config (re)loads in the range",
        "Successful loads of the config in the time range (SIGHUP or POST /-/reload), all agents.",
        prom(f"sum(changes(monitor_config_last_reload_success_timestamp_seconds{{{AGENT}}}[$__range]))", instant=True),
        steps=[(None, "blue")], decimals=0, w=12, h=5,
    )
    b.timeseries(
        "CPU",
        "CPU time the agent process used, as a share of one core.",
        prom(f"rate(process_cpu_seconds_total{{{AGENT_TARGET}}}[$__rate_interval])", "{{agent}}"),
        unit="percentunit", min_value=0,
    )
    b.timeseries(
        "Memory (resident)",
        "Resident memory of the agent process.",
        prom(f"process_resident_memory_bytes{{{AGENT_TARGET}}}", "{{agent}}"),
        unit="bytes", min_value=0,
    )
