"""Time `monitor report` over a generated quarter, on SQLite and on PostgreSQL, and the cost of
keeping the rollups per 1,000 results through the real writer path.

    python bench/report_bench.py [--quarter 2026Q1] [--series 1000] [--raw-hours 6] [--runs 3]
                                 [--stores sqlite,postgresql] [--formats json,html,pdf]
                                 [--workdir DIR] [--keep]

What it builds, in a fresh SQLite file and in a fresh PostgreSQL database it creates (and drops
at the end) on 127.0.0.1:5432 — it touches no other database:
- `--series` (check, vantage) series: checks × 5 vantages, each vantage its own agent (5
  networks); 60 % http, 20 % site (verdicts; the fifth network is censored: sni_blocking
  days), 20 % goproxy (per-proxy rows; from the censored network proxy.golang.org is reset
  and goproxy.cn serves); one run per minute over the quarter (2026Q1: 90 days, so ~130 M
  runs for 1,000 series).
- Those runs stored as rollups directly (hourly, daily and monthly rows, hourly uptime masks,
  with latency and phase histograms), as the daemon's writer would have left them; the
  quarter before as its monthly rows (all that the report's trend reads); and a raw tail: the
  quarter's last `--raw-hours` hours as raw results (the report never reads them).
Then it runs the real CLI, `monitor report -c CONFIG --quarter Q --format F -o FILE`, `--runs`
times per format and store, and once more over a span that is not month-aligned (--from/--to:
hours, days and months are read), and prints the median and the spread. Finally it writes
20,000 fresh results (the mix the daemon makes: site rounds with their sub-results, goproxy
runs with their requests) through ResultWriter into each big store, with the rollups and —
in the same process, rollups.add_results replaced by a no-op — without, alternated, and
prints milliseconds per 1,000 results.

Nothing here is a test; the machine may be shared: read the spread, not just the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy.orm import Session  # noqa: E402

from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName  # noqa: E402
from monitor.store import ResultWriter, make_engine, upgrade  # noqa: E402
from monitor.store import partitions, rollups  # noqa: E402
from monitor.store.histogram import bucket_of  # noqa: E402
from monitor.report.period import quarter  # noqa: E402
from monitor.store.bulk import values as _to_row  # noqa: E402
from tests.conftest import POSTGRES_SERVER, create_postgres_database, drop_postgres_database  # noqa: E402

VANTAGES = 5
CENSORED = VANTAGES - 1
PROXIES = ("https://proxy.golang.org", "https://goproxy.cn")
ROLLUP_COLUMNS = ("bucket_start", "check", "vantage", "agent", "kind", "target", "part", "probes", "successes", "failures", "verdicts", "latency", "phases")
KINDS = ("http",) * 6 + ("site",) * 2 + ("goproxy",) * 2  # per check, by its number
PHASES = {"http": ("resolve", "connect", "tls", "ttfb", "transfer"), "site": ("resolve", "connect", "tls"), "goproxy": ("connect", "tls", "ttfb", "transfer")}
SPREAD = (2, 5, 12, 20, 12, 5, 2)  # a latency histogram's shape around the median bucket


# -- the synthetic store ------------------------------------------------------------------------


class Series:
    def __init__(self, n: int, rnd: random.Random):
        self.check_no, self.vantage_no = divmod(n, VANTAGES)
        self.check = f"chk-{self.check_no:04d}"
        self.vantage = f"v{self.vantage_no}"
        self.agent = f"agent-{self.vantage_no}"
        self.kind = KINDS[self.check_no % 10]
        self.target = {"http": f"https://svc{self.check_no}.example/", "site": f"site{self.check_no}.example",
                       "goproxy": f"golang.org/x/mod{self.check_no}@v1.0.0 via {PROXIES[0]}|{PROXIES[1]}"}[self.kind]
        self.median = int(bucket_of(rnd.lognormvariate(-1.5, 0.8)))
        self.phase_median = {p: int(bucket_of(rnd.lognormvariate(-3.5, 0.7))) for p in PHASES[self.kind]}
        self.fail_hour = rnd.uniform(0.01, 0.15)  # chance an hour has failures
        self.censored = self.vantage_no == CENSORED


def hour_tallies(s: Series, hour: datetime, rnd: random.Random, blocked_day: bool) -> list[tuple[str, str, rollups.Tally]]:
    """(target, part, tally) rows of one series for one hour: 60 runs."""
    probes = 60
    failed = 0
    if blocked_day and s.kind == "site":
        failed = 60 if rnd.random() < 0.5 else rnd.randint(20, 59)
    elif rnd.random() < s.fail_hour:
        failed = rnd.randint(1, 3)
    ok = probes - failed
    t = rollups.Tally(probes=probes, successes=ok)
    if failed:
        key = "connection_reset@tls_handshake" if (blocked_day and s.kind == "site") else "generic_timeout_error@connect"
        t.failures[key] = failed
    shift = rnd.randint(-1, 1)
    if ok:
        _spread(t.latency, s.median + shift, ok, "")
    for phase, median in s.phase_median.items():
        _spread(t.phases, median + shift, probes, phase + "/")
    rows = [(s.target, rollups.RUN, t)]
    if s.kind in ("site", "goproxy"):
        t.verdicts["ok"] = ok
        if failed:
            t.verdicts["sni_blocking" if blocked_day and s.kind == "site" else "inconclusive"] = failed
    if s.kind == "goproxy":
        fetch = int(bucket_of(0.4 if not s.censored else 0.9))
        if s.censored:  # proxy.golang.org reset by the censor; goproxy.cn serves
            rows.append((PROXIES[0], rollups.PROXY, rollups.Tally(probes=probes, successes=2, failures=Counter({"connection_reset@tls_handshake": 58}),
                                                                  verdicts=Counter({"ok": 2}), latency=Counter({str(fetch): 2}))))
            rows.append((PROXIES[1], rollups.PROXY, rollups.Tally(probes=58, successes=ok - 2 if ok > 2 else 0, verdicts=Counter({"ok": max(0, ok - 2)}),
                                                                  latency=Counter({str(fetch): max(0, ok - 2)}))))
        else:
            p = rollups.Tally(probes=probes, successes=ok, verdicts=Counter({"ok": ok}), latency=Counter({str(fetch + shift): ok}))
            if failed:
                p.failures["generic_timeout_error@connect"] = failed
            rows.append((PROXIES[0], rollups.PROXY, p))
    return rows


def _spread(counter: Counter, center: int, n: int, prefix: str) -> None:
    total = sum(SPREAD)
    left = n
    for j, w in enumerate(SPREAD):
        k = n * w // total
        if k:
            counter[f"{prefix}{center + j - 3}"] += k
            left -= k
    counter[f"{prefix}{center}"] += left


def generate(series: list[Series], start: datetime, days: int, seed: int):
    """Yield (daily, hourly, uptime, monthly rows) per day — the rollups a writer would have
    made; a month's rows come with its last day (or the last day generated)."""
    rnd = random.Random(seed)
    monthly: dict[tuple, rollups.Tally] = {}
    for d in range(days):
        day = start + timedelta(days=d)
        blocked = {s.check for s in series if s.censored and s.kind == "site" and rnd.random() < 0.1}
        daily: dict[tuple, rollups.Tally] = {}
        hourly = []
        uptime = []
        for h in range(24):
            hour = day + timedelta(hours=h)
            down_minutes: dict[str, int] = {}
            for s in series:
                for target, part, tally in hour_tallies(s, hour, rnd, s.censored and s.check in blocked):
                    key = (s.check, s.vantage, s.agent, s.kind, target, part)
                    hourly.append((hour, *key, tally))
                    if key in daily:
                        daily[key].add(tally)
                    else:
                        copy = rollups.Tally()
                        copy.add(tally)
                        daily[key] = copy
                    if part == rollups.RUN and tally.successes < tally.probes and not s.censored:
                        down_minutes[s.check] = down_minutes.get(s.check, 0) | (1 << rnd.randrange(60))
            full = (1 << 60) - 1
            for check in sorted({s.check for s in series}):
                lost = down_minutes.get(check, 0) if rnd.random() < 0.05 else 0
                uptime.append((hour, check, full, full & ~lost))
        month = day.replace(day=1)
        for k, t in daily.items():
            monthly.setdefault((month, *k), rollups.Tally()).add(t)
        done = (day + timedelta(days=1)).day == 1 or d == days - 1
        yield day, [(day, *k, t) for k, t in daily.items()], hourly, uptime, [(*k, t) for k, t in monthly.items()] if done else []
        if done:
            monthly = {}


