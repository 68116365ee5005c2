"""One agent with 10,000 checks: scheduler lag, CPU share, memory; and memory per 1,000 checks.

    python bench/agent_scale.py [--checks 10000] [--duration 240] [--memory-points 1,1000]
                                [--memory-duration 90] [--scrape 15]

Starts nginx (its own temp config and pid file: plain HTTP and HTTPS on 127.0.0.1-4, a test
CA made for the run) and unbound (tests/servers/dns_unbound.py) on loopback, then runs the
real daemon (`monitor run`, tests/daemon_harness.py) on a generated config: `--checks` checks
at a 60 s interval, an even mix of tcp, tls, http, https and dns over UDP (with its default
0.5 s injection window), SQLite store in a temp dir, default max_concurrency. While it runs
for `--duration` seconds (bounded), every `--scrape` seconds it reads /metrics (time and
size) and the daemon's /proc entries. It prints, each beside its goal:

- scheduler lag p50/p99/max: pooled values of the daemon's own `monitor_scheduler_lag_seconds`
  gauge (how late each check's last run started, including the wait for the concurrency cap)
  over every scrape after the first interval — a gauge, so a sample is "the lag of the last run
  of that check at that moment"; each run is seen about interval/scrape times;
- CPU share of the daemon: utime+stime from /proc/PID/stat over wall time (steady: from the
  end of the first interval; whole: from start);
- RSS (VmRSS at the end) and peak (VmHWM);
- runs stored per minute against the checks configured (distinct checks with a result in each
  whole minute since start, from the store after the daemon stopped), and skipped runs;
- memory per 1,000 checks: VmRSS after `--memory-duration` seconds for each of
  `--memory-points` (a daemon refuses zero checks: 1 is the idle baseline) and for `--checks`
  (taken from the main run at the same age), and the slope between them.

The soft open-files limit is raised to the hard one for the daemon (it inherits it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._proc import cpu_seconds, status_mib  # noqa: E402
from tests.daemon_harness import DaemonProcess, free_port, start_daemon  # noqa: E402
from tests.servers.certs import make_pki  # noqa: E402
from tests.servers.dns_unbound import run_unbound  # noqa: E402

INTERVAL_S = 60
ADDRESSES = [f"127.0.0.{i}" for i in range(1, 5)]  # spreads connections (and TIME_WAIT) over 4 destinations
GOAL_LAG_P99_S = 0.100
GOAL_RSS_MIB = 300
GOAL_RSS_1000_MIB = 100
GOAL_CPU_SHARE = 1.0  # one core


@contextlib.contextmanager
def nginx(directory: Path, cert: Path, key: Path) -> Iterator[tuple[int, int]]:
    """nginx on ADDRESSES: (plain HTTP port, HTTPS port), both answering 200 "ok"."""
    http, https = free_port(), free_port()
    directory.mkdir()
    listen = lambda port, extra="": "".join(f"    listen {a}:{port}{extra};\n" for a in ADDRESSES)  # noqa: E731
    temp = "".join(f"  {k}_temp_path {directory}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = directory / "nginx.conf"
    conf.write_text(
        f"worker_processes 1;\ndaemon off;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log warn;\n"
        "events { worker_connections 8192; }\n"
        f"http {{\n  access_log off;\n{temp}  keepalive_timeout 5;\n"
        f"  server {{\n{listen(http)}    location / {{ return 200 \"ok\\n\"; }}\n  }}\n"
        f"  server {{\n{listen(https, ' ssl')}    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
        "    location / { return 200 \"ok\\n\"; }\n  }\n}\n"
    )
    proc = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:  # bounded: ready when both ports answer
            try:
                for a in ADDRESSES:
                    for port in (http, https):
                        socket.create_connection((a, port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(directory / 'error.log').read_text(errors='replace')}") from None
                time.sleep(0.1)
        yield http, https
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful; its workers exit with the master
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config(n: int, http: int, https: int, dns: int, ca: Path, db: Path, cap: int) -> str:
    kinds = [
        lambda i, a: f'{{name: tcp{i}, kind: tcp, target: "{a}:{http}"}}',
        lambda i, a: f'{{name: tls{i}, kind: tls, target: "localhost:{https}", connect_to: {a}}}',
        lambda i, a: f'{{name: http{i}, kind: http, url: "http://{a}:{http}/"}}',
        lambda i, a: f'{{name: https{i}, kind: http, url: "https://localhost:{https}/", connect_to: {a}}}',
        lambda i, a: f'{{name: dns{i}, kind: dns, query: probe.test, resolvers: ["udp://127.0.0.1:{dns}"]}}',
    ]
    checks = "\n".join(f"  - {kinds[i % len(kinds)](i, ADDRESSES[i // len(kinds) % len(ADDRESSES)])}" for i in range(n))
    return (f'storage: {{url: "sqlite:///{db}"}}\nexporter: {{listen: "127.0.0.1:{{port}}"}}\n'
            f'trust: {{extra_ca_files: ["{ca}"]}}\nscheduler: {{max_concurrency: {cap}}}\n'
            f"defaults: {{interval: {INTERVAL_S}s, timeout: 5s}}\nchecks:\n{checks}\n")


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MiB."""
    return status_mib(pid, "VmRSS", "VmHWM")


