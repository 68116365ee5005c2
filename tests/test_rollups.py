"""Rollups on SQLite and the real PostgreSQL: what aggregate() counts, that the tables equal a
recomputation from the raw results however results arrive (batches, duplicates, two agents at
once, a spool replayed — also twice, also with its milliseconds), the back-fill of migration
0005, and the daily partitions of results on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from monitor.model import Confidence, Failure, FailureClass, Operation, ProbeResult, Verdict, VerdictName
from monitor.store import ResultWriter, make_engine, save_results, upgrade
from monitor.store import partitions, rollups
from monitor.store.histogram import ALPHA, bucket_of, bucket_value, quantile
from monitor.store.migrate import alembic_config
from monitor.store.models import DailyRollupRow, HourlyRollupRow, ResultRow, UptimeRow
from monitor.store.bulk import values as _to_row
from monitor.store.retention import prune_once
from monitor.store.rollups import PROXY, RUN, Key, Tally, aggregate, proxy_tallies
from tests.test_writer import eventually

T0 = datetime(2026, 11, 20, 22, 58, 30, 123456, tzinfo=timezone.utc)  # two hours and a day boundary within reach
F, O, V = FailureClass, Operation, VerdictName
GOOD, BAD = "https://good.example", "https://bad.example"


def run(check: str = "web", vantage: str = "a", agent: str = "x", at: datetime = T0, *, ok: bool = True, **kw) -> ProbeResult:
    fields = {"kind": "http", "target": "https://example.com/", "duration_s": 0.1, "phases": {"connect": 0.01, "tls": 0.03}} | kw
    return ProbeResult(check=check, vantage=vantage, agent=agent, started_at=at, ok=ok, **fields)


def goproxy_run(at: datetime, *, served_by: str | None, tampered: bool = False, vantage: str = "a") -> ProbeResult:
    """A goproxy run over GOPROXY=BAD|GOOD: BAD resets the TLS handshake unless it serves."""
    requests = []
    if served_by != BAD:
        requests.append({"what": "info", "proxy": BAD, "seconds": 0.2, "failure": {"class": "connection_reset", "operation": "tls_handshake"}})
    if served_by is not None:
        requests += [{"what": w, "proxy": served_by, "status": 200, "seconds": s} for w, s in (("info", 0.1), ("mod", 0.1), ("zip", 0.3))]
    failure = verdict = None
    if tampered:
        failure = Failure(F.CHECKSUM_MISMATCH, O.VERIFY, "zip: got h1:x")
        verdict = Verdict(V.MODULE_TAMPERED, Confidence.HIGH, ("zip from bad hashes to h1:x",))
    elif served_by is None:
        failure = Failure(F.CONNECTION_RESET, O.TLS_HANDSHAKE, "reset")
        verdict = Verdict(V.RST_INJECTION, Confidence.HIGH, ("reset during the TLS handshake",))
    else:
        verdict = Verdict(V.OK, Confidence.HIGH, ())
    served = {w: served_by for w in ("info", "mod", "zip")} if served_by else {}
    return ProbeResult(
        check="mod", kind="goproxy", vantage=vantage, agent="x", target=f"m@v1 via {BAD}|{GOOD}", started_at=at,
        ok=failure is None, duration_s=0.7, failure=failure, verdict=verdict,
        facts={"requests": requests, "served_by": served},
    )


def dns_round(at: datetime, *, agreed: bool) -> list[ProbeResult]:
    """Two per-resolver results, then the comparison (the run)."""
    parts = [
        ProbeResult(check="dns", kind="dns", vantage="a", agent="x", target=spec, started_at=at, ok=True, duration_s=0.02,
                    phases={"dns_round_trip": 0.02}, facts={"role": "resolver", "round_id": "r"})
        for spec in ("udp://198.18.0.1", "tls://198.18.0.2")
    ]
    verdict = Verdict(V.OK if agreed else V.DNS_POISONING, Confidence.HIGH, ())
    summary = ProbeResult(check="dns", kind="dns", vantage="a", agent="x", target="example.com", started_at=at, ok=agreed,
                          duration_s=0.05, verdict=verdict, facts={"role": "comparison", "round_id": "r"})
    return [*parts, summary]


def dataset(seed: int = 7) -> list[ProbeResult]:
    """Two days around T0 of several kinds, vantages and agents, with failures and verdicts."""
    rnd = random.Random(seed)
    out: list[ProbeResult] = []
    for i in range(300):
        at = T0 + timedelta(minutes=7 * i, microseconds=rnd.randrange(1000))
        failed = rnd.random() < 0.2
        out.append(run(at=at, ok=not failed, duration_s=rnd.uniform(0.01, 3.0),
                       failure=Failure(F.GENERIC_TIMEOUT_ERROR, O.CONNECT, "t") if failed else None))
        out.append(run(vantage="b", agent="y", at=at + timedelta(seconds=20), ok=rnd.random() < 0.9, duration_s=0.2))
        out += dns_round(at, agreed=rnd.random() < 0.95)
        pick = rnd.random()
        out.append(goproxy_run(at, served_by=BAD if pick < 0.05 else (None if pick < 0.15 else GOOD), tampered=pick < 0.05))
    return out


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def stored_and_recomputed(engine: Engine) -> tuple[rollups.Increments, rollups.Increments]:
    with Session(engine) as session:
        return rollups.stored(session), rollups.recompute_from_raw(session)


def raw_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(ResultRow))


# -- the pure aggregation --------------------------------------------------------------------------


def test_aggregate_counts_runs_not_round_parts() -> None:
    at = datetime(2026, 11, 20, 10, 7, 5, tzinfo=timezone.utc)
    results = [
        *dns_round(at, agreed=False),
        run(at=at, duration_s=0.1),
        run(at=at + timedelta(minutes=1), ok=False, failure=Failure(F.CONNECTION_RESET, O.TLS_HANDSHAKE, "r")),
        run(at=at + timedelta(hours=1), duration_s=0.2, phases={"connect": 0.01, "bogus": 1.0, "tls": "x"}),
    ]
    inc = aggregate(results)
    hour, day = at.replace(minute=0, second=0), at.replace(hour=0, minute=0, second=0)
    web = Key(hour, "web", "a", "x", "http", "https://example.com/", RUN)
    assert inc.hourly[web] == Tally(
        probes=2, successes=1, failures={"connection_reset@tls_handshake": 1}, verdicts={},
        latency={bucket_of(0.1): 1}, phases={f"connect/{bucket_of(0.01)}": 2, f"tls/{bucket_of(0.03)}": 2},
    )
    assert inc.daily[web._replace(bucket_start=day)].probes == 3  # both hours of the day
    # A dns round is one run: its comparison; the per-resolver results are its details.
    (dns_key,) = [k for k in inc.hourly if k.check == "dns"]
    assert dns_key.target == "example.com" and inc.hourly[dns_key].probes == 1
    assert inc.hourly[dns_key].verdicts == {"dns_poisoning": 1}
    # Uptime: minute 7 had runs (one ok), minute 8 had a failed one only.
    assert inc.uptime[(hour, "web")] == [(1 << 7) | (1 << 8), 1 << 7]
    assert inc.uptime[(hour, "dns")] == [1 << 7, 0]


def test_proxy_tallies_say_who_served_and_how_the_others_failed() -> None:
    at = T0
    clean = proxy_tallies(goproxy_run(at, served_by=GOOD))
    assert clean[GOOD] == Tally(probes=1, successes=1, verdicts={"ok": 1}, latency={bucket_of(0.5): 1})
    assert clean[BAD] == Tally(probes=1, failures={"connection_reset@tls_handshake": 1})  # the run was ok: no verdict of its own
    blocked = proxy_tallies(goproxy_run(at, served_by=None))
    assert blocked == {BAD: Tally(probes=1, failures={"connection_reset@tls_handshake": 1}, verdicts={"rst_injection": 1})}
    tampered = proxy_tallies(goproxy_run(at, served_by=BAD, tampered=True))
    assert tampered == {BAD: Tally(probes=1, successes=1, verdicts={"module_tampered": 1}, latency={bucket_of(0.5): 1})}
    # A 404 is "not found", whatever the request record lacks.
    r = goproxy_run(at, served_by=GOOD)
    r.facts["requests"][0] = {"what": "info", "proxy": BAD, "status": 404, "seconds": 0.1}
    assert proxy_tallies(r)[BAD].failures == {"module_not_found@http_round_trip": 1}
    inc = aggregate([goproxy_run(at, served_by=GOOD)])
    assert {k.target for k in inc.hourly if k.part == PROXY} == {GOOD, BAD}


def test_histogram_quantiles_are_within_alpha_and_merge_by_adding() -> None:
    rnd = random.Random(3)
    values = [rnd.lognormvariate(-2, 1.2) for _ in range(5000)]
    halves = [Tally(), Tally()]
    for i, v in enumerate(values):
        halves[i % 2].latency[bucket_of(v)] += 1
    merged = Tally()
    for h in halves:
        merged.add(h)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[int(q * (len(values) - 1))]
        assert abs(quantile(merged.latency, q) - exact) <= ALPHA * exact
    assert quantile({}, 0.5) is None
    assert abs(bucket_value(bucket_of(2.0)) - 2.0) <= ALPHA * 2.0
    assert bucket_value(bucket_of(0.0)) == pytest.approx(1e-4, rel=ALPHA)  # clamped to the floor


# -- the tables --------------------------------------------------------------------------------------


async def test_rollups_equal_recomputation_from_raw_results(engine: Engine, db_url: str) -> None:
    results = dataset()
    by_agent = {"x": [r for r in results if r.agent == "x"], "y": [r for r in results if r.agent == "y"]}
    # Two agents' writers at once, small batches, and every result of x submitted twice.
    writers = {agent: ResultWriter(db_url, batch_size=37, flush_interval=0.01) for agent in by_agent}
    tasks = [asyncio.create_task(w.run()) for w in writers.values()]
    for agent, rs in by_agent.items():
        for r in rs:
            writers[agent].submit(r)
    for r in by_agent["x"][:500]:
        writers["x"].submit(r)
    for w in writers.values():
        await w.close()
    await asyncio.gather(*tasks)
    assert raw_count(engine) == len(results)

    stored, recomputed = stored_and_recomputed(engine)
    assert stored == recomputed
    # Not two empty sets: the numbers are there.
    runs = len([r for r in results if rollups.is_run(r)])
    assert sum(t.probes for k, t in stored.daily.items() if k.part == RUN) == runs
    assert sum(t.probes for k, t in stored.hourly.items() if k.part == RUN) == runs
    assert {k.check for k in stored.daily} == {"web", "dns", "mod"}
    tampered = sum(t.verdicts.get("module_tampered", 0) for k, t in stored.daily.items() if k.part == PROXY and k.target == BAD)
    assert tampered == len([r for r in results if r.verdict is not None and r.verdict.name is V.MODULE_TAMPERED]) > 0


def test_counter_keys_any_json_can_hold_add_up(engine: Engine) -> None:
    # A failure class read from a goproxy request record is data: a quote or a dot in it must
    # not break the merge (SQLite's JSON paths cannot spell a key with a quote).
    def odd_run(at: datetime) -> ProbeResult:
        r = goproxy_run(at, served_by=GOOD)
        r.facts["requests"][0]["failure"] = {"class": 'odd"class.$x', "operation": "tls_handshake"}
        return r

    for minute in range(3):  # three batches into the same hour's rows
        with Session(engine) as session, session.begin():
            save_results(session, [odd_run(T0 + timedelta(seconds=10 * minute))])
    stored, recomputed = stored_and_recomputed(engine)
    assert stored == recomputed
    assert sum(t.failures.get('odd"class.$x@tls_handshake', 0) for k, t in stored.daily.items() if k.target == BAD) == 3


def test_writers_adding_to_the_same_rollup_rows_at_once_count_each_result_once(engine: Engine) -> None:
    # Two writers of the same agent (the daemon and `monitor probe --once`, or a write that hung
    # and the spool replay behind it) store results of the same series at the same moments: each
    # batch falls in an hour of its own, so both writers add to rows and insert new ones at once.
    rounds, per_round = 40, 10
    results = [run(at=T0 + timedelta(hours=i // per_round, seconds=i % per_round), ok=i % 5 != 0, duration_s=0.01 * (i % 17 + 1))
               for i in range(rounds * per_round)]
    halves = [results[0::2], results[1::2]]
    barrier = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def write(part: list[ProbeResult]) -> None:
        try:
            for i in range(0, len(part), per_round // 2):
                barrier.wait()
                with Session(engine) as session, session.begin():
                    assert save_results(session, part[i : i + per_round // 2]) == per_round // 2
        except BaseException as exc:  # noqa: BLE001 — reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=write, args=(half,)) for half in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    stored, recomputed = stored_and_recomputed(engine)
    assert stored == recomputed
    assert sum(t.probes for t in stored.daily.values()) == len(results)
    assert len({k.bucket_start for k in stored.hourly}) == rounds


async def test_a_replayed_spool_does_not_change_the_rollups(db_url: str, tmp_path: Path) -> None:
    results = dataset(seed=11)[:400]
    spool_dir = tmp_path / "spool"
    # The store has no schema yet: everything goes to the spool.
    writer = ResultWriter(db_url, batch_size=50, spool_dir=spool_dir)
    for r in results:
        writer.submit(r)
    await writer.close()
    assert writer.spooled == len(results)
    saved_segments = tmp_path / "segments"
    shutil.copytree(spool_dir, saved_segments, ignore=shutil.ignore_patterns(".lock"))

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        # Some made it in before (the commit happened, its answer was lost), with the full
        # microseconds of their started_at; the spool has them with milliseconds.
        with Session(engine) as session, session.begin():
            assert save_results(session, results[:120]) == 120
        writer = ResultWriter(db_url, spool_dir=spool_dir)
        await writer.close()
        assert (writer.written, writer.spooled, writer.dropped) == (len(results) - 120, 0, 0)
        first, _ = stored_and_recomputed(engine)

        # A crash between a replay's commit and the removal of its segments: replayed again.
        for segment in saved_segments.glob("*.jsonl"):
            shutil.copy(segment, spool_dir / segment.name)
        writer = ResultWriter(db_url, spool_dir=spool_dir)
        await writer.close()
        assert writer.written == 0
        again, recomputed = stored_and_recomputed(engine)
        assert again == first == recomputed
        assert raw_count(engine) == len(results)
        assert sum(t.probes for k, t in again.daily.items() if k.part == RUN) == len([r for r in results if rollups.is_run(r)])
    finally:
        engine.dispose()


def test_rollups_outlive_retention(engine: Engine) -> None:
    old = [run(at=datetime(2026, 1, 5, 12, tzinfo=timezone.utc)), run(at=datetime(2026, 1, 6, 12, tzinfo=timezone.utc))]
    with Session(engine) as session, session.begin():
        save_results(session, old)
    before, _ = stored_and_recomputed(engine)
    assert prune_once(engine, retention_s=30 * 86400) == 2
    assert raw_count(engine) == 0
    after, recomputed = stored_and_recomputed(engine)
    assert after == before and sum(t.probes for t in after.daily.values()) == 2
    assert not recomputed  # the raw results are gone; their rollups stay


def test_migration_0005_backfills_rollups_from_raw_results(db_url: str) -> None:
    results = dataset(seed=5)[:600]
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0003")
        # Stored as 0003 stored them (its table, primary key id): plain rows.
        legacy = [_to_row(r) for r in results]
        with Session(engine) as session, session.begin():
            session.execute(ResultRow.__table__.insert(), legacy)
        upgrade(db_url)
        assert raw_count(engine) == len(results)
        stored, recomputed = stored_and_recomputed(engine)
        assert stored == recomputed == aggregate(results)
        with engine.connect() as conn:
            assert {c["name"] for c in [inspect(conn).get_pk_constraint("results")]} == {"pk_results"}
            assert inspect(conn).get_pk_constraint("results")["constrained_columns"] == ["id", "started_at"]
            if conn.dialect.name == "postgresql":
                days = {partitions.day_of(r.started_at) for r in results}
                assert days <= set(partitions.existing(conn))
        # Later results count on top of the back-filled ones, never twice.
        with Session(engine) as session, session.begin():
            assert save_results(session, results[:10] + [run(at=T0 + timedelta(days=3))]) == 1
        stored, recomputed = stored_and_recomputed(engine)
        assert stored == recomputed
        # And back down, for a rollback of the release.
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        with engine.connect() as conn:
            assert "rollup_daily" not in inspect(conn).get_table_names()
            assert conn.execute(text("SELECT count(*) FROM results")).scalar_one() == len(results) + 1
            assert inspect(conn).get_pk_constraint("results")["constrained_columns"] == ["id"]
        upgrade(db_url)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_results_are_partitioned_by_day_and_pruned_by_dropping_partitions(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        now = datetime.now(timezone.utc)
        with engine.connect() as conn:
            ahead = set(partitions.existing(conn))
        today = partitions.day_of(now)
        assert {today + timedelta(days=n) for n in range(partitions.AHEAD_DAYS + 1)} <= ahead  # made by the migration
        old_day = today - timedelta(days=40)
        old = [run(at=datetime.combine(old_day, datetime.min.time(), timezone.utc) + timedelta(hours=h)) for h in range(3)]
        recent = run(at=now)
        with Session(engine) as session, session.begin():
            assert save_results(session, [*old, recent]) == 4  # the old day's partition is made for them
        with engine.connect() as conn:
            assert partitions.partition_name(old_day) in set(partitions.existing(conn).values())
            rows = conn.execute(text(f'SELECT count(*) FROM "{partitions.partition_name(old_day)}"')).scalar_one()
            assert rows == 3
        assert prune_once(engine, retention_s=30 * 86400) == 3
        with engine.connect() as conn:
            assert old_day not in partitions.existing(conn)
            assert conn.execute(text("SELECT to_regclass(:n)"), {"n": partitions.partition_name(old_day)}).scalar_one() is None
            assert conn.execute(text("SELECT count(*) FROM results")).scalar_one() == 1
        with Session(engine) as session:
            assert session.scalar(select(func.sum(DailyRollupRow.probes))) == 4  # rollups stay
            assert session.scalar(select(func.count()).select_from(HourlyRollupRow)) == 4
            assert session.scalar(select(func.count()).select_from(UptimeRow)) == 4
    finally:
        engine.dispose()


async def test_partition_made_by_one_writer_is_seen_by_another(db_url: str) -> None:
    # Two agents whose first results fall on a day without a partition yet, at once.
    upgrade(db_url)
    day = datetime(2031, 3, 3, tzinfo=timezone.utc)
    writers = [ResultWriter(db_url, batch_size=5, flush_interval=0.01) for _ in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    for n, w in enumerate(writers):
        for i in range(20):
            w.submit(run(agent=f"agent-{n}", at=day + timedelta(minutes=i)))
    await eventually(lambda: sum(w.written for w in writers) == 40, "both agents' results stored", within=60)
    for w in writers:
        await w.close()
    await asyncio.gather(*tasks)
    assert sum(w.dropped for w in writers) == 0


def test_spans_cut_a_period_into_the_fewest_buckets() -> None:
    h = lambda *a: datetime(*a, tzinfo=timezone.utc)  # noqa: E731
    assert [(m.__tablename__, lo, hi) for m, lo, hi in rollups.spans(h(2026, 10, 30, 5), h(2027, 1, 2, 3))] == [
        ("rollup_hourly", h(2026, 10, 30, 5), h(2026, 10, 31)),
        ("rollup_daily", h(2026, 10, 31), h(2026, 11, 1)),
        ("rollup_monthly", h(2026, 11, 1), h(2027, 1, 1)),
        ("rollup_daily", h(2027, 1, 1), h(2027, 1, 2)),
        ("rollup_hourly", h(2027, 1, 2), h(2027, 1, 2, 3)),
    ]
    assert [m.__tablename__ for m, _, _ in rollups.spans(h(2026, 10, 1), h(2027, 1, 1))] == ["rollup_monthly"]  # a quarter
    assert [m.__tablename__ for m, _, _ in rollups.spans(h(2026, 10, 1), h(2027, 1, 1), coarsest="daily")] == ["rollup_daily"]
    assert [m.__tablename__ for m, _, _ in rollups.spans(h(2026, 10, 1, 3), h(2026, 10, 1, 9))] == ["rollup_hourly"]
    with pytest.raises(ValueError, match="whole UTC hours"):
        rollups.spans(h(2026, 10, 1, 3, 30), h(2026, 10, 2))


def test_totals_over_any_span_equal_the_sum_of_its_hours(engine: Engine) -> None:
    # Results over three months; any hour-aligned span read as months, days and hours adds up
    # to what its hours hold.
    start = datetime(2026, 9, 28, 20, tzinfo=timezone.utc)
    results = [run(at=start + timedelta(minutes=97 * i), ok=i % 7 != 0, duration_s=0.05 + (i % 13) / 10) for i in range(1500)]
    with Session(engine) as session, session.begin():
        save_results(session, results)
    rnd = random.Random(4)
    with Session(engine) as session:
        hours = {k: t for k, t in rollups.stored(session).hourly.items()}
        for _ in range(6):
            a = start + timedelta(hours=rnd.randrange(0, 1500))
            b = a + timedelta(hours=rnd.randrange(1, 1500))
            total = Tally()
            for rec in rollups.read_totals(session, a, b):
                total.add_counts(rec.probes, rec.successes, failures=rec.failures, verdicts=rec.verdicts, latency=rec.latency)
            expected = Tally()
            for key, t in hours.items():
                if a <= key.bucket_start < b:
                    expected.add(t)
            expected.phases.clear()  # totals leave the phase histograms out
            assert total == expected and total.probes == len([r for r in results if a <= r.started_at < b])
