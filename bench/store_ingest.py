"""Store ingest: results/s through the real writer (ResultWriter) into SQLite and PostgreSQL,
side by side with the driver's own bulk insert of the same rows (the ceiling).

    python bench/store_ingest.py [-n 100000] [--reps 3] [--stores sqlite,postgresql] [--modes writer,reference]
                                 [--checks 100] [--vantages 4] [--batch-size N] [--profile]

The results are what the daemon's probes make (monitor/probes/*): per (check, vantage) one run
per minute, checks of every kind — http and tls (one result), dns rounds (a result per resolver
plus the comparison), site rounds (resolver, handshake and fetch parts plus the summary, with a
verdict), goproxy runs (their request list, the proxy that served, a verified checksum-database
tree) — with facts JSON of the probes' own keys and sizes (0.3–2 kB), 1 % failures, from
`--vantages` vantages, each its own agent. Their times run from before a UTC midnight to after
it (yesterday's day has no partition yet on PostgreSQL: the writer makes it in the batch).

Each rep, for each store, interleaved (writer, then reference, then the next store):
- **writer**: a fresh store (a new SQLite file; a new PostgreSQL database on 127.0.0.1:5432
  named monitor_ingest_bench_<random>, dropped at the end — no other database is touched),
  migrated with the project's migrations; a ResultWriter as the daemon makes it (its batch
  size, a spool directory) with every result submitted, timed until `close()` returns: every
  batch written, with its rollups, committed. Then the rows are counted in the database and
  the rollups' run count is checked against the runs submitted.
- **no-rollups** (only with `--modes`): the writer with `rollups.add_results` made a no-op in
  this process: what keeping the rollups costs;
- **reference**: another fresh store, the same results turned into rows (JSON text) and
  inserted with the same driver and nothing else — no idempotency, no rollups, no ORM:
  sqlite3 `executemany` (SQLite) and psycopg `COPY` (PostgreSQL), one commit per batch of the
  same size. The ceiling: what the writer's extra work (exact-once ids, rollups) costs.

CPU is this process's (all threads; `process_time`) over the timed part; on PostgreSQL also the
server backends' (utime+stime from /proc of the connections' backend pids).

`--profile`: one writer run per store with cProfile on the writer's store thread (around
ResultWriter._store, the batch write), printing where the time goes; its times are the
profiler's, not figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

from bench._proc import cpu_seconds  # noqa: E402
from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName, format_time  # noqa: E402
from monitor.store import ResultWriter, make_engine, partitions, rollups, upgrade  # noqa: E402
from tests.conftest import create_postgres_database, drop_postgres_database  # noqa: E402

ADMIN_DB = "test"
# Kinds per check, by its number: what a config of a few hundred checks looks like.
KINDS = ("http", "http", "http", "http", "tls", "tls", "dns", "site", "goproxy", "goproxy")
RESOLVERS = ("udp://114.114.114.114", "udp://8.8.8.8", "https://dns.google/dns-query", "tls://1.1.1.1")
PROXIES = ("https://proxy.golang.org", "https://goproxy.cn")
COLUMNS = ("id", "agent", "check", "kind", "vantage", "target", "started_at", "ok", "duration_s", "phases",
           "failure_class", "failure_operation", "failure_detail", "facts", "verdict")


# -- the results ---------------------------------------------------------------------------------


def _tls_facts(rnd: random.Random, name: str) -> dict:
    return {
        "ip": f"198.18.{rnd.randrange(256)}.{rnd.randrange(256)}", "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_128_GCM_SHA256", "alpn": "h2", "subject": f"CN={name}", "issuer": "CN=R11,O=Let's Encrypt,C=US",
        "sans": [name, f"www.{name}"], "cert_not_after": "2027-02-01T00:00:00Z",
        "chain_sha256": [uuid.UUID(int=rnd.getrandbits(128)).hex * 2 for _ in range(2)], "verified": True, "sni": name,
    }


def _dns_facts(rnd: random.Random, name: str) -> dict:
    answers = [{"name": f"{name}.", "type": "A", "ttl": rnd.randrange(30, 300), "data": f"198.18.0.{rnd.randrange(256)}"} for _ in range(2)]
    return {"rcode": "NOERROR", "flags": ["QR", "RD", "RA"], "answers": answers, "addresses": [a["data"] for a in answers], "response_size": 76}


class Check:
    def __init__(self, number: int, rnd: random.Random):
        self.name = f"chk-{number:04d}"
        self.kind = KINDS[number % len(KINDS)]
        self.domain = f"svc{number}.example"
        self.target = {"http": f"https://{self.domain}/", "tls": f"{self.domain}:443", "dns": self.domain, "site": self.domain,
                       "goproxy": f"golang.org/x/mod{number}@v1.0.0 via {PROXIES[0]}|{PROXIES[1]}"}[self.kind]
        self.median = rnd.lognormvariate(-2.5, 0.8)


def run_results(check: Check, vantage: int, at: datetime, rnd: random.Random) -> list[ProbeResult]:
    """One run of `check` from vantage `vantage` at `at`, as the probes shape it."""
    ok = rnd.random() > 0.01
    failure = None if ok else Failure(FailureClass.CONNECTION_RESET, Operation.TLS_HANDSHAKE, "[Errno 104] Connection reset by peer")
    duration = check.median * rnd.lognormvariate(0, 0.3)
    phases = {"resolve": duration * 0.05, "connect": duration * 0.2, "tls": duration * 0.4, "ttfb": duration * 0.3, "transfer": duration * 0.05}
    base = dict(check=check.name, kind=check.kind, vantage=f"v{vantage}", agent=f"agent-{vantage}", target=check.target,
                started_at=at, ok=ok, duration_s=duration, failure=failure)
    if check.kind == "http":
        facts = {**_tls_facts(rnd, check.domain), "status": 200, "http_version": "HTTP/2", "bytes": rnd.randrange(1000, 90000),
                 "headers": {"server": "nginx", "content-type": "text/html; charset=utf-8"}}
        return [ProbeResult(**base, phases=phases, facts=facts)]
    if check.kind == "tls":
        return [ProbeResult(**base, phases={k: phases[k] for k in ("resolve", "connect", "tls")}, facts=_tls_facts(rnd, check.domain))]
    round_id = uuid.UUID(int=rnd.getrandbits(128)).hex
    verdict = Verdict(VerdictName.OK if ok else VerdictName.INCONCLUSIVE, Confidence.HIGH, ("every resolver agrees",) if ok else ())
    if check.kind == "dns":
        out = [ProbeResult(**{**base, "target": spec, "ok": True, "failure": None}, phases={"dns_round_trip": duration / 4},
                           facts={"round_id": round_id, "role": "resolver", "resolver": spec, "transport": spec.split(":")[0],
                                  "query": check.domain, "qtype": "A", "resolver_address": "198.18.0.53:53", **_dns_facts(rnd, check.domain)})
               for spec in RESOLVERS]
        out.append(ProbeResult(**base, phases={"dns_round_trip": duration}, verdict=verdict,
                               facts={"round_id": round_id, "role": "comparison", "query": check.domain, "qtype": "A",
                                      "seen_addresses": ["198.18.0.1", "198.18.0.2"]}))
        return out
    if check.kind == "site":
        parts = [ProbeResult(**{**base, "target": t, "ok": True, "failure": None}, phases=phases, facts={"round_id": round_id, "role": role, **f})
                 for role, t, f in (("resolver", "system", _dns_facts(rnd, check.domain)),
                                    ("handshake", f"198.18.0.9:443", _tls_facts(rnd, check.domain)),
                                    ("fetch", f"https://{check.domain}/", {"status": 200, "bytes": 5120}))]
        return [*parts, ProbeResult(**base, phases=phases, verdict=verdict,
                                    facts={"round_id": round_id, "role": "summary", "control_sni": "example.com", "addresses": ["198.18.0.9"]})]
    requests = [{"what": w, "proxy": PROXIES[0], "url": f"{PROXIES[0]}/golang.org/x/mod/@v/v1.0.0.{w}", "status": 200,
                 "seconds": duration / 4, "bytes": rnd.randrange(100, 50000)} for w in ("info", "mod", "zip")]
    facts = {"module": "golang.org/x/mod", "version": "v1.0.0", "requests": requests, "served_by": {w: PROXIES[0] for w in ("info", "mod", "zip")},
             "h1": "h1:" + "x" * 44, "gomod_h1": "h1:" + "y" * 44, "zip_files": 120, "zip_uncompressed_bytes": 412345,
             "sumdb": {"name": "sum.golang.org", "tree_size": 40_000_000, "verified": True},
             "sumdb_tree": {"name": "sum.golang.org", "size": 40_000_000 + int(at.timestamp()) % 100_000, "hash": "A" * 43 + "="}}
    return [ProbeResult(**base, phases=phases, verdict=verdict, facts=facts)]


def make_results(n: int, checks: int, vantages: int, midnight: datetime, seed: int = 1) -> list[ProbeResult]:
    """`n` results in time order, one run per (check, vantage) per minute, centred on `midnight`."""
    rnd = random.Random(seed)
    all_checks = [Check(i, rnd) for i in range(checks)]
    per_minute = sum(len(run_results(c, 0, midnight, random.Random(0))) for c in all_checks) * vantages
    minutes = -(-n // per_minute)
    start = midnight - timedelta(minutes=minutes // 2)
    out: list[ProbeResult] = []
    for m in range(minutes):
        for c in all_checks:
            for v in range(vantages):
                out += run_results(c, v, start + timedelta(minutes=m, seconds=rnd.random() * 59), rnd)
    return out[:n]


# -- stores ------------------------------------------------------------------------------------


class Stores:
    """Fresh, migrated stores; every PostgreSQL database made here is dropped by `cleanup`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.databases: list[str] = []

    def fresh(self, store: str) -> str:
        name = f"monitor_ingest_bench_{uuid.uuid4().hex[:8]}"
        if store == "sqlite":
            url = f"sqlite:///{self.workdir / (name + '.db')}"
        else:
            url = create_postgres_database(name)
            self.databases.append(name)
        upgrade(url)
        return url

    def done(self, url: str) -> None:
        if url.startswith("sqlite"):
            path = Path(url.removeprefix("sqlite:///"))
            for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                p.unlink(missing_ok=True)
        else:
            name = url.rsplit("/", 1)[1]
            drop_postgres_database(name)
            self.databases.remove(name)

    def cleanup(self) -> None:
        for name in list(self.databases):
            drop_postgres_database(name)
        self.databases.clear()


