"""Command line (DESIGN §3.6). Exit codes: 0 ok, 2 usage/config error, 1 runtime failure."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from monitor.config import Check, Config, ConfigError, load_config
from monitor.model import ProbeResult

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("monitor")

DESCRIPTION = """\
monitor watches whether the paths software depends on (Go module proxies, the checksum
database, Git hosts, DNS resolvers, HTTP/SOCKS proxies) are reachable and honest, and says
why when they are not."""

EPILOG = """\
examples:
  monitor check-config config.example.yaml
  monitor probe -c config.example.yaml --once --json          # one JSON line per result
  monitor probe -c config.example.yaml --once --check gh-tls --json
  monitor run -c config.example.yaml                          # daemon: /metrics on 127.0.0.1:9464
  monitor db upgrade -c config.example.yaml

exit codes: 0 ok, 1 runtime failure, 2 usage or config error (FILE:LINE: key: message)"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="monitor", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log verbosity (default: info)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon: scheduler, store writer, /metrics", description="Run the monitoring daemon until SIGTERM. SIGHUP or POST /-/reload re-reads the config.")
    run.add_argument("-c", "--config", required=True, help="config file (YAML)")

    probe = sub.add_parser("probe", help="run checks once and print their results", description="Run every configured (check, vantage) once and print the results. Like the daemon, it judges each run with the other vantages' latest results in the store and writes results and verdict episodes there (spooling them if the store is down), unless --no-store.")
    probe.add_argument("-c", "--config", required=True, help="config file (YAML)")
    probe.add_argument("--once", action="store_true", required=True, help="run once and exit (the only mode for now)")
    probe.add_argument("--check", action="append", metavar="NAME", help="only this check (repeatable)")
    probe.add_argument("--json", action="store_true", help="print one JSON object per result (DESIGN §3.2) instead of a table")
    probe.add_argument("--no-store", action="store_true", help="only print: no cross-vantage verdicts, nothing written to the store")

    cc = sub.add_parser("check-config", help="validate a config file", description="Validate a config file; print every problem as FILE:LINE: key: message.")
    cc.add_argument("config", help="config file (YAML)")

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="migrate the store's schema to the latest version")
    up.add_argument("-c", "--config", required=True, help="config file (YAML)")

    report = sub.add_parser(
        "report", help="the health-score report of a quarter (html, pdf, md, json)",
        description="Score every check, network and module proxy over a quarter (or --from/--to) from the store's\n"
        "rollups: executive summary, scores with the trend against the period before, incidents, GOPROXY\n"
        "advice per network, charts. Objectives, weights, title and logo come from the config's report:\n"
        "section (docs/report.md). A progress bar goes to stderr when it is a terminal.",
        epilog="examples:\n  monitor report -c config.yaml --quarter 2026Q4 -o q4.html\n"
        "  monitor report -c config.yaml --quarter 2026Q4 --format pdf -o q4.pdf\n"
        "  monitor report -c config.yaml --from 2026-11-01 --to 2026-11-15T12:00Z --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("-c", "--config", required=True, help="config file (YAML)")
    span = report.add_mutually_exclusive_group(required=True)
    span.add_argument("--quarter", metavar="YYYYQN", help="a calendar quarter in UTC, e.g. 2026Q4")
    span.add_argument("--from", dest="since", metavar="TIME", help="start (a date, or an ISO time; UTC unless it has an offset); needs --to")
    report.add_argument("--to", dest="until", metavar="TIME", help="end, exclusive (rounded up to a whole hour)")
    report.add_argument("--format", choices=["html", "pdf", "md", "json"], default="html", help="output format (default: html)")
    report.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output; pdf needs a file)")
    return p


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # APScheduler logs every job start at INFO; keep its warnings (skipped runs) only.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.command == "check-config":
        cfg = _load(args.config)
        if cfg is None:
            return EXIT_USAGE
        print(f"{args.config}: ok ({len(cfg.checks)} checks, {len(cfg.vantages)} vantages)")
        return EXIT_OK
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_USAGE
    try:
        if args.command == "run":
            from monitor.daemon import run_daemon

            return asyncio.run(run_daemon(args.config, cfg))
        if args.command == "probe":
            return _probe(cfg, args)
        if args.command == "db":
            from monitor.store import upgrade

            upgrade(cfg.storage.url)
            print(f"database at {cfg.storage.url} is at the latest schema")
            return EXIT_OK
        if args.command == "report":
            return _cmd_report(cfg, args)
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    except Exception as e:  # a runtime failure: say what, not a traceback, unless debugging
        log.error("%s: %s", type(e).__name__, e, exc_info=args.log_level == "debug")
        return EXIT_RUNTIME
    return EXIT_USAGE


