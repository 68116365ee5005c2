"""Does a long-running agent's memory stay flat? Run one at a high probe rate and sample its
resident memory every minute.

    python bench/soak.py [--duration 3600] [--checks 200] [--interval 1s] [--sample 60]

The agent measures `--checks` checks (tcp, tls, http and dns over the system resolver, in
turn) against loopback servers every `--interval`, writing to a SQLite store in a temporary
directory, for `--duration` seconds (bounded), then stops gracefully. Prints RSS per sample,
results stored, and the growth over the second half of the run (after warm-up: caches,
histograms and the SQLite page cache fill in the first minutes) as MiB per hour.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import parse_duration  # noqa: E402
from tests.daemon_harness import start_daemon  # noqa: E402
from tests.servers.certs import make_pki  # noqa: E402
from tests.servers.http import HttpServer  # noqa: E402
from tests.servers.loop_thread import ServerLoop  # noqa: E402
from tests.servers.tcp import server_context  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def config(n: int, interval: str, https: int, http: int, ca: Path, db: Path) -> str:
    kinds = [
        lambda i: f'{{name: tcp{i}, kind: tcp, target: "127.0.0.1:{https}"}}',
        lambda i: f'{{name: tls{i}, kind: tls, target: "localhost:{https}", connect_to: 127.0.0.1}}',
        lambda i: f'{{name: http{i}, kind: http, url: "http://127.0.0.1:{http}/status/200"}}',
        lambda i: f'{{name: dns{i}, kind: dns, query: localhost, resolvers: [system]}}',
    ]
    checks = "\n".join(f"  - {kinds[i % len(kinds)](i)}" for i in range(n))
    return (f'storage: {{url: "sqlite:///{db}", retention_raw: 1h}}\nexporter: {{listen: "127.0.0.1:{{port}}"}}\n'
            f'trust: {{extra_ca_files: ["{ca}"]}}\nscheduler: {{max_concurrency: 64}}\n'
            f"defaults: {{interval: {interval}, timeout: 800ms}}\nchecks:\n{checks}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600)
    p.add_argument("--checks", type=int, default=200)
    p.add_argument("--interval", default="1s")
    p.add_argument("--sample", type=float, default=60)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, ServerLoop() as loop:
        directory = Path(tmp)
        (directory / "pki").mkdir()
        pki = make_pki(directory / "pki")
        https = loop.start(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
        http = loop.start(HttpServer())
        daemon = start_daemon(config(args.checks, args.interval, https.port, http.port, pki.ca_path, directory / "store.db"),
                              directory, log_level="warning")
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < args.duration:  # bounded by --duration
                samples.append((elapsed, rss_mib(daemon.proc.pid)))
                print(f"{elapsed / 60:6.1f} min  RSS {samples[-1][1]:7.1f} MiB", flush=True)
                time.sleep(min(args.sample, max(0.0, args.duration - elapsed)))
            samples.append((time.monotonic() - started, rss_mib(daemon.proc.pid)))
        finally:
            code = daemon.stop(timeout=90)
        with sqlite3.connect(directory / "store.db") as db:
            stored = db.execute("SELECT count(*) FROM results").fetchone()[0]
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    hours = (half[-1][0] - half[0][0]) / 3600 or 1
    rate = args.checks / parse_duration(args.interval)
    print(f"\n{args.checks} checks at {args.interval} (~{rate:g} probes/s) for {samples[-1][0] / 60:.0f} min; exit {code}; "
          f"{stored} results in the store (raw retention 1 h)")
    print(f"RSS: first {samples[0][1]:.1f} MiB, at half-time {half[0][1]:.1f} MiB, last {samples[-1][1]:.1f} MiB, "
          f"max {max(r for _, r in samples):.1f} MiB; second half: {(half[-1][1] - half[0][1]) / hours:+.1f} MiB/hour")


if __name__ == "__main__":
    main()