def backend_cpu(dbname: str) -> float:
    """utime+stime (s) of every server backend connected to `dbname` (same host: /proc)."""
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={ADMIN_DB}", autocommit=True) as conn:
        pids = [p for (p,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,))]
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # the backend has ended
            continue
    return total


def verify(url: str, results: list[ProbeResult], *, rollups_expected: bool) -> None:
    """The results are all in the database, once; the rollups count every run once."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM results")).one()
            runs = conn.execute(text("SELECT coalesce(sum(probes), 0) FROM rollup_daily WHERE part = 'run'")).scalar_one()
    finally:
        engine.dispose()
    assert tuple(stored) == (len(results), len(results)), f"{url}: {tuple(stored)} rows stored, {len(results)} submitted"
    want = sum(1 for r in results if rollups.is_run(r)) if rollups_expected else 0
    assert runs == want, f"{url}: rollups count {runs} runs, {want} submitted"


# -- the two ways in ---------------------------------------------------------------------------


async def _through_writer(engine: Engine, results: list[ProbeResult], batch_size: int, spool: Path) -> None:
    # As the daemon makes it (daemon.writer_for): its batch size and a spool; the queue holds
    # every result (submitted at once here), so none is spilled to the spool for being early.
    writer = ResultWriter(engine, batch_size=batch_size, queue_size=len(results) + 1, spool_dir=spool)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)  # running, as in the daemon (close() before run() starts would run a second loop)
    for r in results:
        writer.submit(r)
    await writer.close(timeout=600)
    await task
    assert writer.written == len(results) and writer.dropped == 0 and writer.spooled == 0, (writer.written, writer.dropped, writer.spooled)


def run_writer(url: str, results: list[ProbeResult], batch_size: int, spool: Path) -> tuple[float, float, float]:
    """(seconds, process CPU s, server CPU s) of writing `results` through ResultWriter."""
    engine = make_engine(url)  # handed in, so the backends can be read before it is disposed
    try:
        shutil.rmtree(spool, ignore_errors=True)
        cpu0, t0 = time.process_time(), time.perf_counter()
        asyncio.run(_through_writer(engine, results, batch_size, spool))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server = backend_cpu(url.rsplit("/", 1)[1]) if url.startswith("postgresql") else 0.0
    finally:
        engine.dispose()
    return seconds, cpu, server


def run_without_rollups(url: str, results: list[ProbeResult], batch_size: int, spool: Path) -> tuple[float, float, float]:
    """run_writer with rollups.add_results a no-op: what keeping the rollups costs (a figure to
    read beside the writer's, never a way to run)."""
    real = rollups.add_results
    rollups.add_results = lambda session, results: None
    try:
        return run_writer(url, results, batch_size, spool)
    finally:
        rollups.add_results = real


def _row(r: ProbeResult, sqlite_time: bool) -> tuple:
    t = r.started_at.astimezone(timezone.utc)
    return (r.id, r.agent, r.check, r.kind, r.vantage, r.target,
            t.replace(tzinfo=None).isoformat(" ") if sqlite_time else t, r.ok, r.duration_s, json.dumps(r.phases),
            r.failure.cls.value if r.failure else None, r.failure.operation.value if r.failure else None,
            r.failure.detail if r.failure else None, json.dumps(r.facts), json.dumps(r.verdict.to_json()) if r.verdict else None)


def run_reference(url: str, results: list[ProbeResult], batch_size: int) -> tuple[float, float, float]:
    """(seconds, process CPU s, server CPU s) of the driver's bulk insert of the same rows."""
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # as monitor.store.engine sets them
        sql = f"INSERT INTO results ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})"
        try:
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i in range(0, len(results), batch_size):
                with conn:
                    conn.executemany(sql, [_row(r, True) for r in results[i : i + batch_size]])
            return time.perf_counter() - t0, time.process_time() - cpu0, 0.0
        finally:
            conn.close()
    dbname = url.rsplit("/", 1)[1]
    _make_partitions(url, results)  # beforehand, untimed: the writer makes them in its batches
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={dbname}") as conn:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(0, len(results), batch_size):
            with conn.transaction(), conn.cursor() as cur, cur.copy(f"COPY results ({columns}) FROM STDIN") as copy:
                for r in results[i : i + batch_size]:
                    copy.write_row(_row(r, False))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server = backend_cpu(dbname)
    return seconds, cpu, server


def _make_partitions(url: str, results: list[ProbeResult]) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            partitions.ensure(conn, {partitions.day_of(r.started_at) for r in results})
    finally:
        engine.dispose()


def profile(results: list[ProbeResult], stores: list[str], batch_size: int, workdir: Path, pool: Stores) -> int:
    """cProfile around every batch write (the writer makes one at a time, on a store thread)."""
    import cProfile
    import pstats

    original = ResultWriter._store

    def profiled(self: ResultWriter, batch: list[ProbeResult]) -> tuple[int, int]:
        profiler.enable()
        try:
            return original(self, batch)
        finally:
            profiler.disable()

    ResultWriter._store = profiled  # type: ignore[method-assign]
    try:
        for store in stores:
            profiler = cProfile.Profile()
            url = pool.fresh(store)
            try:
                run_writer(url, results, batch_size, workdir / "spool")
            finally:
                pool.done(url)
            print(f"\n== {store}: {len(results):,} results through ResultWriter, batches of {batch_size} (cProfile of the batch writes)")
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(r"monitor/store|execute|commit", 25)
            stats.sort_stats("tottime").print_stats(15)
    finally:
        ResultWriter._store = original  # type: ignore[method-assign]
        pool.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="results per run (default 100,000)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--checks", type=int, default=100)
    ap.add_argument("--vantages", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the config's storage.batch_size default")
    ap.add_argument("--modes", default="writer,reference")
    ap.add_argument("--profile", action="store_true", help="profile the writer's batch writes (cProfile; no figures)")
    ap.add_argument("--seconds", type=float, default=540, help="stop starting new reps after this long")
    args = ap.parse_args()
    from monitor.config import StorageConfig

    batch_size = args.batch_size or StorageConfig().batch_size
    stores, modes = args.stores.split(","), args.modes.split(",")
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    results = make_results(args.n, args.checks, args.vantages, midnight)
    sizes = [len(json.dumps(r.facts)) for r in results]
    kinds = {k: sum(1 for r in results if r.kind == k) for k in sorted({r.kind for r in results})}
    print(f"{len(results):,} results, {sum(map(rollups.is_run, results)):,} runs; {args.checks} checks × {args.vantages} vantages "
          f"({', '.join(f'{k} {v:,}' for k, v in kinds.items())}); facts JSON median {statistics.median(sizes):.0f} B "
          f"(max {max(sizes)}); {format_time(results[0].started_at)} … {format_time(results[-1].started_at)}; batch size {batch_size}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="monitor-ingest-bench-"))
    pool = Stores(workdir)
    figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    if args.profile:
        return profile(results, stores, batch_size, workdir, pool)
    began = time.perf_counter()
    try:
        for rep in range(args.reps):
            if rep and time.perf_counter() - began > args.seconds:
                print(f"stopping after {rep} reps ({args.seconds:.0f} s budget)")
                break
            for store in stores:
                for mode in modes:
                    url = pool.fresh(store)
                    try:
                        if mode == "writer":
                            figure = run_writer(url, results, batch_size, workdir / "spool")
                        elif mode == "no-rollups":
                            figure = run_without_rollups(url, results, batch_size, workdir / "spool")
                        else:
                            figure = run_reference(url, results, batch_size)
                        verify(url, results, rollups_expected=mode == "writer")
                    finally:
                        pool.done(url)
                    figures.setdefault((store, mode), []).append(figure)
                    print(f"  rep {rep + 1} {store:<10} {mode:<9} {len(results) / figure[0]:9,.0f} results/s", flush=True)
    finally:
        pool.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{len(results):,} results per run, batches of {batch_size}; medians over reps (min–max)")
    print(f"{'store':<11} {'way in':<38} {'results/s':>10} {'min–max':>17} {'CPU µs/result':>14} {'server µs/result':>17} {'vs ref':>7}")
    label = {"writer": "ResultWriter (ids exact-once, rollups)", "no-rollups": "ResultWriter, rollups left out", "reference": None}
    for store in stores:
        ref = figures.get((store, "reference"))
        ref_rate = statistics.median(len(results) / f[0] for f in ref) if ref else None
        for mode in modes:
            fs = figures.get((store, mode))
            if not fs:
                continue
            rates = [len(results) / f[0] for f in fs]
            rate = statistics.median(rates)
            name = label[mode] or ("sqlite3 executemany (ceiling)" if store == "sqlite" else "psycopg COPY (ceiling)")
            cpu = statistics.median(f[1] for f in fs) / len(results) * 1e6
            server = statistics.median(f[2] for f in fs) / len(results) * 1e6
            vs = f"{rate / ref_rate:6.2f}x" if ref_rate else ""
            print(f"{store:<11} {name:<38} {rate:10,.0f} {f'{min(rates):,.0f}–{max(rates):,.0f}':>17} {cpu:14.1f} "
                  f"{(f'{server:.1f}' if store != 'sqlite' else '-'):>17} {vs:>7}  ({len(fs)} reps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