def previous_months(series: list[Series], start: datetime, end: datetime, seed: int) -> list[tuple]:
    """Monthly rows of the quarter before: each month's hours drawn as generate() draws them."""
    rnd = random.Random(seed)
    rows = []
    month = start
    while month < end:
        after = rollups.next_month(month)
        totals: dict[tuple, rollups.Tally] = {}
        hours = int((after - month).total_seconds() // 3600)
        for s in series:
            for _ in range(hours // 24):  # a day at a time: one hour's draw, 24 times over
                for target, part, tally in hour_tallies(s, month, rnd, False):
                    day = rollups.Tally(24 * tally.probes, 24 * tally.successes, *(Counter({k: 24 * n for k, n in getattr(tally, c).items()}) for c in ("failures", "verdicts", "latency", "phases")))
                    totals.setdefault((s.check, s.vantage, s.agent, s.kind, target, part), rollups.Tally()).add(day)
        rows += [(month, *k, t) for k, t in totals.items()]
        month = after
    return rows


def _row_values(row: tuple) -> tuple:
    bucket, check, vantage, agent, kind, target, part, t = row
    return (bucket, check, vantage, agent, kind, target, part, t.probes, t.successes,
            json.dumps(dict(t.failures)), json.dumps(dict(t.verdicts)), json.dumps(dict(t.latency)), json.dumps(dict(t.phases)))


class SqliteLoader:
    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")  # loading only; the store itself runs as monitor opens it

    @staticmethod
    def _t(t: datetime) -> str:  # SQLAlchemy's SQLite DATETIME text, naive UTC (models.UTCDateTime)
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")

    def load(self, daily: list, hourly: list, uptime: list, monthly: list) -> None:
        marks = ",".join("?" * len(ROLLUP_COLUMNS))
        with self.conn:
            for table, rows in (("rollup_daily", daily), ("rollup_hourly", hourly), ("rollup_monthly", monthly)):
                self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", ((self._t(v[0]), *v[1:]) for v in map(_row_values, rows)))
            self.conn.executemany("INSERT INTO rollup_uptime VALUES (?,?,?,?)", ((self._t(h), c, r, u) for h, c, r, u in uptime))

    def close(self) -> None:
        self.conn.execute("ANALYZE")
        self.conn.close()


class PostgresLoader:
    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))

    def load(self, daily: list, hourly: list, uptime: list, monthly: list) -> None:
        cols = ", ".join(f'"{c}"' for c in ROLLUP_COLUMNS)
        with self.conn.cursor() as cur:
            for table, rows in (("rollup_daily", daily), ("rollup_hourly", hourly), ("rollup_monthly", monthly)):
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for v in map(_row_values, rows):
                        copy.write_row(v)
            with cur.copy('COPY rollup_uptime (bucket_start, "check", reported, up) FROM STDIN') as copy:
                for row in uptime:
                    copy.write_row(row)
        self.conn.commit()

    def close(self) -> None:
        self.conn.autocommit = True
        self.conn.execute("ANALYZE")
        self.conn.close()