@dataclass
class Sample:
    elapsed: float
    cpu: float
    rss: float
    scrape_s: float
    scrape_bytes: int
    lags: list[float] = field(default_factory=list)
    skipped: float = 0.0


def sample(daemon: DaemonProcess, started: float) -> Sample:
    pid = daemon.proc.pid
    t = time.monotonic()
    with urllib.request.urlopen(daemon.base + "/metrics", timeout=60) as resp:
        body = resp.read()
    scrape_s = time.monotonic() - t
    # Only the two families needed, by line prefix: parsing all of tens of MB would cost this
    # process a core, taken from the daemon on a 2-core machine.
    lags, skipped = [], 0.0
    for line in body.split(b"\n"):
        if line.startswith(b"monitor_scheduler_lag_seconds{"):
            lags.append(float(line.rsplit(b" ", 1)[1]))
        elif line.startswith(b"monitor_scheduler_skipped_runs_total{"):
            skipped += float(line.rsplit(b" ", 1)[1])
    return Sample(t - started, cpu_seconds(pid), proc_status(pid)["VmRSS"], scrape_s, len(body), lags, skipped)


@contextlib.contextmanager
def servers(directory: Path) -> Iterator[tuple[int, int, int, Path]]:
    (directory / "pki").mkdir()
    pki = make_pki(directory / "pki")
    with nginx(directory / "nginx", pki.valid.cert, pki.valid.key) as (http, https), \
            run_unbound(directory / "unbound", ["probe.test. A 127.0.0.1"]) as unbound:
        yield http, https, unbound.port, pki.ca_path


def start(n: int, directory: Path, ports: tuple[int, int, int, Path], cap: int) -> DaemonProcess:
    http, https, dns, ca = ports
    directory.mkdir()
    return start_daemon(config(n, http, https, dns, ca, directory / "store.db", cap), directory, log_level="warning")


