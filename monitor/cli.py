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

    doc = sub.add_parser(
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
    if args.command == "doctor":
        return _cmd_doctor(args)
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


def _cmd_doctor(args: argparse.Namespace) -> int:
    """`monitor doctor`: usage problems exit 2, a crash 1, else the diagnosis's own code."""
    import dataclasses
    import os
    import time
    from pathlib import Path

    from monitor.doctor import Progress, go_trust, run_doctor, vantage_from_spec
    from monitor.doctor.emit import emit_config
    from monitor.doctor.goenv import read_git_rewrites, read_goenv
    from monitor.doctor.gomod import GoModError, parse_module_arg, read_gomod, read_gosum, representative
    from monitor.doctor.plan import make_plan
    from monitor.doctor.render import to_json, to_text
    from monitor.doctor.run import Settings

    def usage(message: str) -> int:
        print(f"monitor doctor: {message}", file=sys.stderr)
        return EXIT_USAGE

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the progress
    goenv = read_goenv()
    if args.goproxy:
        goenv = dataclasses.replace(goenv, goproxy=args.goproxy, source=goenv.source + ", --goproxy")
    if args.gosumdb:
        goenv = dataclasses.replace(goenv, gosumdb=args.gosumdb, source=goenv.source + ", --gosumdb")
    pins: dict = {}
    try:
        if args.module and args.modfile:
            return usage("give MODULE[@VERSION] or -m go.mod, not both")
        modfile = args.modfile or ("go.mod" if not args.module and Path("go.mod").is_file() else None)
        if args.module:
            modules = [parse_module_arg(args.module)]
        elif modfile:
            modules = representative(read_gomod(Path(modfile)), goenv, limit=max(1, args.modules))
            pins = read_gosum(Path(modfile).with_name("go.sum"))
            if not modules:
                return usage(f"{modfile}: no module to download (no require, or only local replacements)")
        else:
            return usage("give MODULE[@VERSION], or -m go.mod (none in the current directory)")
        tries = [t for t in (args.try_proxy or ["https://proxy.golang.org", "https://goproxy.cn", "https://goproxy.io"]) if t != "none"]
        plan = make_plan(modules, goenv, candidates=tries, rewrites=read_git_rewrites())
        trust, problems = go_trust()
        for problem in problems:
            print(f"monitor doctor: warning: {problem}", file=sys.stderr)
        vantages = [vantage_from_spec(spec, trust) for spec in (args.vantage or ["local"])]
        if len({v.name for v in vantages}) != len(vantages):
            return usage("the same vantage twice")
        if not 0 < args.timeout <= 300:
            return usage("--timeout must be between 0 and 300 seconds")
        settings = Settings(timeout=args.timeout, control_sni=args.control_sni,
                            references=tuple(args.reference or ("https://dns.google/dns-query", "tls://1.1.1.1")))
    except (GoModError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        errors = getattr(e, "errors", None)
        return usage("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg'].removeprefix('Value error, ')}" for x in errors()) if errors else str(e))
    started = time.monotonic()
    try:
        result = asyncio.run(run_doctor(plan, vantages, settings, Progress(quiet=args.quiet), pins=pins))
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    except Exception as e:
        log.error("doctor: %s: %s", type(e).__name__, e, exc_info=args.log_level == "debug")
        return EXIT_RUNTIME
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(to_json(result.diagnosis, duration_s=elapsed), indent=2))
    else:
        print(to_text(result.diagnosis, duration_s=elapsed), end="")
    if args.emit_config:
        try:
            Path(args.emit_config).write_text(emit_config(result), encoding="utf-8")
        except OSError as e:
            print(f"monitor doctor: cannot write {args.emit_config}: {e.strerror or e}", file=sys.stderr)
            return EXIT_RUNTIME
        print(f"monitor doctor: wrote {os.path.abspath(args.emit_config)} (monitor check-config {args.emit_config})", file=sys.stderr)
    return result.diagnosis.exit_code