# -- raw results -------------------------------------------------------------------------------


def raw_results(series: list[Series], start: datetime, minutes: int, rnd: random.Random) -> list[ProbeResult]:
    """One result per series per minute, with the daemon's shapes (site rounds with a sub-result)."""
    out = []
    for m in range(minutes):
        at = start + timedelta(minutes=m, seconds=rnd.random() * 50)
        for s in series:
            out += daemon_results(s, at, rnd)
    return out


def daemon_results(s: Series, at: datetime, rnd: random.Random) -> list[ProbeResult]:
    ok = rnd.random() > 0.01
    failure = None if ok else Failure(FailureClass.GENERIC_TIMEOUT_ERROR, Operation.CONNECT, "timed out")
    base = dict(check=s.check, kind=s.kind, vantage=s.vantage, agent=s.agent, target=s.target, started_at=at, ok=ok,
                duration_s=rnd.lognormvariate(-1.5, 0.5), phases={"connect": 0.02, "tls": 0.04}, failure=failure)
    if s.kind == "http":
        return [ProbeResult(**base, facts={"ip": "198.18.0.1", "status": 200, "http_version": "HTTP/1.1"})]
    if s.kind == "site":
        part = ProbeResult(**{**base, "target": "198.18.0.2:443"}, facts={"role": "handshake", "attempt": 1, "round_id": "r"})
        return [part, ProbeResult(**base, facts={"role": "summary", "round_id": "r"},
                                  verdict=Verdict(VerdictName.OK if ok else VerdictName.INCONCLUSIVE, Confidence.HIGH, ()))]
    served = PROXIES[1] if s.censored else PROXIES[0]
    requests = [{"what": "info", "proxy": PROXIES[0], "seconds": 0.3, "failure": {"class": "connection_reset", "operation": "tls_handshake"}}] if s.censored else []
    requests += [{"what": w, "proxy": served, "status": 200, "seconds": 0.1} for w in ("info", "mod", "zip")]
    return [ProbeResult(**base, facts={"requests": requests, "served_by": {w: served for w in ("info", "mod", "zip")}},
                        verdict=Verdict(VerdictName.OK if ok else VerdictName.INCONCLUSIVE, Confidence.HIGH, ()))]


