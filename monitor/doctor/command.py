"""`monitor doctor` as a command: arguments → the Go environment, the modules, the plan, the
run, the printed diagnosis (and --emit-config). The CLI parses; this module does the rest."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from monitor.doctor import Progress, go_trust, run_doctor, vantage_from_spec
from monitor.doctor.emit import emit_config
from monitor.doctor.goenv import read_git_rewrites, read_goenv
from monitor.doctor.gomod import GoModError, parse_module_arg, read_gomod, read_gosum, representative
from monitor.doctor.plan import make_plan
from monitor.doctor.render import to_json, to_text
from monitor.doctor.run import Settings

DEFAULT_TRY = ("https://proxy.golang.org", "https://goproxy.cn", "https://goproxy.io")
DEFAULT_REFERENCES = ("https://dns.google/dns-query", "tls://1.1.1.1")


class DoctorUsage(Exception):
    """The arguments cannot be used (exit 2); nothing was measured."""


def run_command(args: argparse.Namespace) -> int:
    """The diagnosis's exit code (0, 3, 4, 5); DoctorUsage for bad arguments; OSError if
    --emit-config cannot be written (a runtime failure, as any other exception)."""
    goenv = read_goenv()
    if args.goproxy:
        goenv = dataclasses.replace(goenv, goproxy=args.goproxy, source=goenv.source + ", --goproxy")
    if args.gosumdb:
        goenv = dataclasses.replace(goenv, gosumdb=args.gosumdb, source=goenv.source + ", --gosumdb")
    pins: dict = {}
    try:
        if args.module and args.modfile:
            raise DoctorUsage("give MODULE[@VERSION] or -m go.mod, not both")
        modfile = args.modfile or ("go.mod" if not args.module and Path("go.mod").is_file() else None)
        if args.module:
            modules = [parse_module_arg(args.module)]
        elif modfile:
            modules = representative(read_gomod(Path(modfile)), goenv, limit=max(1, args.modules))
            pins = read_gosum(Path(modfile).with_name("go.sum"))
            if not modules:
                raise DoctorUsage(f"{modfile}: no module to download (no require, or only local replacements)")
        else:
            raise DoctorUsage("give MODULE[@VERSION], or -m go.mod (none in the current directory)")
        tries = [t for t in (args.try_proxy or DEFAULT_TRY) if t != "none"]
        plan = make_plan(modules, goenv, candidates=tries, rewrites=read_git_rewrites())
        trust, problems = go_trust()
        for problem in problems:
            print(f"monitor doctor: warning: {problem}", file=sys.stderr)
        vantages = [vantage_from_spec(spec, trust) for spec in (args.vantage or ["local"])]
        if len({v.name for v in vantages}) != len(vantages):
            raise DoctorUsage("the same vantage twice")
        if not 0 < args.timeout <= 300:
            raise DoctorUsage("--timeout must be between 0 and 300 seconds")
        settings = Settings(timeout=args.timeout, control_sni=args.control_sni, references=tuple(args.reference or DEFAULT_REFERENCES))
    except (GoModError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        errors = getattr(e, "errors", None)
        raise DoctorUsage(
            "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg'].removeprefix('Value error, ')}" for x in errors()) if errors else str(e)
        ) from None
    started = time.monotonic()
    result = asyncio.run(run_doctor(plan, vantages, settings, Progress(quiet=args.quiet), pins=pins))
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(to_json(result.diagnosis, duration_s=elapsed), indent=2))
    else:
        print(to_text(result.diagnosis, duration_s=elapsed), end="")
    if args.emit_config:
        Path(args.emit_config).write_text(emit_config(result), encoding="utf-8")
        print(f"monitor doctor: wrote {os.path.abspath(args.emit_config)} (monitor check-config {args.emit_config})", file=sys.stderr)
    return result.diagnosis.exit_code
