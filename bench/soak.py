"""Does a long-running agent's memory stay flat? Run agents at a high probe rate, side by side,
and sample their resident memory every minute.

    python bench/soak.py [--duration 3600] [--checks 200] [--interval 1s] [--sample 60] \
                         [--store-options QUERY ...] [--env NAME=VALUE ...] [--csv FILE]

Each agent measures `--checks` checks (tcp, tls, http, and dns over UDP to an unbound the
bench starts on loopback, in turn) against the same loopback servers every `--interval`,
writing to a SQLite store of its own in a temporary directory, for `--duration` seconds
(bounded), then stops gracefully. One agent per `--store-options` (the query string of its
SQLite URL, e.g. `cached_statements=0`; `""` for none), all running at once so that they see
the same machine; by default one agent with none. `--env` sets variables in the agents'
environment only (e.g. MALLOC_ARENA_MAX=8 to compare glibc's default arena count).

Prints per sample and agent RSS, its anonymous and file-backed parts (/proc/PID/smaps_rollup),
the thread count, results stored so far, and the runs concluded since the last sample as a
share of the nominal rate (tcp, tls and http runs, from monitor_probe_runs_total: below 1 with
few runs skipped, runs are waiting to be judged and stored — a backlog, which holds memory); at
the end, per agent, results stored and the
RSS growth over the second half of the run (after warm-up: caches, histograms and the SQLite
page cache fill in the first minutes) and over the last 30 minutes, as MiB per hour.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import parse_duration  # noqa: E402
from tests.daemon_harness import DaemonProcess, samples as metric_samples, start_daemon  # noqa: E402
from tests.servers.certs import make_pki  # noqa: E402
from tests.servers.dns_unbound import run_unbound  # noqa: E402
from tests.servers.http import HttpServer  # noqa: E402
from tests.servers.loop_thread import ServerLoop  # noqa: E402
from tests.servers.tcp import server_context  # noqa: E402

Sample = tuple[float, dict[str, float]]


def memory(pid: int) -> dict[str, float]:
    """RSS and its anonymous / file-backed parts in MiB, and the thread count."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Anonymous"):
            fields[name] = int(rest.split()[0]) / 1024
    threads = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Threads:"))
    return {"rss": fields["Rss"], "anon": fields["Anonymous"], "file": fields["Rss"] - fields["Anonymous"], "threads": threads}


