"""Command line (DESIGN §3.6). Exit codes: 0 ok, 1 runtime failure, 2 usage/config error,
3 (probe --exit-code) a check failed.

Each command is one `_cmd_<name>(args)` function and one parser block; global options
(--log-level, --log-format) are accepted before or after the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from monitor.config import Check, Config, ConfigError, load_config, parse_duration, runnable_problems
from monitor.logs import FORMATS, LEVELS, set_agent, setup_logging
from monitor.model import ProbeResult

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_CHECK_FAILED = 0, 1, 2, 3

log = logging.getLogger("monitor")

DESCRIPTION = """\
monitor watches whether the paths software depends on (Go module proxies, the checksum
database, Git hosts, DNS resolvers, HTTP/SOCKS proxies) are reachable and honest, and says
why when they are not."""

EPILOG = """\
examples:
  monitor run                                                 # the embedded sample config, SQLite in ./monitor.db
  monitor sample-config > monitor.yaml                        # a documented config to start from
  monitor check-config monitor.yaml
  monitor run -c monitor.yaml                                 # daemon: /metrics on 127.0.0.1:9464
  monitor probe -c monitor.yaml --once --json                 # one JSON line per result
  monitor probe -c monitor.yaml --once --check gh-tls --exit-code   # exit 3 if it failed (cron, Nagios)
  monitor results -c monitor.yaml --since 1h --check gh-tls   # what was stored
  monitor episodes -c monitor.yaml --open                     # what is wrong now, and why
  monitor db upgrade -c monitor.yaml
  monitor doctor golang.org/x/text@v0.14.0                   # why go mod download fails from here (no config)