def load_raw(url: str, results: list[ProbeResult]) -> None:
    """Bulk insert, as earlier writes left them (their rollups are in the generated rows)."""
    engine = make_engine(url)
    try:
        from monitor.store.models import ResultRow

        with Session(engine) as session, session.begin():
            partitions.ensure(session, {partitions.day_of(r.started_at) for r in results})
            for i in range(0, len(results), 20000):
                session.execute(ResultRow.__table__.insert(), [_to_row(r) for r in results[i : i + 20000]])
    finally:
        engine.dispose()


# -- measurements ------------------------------------------------------------------------------


def write_config(path: Path, url: str, series: list[Series]) -> None:
    checks = []
    for check_no in sorted({s.check_no for s in series}):
        s = next(x for x in series if x.check_no == check_no)
        vantages = "[" + ", ".join(f"v{v}" for v in range(VANTAGES)) + "]"
        common = f"name: {s.check}, interval: 60s, timeout: 10s, vantages: {vantages}"
        if s.kind == "http":
            checks.append(f'  - {{{common}, kind: http, url: "{s.target}"}}')
        elif s.kind == "site":
            checks.append(f'  - {{{common}, kind: site, domain: {s.target}, control_sni: example.com, '
                          'references: ["tls://198.18.0.53", "https://198.18.0.53/dns-query"]}')
        else:
            checks.append(f'  - {{{common}, kind: goproxy, proxy: "{PROXIES[0]}|{PROXIES[1]}", module: golang.org/x/mod{check_no}, version: v1.0.0}}')
    vantage_list = "\n".join(f"  - {{name: v{v}}}" for v in range(VANTAGES))
    path.write_text(f'agent: bench\nstorage: {{url: "{url}"}}\nvantages:\n{vantage_list}\nchecks:\n' + "\n".join(checks) + "\n")