async def _measure_once(cfg: Config, checks: list[Check], *, store: bool) -> list[ProbeResult]:
    """Every (check, vantage) once, concurrently within the configured cap, in config order.

    With `store`, as the daemon does: each run judged with the other vantages and its episode
    stepped (monitor/judgement.py), its results written through the same writer and spool."""
    from monitor.daemon import try_prepare_store, writer_for
    from monitor.judgement import Judge
    from monitor.probes import measure
    from monitor.store.spool import SpoolInUse
    from monitor.vantage import vantages_from_config

    vantages = vantages_from_config(cfg)
    cap = asyncio.Semaphore(cfg.scheduler.max_concurrency)

    async def one(check: Check, vantage: str) -> tuple[Check, list[ProbeResult]]:
        async with cap:
            return check, await measure(check, vantages[vantage], agent=cfg.agent)

    runs = await asyncio.gather(*(one(c, v) for c in checks for v in c.vantages))
    if store:
        await try_prepare_store(cfg.storage.url)
        try:
            writer = writer_for(cfg)
        except SpoolInUse as e:  # the daemon of this agent runs here: don't fail, write directly
            log.warning("%s; writing without a spool", e)
            writer = writer_for(cfg, spool=False)
        judge = Judge(cfg.storage.url, cfg.analysis, cfg.agent)
        writing = asyncio.create_task(writer.run())
        try:
            for check, results in runs:
                await asyncio.to_thread(judge.conclude, check, results)
                for result in results:
                    writer.submit(result)
        finally:
            judge.close()
            await writer.close()
            await writing
    return [r for _, results in runs for r in results]


def _probe(cfg: Config, args: argparse.Namespace) -> int:
    names = set(args.check or [])
    unknown = names - {c.name for c in cfg.checks}
    if unknown:
        print(f"unknown check(s): {', '.join(sorted(unknown))} (known: {', '.join(c.name for c in cfg.checks)})", file=sys.stderr)
        return EXIT_USAGE
    checks = [c for c in cfg.checks if not names or c.name in names]
    for result in asyncio.run(_measure_once(cfg, checks, store=not args.no_store)):
        if args.json:
            print(json.dumps(result.to_json(), separators=(",", ":"), sort_keys=False), flush=True)
        else:
            failure = f"{result.failure.cls}@{result.failure.operation}: {result.failure.detail}" if result.failure else ""
            print(f"{'OK  ' if result.ok else 'FAIL'} {result.check:<20} {result.vantage:<12} {result.target:<40} {result.duration_s*1000:8.1f} ms  {failure}", flush=True)
    return EXIT_OK


def _cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from monitor.report import ReportError, make_report
    from monitor.report.period import between, quarter
    from monitor.report.progress import Progress

    try:
        if args.quarter:
            if args.until:
                raise ValueError("--to goes with --from, not with --quarter")
            period = quarter(args.quarter)
        else:
            if not args.until:
                raise ValueError("--from needs --to")
            period = between(args.since, args.until)
        if args.format == "pdf" and not args.output:
            raise ValueError("--format pdf needs -o FILE")
    except ValueError as e:
        print(f"monitor report: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        make_report(cfg, period, args.format, Path(args.output) if args.output else None, stdout=sys.stdout, progress=Progress(8))
    except ReportError as e:
        print(f"monitor report: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.output:
        log.info("report for %s written to %s", period.label, args.output)
    return EXIT_OK