def stored(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return -1


def concluded(daemon: DaemonProcess) -> tuple[float, float]:
    """Runs of the one-result kinds (tcp, tls, http) concluded so far — judged, counted in
    monitor_probe_runs_total and handed to the writer — and runs skipped (overlap, late)."""
    try:  # a busy agent may answer late; a sample without it is still a memory sample
        text = daemon.get("/metrics", timeout=30)[1]
    except OSError:
        return float("nan"), float("nan")
    runs = sum(v for labels, v in metric_samples(text, "monitor_probe_runs_total").items() if dict(labels)["kind"] in ONE_RESULT)
    return runs, sum(metric_samples(text, "monitor_scheduler_skipped_runs_total").values())


ONE_RESULT = ("tcp", "tls", "http")


def config(n: int, interval: str, https: int, http: int, dns: str, ca: Path, url: str) -> str:
    kinds = [
        lambda i: f'{{name: tcp{i}, kind: tcp, target: "127.0.0.1:{https}"}}',
        lambda i: f'{{name: tls{i}, kind: tls, target: "localhost:{https}", connect_to: 127.0.0.1}}',
        lambda i: f'{{name: http{i}, kind: http, url: "http://127.0.0.1:{http}/status/200"}}',
        lambda i: f'{{name: dns{i}, kind: dns, query: soak.test, resolvers: ["{dns}"]}}',
    ]
    checks = "\n".join(f"  - {kinds[i % len(kinds)](i)}" for i in range(n))
    return (f'storage: {{url: "{url}", retention_raw: 1h}}\nexporter: {{listen: "127.0.0.1:{{port}}"}}\n'
            f'trust: {{extra_ca_files: ["{ca}"]}}\nscheduler: {{max_concurrency: 64}}\n'
            f"defaults: {{interval: {interval}, timeout: 800ms}}\nchecks:\n{checks}\n")


def growth(samples: list[Sample], since: float) -> str:
    part = [s for s in samples if s[0] >= since]
    if len(part) < 2 or part[-1][0] == part[0][0]:
        return "n/a"
    hours = (part[-1][0] - part[0][0]) / 3600
    return f"{part[0][1]['rss']:.1f} -> {part[-1][1]['rss']:.1f} MiB ({(part[-1][1]['rss'] - part[0][1]['rss']) / hours:+.1f} MiB/hour)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600)
    p.add_argument("--checks", type=int, default=200)
    p.add_argument("--interval", default="1s")
    p.add_argument("--sample", type=float, default=60)
    p.add_argument("--store-options", action="append", metavar="QUERY",
                   help="one agent per value: the query of its SQLite URL, e.g. cached_statements=0; '' for none")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--csv", type=Path, help="also write the samples here")
    args = p.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    options = args.store_options or [""]
    names = [o or "default" for o in options]
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, ServerLoop() as loop, contextlib.ExitStack() as agents:
        directory = Path(tmp)
        (directory / "pki").mkdir()
        pki = make_pki(directory / "pki")
        https = loop.start(HttpServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))
        http = loop.start(HttpServer())
        unbound = agents.enter_context(run_unbound(directory / "unbound", ["soak.test. 300 IN A 127.0.0.1"]))
        daemons: list[tuple[DaemonProcess, Path]] = []
        codes: dict[str, int] = {}
        for n, (name, query) in enumerate(zip(names, options)):
            home = directory / f"agent-{n}"
            home.mkdir()
            db = home / "store.db"
            url = f"sqlite:///{db}" + (f"?{query}" if query else "")
            daemon = start_daemon(config(args.checks, args.interval, https.port, http.port, unbound.udp, pki.ca_path, url),
                                  home, log_level="warning", env=env)
            agents.callback(lambda d=daemon, k=name: codes.__setitem__(k, d.stop(timeout=90)))  # graceful, even if sampling fails
            daemons.append((daemon, db))
        out = agents.enter_context(args.csv.open("w")) if args.csv else None
        if out:
            out.write("minutes,agent,rss_mib,anon_mib,file_mib,threads,stored,concluded_of_nominal,skipped\n")
        samples: list[list[Sample]] = [[] for _ in daemons]
        # tcp, tls and http runs per second: each check fires once per interval, at its own phase.
        interval = parse_duration(args.interval)
        nominal = sum(1 for i in range(args.checks) if i % 4 < 3) / interval
        before: list[tuple[float, float, float] | None] = [None for _ in daemons]  # the previous sample's
        started = time.monotonic()
        while True:  # bounded by --duration
            elapsed = time.monotonic() - started
            for n, (name, (daemon, db), mine) in enumerate(zip(names, daemons, samples)):
                mem = memory(daemon.proc.pid)
                runs, skipped = concluded(daemon)
                previous, before[n] = before[n], (elapsed, runs, skipped)
                # Concluded runs as a share of the nominal rate: below 1 and not skipped, runs wait to be judged.
                mem["carried"] = (runs - previous[1]) / (nominal * (elapsed - previous[0])) if previous else float("nan")
                mine.append((elapsed, mem))
                count = stored(db)
                print(f"{elapsed / 60:6.1f} min  {name:20.20}  RSS {mem['rss']:6.1f} MiB  anon {mem['anon']:6.1f}  file {mem['file']:5.1f}  "
                      f"threads {mem['threads']:3.0f}  stored {count:7d}  concluded {mem['carried']:5.2f} of nominal  skipped {skipped:.0f}",
                      flush=True)
                if out:
                    out.write(f"{elapsed / 60:.2f},{name},{mem['rss']:.1f},{mem['anon']:.1f},{mem['file']:.1f},{mem['threads']:.0f},{count},"
                              f"{mem['carried']:.3f},{skipped:.0f}\n")
                    out.flush()
            if elapsed >= args.duration:
                break
            time.sleep(min(args.sample, max(0.0, args.duration - elapsed)))
        totals = [stored(db) for _, db in daemons]
    end = samples[0][-1][0]
    rate = args.checks / parse_duration(args.interval)
    print(f"\n{len(daemons)} agent(s) at once, each {args.checks} checks at {args.interval} (~{rate:g} probes/s) for {end / 60:.0f} min; "
          f"exit codes {[codes.get(k) for k in names]}; env {env or 'default'}; raw retention 1 h")
    for name, mine, total in zip(names, samples, totals):
        print(f"{name}: {total} results in the store; RSS first {mine[0][1]['rss']:.1f}, last {mine[-1][1]['rss']:.1f}, "
              f"max {max(s[1]['rss'] for s in mine):.1f} MiB; threads max {max(s[1]['threads'] for s in mine):.0f}")
        print(f"  second half: {growth(mine, end / 2)}")
        print(f"  last 30 min: {growth(mine, end - 1800) if end >= 3600 else 'n/a (run shorter than an hour)'}")


if __name__ == "__main__":
    main()
