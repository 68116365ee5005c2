"""Module proxies: fetch time and zip throughput per proxy × vantage, which proxy of a GOPROXY
list served, checksums, the checksum database's tree."""

from __future__ import annotations

from grafana.board import PROBE, Board, prom, runbook

UID = "monitor-modules"
TITLE = "monitor · Module proxies"
DESCRIPTION = "Go module proxies as go mod download uses them: fetch time, zip throughput, which proxy served, checksums, sumdb tree."
KINDS = "goproxy"

MODULES = f'kind="goproxy", {PROBE}'


def build(b: Board) -> None:
    b.row("Integrity")
    b.state_timeline(
        "Checksums match",
        "Whether the module fetched through each proxy hashes to its pins and the checksum database's record (as "
        "go.sum would check). Red is a tampered module or go.mod: never turn GOSUMDB off to make it pass.",
        prom(f"monitor_module_checksum_ok{{{MODULES}}}", "{{check}} · {{vantage}}"),
        values={1: ("checksums match", "green"), 0: ("MISMATCH", "dark-purple")}, links=[runbook("MonitorModuleTampered")],
        no_value="No module verified yet",
    )
    b.state_timeline(
        "Which proxy served the zip",
        "For a GOPROXY list (a,b|direct), the proxy whose answer the module zip came from, as the go command would "
        "have fallen through the list.",
        prom(f"monitor_module_served_by{{{MODULES}}}", "{{check}} · {{vantage}} ← {{proxy}}"),
        values={1: ("served", "blue")},
    )
    b.timeseries(
        "Checksum database tree size",
        "Records in the checksum database's signed tree that the last fetch verified (it only grows; a tree that "
        "cannot be proven consistent with an earlier one fails the check).",
        prom(f"max by (sumdb, vantage) (monitor_sumdb_tree_size{{{MODULES}}})", "{{sumdb}} · {{vantage}}"),
        unit="short", axis_label="records",
    )
    b.sql_table(
        "Largest verified trees (store)",
        "The largest tree of each checksum database any agent verified, as kept in the store.",
        """
        SELECT name AS "checksum database", size AS "records", hash AS "root hash", verified_at AS "verified at"
        FROM sumdb_trees ORDER BY name
        """,
        w=12, h=8, no_value="No checksum database verified yet",
    )

    b.row("Speed")
    b.timeseries(
        "Fetch time per proxy and vantage",
        "Duration of the last module fetch (.info, .mod, .zip and the checksum database), per check (one proxy or "
        "list) and vantage.",
        prom(f"probe_duration_seconds{{{MODULES}}}", "{{check}} · {{vantage}}"),
        unit="s",
    )
    b.timeseries(
        "Zip throughput per proxy and vantage",
        "Bytes per second of the last module zip download.",
        prom(f"monitor_module_zip_bytes_per_second{{{MODULES}}}", "{{check}} · {{vantage}}"),
        unit="Bps",
    )
    b.timeseries(
        "Fetch failures by class",
        "Failed fetches per minute by class and operation: checksum_mismatch (tampered), module_not_found, "
        "connection_reset in read (cut mid-transfer), sumdb_verification_failed…",
        prom(f"sum by (check, class, operation) (rate(monitor_probe_failures_total{{{MODULES}}}[$__rate_interval])) * 60",
             "{{check}}: {{class}} in {{operation}}"),
        axis_label="failures / min", bars=True, stack=True, no_value="No fetch failure", w=24,
    )