def time_report(config: Path, span: list[str], fmt: str, output: Path, runs: int) -> tuple[list[float], list[str]]:
    command = [sys.executable, "-m", "monitor", "--log-level", "warning", "report", "-c", str(config), *span, "--format", fmt, "-o", str(output)]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO, timeout=600)
        times.append(time.perf_counter() - started)
    return times, ["monitor", *command[3:]]


async def _write(url: str, results: list[ProbeResult]) -> float:
    # The daemon's batch size; a queue that holds them all, as they are submitted at once.
    writer = ResultWriter(url, batch_size=500, flush_interval=0.05, queue_size=len(results) + 1)
    for r in results:
        writer.submit(r)
    started = time.perf_counter()
    await writer.close(timeout=600)
    elapsed = time.perf_counter() - started
    assert writer.written == len(results) and writer.dropped == 0, (writer.written, writer.dropped)
    return elapsed


def maintenance_cost(url: str, series: list[Series], at: datetime, n: int, rounds: int) -> dict[str, list[float]]:
    """ms per 1,000 results written through ResultWriter, with and without the rollups."""
    rnd = random.Random(99)
    real = rollups.add_results
    out: dict[str, list[float]] = {"with rollups": [], "without": []}
    for _ in range(rounds):
        for label in ("with rollups", "without"):
            results: list[ProbeResult] = []
            m = 0
            while len(results) < n:
                for s in series:
                    results += daemon_results(s, at + timedelta(seconds=m + rnd.random()), rnd)
                m += 1
            results = results[:n]
            rollups.add_results = real if label == "with rollups" else (lambda session, results: None)
            try:
                seconds = asyncio.run(_write(url, results))
            finally:
                rollups.add_results = real
            out[label].append(1000 * seconds / n * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000, help="(check, vantage) series; a multiple of 5")
    ap.add_argument("--quarter", default="2026Q1", help="the quarter generated and reported (default 2026Q1: 90 days)")
    ap.add_argument("--raw-hours", type=int, default=6, help="raw results of the last hours (default 6)")
    ap.add_argument("--runs", type=int, default=3, help="report runs per format and store (median)")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--formats", default="json,html,pdf")
    ap.add_argument("--maintenance-results", type=int, default=20000)
    ap.add_argument("--workdir", type=Path, default=None, help="where the SQLite file and outputs go (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the SQLite file and the PostgreSQL database")
    ap.add_argument("--reuse", metavar="DATABASE", help="time an earlier --keep run again: its --workdir and PostgreSQL database (no generation)")
    args = ap.parse_args()
    stores = args.stores.split(",")
    rnd = random.Random(1)
    series = [Series(n, rnd) for n in range(args.series)]
    period = quarter(args.quarter)
    start, end = period.start, period.end
    days = (end - start).days
    raw_start = end - timedelta(hours=args.raw_hours)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="monitor-report-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pg_name = args.reuse or f"monitor_report_bench_{uuid.uuid4().hex[:8]}"
    if args.reuse and not (args.workdir and args.keep):
        ap.error("--reuse needs the --workdir of the earlier run, and --keep")
    urls = {}
    if "sqlite" in stores:
        db = workdir / "bench.db"
        if not args.reuse:
            db.unlink(missing_ok=True)
        urls["sqlite"] = f"sqlite:///{db}"
    if "postgresql" in stores:
        if not args.reuse:
            create_postgres_database(pg_name)
        urls["postgresql"] = f"{POSTGRES_SERVER}/{pg_name}"
    before = period.previous()
    try:
        if args.reuse:
            print(f"reusing {workdir} and database {pg_name}")
        else:
            for url in urls.values():
                upgrade(url)
            loaders = {}
            if "sqlite" in urls:
                loaders["sqlite"] = SqliteLoader(workdir / "bench.db")
            if "postgresql" in urls:
                loaders["postgresql"] = PostgresLoader(urls["postgresql"])
            print(f"generating {len(series)} series × {days} days ({period.label}) of rollups ({len(series) * days * 1440 / 1e6:.1f} M runs) into {', '.join(urls)} …", flush=True)
            started = time.perf_counter()
            counts = Counter()
            load_s = Counter()
            for day, daily, hourly, uptime, monthly in generate(series, start, days, seed=2):
                counts.update(daily=len(daily), hourly=len(hourly), uptime=len(uptime), monthly=len(monthly))
                for name, loader in loaders.items():
                    t = time.perf_counter()
                    loader.load(daily, hourly, uptime, monthly)
                    load_s[name] += time.perf_counter() - t
            previous = previous_months(series, before.start, before.end, seed=4)
            counts.update(previous_monthly=len(previous))
            for loader in loaders.values():
                loader.load([], [], [], previous)
                loader.close()
            print(f"  rows: {counts['monthly']:,} monthly, {counts['daily']:,} daily, {counts['hourly']:,} hourly, {counts['uptime']:,} uptime, "
                  f"{counts['previous_monthly']:,} monthly of {before.label}; "
                  f"{time.perf_counter() - started:.0f} s ({', '.join(f'{k} load {v:.0f} s' for k, v in load_s.items())})", flush=True)
            raw = raw_results(series, raw_start, args.raw_hours * 60, random.Random(3))
            print(f"loading a raw tail of {len(raw):,} results ({args.raw_hours} h) …", flush=True)
            for url in urls.values():
                load_raw(url, raw)
            del raw
            if "sqlite" in urls:
                print(f"  SQLite file: {(workdir / 'bench.db').stat().st_size / 1e9:.2f} GB", flush=True)

        print(f"\nreport of {period.label} ({days} days; {before.label} read for the trend)")
        print(f"{'store':<11} {'span':<22} {'format':<6} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
        shown = []
        odd = ["--from", (start + timedelta(hours=13)).strftime("%Y-%m-%dT%H:%MZ"), "--to", (end - timedelta(hours=11)).strftime("%Y-%m-%dT%H:%MZ")]
        for name, url in urls.items():
            config = workdir / f"{name}.yaml"
            write_config(config, url, series)
            jobs = [(["--quarter", period.label], fmt) for fmt in args.formats.split(",")] + [(odd, "json")]
            for span, fmt in jobs:
                times, command = time_report(config, span, fmt, workdir / f"report-{name}.{fmt}", args.runs)
                label = span[1] if span[0] == "--quarter" else f"{span[1][5:]}…{span[3][5:]}"
                print(f"{name:<11} {label:<22} {fmt:<6} {statistics.median(times):9.2f} {min(times):7.2f} {max(times):7.2f}  {len(times)}", flush=True)
                if name == list(urls)[-1] and fmt in ("html", "json") and command not in shown:
                    shown.append(command)
        for command in shown:
            print("command:", " ".join(command).replace(str(workdir), "$WORKDIR"))
        print(f"\nrollup upkeep: {args.maintenance_results:,} results through ResultWriter (batches of 500), ms per 1,000 results")
        print(f"{'store':<11} {'with rollups':>13} {'without':>9} {'rollups cost':>13}")
        for name, url in urls.items():
            cost = maintenance_cost(url, series, end - timedelta(minutes=30), args.maintenance_results, rounds=2)
            w, wo = statistics.median(cost["with rollups"]), statistics.median(cost["without"])
            print(f"{name:<11} {w:13.0f} {wo:9.0f} {w - wo:13.0f}", flush=True)
    finally:
        if "postgresql" in urls and not args.keep:
            drop_postgres_database(pg_name)
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"kept: {workdir}" + (f", database {pg_name}" if "postgresql" in urls else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