exit codes: 0 ok, 1 runtime failure, 2 usage or config error (FILE:LINE: key: message),
            3 a check failed (probe --exit-code); doctor: 3, 4, 5 (monitor doctor --help)"""

SAMPLE_CONFIG = "data/config.example.yaml"


def _version() -> str:
    try:
        return metadata.version("monitor")
    except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown"


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """On the main parser with defaults; on each command's parser without, so that a value
    given after the command wins and one given before is not reset."""
    suppress = argparse.SUPPRESS
    parser.add_argument("--log-level", choices=LEVELS, default="info" if defaults else suppress, help="log verbosity (default: info)")
    parser.add_argument("--log-format", choices=FORMATS, default="text" if defaults else suppress,
                        help="text, or json: one JSON object per line for log shippers (default: text)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="monitor", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"monitor {_version()}")
    _global_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    run = command("run", help="run the daemon: scheduler, store writer, /metrics",
                  description="Run the monitoring daemon until SIGTERM. SIGHUP or POST /-/reload re-reads the config. "
                              "Without -c it runs the embedded sample config (see `monitor sample-config`).")
    run.add_argument("-c", "--config", help="config file (YAML); default: the embedded sample")

    probe = command("probe", help="run checks once and print their results",
                    description="Run every configured (check, vantage) once and print the results. Like the daemon, it judges each run "
                                "with the other vantages' latest results in the store and writes results and verdict episodes there "
                                "(spooling them if the store is down), unless --no-store.")
    probe.add_argument("-c", "--config", required=True, help="config file (YAML)")
    probe.add_argument("--once", action="store_true", required=True, help="run once and exit (the only mode for now)")
    probe.add_argument("--check", action="append", metavar="NAME", help="only this check (repeatable)")
    probe.add_argument("--json", action="store_true", help="print one JSON object per result (README: One result) instead of a table")
    probe.add_argument("--no-store", action="store_true", help="only print: verdicts from this run alone, nothing read from or written to the store")
    probe.add_argument("--exit-code", action="store_true",
                       help="exit 3 if any check failed (its result, for dns and site its summary, is not ok); for cron and Nagios-style wrappers")

    cc = command("check-config", help="validate a config file", description="Validate a config file; print every problem as FILE:LINE: key: message.")
    cc.add_argument("config", help="config file (YAML)")

    command("sample-config", help="print the documented sample config", description="Print the embedded sample config, every key documented with its default.")

    results = command("results", help="show stored results", description="Recent results from the store (SQLite or PostgreSQL), oldest first: an aligned table, or JSON lines.")
    results.add_argument("-c", "--config", required=True, help="config file (YAML): where the store is")
    results.add_argument("--check", action="append", metavar="NAME", help="only this check (repeatable)")
    results.add_argument("--vantage", help="only this vantage")
    results.add_argument("--agent", help="only this agent")
    results.add_argument("--since", default="1h", help="how far back (a duration: 30m, 1h, 2d; default 1h)")
    results.add_argument("--limit", type=int, default=50, help="at most this many, the newest (default 50)")
    results.add_argument("--json", action="store_true", help="one JSON object per result (README: One result)")

    episodes = command("episodes", help="show verdict episodes", description="Verdict episodes from the store: when each (check, vantage, agent) was under which verdict, with the evidence.")
    episodes.add_argument("-c", "--config", required=True, help="config file (YAML): where the store is")
    episodes.add_argument("--open", action="store_true", help="only the episodes still open")
    episodes.add_argument("--check", action="append", metavar="NAME", help="only this check (repeatable)")
    episodes.add_argument("--agent", help="only this agent")
    episodes.add_argument("--since", default="7d", help="episodes open then or ended since (a duration; default 7d)")
    episodes.add_argument("--limit", type=int, default=100, help="at most this many, the newest (default 100)")
    episodes.add_argument("--json", action="store_true", help="one JSON object per episode")

    alerts = command("alerts", help="what is firing now, and why", description="List the alerts firing now, read from the store (every agent writing to it, or --agent): each with its evidence, runbook and to which sinks it was delivered. The daemon's alert engine (alerting: in the config) is what fires and resolves them.")
    alerts.add_argument("-c", "--config", required=True, help="config file (YAML): where the store is")
    alerts.add_argument("--agent", metavar="NAME", help="only this agent's alerts")
    alerts.add_argument("--json", action="store_true", help="print a JSON array, one object per alert")

    db = command("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", parents=[common], help="migrate the store's schema to the latest version")
    up.add_argument("-c", "--config", required=True, help="config file (YAML)")

    doc = command(
        "doctor", help="why `go mod download` fails from here, and the fix (no config needed)", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Walk the hops `go mod download` takes for a module (GOPROXY entries with Go's ',' and '|' fall-through, "
                    "direct to the VCS over HTTPS or SSH, the checksum database, HTTPS_PROXY), measure each from here (system DNS "
                    "against DoH/DoT, TCP, TLS with the host's SNI against a control SNI, the certificate chain, HTTP, the module "
                    "fetch verified with the checksum database), say which hop fails and why, and print the fix. See docs/doctor.md.",
        epilog="examples:\n  monitor doctor golang.org/x/text@v0.14.0\n  monitor doctor -m go.mod --json\n"
               "  monitor doctor example.com/mod --try-proxy https://goproxy.cn --emit-config watch.yaml\n\n"
               "exit codes: 0 healthy, 3 go mod download fails and a fix works from here, 4 it fails and nothing tried works,\n"
               "5 it works but a hop on the way fails, 2 usage error, 1 runtime failure")
    doc.add_argument("module", nargs="?", metavar="MODULE[@VERSION]", help="the module to fetch (default version: latest)")
    doc.add_argument("-m", "--modfile", metavar="GO.MOD", help="take a few representative modules from this go.mod (and pins from the go.sum beside it)")
    doc.add_argument("--modules", type=int, default=3, metavar="N", help="how many modules to take from the go.mod (default: 3)")
    doc.add_argument("--goproxy", metavar="LIST", help="use this GOPROXY instead of the go command's")
    doc.add_argument("--gosumdb", metavar="DB", help="use this GOSUMDB instead of the go command's")
    doc.add_argument("--try-proxy", action="append", metavar="URL", help="another module proxy to try for a list that works (repeatable; default: "
                     "https://proxy.golang.org, https://goproxy.cn, https://goproxy.io; 'none' for none)")
    doc.add_argument("--reference", action="append", metavar="URL", help="encrypted resolver the system's DNS answers are compared with (repeatable; "
                     "at least one tls:// and one https://; default: https://dns.google/dns-query, tls://1.1.1.1)")
    doc.add_argument("--control-sni", default="example.com", metavar="NAME", help="name handshaken on each address besides the host's own (default: example.com)")
    doc.add_argument("--vantage", action="append", metavar="SPEC", help="where to measure from: local, netns:NAME, bind:IP, http://HOST:PORT, socks5://HOST:PORT; "
                     "repeat to compare: the first is diagnosed, the others tell censorship from a server that is down (default: local)")
    doc.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="deadline of each measurement (default: 10)")
    doc.add_argument("--json", action="store_true", help="print the diagnosis as one JSON object (docs/doctor.md)")
    doc.add_argument("--emit-config", metavar="FILE", help="write a monitor config that watches this path (with the pins learned)")
    doc.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    report = command(
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


class _Usage(Exception):
    """A usage or config problem: print the lines, exit 2."""

    def __init__(self, *lines: str):
        self.lines = lines


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        raise _Usage(*e.problems) from None


def _since(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as e:
        raise _Usage(f"--since: {e}") from None


@contextlib.contextmanager
def _sample_config() -> Iterator[Path]:
    with resources.as_file(resources.files("monitor").joinpath(SAMPLE_CONFIG)) as path:
        yield path


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except _Usage as u:
        for line in u.lines:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    except Exception as e:  # a runtime failure: say what, not a traceback, unless debugging
        log.error("%s: %s", type(e).__name__, e, exc_info=args.log_level == "debug")
        return EXIT_RUNTIME


# -- commands ----------------------------------------------------------------------------------


def _cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    problems = runnable_problems(cfg, args.config)
    if problems:
        raise _Usage(*problems)
    print(f"{args.config}: ok ({len(cfg.checks)} checks, {len(cfg.vantages)} vantages)")
    return EXIT_OK


def _cmd_sample_config(args: argparse.Namespace) -> int:
    with _sample_config() as path:
        sys.stdout.write(path.read_text(encoding="utf-8"))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import run_daemon

    with contextlib.ExitStack() as stack:
        path = args.config
        if path is None:
            path = str(stack.enter_context(_sample_config()))
            log.info("no -c given: running the embedded sample config %s (see `monitor sample-config`)", path)
        cfg = _load(path)
        problems = runnable_problems(cfg, path)
        if problems:
            raise _Usage(*problems)
        set_agent(cfg.agent)
        return asyncio.run(run_daemon(path, cfg))


def _cmd_db(args: argparse.Namespace) -> int:
    from monitor.store import upgrade

    cfg = _load(args.config)
    upgrade(cfg.storage.dsn)
    print(f"database at {cfg.storage.display_url} is at the latest schema")
    return EXIT_OK


def _cmd_probe(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    set_agent(cfg.agent)
    names = set(args.check or [])
    unknown = names - {c.name for c in cfg.checks}
    if unknown:
        raise _Usage(f"unknown check(s): {', '.join(sorted(unknown))} (known: {', '.join(c.name for c in cfg.checks)})")
    checks = [c for c in cfg.checks if not names or c.name in names]
    runs, stored = asyncio.run(_measure_once(cfg, checks, store=not args.no_store))
    for results in runs:
        for result in results:
            if args.json:
                print(json.dumps(result.to_json(), separators=(",", ":")), flush=True)
            else:
                failure = f"{result.failure.cls}@{result.failure.operation}: {result.failure.detail}" if result.failure else ""
                print(f"{'OK  ' if result.ok else 'FAIL'} {result.check:<20} {result.vantage:<12} {result.target:<40} {result.duration_s*1000:8.1f} ms  {failure}", flush=True)
    if not stored:
        return EXIT_RUNTIME
    if args.exit_code and any(results and not results[-1].ok for results in runs):
        return EXIT_CHECK_FAILED
    return EXIT_OK


async def _measure_once(cfg: Config, checks: list[Check], *, store: bool) -> tuple[list[list[ProbeResult]], bool]:
    """Every (check, vantage) once, concurrently within the configured cap, in config order;
    the results of each run, and whether storing went well (True without `store`).

    Each run is judged as the daemon judges it (monitor/judgement.py): its verdict, its
    episode stepped. With `store`, the other vantages' latest results in the store count, the
    residual-blocking memory is recalled from it, and results and episodes are written
    through the same writer and spool; without, only this invocation's own runs count. A
    failure to store is logged and the results are still returned, to be printed."""
    from monitor.daemon import recall_residual_blocking, try_prepare_store
    from monitor.judgement import Judge
    from monitor.probes import measure
    from monitor.store.executor import run_in_store_thread
    from monitor.vantage import vantages_from_config

    vantages = vantages_from_config(cfg)
    cap = asyncio.Semaphore(cfg.scheduler.max_concurrency)
    judge = Judge(cfg, store=store)

    async def one(check: Check, vantage: str) -> tuple[Check, list[ProbeResult]]:
        async with cap:
            return check, await measure(check, vantages[vantage], agent=cfg.agent)

    try:
        if store and await try_prepare_store(cfg.storage.dsn, migrate=cfg.storage.migrate):
            await run_in_store_thread(recall_residual_blocking, judge, cfg)
        runs = await asyncio.gather(*(one(c, v) for c in checks for v in c.vantages))
        # Controls first: the other vantages of this invocation then compare with their runs.
        for check, results in sorted(runs, key=lambda run: not judge.is_control(run[1][-1].vantage, cfg.agent)):
            try:
                await run_in_store_thread(judge.conclude, check, results)
            except Exception:  # a bug in the rules must not cost the run its results
                log.exception("judging check %s from vantage %s failed; its results are kept unjudged", check.name, results[-1].vantage)
        stored = True
        if store:
            try:
                await _store_runs(cfg, runs)
            except Exception as e:
                log.error("results measured but not stored: %s: %s", type(e).__name__, e)
                stored = False
    finally:
        judge.close()
    return [results for _, results in runs], stored


async def _store_runs(cfg: Config, runs: list[tuple[Check, list[ProbeResult]]]) -> None:
    """Through the daemon's writer and spool (without the spool if this agent's daemon holds it)."""
    from monitor.daemon import writer_for
    from monitor.store.spool import SpoolInUse

    try:
        writer = writer_for(cfg)
    except SpoolInUse as e:  # the daemon of this agent runs here: don't fail, write directly
        log.warning("%s; writing without a spool", e)
        writer = writer_for(cfg, spool=False)
    writing = asyncio.create_task(writer.run())
    try:
        for _, results in runs:
            for result in results:
                writer.submit(result)
    finally:
        await writer.close()
        await writing


def _reading(cfg: Config, read: Callable) -> list:
    """Run `read(session)` on the configured store."""
    from sqlalchemy.orm import Session

    from monitor.store import make_engine

    engine = make_engine(cfg.storage.dsn)
    try:
        with Session(engine) as session:
            return read(session)
    finally:
        engine.dispose()


def _cmd_results(args: argparse.Namespace) -> int:
    from monitor.model import utcnow
    from monitor.store import recent_results
    from monitor.views import result_lines, result_rows

    cfg = _load(args.config)
    since = utcnow() - _since(args.since)
    found = _reading(cfg, lambda s: recent_results(s, checks=args.check, vantage=args.vantage, agent=args.agent, since=since, limit=args.limit))
    if args.json:
        lines = result_lines(found)
    elif found:
        lines = result_rows(found)
    else:
        lines = [f"no results since {args.since} ago matching the filters"]
    print("\n".join(lines))
    return EXIT_OK


def _cmd_episodes(args: argparse.Namespace) -> int:
    from monitor.model import utcnow
    from monitor.store.episodes import list_episodes
    from monitor.views import episode_lines, episode_rows

    cfg = _load(args.config)
    since = utcnow() - _since(args.since)
    found = _reading(cfg, lambda s: list_episodes(s, since=since, open_only=args.open, checks=args.check, agent=args.agent, limit=args.limit))
    if args.json:
        lines = episode_lines(found)
    elif found:
        lines = episode_rows(found)
    else:
        lines = ["no open episodes" if args.open else f"no episodes since {args.since} ago"]
    print("\n".join(lines))
    return EXIT_OK


def _cmd_alerts(args: argparse.Namespace) -> int:
    """`monitor alerts`: the store's firing alerts, with their evidence and deliveries."""
    from sqlalchemy import inspect

    from monitor.store.alerts import firing_alerts
    from monitor.views import alert_rows

    cfg = _load(args.config)

    def read(session):  # None: a store the daemon (or db upgrade) has not migrated yet
        return firing_alerts(session, args.agent) if inspect(session.get_bind()).has_table("alerts") else None

    found = _reading(cfg, read)
    if found is None:
        print("no alerts: the store has no alerts table yet (the daemon creates it, as does monitor db upgrade)")
    elif args.json:
        print(json.dumps([a.to_json() for a in found], indent=2))
    elif not found:
        print("no alerts firing" + (f" for agent {args.agent}" if args.agent else ""))
    else:
        print("\n".join(alert_rows(found)))
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    """`monitor doctor` (monitor/doctor/command.py): its own exit codes, 2 for usage."""
    from monitor.doctor.command import DoctorUsage, run_command

    try:
        return run_command(args)
    except DoctorUsage as e:
        raise _Usage(f"monitor doctor: {e}") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from monitor.report import ReportError, make_report
    from monitor.report.period import between, quarter
    from monitor.report.progress import Progress

    cfg = _load(args.config)
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
        raise _Usage(f"monitor report: {e}") from None
    try:
        make_report(cfg, period, args.format, Path(args.output) if args.output else None, stdout=sys.stdout, progress=Progress(8))
    except ReportError as e:
        print(f"monitor report: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.output:
        log.info("report for %s written to %s", period.label, args.output)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _cmd_run,
    "probe": _cmd_probe,
    "check-config": _cmd_check_config,
    "sample-config": _cmd_sample_config,
    "results": _cmd_results,
    "episodes": _cmd_episodes,
    "alerts": _cmd_alerts,
    "doctor": _cmd_doctor,
    "report": _cmd_report,
    "db": _cmd_db,
}
