"""`monitor doctor`: why `go mod download` fails from here, in one command, with the fix.

    plan      = make_plan(modules, read_goenv(), candidates=..., rewrites=read_git_rewrites())
    diagnosis = await run_doctor(plan, vantages, settings, progress)

Reads the Go environment as the go command does (goenv), takes the modules (gomod), lays out
the hops `go mod download` walks (plan), measures each with monitor's probes from one or more
vantages (run), judges them with monitor.analysis through one adapter (verdicts), and says
what fails, why, and what to change (diagnose); render prints it, emit turns it into a
monitor config. Only monitor.cli imports this package.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from monitor.doctor.diagnose import Diagnosis, diagnose, recommend_goproxy
from monitor.doctor.plan import Plan
from monitor.doctor.run import Measured, Settings, measure_plan, verify_list
from monitor.vantage import Proxy, Vantage

__all__ = ["Progress", "Result", "run_doctor", "vantage_from_spec", "go_trust"]


@dataclass
class Result:
    diagnosis: Diagnosis
    plan: Plan
    measured: Measured  # the first vantage's
    settings: Settings


async def run_doctor(plan: Plan, vantages: list[Vantage], settings: Settings, progress: Progress,
                     pins: dict[tuple[str, str], tuple[str | None, str | None]] | None = None) -> Result:
    """Measure the plan from every vantage at once, diagnose from the first with the others
    as comparison points, and prove a recommended GOPROXY list by fetching through it."""
    pins = pins or {}
    measured = await asyncio.gather(*(measure_plan(plan, v, settings, pins=pins, progress=progress) for v in vantages))
    primary, peers = measured[0], list(measured[1:])
    first = diagnose(plan, primary, peers)
    recommended = recommend_goproxy(plan, primary, first.modules)
    verification = None
    if recommended is not None:
        route = next(r for r in plan.routes if not r.private)
        module = route.module
        resolved = next((o.version for o in first.modules if o.module == module), module.version)
        verification = await verify_list(recommended, type(module)(module.path, resolved), route.sumdb, primary, settings, pins, progress)
    progress.finish()
    return Result(diagnose(plan, primary, peers, recommended=recommended, verification=verification), plan, primary, settings)


class Progress:
    """What doctor is doing, on stderr: one line rewritten in place on a terminal, else a
    plain line per finished measurement (for logs and CI); nothing when quiet."""

    def __init__(self, stream: TextIO = sys.stderr, *, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.running: list[str] = []
        self.done = 0

    def __call__(self, what: str, outcome: str | None) -> None:
        if self.quiet:
            return
        if outcome is None:
            self.running.append(what)
        else:
            if what in self.running:
                self.running.remove(what)
            self.done += 1
        if self.tty:
            current = self.running[-1] if self.running else what
            line = f"doctor: {self.done} done, {len(self.running)} running: {current}"
            self.stream.write("\r\033[K" + line[:150])
        elif outcome is not None:
            self.stream.write(f"doctor: {what}: {outcome}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
            self.stream.flush()


def vantage_from_spec(spec: str, extra_ca_files: tuple[str, ...]) -> Vantage:
    """local | netns:NAME | bind:IP | http://HOST:PORT | socks5://HOST:PORT | socks5h://HOST:PORT.
    Raises ValueError with a readable reason."""
    if spec == "local":
        return Vantage(name="local", extra_ca_files=extra_ca_files)
    kind, _, value = spec.partition(":")
    if kind == "netns" and value:
        from monitor.config import VantageConfig

        VantageConfig(name="x", netns=value)  # the same name rules as the config's
        return Vantage(name=value, netns=value, extra_ca_files=extra_ca_files)
    if kind == "bind" and value:
        ipaddress.ip_address(value)
        return Vantage(name=f"bind-{value}", bind=value, extra_ca_files=extra_ca_files)
    if kind in ("http", "socks5", "socks5h"):
        proxy = Proxy.from_url(spec)
        return Vantage(name=f"via-{proxy.host}", via=(proxy,), extra_ca_files=extra_ca_files)
    raise ValueError(f"vantage {spec!r}: want local, netns:NAME, bind:IP, http://HOST:PORT or socks5://HOST:PORT")


def go_trust(environ: dict[str, str] | None = None) -> tuple[tuple[str, ...], list[str]]:
    """The CA files the go command trusts besides the public roots, as Go on Linux reads
    them: SSL_CERT_FILE (else the system bundle) and every certificate file in SSL_CERT_DIR
    (':'-separated). Returns (files, problems with files that could not be loaded)."""
    environ = dict(os.environ) if environ is None else environ
    candidates: list[str] = []
    cafile = environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
    if cafile:
        candidates.append(cafile)
    for directory in filter(None, (environ.get("SSL_CERT_DIR") or "").split(":")):
        try:
            candidates += sorted(str(p) for p in Path(directory).iterdir() if p.is_file())
        except OSError:
            continue
    files, problems = [], []
    for path in dict.fromkeys(candidates):
        if not Path(path).is_file():
            if path == environ.get("SSL_CERT_FILE"):
                problems.append(f"SSL_CERT_FILE={path}: no such file")
            continue
        try:
            ssl.create_default_context(cafile=path)
        except (ssl.SSLError, OSError, ValueError) as e:
            problems.append(f"{path}: not a PEM certificate file ({e})")
            continue
        files.append(str(Path(path).resolve()))
    return tuple(files), problems