def rss_after(n: int, seconds: float, directory: Path, ports: tuple[int, int, int, Path], cap: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a daemon with n checks after `seconds`."""
    daemon = start(n, directory / f"memory-{n}", ports, cap)
    try:
        time.sleep(seconds)
        status = proc_status(daemon.proc.pid)
    finally:
        daemon.stop(timeout=90)
    return status["VmRSS"], status["VmHWM"]


def runs_per_minute(db: Path, daemon_started: float) -> list[tuple[int, int, int]]:
    """(minute since start, results, distinct checks) for every whole minute in the store."""
    buckets: dict[int, tuple[int, set[str]]] = {}
    with contextlib.closing(sqlite3.connect(db)) as con:
        for check, started_at in con.execute('SELECT "check", started_at FROM results'):
            minute = int((datetime.fromisoformat(started_at).timestamp() - daemon_started) // 60)
            count, names = buckets.setdefault(minute, (0, set()))
            names.add(check)
            buckets[minute] = (count + 1, names)
    return [(m, c, len(names)) for m, (c, names) in sorted(buckets.items())]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else (values or [0.0])[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checks", type=int, default=10000)
    p.add_argument("--duration", type=float, default=240)
    p.add_argument("--memory-points", default="1,1000", help="check counts for the memory slope; empty: none")
    p.add_argument("--memory-duration", type=float, default=90)
    p.add_argument("--scrape", type=float, default=15, help="seconds between scrapes (deploy/prometheus: 15 s)")
    p.add_argument("--max-concurrency", type=int, default=512, help="scheduler.max_concurrency (default in config: 64)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"open files limit for the daemon: {hard} (soft was {soft}); machine: {os.cpu_count()} cores; "
          f"load average at start {Path('/proc/loadavg').read_text().split()[0]}", flush=True)

    with tempfile.TemporaryDirectory(prefix="agent-scale-") as tmp, servers(Path(tmp)) as ports:
        directory = Path(tmp)
        memory: dict[int, tuple[float, float]] = {}
        for n in [int(x) for x in args.memory_points.split(",") if x]:
            memory[n] = rss_after(n, args.memory_duration, directory, ports, args.max_concurrency)
            print(f"memory: {n:6d} checks after {args.memory_duration:.0f} s: RSS {memory[n][0]:.1f} MiB (peak {memory[n][1]:.1f})", flush=True)

        wall_started = time.time()
        daemon = start(args.checks, directory / "main", ports, args.max_concurrency)
        started = time.monotonic()
        samples: list[Sample] = []
        rss_at_memory_age = None
        try:
            while (elapsed := time.monotonic() - started) < args.duration:  # bounded by --duration
                if rss_at_memory_age is None and elapsed >= args.memory_duration:
                    rss_at_memory_age = proc_status(daemon.proc.pid)
                samples.append(sample(daemon, started))
                s = samples[-1]
                lag = f"lag p50 {pct(s.lags, 0.5) * 1000:7.1f} ms p99 {pct(s.lags, 0.99) * 1000:8.1f} ms" if s.lags else "lag -"
                print(f"{s.elapsed:6.0f} s  RSS {s.rss:6.1f} MiB  cpu {s.cpu:6.1f} s  scrape {s.scrape_s * 1000:6.0f} ms "
                      f"{s.scrape_bytes / 1e6:5.1f} MB  {len(s.lags):5d} jobs  {lag}  skipped {s.skipped:.0f}", flush=True)
                time.sleep(max(0.0, min(args.scrape - (time.monotonic() - started - s.elapsed), args.duration - (time.monotonic() - started))))
            final = proc_status(daemon.proc.pid)
            cpu_end, wall_end = cpu_seconds(daemon.proc.pid), time.monotonic() - started
        finally:
            code = daemon.stop(timeout=90)
        if rss_at_memory_age is None:
            rss_at_memory_age = final
        per_minute = runs_per_minute(directory / "main" / "store.db", wall_started)
        warnings = sum(1 for line in daemon.log().splitlines() if " WARNING " in line or '"warning"' in line)

    steady = [s for s in samples if s.elapsed >= INTERVAL_S + 5]
    lags = [v for s in steady for v in s.lags]
    first = steady[0] if steady else samples[0]
    cpu_steady = (cpu_end - first.cpu) / (wall_end - first.elapsed) if wall_end > first.elapsed else float("nan")
    cpu_whole = cpu_end / wall_end
    scrapes = [s.scrape_s for s in steady] or [s.scrape_s for s in samples]
    print(f"\n{args.checks} checks at {INTERVAL_S} s (tcp, tls, http, https, dns/udp evenly; ~{args.checks / INTERVAL_S:.0f} runs/s; "
          f"max_concurrency {args.max_concurrency}; scrape every {args.scrape:g} s) "
          f"for {wall_end:.0f} s on a {os.cpu_count()}-core VM; daemon exit {code}; {warnings} warning lines in its log")
    print(f"{'figure':34s} {'measured':>14s} {'goal':>12s}  met")
    rows = [
        ("scheduler lag p50 (ms)", pct(lags, 0.5) * 1000, None),
        ("scheduler lag p99 (ms)", pct(lags, 0.99) * 1000, GOAL_LAG_P99_S * 1000),
        ("scheduler lag max (ms)", max(lags, default=0) * 1000, None),
        ("CPU share, steady (cores)", cpu_steady, GOAL_CPU_SHARE),
        ("CPU share, whole run (cores)", cpu_whole, None),
        ("RSS at end (MiB)", final["VmRSS"], GOAL_RSS_MIB),
        ("RSS peak, VmHWM (MiB)", final["VmHWM"], GOAL_RSS_MIB),
        ("/metrics scrape median (ms)", statistics.median(scrapes) * 1000, None),
        ("/metrics scrape max (ms)", max(scrapes) * 1000, None),
        ("/metrics size (MB)", samples[-1].scrape_bytes / 1e6, None),
        ("skipped runs (overlap + late)", samples[-1].skipped, None),
    ]
    for name, value, goal in rows:
        print(f"{name:34s} {value:14.2f} {'< ' + format(goal, 'g') if goal else '':>12s}  {('yes' if value < goal else 'NO') if goal else ''}")
    print(f"lag samples: {len(lags)} from {len(steady)} scrapes after the first interval; daemon CPU {cpu_end:.1f} s over {wall_end:.0f} s; "
          f"load average at end {Path('/proc/loadavg').read_text().split()[0]} (other processes share the machine)")
    print("\nminute  results  checks run  expected")
    for minute, results, checks in per_minute:
        whole = (minute + 1) * 60 <= wall_end
        print(f"{minute:6d}  {results:7d}  {checks:10d}  {args.checks if whole else '(partial)':>8}")

    if memory:
        memory[args.checks] = (rss_at_memory_age["VmRSS"], rss_at_memory_age["VmHWM"])
        print(f"\nmemory after {args.memory_duration:.0f} s   RSS MiB   peak MiB   goal")
        for n, (rss, hwm) in sorted(memory.items()):
            goal = f"< {GOAL_RSS_1000_MIB}: {'yes' if rss < GOAL_RSS_1000_MIB else 'NO'}" if n == 1000 else (
                f"< {GOAL_RSS_MIB}: {'yes' if rss < GOAL_RSS_MIB else 'NO'}" if n == args.checks else "")
            print(f"{n:6d} checks          {rss:7.1f}   {hwm:8.1f}   {goal}")
        points = sorted(memory)
        for a, b in zip(points, points[1:]):
            print(f"slope {a}..{b}: {(memory[b][0] - memory[a][0]) / (b - a) * 1000:.1f} MiB per 1,000 checks")


if __name__ == "__main__":
    main()
